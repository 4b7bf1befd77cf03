"""The Keras backend's naive-port variants and its structural audit.

Each variant is one classic porting pitfall built as a real, runnable model: it loads
the same canonical weights as the faithful model, round-trips them, and then computes
another function, first visibly at the layer the pitfall is in. ``structure`` reads
per-layer parameter counts and conv groups from the Keras layers themselves.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

import parity
from parity.layout import flatten_permutation, oihw_to_hwio, transpose_2d
from parity.specs import Conv, GoogLeNet, Inception, InceptionA, NiN, ResNeXtBlock
from parity.weights import randomize_batchnorm, randomize_biases, schema
from support import assert_same_bits

pytest.importorskip("tensorflow")
import keras  # noqa: E402

from impl_tf import backend  # noqa: E402

REGNETX32 = parity.get_spec("regnetx32")
INCEPTION_NET = parity.get_spec("inception_mnist")
GOOGLENET = GoogLeNet()
NIN = NiN()
STRIDED_BLOCK = ResNeXtBlock(in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2)
IDENTITY_BLOCK = ResNeXtBlock(in_channels=24, num_channels=24, group_width=8, bot_mul=1, bn_eps=1e-3)
# No convolution with in/groups == out channels, so no kernel fits the untransposed copy.
INCEPTION = Inception(in_channels=5, c1=2, c2=(3, 4), c3=(2, 3), c4=6)
INCEPTION_A = InceptionA(in_channels=6)
SPECS = {spec.name: spec for spec in (REGNETX32, INCEPTION_NET)}
INPUTS = {"regnetx32": (2, 1, 96, 96), "inception_mnist": (2, 1, 28, 28)}

# (model, variant, the first activation point where the pitfall shows)
DIVERGENCES = [
    ("regnetx32", "same_padding", "stem.conv"),
    ("regnetx32", "keras_bn_epsilon", "stem.bn"),
    ("regnetx32", "untransposed_kernel", "stages.0.blocks.0.conv1"),
    ("inception_mnist", "avgpool_excludes_padding", "incep1.branch_pool.avg"),
    ("inception_mnist", "unpermuted_flatten", "fc"),
    ("inception_mnist", "untransposed_kernel", "incep1.branch3x3_3"),
]
# float64 rounding through these nets stays below ~1e-12 (see parity.harness.TOLERANCE);
# the pitfalls move activations and logits by 1e-3 and more.
ROUNDING = 1e-9


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@functools.cache
def canonical_weights(spec) -> dict[str, np.ndarray]:
    """float64 weights with BatchNorm and biases randomised: a constant 0 or 1 would hide some pitfalls.
    Cached: callers only read them."""
    fresh = backend.export_weights(backend.build(spec, seed=1, dtype="float64"))
    return randomize_biases(randomize_batchnorm(fresh, seed=2), seed=3)


def loaded(spec, variant=None):
    model = backend.build(spec, dtype="float64", variant=variant)
    backend.load_weights(model, canonical_weights(spec))
    return model


def expected_structure(spec) -> dict[str, tuple[int, int]]:
    """(trainable parameters, conv groups or 1) per layer, from the spec's canonical schema."""
    params = dict.fromkeys((layer.path for layer in spec.layers()), 0)
    for p in schema(spec).values():
        params[p.layer.path] += int(np.prod(p.shape)) if p.trainable else 0
    return {layer.path: (params[layer.path], layer.groups if isinstance(layer, Conv) else 1) for layer in spec.layers()}


@pytest.fixture(scope="module")
def faithful():
    """The faithful float64 model of each spec in SPECS with canonical_weights loaded, and its run on INPUTS."""
    out = {}
    for name, spec in SPECS.items():
        model = loaded(spec)
        x = randn(INPUTS[name])
        out[name] = (model, x, backend.activations(model, x))
    return out


# --- names and refusals ---


def test_variants_are_the_shared_pitfall_names():
    assert list(backend.VARIANTS) == [
        "same_padding",
        "keras_bn_epsilon",
        "avgpool_excludes_padding",
        "unpermuted_flatten",
        "untransposed_kernel",
        "dropped_padding",
    ]
    assert all(isinstance(text, str) and text for text in backend.VARIANTS.values())


def test_an_unknown_variant_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="variant") as error:
        backend.build(REGNETX32, variant="d2l_stage_bug")
    assert all(name in str(error.value) for name in backend.VARIANTS)


