"""Unit tests of the JAX/Flax Inception models: d2l's Inception block and GoogLeNet, the tutorials'
InceptionA and its MNIST net (summaries, native names, padding of the pools, the
channel concat, the flatten order, activations, speed).

GoogLeNet compiles slowly on CPU, so float64 models are built once per module and shared.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import specs
from parity.layout import nchw_to_nhwc, nhwc_to_nchw
from parity.report import group_view
from parity.weights import cast, schema
from support import max_relative_diff

pytest.importorskip("flax")
from impl_jax import backend, inception  # noqa: E402

GOOGLENET = parity.get_spec("googlenet")
MNIST_NET = parity.get_spec("inception_mnist")
INCEPTION = specs.Inception(in_channels=16, c1=8, c2=(4, 8), c3=(2, 4), c4=4)
INCEPTION_A = specs.InceptionA(in_channels=3)
SPECS = [GOOGLENET, MNIST_NET, INCEPTION, INCEPTION_A]
# The d2l book's printed layer summary of GoogLeNet (JAX and TF tabs), input (1, 96, 96, 1).
D2L_SUMMARY = [
    "Sequential output shape:\t (1, 24, 24, 64)",
    "Sequential output shape:\t (1, 12, 12, 192)",
    "Sequential output shape:\t (1, 6, 6, 480)",
    "Sequential output shape:\t (1, 3, 3, 832)",
    "Sequential output shape:\t (1, 1024)",
    "Dense output shape:\t (1, 10)",
]


def randn(shape, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def input_for(spec, n=2, dtype="float64"):
    """A small input: d2l's 96x96 for GoogLeNet, 28x28 for the MNIST net, 7x5 for the blocks."""
    height, width = spec.input_size or (7, 5)
    return randn((n, spec.in_channels, height, width), dtype)


def with_random_biases(weights, seed=0):
    """Flax initialises biases to zero; a transfer that dropped or swapped them would still agree."""
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0, 0.1, v.shape).astype(v.dtype) if k.endswith("bias") else v for k, v in weights.items()}


def build_randomized(spec, dtype="float64", seed=0):
    model = backend.build(spec, seed=seed, dtype=dtype)
    backend.load_weights(model, with_random_biases(backend.export_weights(model), seed=seed + 100))
    return model


@pytest.fixture(scope="module")
def float64_model():
    """``spec`` -> its float64 model with random biases, built once per module."""
    models = {}

    def get(spec):
        if spec not in models:
            models[spec] = build_randomized(spec)
        return models[spec]

    return get


@pytest.fixture(scope="module")
def googlenet(float64_model):
    return float64_model(GOOGLENET)


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to a few float64 roundings (eps 2.2e-16) of the values' scale: the same graph compiled
    into two functions may fuse differently; a misplaced branch or axis is off by O(1)."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-13 * np.abs(expected).max())


