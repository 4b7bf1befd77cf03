"""Parity of d2l's RegNetX32 (AnyNet of ResNeXt blocks) across PyTorch, Flax, Keras and Gluon.

Select with ``pytest parity -k regnet``. Tolerances are ``parity.harness.TOLERANCE``,
each with its reason beside it.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import reference
from parity.backends import FRAMEWORKS, get_backend
from parity.harness import logit_diff, native_input_shape, tolerance_text
from parity.report import d2l_lines, group_view
from parity.specs import ResNeXtBlock, get_spec
from parity.weights import count_parameters, load_weights, save_weights

SPEC = get_spec("regnetx32")
PAIRS = [(src, dst) for src in FRAMEWORKS for dst in FRAMEWORKS if src != dst]
DTYPES = ("float32", "float64")
# d2l's input (Fashion-MNIST resized to 96) and an odd, non-square one where 'same'
# padding at stride 2 would pad differently from symmetric padding.
INPUTS = {"96x96": (2, 1, 96, 96), "37x53": (2, 1, 37, 53)}

# The d2l book's printed layer summaries of RegNetX32 (chapter "Designing Convolution
# Network Architectures"), input (1, 1, 96, 96), or (1, 96, 96, 1) for TF and JAX.
D2L_SUMMARY = {
    "torch": [
        "Sequential output shape:\t torch.Size([1, 32, 48, 48])",
        "Sequential output shape:\t torch.Size([1, 32, 24, 24])",
        "Sequential output shape:\t torch.Size([1, 80, 12, 12])",
        "Sequential output shape:\t torch.Size([1, 10])",
    ],
    "mxnet": [
        "Sequential output shape:\t (1, 32, 48, 48)",
        "Sequential output shape:\t (1, 32, 24, 24)",
        "Sequential output shape:\t (1, 80, 12, 12)",
        "GlobalAvgPool2D output shape:\t (1, 80, 1, 1)",
        "Dense output shape:\t (1, 10)",
    ],
    "tf": [
        "Sequential output shape:\t (1, 48, 48, 32)",
        "Sequential output shape:\t (1, 24, 24, 32)",
        "Sequential output shape:\t (1, 12, 12, 80)",
        "Sequential output shape:\t (1, 10)",
    ],
}
D2L_SUMMARY["jax"] = D2L_SUMMARY["tf"]

# ResNeXt blocks alone: identity and projection shortcuts, stride 1 and 2, group width
# below and equal to the bottleneck width, and a bottleneck (bot_mul < 1).
BLOCKS = [
    ResNeXtBlock(in_channels=32, num_channels=32, group_width=16, bot_mul=1),
    ResNeXtBlock(in_channels=32, num_channels=32, group_width=32, bot_mul=1),
    ResNeXtBlock(in_channels=32, num_channels=48, group_width=16, bot_mul=1, use_1x1conv=True, stride=2),
    ResNeXtBlock(in_channels=16, num_channels=32, group_width=32, bot_mul=1, use_1x1conv=True, stride=2),
    ResNeXtBlock(in_channels=24, num_channels=32, group_width=8, bot_mul=0.5, use_1x1conv=True, stride=1),
]
BLOCK_INPUT = (2, None, 13, 10)


def pair_id(pair):
    return f"{SPEC.name}-{pair[0]}->{pair[1]}"


def block_input(spec: ResNeXtBlock, dtype: str) -> np.ndarray:
    n, _, h, w = BLOCK_INPUT
    return np.random.default_rng(7).standard_normal((n, spec.in_channels, h, w)).astype(dtype)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_summary_reproduces_d2l_book(fw):
    backend = get_backend(fw)
    rows = backend.layer_summary(backend.build(SPEC, seed=0), native_input_shape(fw, (1, 1, 96, 96)))
    assert d2l_lines(rows) == D2L_SUMMARY[fw]


@pytest.mark.parametrize("input_name", list(INPUTS))
def test_summary_shapes_and_params_agree_across_frameworks(input_name):
    shape = INPUTS[input_name]
    views = {}
    for fw in FRAMEWORKS:
        backend = get_backend(fw)
        views[fw] = group_view(fw, backend.layer_summary(backend.build(SPEC, seed=0), native_input_shape(fw, shape)))
    assert list(views["torch"]) == ["stem", "stages.0", "stages.1", "head"]
    for fw in FRAMEWORKS:
        assert views[fw] == views["torch"], fw
    assert views["torch"]["head"][0] == (shape[0], SPEC.num_classes)


def test_regnetx32_parameter_count_matches_d2l():
    """d2l's PyTorch RegNetX32 has 179,290 trainable parameters and 3,936 BN running statistics."""
    assert count_parameters(SPEC) == (179_290, 3_936)
    for fw in FRAMEWORKS:
        backend = get_backend(fw)
        rows = backend.layer_summary(backend.build(SPEC, seed=0), native_input_shape(fw, (1, 1, 32, 32)))
        assert sum(r.params for r in rows) == 179_290, fw
        exported = backend.export_weights(backend.build(SPEC, seed=0))
        stats = sum(v.size for k, v in exported.items() if k.endswith(("running_mean", "running_var")))
        assert stats == 3_936, fw