@pytest.mark.parametrize(
    "spec, variant, why",
    [
        (INCEPTION_NET, "same_padding", "stride 1"),
        (INCEPTION, "same_padding", "stride 1"),
        (NIN, "same_padding", "stride 1"),
        (IDENTITY_BLOCK, "same_padding", "stride 1"),
        (GOOGLENET, "keras_bn_epsilon", "no BatchNorm"),
        (INCEPTION_NET, "keras_bn_epsilon", "no BatchNorm"),
        (IDENTITY_BLOCK, "keras_bn_epsilon", "already"),
        (REGNETX32, "avgpool_excludes_padding", "no padded average pool"),
        (GOOGLENET, "avgpool_excludes_padding", "no padded average pool"),
        (REGNETX32, "unpermuted_flatten", "flatten"),
        (INCEPTION_A, "unpermuted_flatten", "flatten"),
        (INCEPTION, "untransposed_kernel", "I/groups == O"),
        (STRIDED_BLOCK, "untransposed_kernel", "I/groups == O"),
        (NIN, "dropped_padding", "input size is not fixed"),
        (parity.get_spec("vgg"), "dropped_padding", "every padded conv's output shrinks unpadded"),
        (parity.get_spec("bnlenet"), "dropped_padding", "no padded conv"),
    ],
)
def test_a_variant_that_does_not_apply_is_refused_saying_why(spec, variant, why):
    with pytest.raises(ValueError, match="variant") as error:
        backend.build(spec, variant=variant)
    message = str(error.value)
    assert variant in message and spec.name in message and why in message


def test_the_default_is_the_faithful_model():
    model = backend.build(STRIDED_BLOCK, seed=4, variant=None)
    assert model.pitfalls == frozenset()
    assert_same_bits(backend.export_weights(model), backend.export_weights(backend.build(STRIDED_BLOCK, seed=4)))
    assert backend.table(REGNETX32) is backend.table(REGNETX32, None) is backend.ANYNET_TABLE


# --- every variant is a runnable model that diverges where its pitfall is ---


@pytest.mark.parametrize("name, variant, first", DIVERGENCES, ids=[f"{n}-{v}" for n, v, _ in DIVERGENCES])
def test_variant_runs_round_trips_and_diverges_first_at_its_pitfall(name, variant, first, faithful):
    spec = SPECS[name]
    model, x, expected = faithful[name]
    naive = loaded(spec, variant)
    assert naive.pitfalls == {variant}
    assert_same_bits(backend.export_weights(naive), canonical_weights(spec))
    points = backend.activations(naive, x)
    assert list(points) == spec.activation_points()
    diffs = {key: float(np.abs(points[key] - expected[key]).max()) for key in points}
    assert next(key for key, diff in diffs.items() if diff > ROUNDING) == first, diffs
    logits = backend.forward(naive, x)
    assert np.array_equal(logits, points[spec.activation_points()[-1]])
    # The smallest measured logit shift is ~4e-3 (keras_bn_epsilon): far beyond rounding.
    assert np.abs(logits - backend.forward(model, x)).max() > 1e-3
    # None of these pitfalls changes a parameter count, a group count or a printed shape.
    assert backend.structure(naive) == backend.structure(model)
    h, w = x.shape[2:]
    assert backend.layer_summary(naive, (1, h, w, 1)) == backend.layer_summary(model, (1, h, w, 1))


def test_same_padding_pads_like_d2l_and_hides_on_odd_sizes():
    """'same' at stride 2 pads one zero fewer on the top and left of an even size only: an odd
    size gets the spec's symmetric padding, and the naive block computes the same function."""
    model = loaded(STRIDED_BLOCK)
    naive = loaded(STRIDED_BLOCK, "same_padding")
    assert naive.conv2.padding == "same" and isinstance(naive.conv2_pad, keras.layers.Identity)
    assert model.conv2.padding == "valid" and isinstance(model.conv2_pad, keras.layers.ZeroPadding2D)
    odd, even = randn((2, 16, 9, 11)), randn((2, 16, 8, 10))
    # float64 rounding only: the same sums in the same order, whichever layer pads.
    assert np.abs(backend.forward(naive, odd) - backend.forward(model, odd)).max() < ROUNDING
    assert np.abs(backend.forward(naive, even) - backend.forward(model, even)).max() > 0.1


def test_same_padding_googlenet_uses_keras_same_convs_and_pools():
    naive = backend.build(GOOGLENET, variant="same_padding")
    b1 = {layer.name: layer for layer in naive.net.layers[0].layers}
    assert b1["conv"].padding == "same" and isinstance(b1["conv_pad"], keras.layers.Identity)
    assert isinstance(b1["pool"], keras.layers.MaxPooling2D) and b1["pool"].padding == "same"
    assert naive.net.layers[2].layers[0].p4_1.padding == "same"


