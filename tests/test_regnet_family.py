"""Unit tests of the RegNetX generator, its tables, and torchvision's name table (no framework needed)."""

import subprocess
import sys

import numpy as np
import pytest

from parity import torchvision_io as tvio
from parity.specs import SPECS, get_spec
from parity.specs import regnet_family as family
from parity.weights import WeightsError, WeightsFileError, count_parameters, schema

# The paper's RegNetX models as pycls builds them (Radosavovic et al. 2020, appendix; pycls
# configs/dds_baselines/regnetx; Keras' RegNetX*): (depths, widths, group width).
PYCLS = {
    "200mf": ((1, 1, 4, 7), (24, 56, 152, 368), 8),
    "400mf": ((1, 2, 7, 12), (32, 64, 160, 384), 16),
    "800mf": ((1, 3, 7, 5), (64, 128, 288, 672), 16),
    "1_6gf": ((2, 4, 10, 2), (72, 168, 408, 912), 24),
    "3_2gf": ((2, 6, 15, 2), (96, 192, 432, 1008), 48),
    "8gf": ((2, 5, 15, 1), (80, 240, 720, 1920), 120),
    "16gf": ((2, 6, 13, 1), (256, 512, 896, 2048), 128),
    "32gf": ((2, 7, 13, 1), (336, 672, 1344, 2520), 168),
}
# where torchvision's widths differ: RegNetX-400MF's last stage
TORCHVISION_WIDTHS = {**{size: widths for size, (_, widths, _) in PYCLS.items()}, "400mf": (32, 64, 160, 400)}
# torchvision's documented parameter counts (the weights' "num_params"); 200MF has no torchvision weights: pycls' 2.7M
PARAMETERS = {
    "200mf": 2_684_792,
    "400mf": 5_495_976,
    "800mf": 7_259_656,
    "1_6gf": 9_190_136,
    "3_2gf": 15_296_552,
    "8gf": 39_572_648,
    "16gf": 54_278_536,
    "32gf": 107_811_560,
}


def table(stages):
    return tuple(s.depth for s in stages), tuple(s.width for s in stages)


@pytest.mark.parametrize("size", family.SIZES)
def test_pycls_rounding_gives_the_papers_models(size):
    depths, widths, group_width = PYCLS[size]
    stages = family.stages(family.REGNETX[size], rounding="pycls")
    assert table(stages) == (depths, widths)
    assert [s.group_width for s in stages] == [min(group_width, w) for w in widths]
    assert all(s.stride == 2 and s.bot_mul == 1 for s in stages)


@pytest.mark.parametrize("size", family.SIZES)
def test_torchvision_rounding_differs_only_at_regnetx_400mf_last_stage(size):
    stages = family.stages(family.REGNETX[size])
    assert table(stages) == (PYCLS[size][0], TORCHVISION_WIDTHS[size])


def test_the_two_roundings_on_the_widths_where_they_part():
    # 392 is 24.5 groups of 16: pycls rounds ties to even, torchvision up
    assert (family.pycls_round(392, 16), family.torchvision_round(392, 16)) == (384, 400)
    # torchvision never rounds below 90% of the width: 11 -> 8 would lose 27%
    assert (family.pycls_round(11, 8), family.torchvision_round(11, 8)) == (8, 16)
    assert family.torchvision_round(4, 8) == family.pycls_round(4, 8) == 8  # at least one group


def test_block_widths_are_quantised_to_multiples_of_8_and_never_shrink():
    for params in family.REGNETX.values():
        widths = family.block_widths(params)
        assert len(widths) == params.depth and all(w % family.QUANTUM == 0 for w in widths)
        assert widths == sorted(widths)


def test_group_width_is_capped_at_the_stage_width():
    first = family.stages(family.REGNETX["8gf"])[0]
    assert (first.width, first.group_width) == (80, 80)


@pytest.mark.parametrize("size", family.SIZES)
def test_registered_specs_are_torchvisions_imagenet_models(size):
    spec = get_spec(f"regnetx_{size}")
    assert spec == family.regnetx(size) and spec.name == f"regnetx_{size}"
    assert (spec.in_channels, spec.num_classes, spec.stem_width, spec.input_size) == (3, 1000, 32, (224, 224))
    assert not spec.conv_bias and (spec.bn_eps, spec.bn_momentum) == (1e-5, 0.1)
    assert count_parameters(spec)[0] == PARAMETERS[size]


def test_every_size_is_registered_once():
    assert sorted(name for name in SPECS if name.startswith("regnetx_")) == sorted(f"regnetx_{s}" for s in family.SIZES)


def test_pycls_specs_have_their_own_name():
    assert family.regnetx("400mf", rounding="pycls").name == "regnetx_400mf_pycls"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: family.regnetx("300mf"), "unknown RegNetX size '300mf'; known sizes: 200mf, 400mf"),
        (
            lambda: family.regnetx("400mf", rounding="keras"),
            "rounding: expected one of torchvision, pycls, got 'keras'",
        ),
        (lambda: tvio.spec_for("regnet_y_400mf"), "unknown torchvision model 'regnet_y_400mf'; known: regnet_x_200mf"),
        (lambda: tvio.model_for(get_spec("regnetx32")), "regnetx32 is not a torchvision RegNetX"),
    ],
)
def test_unknown_names_are_rejected_naming_the_known_ones(call, message):
    with pytest.raises((KeyError, ValueError)) as info:
        call()
    assert message in str(info.value.args[0])


