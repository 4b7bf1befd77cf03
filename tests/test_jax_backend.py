"""Unit tests of the JAX/Flax backend: native names, dtypes, modes, summaries, and NiN.

Beyond ``tests/test_backend_contract.py``, the eval-mode output of a small AnyNet and of a ResNeXt block
is checked against ``parity.reference`` (numpy, from the spec and canonical weights
only), so the Flax model is proven to compute the spec's function.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import reference
from parity.specs import AnyNet, ResNeXtBlock, Stage
from parity.weights import cast, randomize_batchnorm, schema
from support import assert_same_bits, max_relative_diff, randn

pytest.importorskip("flax")
from impl_jax import anynet, backend, classic  # noqa: E402

REGNETX32 = parity.get_spec("regnetx32")
# Small enough to compile in about a second; two stages, a bottleneck and 2 and 3 groups.
SMALL = AnyNet(
    name="small_anynet",
    stem_width=8,
    stages=(Stage(depth=1, width=16, group_width=8, bot_mul=1), Stage(depth=2, width=24, group_width=4, bot_mul=0.5)),
    num_classes=5,
    in_channels=3,
)
BLOCK = ResNeXtBlock(in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2)
D2L_SUMMARY = [
    "Sequential output shape:\t (1, 48, 48, 32)",
    "Sequential output shape:\t (1, 24, 24, 32)",
    "Sequential output shape:\t (1, 12, 12, 80)",
    "Sequential output shape:\t (1, 10)",
]


def build_randomized(spec, dtype="float32", seed=0):
    """A model whose BatchNorm parameters and statistics are far from their fresh 1/0 values."""
    model = backend.build(spec, seed=seed, dtype=dtype)
    backend.load_weights(model, randomize_batchnorm(backend.export_weights(model), seed=seed + 100))
    return model


# --- native names ---


def test_native_names_follow_the_books_stages_and_blocks():
    names = {canonical: native for canonical, native, _, _ in backend.table(REGNETX32).rows(REGNETX32)}
    assert names["stem.conv.weight"] == "net/stem/conv/params/kernel"
    assert names["stages.0.blocks.1.conv2.weight"] == "net/stage1/block1/conv2/params/kernel"
    assert names["stages.1.blocks.0.bn4.running_var"] == "net/stage2/block0/bn4/batch_stats/var"
    assert names["head.fc.weight"] == "net/head/fc/params/kernel"


def test_block_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        anynet.ResNeXtBlock(32, 16, 1)
    block = anynet.ResNeXtBlock(num_channels=32, group_width=16, bot_mul=1)
    assert block.group_width == 16


def test_d2l_model_class_has_the_backends_variables():
    import jax

    x = np.zeros((1, 8, 8, 1), np.float32)
    shapes = jax.eval_shape(anynet.RegNetX32().init, jax.random.PRNGKey(0), x)
    model = backend.build(REGNETX32)
    assert jax.tree_util.tree_map(lambda v: v.shape, shapes) == jax.tree_util.tree_map(np.shape, model.variables)


def test_build_draws_what_flaxs_own_init_draws():
    """Without compiling ``init``, the variables have the structure and the distributions of Flax's:
    every kernel as ``lecun_normal`` draws it, biases 0, BatchNorm scale 1, mean 0, var 1."""
    import jax
    from flax.traverse_util import flatten_dict

    x = np.zeros((1, 96, 96, 1), np.float32)
    flax_variables = flatten_dict(anynet.RegNetX32().init(jax.random.PRNGKey(0), x))
    built = flatten_dict(backend.build(REGNETX32, seed=3).variables)
    assert {key: (value.shape, value.dtype) for key, value in built.items()} == {
        key: (value.shape, value.dtype) for key, value in flax_variables.items()
    }
    kernels = [key for key in built if key[-1] == "kernel"]
    for key in built.keys() - kernels:
        assert np.array_equal(built[key], flax_variables[key]), key  # the constants: 0 or 1

    def standardized(variables):
        """Every kernel value over its std sqrt(1 / fan_in), fan_in the product of all but the output axis."""
        return np.concatenate([np.ravel(variables[key]) * np.prod(variables[key].shape[:-1]) ** 0.5 for key in kernels])

    ours, flax_draws = standardized(built), standardized(flax_variables)
    # Both: unit std, truncated at 2 / 0.8796 (a [-2, 2] standard normal rescaled to unit variance).
    # The sample std of n = 173,376 draws has a relative standard error of 1 / sqrt(2 n) = 0.17%:
    # 1% is 6 standard errors; an untruncated normal (max |z| near 4.5) or an unscaled one (std 0.88) fails.
    assert ours.size == 173_376
    assert ours.std() == pytest.approx(1, rel=0.01)
    assert ours.std() == pytest.approx(flax_draws.std(), rel=0.01)
    assert np.abs(ours).max() <= 2 / 0.87962566103423978 * (1 + 1e-6)
    assert abs(ours.mean()) < 6 / np.sqrt(ours.size)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_tensor_and_output_has_the_model_dtype(dtype):
    model = backend.build(SMALL, dtype=dtype)
    assert {value.dtype for value in backend.export_weights(model).values()} == {np.dtype(dtype)}
    x = randn((2, 3, 17, 11), dtype)
    assert backend.forward(model, x).dtype == dtype
    assert backend.forward(model, x, train=True).dtype == dtype
    assert {value.dtype for value in backend.activations(model, x).values()} == {np.dtype(dtype)}


def test_float64_model_computes_in_float64():
    weights = backend.export_weights(build_randomized(SMALL, "float64"))
    model64 = backend.build(SMALL, dtype="float64")
    model32 = backend.build(SMALL, dtype="float32")
    backend.load_weights(model64, weights)
    backend.load_weights(model32, cast(weights, np.float32))
    x = randn((2, 3, 19, 23), "float64")
    y64 = backend.forward(model64, x)
    y32 = backend.forward(model32, x.astype(np.float32))
    # A float64 result computed through float32 anywhere would be float32-representable.
    assert not np.array_equal(y64, y64.astype(np.float32).astype(np.float64))
    # float32 rounding (eps 1.2e-7) over ~10 layers of sums of <= 216 terms stays near
    # 1e-6 of the logits' scale; 1e-4 is 100x that and far below a structural error (O(1)).
    assert max_relative_diff(y32.astype(np.float64), y64) < 1e-4


# --- forward ---


def test_forward_matches_numpy_reference():
    model = build_randomized(SMALL, "float64")
    x = randn((2, 3, 21, 14), "float64")
    # float64 rounding: ~1e-16 per operation, sums of <= 216 terms, ~10 layers; 1e-10
    # leaves orders of margin and still catches any wrong padding, layout or BN (O(0.1)).
    expected = reference.forward(SMALL, backend.export_weights(model), x)
    assert max_relative_diff(backend.forward(model, x), expected) < 1e-10


def test_block_forward_is_nchw_and_matches_numpy_reference():
    model = build_randomized(BLOCK, "float64")
    x = randn((2, 16, 13, 10), "float64")
    y = backend.forward(model, x)
    assert y.shape == BLOCK.output_shape(x.shape)
    # Same float64 rounding argument as for the AnyNet above.
    assert max_relative_diff(y, reference.forward(BLOCK, backend.export_weights(model), x)) < 1e-10


@pytest.mark.parametrize("spec, shape", [(SMALL, (3, 3, 37, 53)), (BLOCK, (3, 16, 9, 12))], ids=["anynet", "block"])
def test_train_mode_uses_batch_statistics_and_changes_nothing(spec, shape):
    model = build_randomized(spec)
    before = backend.export_weights(model)
    x = randn(shape)
    eval_before = backend.forward(model, x)
    train = backend.forward(model, x, train=True)
    assert_same_bits(backend.export_weights(model), before)
    # Randomised running statistics are far from this batch's statistics: outputs differ by O(0.1).
    assert max_relative_diff(train, eval_before) > 1e-2
    np.testing.assert_array_equal(backend.forward(model, x), eval_before)


# --- summaries and activations ---


def test_layer_summary_reproduces_d2l_lines():
    rows = backend.layer_summary(backend.build(REGNETX32), (1, 96, 96, 1))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["stem", "stages.0", "stages.1", "head"]
    assert sum(row.params for row in rows) == parity.count_parameters(REGNETX32)[0] == 179_290
    canonical = schema(REGNETX32).values()
    for row in rows:
        expected = sum(int(np.prod(p.shape)) for p in canonical if p.trainable and p.name.startswith(row.group + "."))
        assert row.params == expected, row.group


def test_block_layer_summary_is_one_row():
    (row,) = backend.layer_summary(backend.build(BLOCK), (1, 13, 10, 16))
    assert (row.layer, row.shape, row.group) == ("ResNeXtBlock", (1, 7, 5, 24), "block")
    assert row.params == parity.count_parameters(BLOCK)[0]


def test_layer_summary_rejects_an_nchw_shape():
    with pytest.raises(parity.InputError, match="input channels"):
        backend.layer_summary(backend.build(SMALL), (1, 3, 32, 32))


@pytest.mark.parametrize("spec, shape", [(SMALL, (2, 3, 37, 53)), (BLOCK, (2, 16, 13, 10))], ids=["anynet", "block"])
def test_activations_follow_the_spec_and_end_with_the_output(spec, shape):
    model = build_randomized(spec)
    x = randn(shape)
    acts = backend.activations(model, x)
    assert list(acts) == spec.activation_points()
    if isinstance(spec, AnyNet):
        assert acts["head.pool"].shape == (shape[0], spec.stages[-1].width)
        assert acts["stem"].shape == (shape[0], spec.stem_width, 19, 27)
        assert acts["stem.bn"].min() < 0 <= acts["stem"].min()
    last = acts[spec.activation_points()[-1]]
    # The same graph compiled into two functions; XLA may fuse differently, so allow
    # a few float32 roundings (eps 1.2e-7) relative to the output's scale.
    np.testing.assert_allclose(last, backend.forward(model, x), rtol=0, atol=1e-5 * np.abs(last).max())


def test_activations_match_numpy_reference_per_layer():
    model = build_randomized(BLOCK, "float64")
    weights = backend.export_weights(model)
    x = randn((2, 16, 13, 10), "float64")
    acts = backend.activations(model, x)
    conv1 = reference.conv2d(x, weights["conv1.weight"], weights["conv1.bias"], 1, 0, 1)
    bn1 = reference.batch_norm(conv1, weights, "bn1", BLOCK.bn_eps)
    # float64 rounding over one conv (16-term sums) and one BN: ~1e-15; 1e-12 is ample.
    assert max_relative_diff(acts["conv1"], conv1) < 1e-12
    assert max_relative_diff(acts["bn1"], bn1) < 1e-12


# --- NiN ---

NIN = parity.get_spec("nin")
D2L_NIN_SUMMARY = [
    ("Sequential", (1, 54, 54, 96), "blocks.0"),
    ("MaxPool2D", (1, 26, 26, 96), "pools.0"),
    ("Sequential", (1, 26, 26, 256), "blocks.1"),
    ("MaxPool2D", (1, 12, 12, 256), "pools.1"),
    ("Sequential", (1, 12, 12, 384), "blocks.2"),
    ("MaxPool2D", (1, 5, 5, 384), "pools.2"),
    ("Dropout", (1, 5, 5, 384), "dropout"),
    ("Sequential", (1, 5, 5, 10), "blocks.3"),
    ("GlobalAvgPool2D", (1, 1, 1, 10), "head"),
    ("Flatten", (1, 10), "head"),
]


@pytest.fixture(scope="module")
def nin():
    return backend.build(NIN, seed=2, dtype="float64")


def test_nin_summary_has_d2ls_shapes_in_nhwc_and_the_specs_groups(nin):
    rows = backend.layer_summary(nin, (1, 224, 224, 1))
    assert [(row.layer, row.shape, row.group) for row in rows] == D2L_NIN_SUMMARY
    assert list(dict.fromkeys(row.group for row in rows)) == NIN.summary_groups()
    assert sum(row.params for row in rows) == parity.count_parameters(NIN)[0] == 1_992_166


def test_nin_native_names_are_blocks_and_convs():
    names = {canonical: native for canonical, native, _, _ in backend.table(NIN).rows(NIN)}
    assert names["blocks.0.conv1.weight"] == "net/block0/conv1/params/kernel"
    assert names["blocks.3.conv3.bias"] == "net/block3/conv3/params/bias"
    assert backend.table(NIN).native_module("pools.2") == "net/pool2"
    assert backend.table(NIN).native_module("head.pool") == "net/avg_pool"


def test_d2l_nin_class_has_the_backends_variables():
    import jax

    x = np.zeros((1, 224, 224, 1), np.float32)
    shapes = jax.eval_shape(classic.NiN().init, jax.random.PRNGKey(0), x)
    model = backend.build(NIN)
    assert jax.tree_util.tree_map(lambda v: v.shape, shapes) == jax.tree_util.tree_map(np.shape, model.variables)


def test_nin_train_mode_drops_and_eval_mode_does_not(nin):
    x = randn((2, 1, 67, 75), "float64")
    eval_y = backend.forward(nin, x)
    # Dropout is NiN's only train-mode difference: a fixed key, so train mode is repeatable.
    np.testing.assert_array_equal(backend.forward(nin, x, train=True), backend.forward(nin, x, train=True))
    assert max_relative_diff(backend.forward(nin, x, train=True), eval_y) > 1e-3
    np.testing.assert_array_equal(backend.forward(nin, x), eval_y)


def test_an_empty_model_loaded_equals_a_built_one_loaded():
    """``build_empty`` holds only the variables' shapes; once loaded it is the built model, bit for bit."""
    import jax

    weights = randomize_batchnorm(backend.export_weights(backend.build(SMALL, seed=1, dtype="float64")), seed=2)
    empty, built = backend.build_empty(SMALL, dtype="float64"), backend.build(SMALL, seed=0, dtype="float64")
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree_util.tree_leaves(empty.variables))
    with pytest.raises(parity.WeightsError):
        backend.load_weights(empty, {**weights, "stem.conv.weight": weights["stem.conv.weight"][:1]})
    for model in (empty, built):
        backend.load_weights(model, weights)
    assert_same_bits(backend.export_weights(empty), weights)
    x = randn((2, 3, 17, 11), "float64")
    assert backend.forward(empty, x).tobytes() == backend.forward(built, x).tobytes()