def test_keras_bn_epsilon_leaves_every_batchnorm_at_keras_default():
    naive = backend.build(STRIDED_BLOCK, variant="keras_bn_epsilon")
    model = backend.build(STRIDED_BLOCK)
    batch_norms = [naive.bn1, naive.bn2, naive.bn3, naive.bn4]
    assert {bn.epsilon for bn in batch_norms} == {1e-3}
    assert {bn.epsilon for bn in (model.bn1, model.bn2, model.bn3, model.bn4)} == {STRIDED_BLOCK.bn_eps} == {1e-5}
    assert {bn.momentum for bn in batch_norms} == {1 - STRIDED_BLOCK.bn_momentum}


def test_avgpool_excludes_padding_divides_border_sums_by_the_valid_cells_only():
    model, naive = loaded(INCEPTION_A), loaded(INCEPTION_A, "avgpool_excludes_padding")
    assert isinstance(naive.branch_pool_avg, keras.layers.AveragePooling2D) and naive.branch_pool_avg.padding == "same"
    x = randn((2, 6, 7, 5))
    counted = backend.activations(model, x)["branch_pool.avg"]
    excluded = backend.activations(naive, x)["branch_pool.avg"]
    # Cells of each 3x3 window inside the 7x5 image: 9 inside, 6 on an edge, 4 in a corner.
    rows, cols = np.full(7, 3), np.full(5, 3)
    rows[[0, -1]] = cols[[0, -1]] = 2
    valid = np.outer(rows, cols)
    # float64 rounding of a 9-term mean (~1e-16 relative).
    np.testing.assert_allclose(excluded * valid / 9, counted, rtol=1e-12, atol=1e-14)
    assert np.abs(excluded - counted).max() > 0.1


def test_unpermuted_flatten_copies_the_dense_weight_in_nchw_order():
    weights = canonical_weights(INCEPTION_NET)
    model, naive = loaded(INCEPTION_NET), loaded(INCEPTION_NET, "unpermuted_flatten")
    fc = weights["fc.weight"]
    assert np.array_equal(naive.net.get_layer("fc").kernel.numpy(), transpose_2d(fc))
    assert np.array_equal(model.net.get_layer("fc").kernel.numpy(), transpose_2d(fc[:, flatten_permutation(88, 4, 4)]))
    assert backend.table(INCEPTION_NET, "unpermuted_flatten").flatten_order == "CHW"


def test_untransposed_kernel_swaps_in_and_out_only_where_the_shape_allows():
    weights = canonical_weights(REGNETX32)
    naive = loaded(REGNETX32, "untransposed_kernel")
    block = naive.net.get_layer("stage1").get_layer("block0")
    square = weights["stages.0.blocks.0.conv1.weight"]  # (32, 32, 1, 1)
    grouped = weights["stages.0.blocks.0.conv2.weight"]  # (32, 16, 3, 3): 2 groups, I/g != O
    assert np.array_equal(block.conv1.kernel.numpy(), square.transpose(2, 3, 0, 1))
    assert not np.array_equal(block.conv1.kernel.numpy(), oihw_to_hwio(square))
    assert np.array_equal(block.conv2.kernel.numpy(), oihw_to_hwio(grouped))
    naive_table = backend.table(REGNETX32, "untransposed_kernel")
    rows = {canonical: transform for canonical, _, _, transform in naive_table.rows(REGNETX32)}
    assert rows["stages.0.blocks.0.conv1.weight"] == "OIHW->HWOI"
    assert rows["stages.0.blocks.0.conv2.weight"] == rows["stem.conv.weight"] == "OIHW->HWIO"


# --- the structural audit ---


@pytest.mark.parametrize(
    "spec",
    [REGNETX32, INCEPTION_NET, GOOGLENET, NIN, STRIDED_BLOCK, IDENTITY_BLOCK, INCEPTION, INCEPTION_A],
    ids=lambda spec: spec.name,
)
def test_structure_of_a_faithful_model_is_the_specs(spec):
    structure = backend.structure(backend.build(spec))
    assert structure == expected_structure(spec)
    assert list(structure) == [layer.path for layer in spec.layers()]
    assert sum(params for params, _ in structure.values()) == parity.count_parameters(spec)[0]


def test_regnetx32_structure_has_its_grouped_convolutions(faithful):
    structure = backend.structure(faithful["regnetx32"][0])
    assert sum(params for params, _ in structure.values()) == 179_290
    assert structure["stages.0.blocks.1.conv2"] == (32 * 16 * 9 + 32, 2)
    assert structure["stages.1.blocks.5.conv2"] == (80 * 16 * 9 + 80, 5)
    assert structure["stages.1.blocks.5.bn2"] == (2 * 80, 1)