def max_pool_nchw(x: np.ndarray, k: int, stride: int, padding: int) -> np.ndarray:
    """PyTorch's max-pool: padded cells are -inf and never win."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    windows = [xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] for i in range(k) for j in range(k)]
    return np.max(windows, axis=0)


# --- summaries ---


def test_googlenet_summary_reproduces_d2l_lines(googlenet):
    rows = backend.layer_summary(googlenet, (1, 96, 96, 1))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["b1", "b2", "b3", "b4", "b5", "head"]
    canonical = schema(GOOGLENET).values()
    for row in rows:
        expected = sum(int(np.prod(p.shape)) for p in canonical if p.name.startswith(row.group + "."))
        assert row.params == expected, row.group
    assert sum(row.params for row in rows) == parity.count_parameters(GOOGLENET)[0]


def test_mnist_net_summary_groups_shapes_and_params():
    rows = backend.layer_summary(backend.build(MNIST_NET), (1, 28, 28, 1))
    view = group_view("jax", rows)
    assert view == {
        "conv1": ((1, 10, 12, 12), 260),
        "incep1": ((1, 88, 12, 12), 19_104),
        "conv2": ((1, 20, 4, 4), 44_020),
        "incep2": ((1, 88, 4, 4), 19_824),
        "fc": ((1, 10), 14_090),
    }
    assert sum(params for _, params in view.values()) == parity.count_parameters(MNIST_NET)[0]
    assert rows[-1].d2l_line() == "Dense output shape:\t (1, 10)"


@pytest.mark.parametrize("spec, layer", [(INCEPTION, "Inception"), (INCEPTION_A, "InceptionA")], ids=["inception", "a"])
def test_block_summary_is_one_row(spec, layer):
    (row,) = backend.layer_summary(backend.build(spec), (1, 7, 5, spec.in_channels))
    assert (row.layer, row.shape, row.group) == (layer, (1, 7, 5, spec.out_channels), "block")
    assert row.params == parity.count_parameters(spec)[0]


# --- weights through the table ---


def test_table_native_names():
    names = {canonical: native for spec in SPECS for canonical, native, _, _ in backend.table(spec).rows(spec)}
    assert names["b1.conv.weight"] == "net/b1/conv/params/kernel"
    assert names["b3.0.b2_2.weight"] == "net/b3/inception0/p2_2/params/kernel"
    assert names["b4.4.b4_2.bias"] == "net/b4/inception4/p4_2/params/bias"
    assert names["head.fc.weight"] == "net/head/params/kernel"
    assert names["incep2.branch_pool.weight"] == "incep2/branch_pool/params/kernel"
    assert names["fc.weight"] == "fc/params/kernel"
    assert names["b2_2.weight"] == "p2_2/params/kernel"
    assert backend.table(GOOGLENET).native_module("b3.0.b4_1") == "net/b3/inception0/p4_1"
    assert backend.table(INCEPTION_A).native_module("branch_pool.avg") == "branch_pool_avg"
    assert {backend.table(spec).flatten_order for spec in SPECS} == {"HWC"}


# --- numerics made equal on purpose ---


def test_inception_max_pool_padding_never_wins():
    """All-negative input: a max-pool padded with zeros would put 0 on the border of ``b4_1``."""
    model = backend.build(INCEPTION, dtype="float64")
    x = -1 - np.abs(randn((2, 16, 4, 3)))
    pooled = backend.activations(model, x)["b4_1"]
    assert pooled.max() < 0
    # A max picks one of its inputs: no rounding, so the values are equal exactly.
    np.testing.assert_array_equal(pooled, max_pool_nchw(x, 3, 1, 1))


def test_googlenet_stride_2_max_pool_pads_with_minus_infinity():
    """GoogLeNet's pools follow ReLUs, so check the 3x3 stride-2 padding-1 pool module itself."""
    x = -1 - np.abs(randn((1, 2, 5, 4)))
    pool = inception.GoogLeNet().bind({}).net.layers[0].layers[-1]  # b1's pool
    assert (pool.window, pool.strides, pool.padding) == (3, 2, 1)
    pooled = nhwc_to_nchw(np.asarray(pool.apply({}, nchw_to_nhwc(x))))
    assert pooled.shape == (1, 2, 3, 2) and pooled.max() < 0
    # A max picks one of its inputs: no rounding, so the values are equal exactly.
    np.testing.assert_array_equal(pooled, max_pool_nchw(x, 3, 2, 1))


def test_inception_a_average_pool_counts_padded_zeros():
    """Constant ones: PyTorch's count_include_pad gives 4/9 in corners, 6/9 on edges, 1 inside."""
    model = backend.build(INCEPTION_A, dtype="float64")
    avg = backend.activations(model, np.ones((1, 3, 4, 5)))["branch_pool.avg"]
    expected = np.full((4, 5), 9.0)
    expected[[0, -1], :] = expected[:, [0, -1]] = 6.0
    expected[0, 0] = expected[0, -1] = expected[-1, 0] = expected[-1, -1] = 4.0
    # Both sides are one correctly rounded float64 division of the same integer sum by 9: equal bits.
    np.testing.assert_array_equal(avg, np.broadcast_to(expected / 9, avg.shape))


def test_blocks_concatenate_branches_on_channels_in_order(float64_model):
    x = input_for(INCEPTION)
    model = float64_model(INCEPTION)
    acts = backend.activations(model, x)
    branches = [np.maximum(acts[k], 0) for k in ("b1_1", "b2_2", "b3_2", "b4_2")]
    assert_close(backend.forward(model, x), np.concatenate(branches, axis=1))

    x = input_for(INCEPTION_A)
    model = float64_model(INCEPTION_A)
    acts = backend.activations(model, x)
    branches = [acts[k] for k in ("branch1x1", "branch5x5_2", "branch3x3_3", "branch_pool")]
    assert_close(backend.forward(model, x), np.concatenate(branches, axis=1))