def test_importing_the_family_and_torchvision_io_imports_no_framework():
    code = (
        "import sys, parity, parity.specs.regnet_family, parity.torchvision_io; "
        "print(sorted(m for m in ('torch', 'torchvision', 'jax', 'tensorflow', 'mxnet') if m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


# ---- torchvision's names ----

SPEC_400MF = tvio.spec_for("regnet_x_400mf")


def numpy_state_dict(spec):
    return {
        key: np.zeros(shape, np.float32 if shape else np.int64) for key, shape in tvio.expected_shapes(spec).items()
    }


def test_name_table_maps_every_canonical_tensor_to_torchvisions_key():
    rows = {canonical: native for canonical, native, _, _ in tvio.TABLE.rows(SPEC_400MF)}
    assert rows["stem.conv.weight"] == "stem.0.weight"
    assert rows["stem.bn.running_var"] == "stem.1.running_var"
    assert rows["stages.0.blocks.0.conv4.weight"] == "trunk_output.block1.block1-0.proj.0.weight"
    assert rows["stages.0.blocks.0.bn4.bias"] == "trunk_output.block1.block1-0.proj.1.bias"
    assert rows["stages.3.blocks.11.conv1.weight"] == "trunk_output.block4.block4-11.f.a.0.weight"
    assert rows["stages.2.blocks.6.bn2.running_mean"] == "trunk_output.block3.block3-6.f.b.1.running_mean"
    assert rows["stages.1.blocks.1.conv3.weight"] == "trunk_output.block2.block2-1.f.c.0.weight"
    assert (rows["head.fc.weight"], rows["head.fc.bias"]) == ("fc.weight", "fc.bias")
    assert len(set(rows.values())) == len(rows)


def test_expected_shapes_include_the_batchnorm_counters():
    shapes = tvio.expected_shapes(SPEC_400MF)
    assert shapes["stem.1.num_batches_tracked"] == () and shapes["trunk_output.block4.block4-0.f.b.0.weight"] == (
        400,
        16,
        3,
        3,
    )
    assert sum(k.endswith("num_batches_tracked") for k in shapes) == sum(k.endswith("running_var") for k in shapes)


def test_a_state_dict_of_another_size_names_the_key_expected_and_actual_and_the_model_it_fits():
    with pytest.raises(WeightsError) as info:
        tvio.state_dict_to_canonical(numpy_state_dict(tvio.spec_for("regnet_x_800mf")), SPEC_400MF)
    message = str(info.value)
    assert message.startswith("state_dict does not fit regnetx_400mf (") and "it fits regnet_x_800mf" in message
    assert "'stem.0.weight'" not in message  # the stem is the same in both
    assert "'trunk_output.block1.block1-0.proj.0.weight': expected shape (32, 32, 1, 1), got (64, 32, 1, 1)" in message


def test_pycls_widths_do_not_load_as_torchvisions_400mf():
    with pytest.raises(WeightsError, match=r"'fc.weight': expected shape \(1000, 400\), got \(1000, 384\)"):
        tvio.state_dict_to_canonical(numpy_state_dict(family.regnetx("400mf", rounding="pycls")), SPEC_400MF)


def test_missing_and_unexpected_keys_are_named_and_counters_are_optional():
    state_dict = {k: v for k, v in numpy_state_dict(SPEC_400MF).items() if not k.endswith("num_batches_tracked")}
    assert set(tvio.state_dict_to_canonical(state_dict, SPEC_400MF)) == set(schema(SPEC_400MF))
    del state_dict["fc.bias"]
    state_dict["fc.extra"] = np.zeros(3, np.float32)
    problems = tvio.state_dict_problems(state_dict, SPEC_400MF)
    assert problems == ["missing key 'fc.bias' (expected shape (1000,))", "unexpected key 'fc.extra'"]


def test_canonical_weights_are_validated_after_renaming():
    state_dict = numpy_state_dict(SPEC_400MF)
    state_dict["fc.weight"] = state_dict["fc.weight"].astype(np.float16)
    with pytest.raises(WeightsError, match="'head.fc.weight': expected dtype float32 or float64, got float16"):
        tvio.state_dict_to_canonical(state_dict, SPEC_400MF)


@pytest.mark.parametrize("path", ["model.ckpt", "model.npz"])
def test_only_safetensors_and_pth_files_are_read(path):
    with pytest.raises(ValueError, match="path: expected a .safetensors, .pth, .pt file"):
        tvio.read_state_dict(path)


def test_a_file_that_is_not_safetensors_is_a_weights_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsFileError, match=r"broken\.safetensors: not a valid safetensors file"):
        tvio.read_state_dict(path)