@pytest.mark.parametrize("input_name", list(INPUTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_logits(source, rig, pair, dtype, input_name):
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s logits."""
    src, dst = pair
    weights, expected, x = source(SPEC, dtype, INPUTS[input_name], src)
    got = rig(SPEC, dtype).destination(dst, weights, x)
    assert got.dtype == np.dtype(dtype) and got.shape == (x.shape[0], SPEC.num_classes)
    max_abs, max_rel, ok = logit_diff(expected, got, dtype)
    assert ok, f"{src}->{dst} {dtype}: max |diff| {max_abs:.3e}, relative {max_rel:.3e}; need {tolerance_text(dtype)}"


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_train_mode_logits(source, rig, pair):
    """Training mode (BatchNorm on batch statistics) agrees too; float64, odd input."""
    src, dst = pair
    weights, expected, x = source(SPEC, "float64", INPUTS["37x53"], src, train=True)
    got = rig(SPEC, "float64").destination(dst, weights, x, train=True)
    max_abs, _, ok = logit_diff(expected, got, "float64")
    assert ok, f"{src}->{dst}: max |diff| {max_abs:.3e}; need {tolerance_text('float64')}"


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_regnetx32_matches_numpy_reference(source, fw):
    """An independent numpy forward of the canonical weights gives every framework's logits (float64)."""
    weights, logits, x = source(SPEC, "float64", INPUTS["37x53"], fw)
    max_abs, _, ok = logit_diff(reference.forward(SPEC, weights, x), logits, "float64")
    assert ok, f"{fw}: max |diff| to numpy {max_abs:.3e}"


def test_regnetx32_weight_round_trip_through_all_frameworks_is_bit_exact(rig):
    """torch -> jax -> tf -> mxnet -> torch changes no bit of any tensor."""
    order = ["torch", "jax", "tf", "mxnet", "torch"]
    r = rig(SPEC, "float32")
    start = r.own_weights["torch"]
    weights = start
    for fw in order:
        r.backends[fw].load_weights(r.models[fw], weights)
        weights = r.backends[fw].export_weights(r.models[fw])
    assert list(weights) == list(start)
    for name in start:
        assert weights[name].dtype == start[name].dtype and weights[name].tobytes() == start[name].tobytes(), name


def test_regnetx32_safetensors_round_trip_is_bit_exact(rig, tmp_path):
    weights = rig(SPEC, "float64").own_weights["jax"]
    save_weights(weights, tmp_path / "regnetx32.safetensors")
    loaded = load_weights(tmp_path / "regnetx32.safetensors")
    assert set(loaded) == set(weights)
    for name, value in weights.items():
        assert loaded[name].dtype == value.dtype and loaded[name].tobytes() == value.tobytes(), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_resnext_block_all_pairs(block, dtype):
    """A standalone ResNeXt block: every directed transfer reproduces the source's feature map."""
    from parity.harness import TransferRig

    x = block_input(block, dtype)
    rig = TransferRig(block, FRAMEWORKS, dtype)
    failures = []
    for src in FRAMEWORKS:
        weights, expected = rig.source(src, x)
        assert expected.shape == block.output_shape(x.shape), src
        for dst in FRAMEWORKS:
            if dst != src:
                max_abs, max_rel, ok = logit_diff(expected, rig.destination(dst, weights, x), dtype)
                if not ok:
                    failures.append(f"{src}->{dst}: max |diff| {max_abs:.3e}, relative {max_rel:.3e}")
    assert not failures, f"need {tolerance_text(dtype)}:\n" + "\n".join(failures)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_resnext_block_matches_numpy_reference(block):
    """Each framework's block equals the numpy reference (grouped conv written in numpy), float64."""
    from parity.harness import TransferRig

    x = block_input(block, "float64")
    rig = TransferRig(block, FRAMEWORKS, "float64")
    for fw in FRAMEWORKS:
        weights, got = rig.source(fw, x)
        max_abs, _, ok = logit_diff(reference.forward(block, weights, x), got, "float64")
        assert ok, f"{fw}: max |diff| to numpy {max_abs:.3e}"