def test_mnist_net_dense_reads_the_canonical_chw_flatten(float64_model):
    """The dense weight is canonical (C, H, W) order; NHWC flattens (H, W, C) and the hub permutes."""
    model = float64_model(MNIST_NET)
    weights = backend.export_weights(model)
    acts = backend.activations(model, input_for(MNIST_NET))
    expected = acts["incep2"].reshape(2, -1) @ weights["fc.weight"].T + weights["fc.bias"]
    # float64 rounding of one 1408-term dot product: ~1e-14 of the logits' scale; a wrong order
    # moves the logits by O(1).
    assert max_relative_diff(acts["fc"], expected) < 1e-12


# --- activations, dtypes, modes ---


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_activations_follow_the_spec_and_end_with_the_output(spec, float64_model):
    model = float64_model(spec)
    x = input_for(spec)
    acts = backend.activations(model, x)
    assert list(acts) == spec.activation_points()
    assert_close(acts[spec.activation_points()[-1]], backend.forward(model, x))


def test_googlenet_activation_shapes(googlenet):
    acts = backend.activations(googlenet, input_for(GOOGLENET))
    assert acts["b1.conv"].shape == (2, 64, 48, 48)
    assert acts["b1"].shape == (2, 64, 24, 24) and acts["b1"].min() >= 0
    assert acts["b3.0.b4_1"].shape == (2, 192, 12, 12)
    assert acts["b3"].shape == (2, 480, 6, 6)
    assert acts["b4"].shape == (2, 832, 3, 3)
    assert acts["b5"].shape == (2, 1024)


def test_mnist_net_activation_points():
    acts = backend.activations(backend.build(MNIST_NET), input_for(MNIST_NET, dtype="float32"))
    assert acts["conv1"].shape == (2, 10, 24, 24) and acts["conv1"].min() < 0
    assert acts["pool1"].shape == (2, 10, 12, 12) and acts["pool1"].min() >= 0
    assert acts["incep1.branch_pool.avg"].shape == (2, 10, 12, 12)
    assert acts["incep1"].shape == (2, 88, 12, 12)
    assert acts["pool2"].shape == (2, 20, 4, 4)


@pytest.mark.parametrize("spec", [MNIST_NET, INCEPTION, INCEPTION_A], ids=lambda s: s.name)
def test_float64_model_computes_in_float64(spec):
    model64, model32 = build_randomized(spec, "float64"), backend.build(spec, dtype="float32")
    backend.load_weights(model32, cast(backend.export_weights(model64), np.float32))
    assert {v.dtype for v in backend.export_weights(model32).values()} == {np.dtype("float32")}
    x = input_for(spec)
    y64, y32 = backend.forward(model64, x), backend.forward(model32, x.astype(np.float32))
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    # A float64 result computed through float32 anywhere would be float32-representable.
    assert not np.array_equal(y64, y64.astype(np.float32).astype(np.float64))
    # float32 rounding (eps 1.2e-7) over <= 7 layers of sums of <= 2200 terms stays near 1e-6
    # of the output's scale (measured: <= 4e-7); 1e-4 is far below a structural error (O(1)).
    assert max_relative_diff(y32.astype(np.float64), y64) < 1e-4


def test_train_mode_is_eval_mode_without_batchnorm():
    model = build_randomized(MNIST_NET, "float32")
    x = input_for(MNIST_NET, dtype="float32")
    np.testing.assert_array_equal(backend.forward(model, x, train=True), backend.forward(model, x))


# --- the d2l-style classes ---


def test_d2l_googlenet_class_has_the_backends_variables(googlenet):
    import jax

    shapes = jax.eval_shape(inception.GoogLeNet().init, jax.random.PRNGKey(0), np.zeros((1, 96, 96, 1), np.float32))
    assert jax.tree_util.tree_map(lambda v: v.shape, shapes) == jax.tree_util.tree_map(np.shape, googlenet.variables)


def test_inception_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        inception.Inception(64, (96, 128), (16, 32), 32)
    assert inception.Inception(c1=64, c2=(96, 128), c3=(16, 32), c4=32).c2 == (96, 128)