def test_structure_reads_the_native_layers_not_the_spec():
    """A model whose Keras layers differ from the spec it claims shows it."""
    model = backend.build(STRIDED_BLOCK)  # conv2: 12 channels in 3 groups of 4
    model.spec = dataclasses.replace(STRIDED_BLOCK, group_width=6)  # would be 2 groups of 6
    structure = backend.structure(model)
    assert structure["conv2"] == (12 * 4 * 9 + 12, 3) != expected_structure(model.spec)["conv2"] == (12 * 6 * 9 + 12, 2)


def same_padded_convs_and_norms(model) -> tuple[set[str], set[str], list[keras.layers.BatchNormalization]]:
    """(the spec's convs that the Keras model pads 'same', the spec's padded convs, the model's BatchNorms)."""
    by_path = {layer.path.split("/", 1)[1]: layer for layer in model._flatten_layers() if "/" in (layer.path or "")}
    table = backend.table(model.spec)
    convs = [layer for layer in model.spec.layers() if isinstance(layer, Conv)]
    same = {conv.path for conv in convs if by_path[table.native_module(conv.path)].padding == "same"}
    norms = [layer for layer in by_path.values() if isinstance(layer, keras.layers.BatchNormalization)]
    return same, {conv.path for conv in convs if conv.padding}, norms


def test_the_books_tf_tab_pads_same_where_the_book_does_and_keeps_keras_batchnorm_defaults():
    """d2l's TF AnyNet: padding='same' in every padded conv (the stride-2 stem conv and each block's
    grouped 3x3), the 1x1 convs unpadded, and BatchNormalization() at Keras' epsilon 1e-3 in all 33."""
    model = backend.build(REGNETX32, variant="d2l_tf_tab")
    same, padded, norms = same_padded_convs_and_norms(model)
    assert same == padded and len(same) == 11
    assert len(norms) == 33 and {norm.epsilon for norm in norms} == {1e-3}


def test_the_books_tf_densenet_pads_same_where_the_book_does_and_keeps_keras_batchnorm_defaults():
    """d2l's TF DenseNet: padding='same' in b1's 7x7 stride-2 conv and 3x3 stride-2 max-pool and in every
    ConvBlock's 3x3 conv, and BatchNormalization() at Keras' epsilon 1e-3 in all 21 (b1, 16 conv blocks,
    3 transitions, the head)."""
    spec = parity.get_spec("densenet")
    model = backend.build(spec, variant="d2l_tf_tab")
    same, padded, norms = same_padded_convs_and_norms(model)
    assert same == padded and len(same) == 17
    assert model.net.get_layer("b1").get_layer("pool").padding == "same"
    assert len(norms) == 21 and {norm.epsilon for norm in norms} == {1e-3}


def test_the_books_tf_alexnet_leaves_conv1_unpadded_and_keeps_its_54x54_output():
    """d2l's TF AlexNet: conv1 Conv2D(96, 11, strides=4) with no padding, 54x54 from 224x224 as the spec's
    padded one; conv2-conv5 pad kernel_size // 2 zeros a side (the book's padding='same' at stride 1)."""
    spec = parity.get_spec("alexnet")
    model = backend.build(spec, variant="d2l_tf_tab")
    assert model.pitfalls == {"dropped_padding"}
    names = [layer.name for layer in model.net.layers]
    assert "conv1_pad" not in names and model.net.get_layer("conv1").padding == "valid"
    pads = {f"conv{k}": model.net.get_layer(f"conv{k}_pad").padding for k in range(2, 6)}
    assert pads == {"conv2": ((2, 2), (2, 2)), **{f"conv{k}": ((1, 1), (1, 1)) for k in (3, 4, 5)}}
    rows = backend.layer_summary(model, (1, 224, 224, 1))
    assert next(row.shape for row in rows if row.layer == "Conv2D") == (1, 54, 54, 96)


def test_the_books_tf_bnlenet_keeps_keras_batchnorm_defaults_and_unpadded_convs():
    """d2l's TF BNLeNet: BatchNormalization() at Keras' epsilon 1e-3 in all four; its convs unpadded, as the spec."""
    spec = parity.get_spec("bnlenet")
    model = backend.build(spec, variant="d2l_tf_tab")
    norms = [layer for layer in model.net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [norm.name for norm in norms] == ["bn1", "bn2", "bn3", "bn4"] and {norm.epsilon for norm in norms} == {1e-3}
    assert {model.net.get_layer(name).padding for name in ("conv1", "conv2")} == {"valid"}
