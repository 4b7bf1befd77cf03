"""The MXNet backend's naive-port variant ``d2l_stage_bug`` and its structural audit.

d2l's MXNet ``AnyNet.stage`` calls ``ResNeXtBlock(num_channels, num_channels, groups, bot_mul)``
for every block after a stage's first. The variant is that network: it runs, its layer
summary prints the book's shapes, and only a per-layer audit (``structure()``) or a
weight transfer shows that it is a different network.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity.harness import TOLERANCE
from parity.specs import AnyNet, Stage, block_path
from parity.weights import count_parameters, randomize_batchnorm, schema
from support import max_relative_diff, randn

pytest.importorskip("impl_mxnet.backend")
from impl_mxnet import AnyNet as AnyNetModel  # noqa: E402
from impl_mxnet import backend  # noqa: E402

FLOAT32_BOUND = TOLERANCE["float32"][1]  # the suite's float32 bound, relative to the largest logit

SPEC = parity.get_spec("regnetx32")
VARIANT = "d2l_stage_bug"
D2L_SUMMARY = [
    "Sequential output shape:\t (1, 32, 48, 48)",
    "Sequential output shape:\t (1, 32, 24, 24)",
    "Sequential output shape:\t (1, 80, 12, 12)",
    "GlobalAvgPool2D output shape:\t (1, 80, 1, 1)",
    "Dense output shape:\t (1, 10)",
]
# d2l's RegNetX32 arch: stage(depth, num_channels, groups, bot_mul) for each stage, stem 32, 10 classes.
BOOK_ARCH = ((4, 32, 16, 1), (6, 80, 16, 1))
BUGGED_PARAMETERS = 6_291_594
# Every block after a stage's first: all its layers change but bn3 (num_channels wide either way),
# and it gains a projection shortcut.
CHANGED_LAYERS = [
    f"{block_path(i, j)}.{layer}"
    for i, (depth, *_) in enumerate(BOOK_ARCH)
    for j in range(1, depth)
    for layer in ("conv1", "bn1", "conv2", "bn2", "conv3", "conv4", "bn4")
]


def book_block_parameters(num_channels, groups, bot_mul, use_1x1conv=False, strides=1, *, in_channels):
    """Trainable parameters of d2l's MXNet ``ResNeXtBlock`` called with these arguments: biased convs,
    BatchNorm scale and shift; ``in_channels`` is what the book's deferred initialisation infers."""
    bot_channels = round(num_channels * bot_mul)

    def conv(c_in, c_out, kernel, num_groups=1):
        return c_out * (c_in // num_groups) * kernel * kernel + c_out

    total = (
        conv(in_channels, bot_channels, 1)
        + conv(bot_channels, bot_channels, 3, bot_channels // groups)
        + conv(bot_channels, num_channels, 1)
        + 2 * (bot_channels + bot_channels + num_channels)
    )
    if use_1x1conv:
        total += conv(in_channels, num_channels, 1) + 2 * num_channels
    return total


def book_regnetx32_parameters(stage_bug: bool) -> int:
    """d2l's MXNet RegNetX32 counted from the book's calls; ``stage_bug``: the later blocks' call as printed."""
    total = (1 * 3 * 3 * 32 + 32) + 2 * 32  # stem conv and BatchNorm
    c_in = 32
    for depth, num_channels, groups, bot_mul in BOOK_ARCH:
        first = book_block_parameters(num_channels, groups, bot_mul, use_1x1conv=True, strides=2, in_channels=c_in)
        if stage_bug:
            later = book_block_parameters(num_channels, num_channels, groups, bot_mul, in_channels=num_channels)
        else:
            later = book_block_parameters(num_channels, groups, bot_mul, in_channels=num_channels)
        total += first + (depth - 1) * later
        c_in = num_channels
    return total + 80 * 10 + 10  # the dense head


def spec_structure(spec) -> dict[str, tuple[int, int]]:
    """(trainable parameters, groups or 1) per layer, from the canonical schema alone."""
    expected: dict[str, tuple[int, int]] = {}
    for param in schema(spec).values():
        count, groups = expected.get(param.layer.path, (0, getattr(param.layer, "groups", 1)))
        expected[param.layer.path] = (count + (int(np.prod(param.shape)) if param.trainable else 0), groups)
    return expected


def same_bits(a, b) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


@pytest.fixture(scope="module")
def bugged():
    model = backend.build(SPEC, seed=0, variant=VARIANT)
    backend.load_weights(model, randomize_batchnorm(backend.export_weights(model), seed=1))
    return model


def test_the_book_count_of_the_bugged_call_is_6_3_million():
    assert book_regnetx32_parameters(stage_bug=False) == count_parameters(SPEC)[0] == 179_290
    assert book_regnetx32_parameters(stage_bug=True) == BUGGED_PARAMETERS


def test_the_summary_prints_the_books_shapes_while_the_parameters_grow_35_fold(bugged):
    rows = backend.layer_summary(bugged, (1, 1, 96, 96))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    faithful = backend.layer_summary(backend.build(SPEC), (1, 1, 96, 96))
    assert [row.d2l_line() for row in faithful] == D2L_SUMMARY
    assert [row.params for row in rows] == [384, 561_600, 5_728_800, 0, 810]
    assert [row.params for row in faithful] == [384, 28_896, 149_200, 0, 810]
    assert sum(row.params for row in rows) == BUGGED_PARAMETERS


def test_structure_differs_from_the_spec_exactly_at_the_later_blocks(bugged):
    expected, found = spec_structure(SPEC), backend.structure(bugged)
    assert [path for path in found if found[path] != expected.get(path)] == CHANGED_LAYERS
    assert set(expected) <= set(found)
    assert set(found) - set(expected) == {path for path in CHANGED_LAYERS if path.endswith(("conv4", "bn4"))}
    # the grouped conv: 16x the bottleneck, group width num_channels instead of 16
    assert (expected["stages.0.blocks.1.conv2"], found["stages.0.blocks.1.conv2"]) == ((4_640, 2), (147_968, 16))
    assert (expected["stages.1.blocks.1.conv2"], found["stages.1.blocks.1.conv2"]) == ((11_600, 5), (922_880, 16))
    assert found["stages.1.blocks.1.conv4"] == (80 * 80 + 80, 1)
    assert sum(count for count, _ in found.values()) == BUGGED_PARAMETERS


def test_canonical_weights_are_refused_and_change_nothing(bugged):
    before = backend.export_weights(bugged)
    x = randn((2, 1, 19, 23))
    logits = backend.forward(bugged, x)
    with pytest.raises(parity.WeightsError) as info:
        backend.load_weights(bugged, backend.export_weights(backend.build(SPEC, seed=3)))
    message = str(info.value)
    assert "weights do not fit regnetx32 (variant d2l_stage_bug)" in message
    assert "'stages.0.blocks.1.conv1.weight': expected shape (512, 32, 1, 1), got (32, 32, 1, 1)" in message
    assert "'stages.1.blocks.5.conv2.weight': expected shape (1280, 80, 3, 3), got (80, 16, 3, 3)" in message
    assert "missing key 'stages.1.blocks.5.conv4.weight' (expected shape (80, 80, 1, 1))" in message
    assert same_bits(backend.export_weights(bugged), before)
    assert backend.forward(bugged, x).tobytes() == logits.tobytes()


def test_the_variant_is_a_runnable_model_whose_own_weights_round_trip(bugged):
    assert bugged.variant == VARIANT
    weights = backend.export_weights(bugged)
    assert set(schema(SPEC)) < set(weights)
    other = backend.build(SPEC, seed=5, variant=VARIANT)
    backend.load_weights(other, weights)
    assert same_bits(backend.export_weights(other), weights)
    x = randn((2, 1, 37, 53))
    acts = backend.activations(bugged, x)
    assert list(acts) == SPEC.activation_points()
    assert acts[block_path(1, 5)].shape == (2, 80, 5, 7)
    # The same weights in both: float32 forward runs oneDNN's fused convolutions, the points' graph Gluon's own.
    assert max_relative_diff(backend.forward(other, x), acts["head.fc"]) <= FLOAT32_BOUND


def test_the_variant_is_anynet_built_with_the_pitfall():
    direct = AnyNetModel(SPEC, pitfalls=frozenset({VARIANT}), prefix="")
    direct.initialize()
    bugged = backend.build(SPEC, variant=VARIANT)
    assert {key: param.data().shape for key, param in direct.collect_params().items()} == {
        key: param.shape for key, param in bugged.collect_params().items()
    }
    assert backend.table(SPEC, VARIANT) is backend.table(SPEC) is backend.ANYNET_TABLE


def test_float64_variant_computes_in_float64():
    model = backend.build(SPEC, dtype="float64", variant=VARIANT)
    assert backend.forward(model, randn((1, 1, 11, 13), "float64")).dtype == np.float64


def test_no_variant_is_the_faithful_model():
    default = backend.export_weights(backend.build(SPEC))
    assert same_bits(backend.export_weights(backend.build(SPEC, variant=None)), default)
    assert backend.build(SPEC).variant is None


@pytest.mark.parametrize(
    "spec, variant, message",
    [
        (SPEC, "same_padding", r"^variant: unknown variant 'same_padding' .*known variants: d2l_stage_bug"),
        (parity.get_spec("googlenet"), VARIANT, r"^variant: 'd2l_stage_bug' .*AnyNet specs only, got a GoogLeNet spec"),
        (
            AnyNet("shallow", stem_width=8, stages=(Stage(depth=1, width=16, group_width=8, bot_mul=1),)),
            VARIANT,
            r"^variant: 'd2l_stage_bug' .*every stage of shallow has depth 1",
        ),
    ],
    ids=["unknown", "googlenet", "depth-1"],
)
def test_a_variant_that_does_not_apply_is_refused(spec, variant, message):
    with pytest.raises(ValueError, match=message):
        backend.build(spec, variant=variant)


def test_variants_are_named_and_described():
    assert list(backend.VARIANTS) == [VARIANT, "dropped_padding"]
    assert "ResNeXtBlock(num_channels, num_channels, groups, bot_mul)" in backend.VARIANTS[VARIANT]


@pytest.mark.parametrize("name", ["regnetx32", "googlenet", "inception_mnist", "nin"])
def test_faithful_structure_is_the_specs(name):
    spec = parity.get_spec(name)
    assert backend.structure(backend.build(spec)) == spec_structure(spec)
    assert list(backend.structure(backend.build(spec))) == [layer.path for layer in spec.layers()]


def test_the_books_mxnet_alexnet_leaves_conv1_unpadded_and_keeps_its_54x54_output():
    """d2l's MXNet AlexNet: conv1 nn.Conv2D(96, kernel_size=11, strides=4) with no padding, 54x54 from
    224x224 as the spec's padded one; conv2-conv5 padded as the spec says. It takes the canonical weights."""
    spec = parity.get_spec("alexnet")
    model = backend.build(spec, variant="d2l_mxnet_tab")
    convs = {block.name: block for block in model.net if block.name.startswith("conv")}
    assert {name: conv._kwargs["pad"] for name, conv in convs.items()} == {
        "conv1": (0, 0),
        "conv2": (2, 2),
        **{f"conv{k}": (1, 1) for k in (3, 4, 5)},
    }
    assert next(row.shape for row in backend.layer_summary(model, (1, 1, 224, 224))) == (1, 96, 54, 54)
    backend.load_weights(model, backend.export_weights(backend.build(spec)))
