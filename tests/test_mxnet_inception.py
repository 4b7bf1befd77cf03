"""Unit tests of the Gluon Inception block, GoogLeNet, InceptionA and the tutorials' InceptionNet:
d2l's layer summary, the book's native names, the pooling paddings, and the activation
points, checked in float64 at every point against ``parity.reference``'s numpy layers."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import parity
from parity import reference
from parity.specs import Inception, InceptionA
from parity.specs.graph import join
from parity.weights import cast, count_parameters, schema
from support import max_relative_diff, randn

pytest.importorskip("impl_mxnet.backend")
import impl_mxnet  # noqa: E402
from impl_mxnet import backend  # noqa: E402

GOOGLENET = parity.get_spec("googlenet")
MNIST_NET = parity.get_spec("inception_mnist")
BLOCK = Inception(in_channels=12, c1=4, c2=(6, 8), c3=(2, 4), c4=4)
BLOCK_A = InceptionA(in_channels=6)
SPEC_IDS = ["googlenet", "inception_mnist", "inception", "inception_a"]
D2L_SUMMARY = [
    "Sequential output shape:\t (1, 64, 24, 24)",
    "Sequential output shape:\t (1, 192, 12, 12)",
    "Sequential output shape:\t (1, 480, 6, 6)",
    "Sequential output shape:\t (1, 832, 3, 3)",
    "Sequential output shape:\t (1, 1024, 1, 1)",
    "Dense output shape:\t (1, 10)",
]
MNIST_SUMMARY = [
    "Sequential output shape:\t (1, 10, 12, 12)",
    "InceptionA output shape:\t (1, 88, 12, 12)",
    "Sequential output shape:\t (1, 20, 4, 4)",
    "InceptionA output shape:\t (1, 88, 4, 4)",
    "Dense output shape:\t (1, 10)",
]


def input_for(spec, dtype="float32", batch=2, seed=0):
    size = (96, 96) if spec is GOOGLENET else (28, 28) if spec is MNIST_NET else (9, 11)
    return randn((batch, spec.in_channels, *size), dtype, seed)


# --- d2l's layer summary ---


def assert_params_per_group(rows, spec):
    """Each row's native parameter count adds up, per group, to the spec's tensors under that group's path."""
    per_group: dict[str, int] = {}
    for row in rows:
        per_group[row.group] = per_group.get(row.group, 0) + row.params
    expected: dict[str, int] = {}
    for name, param in schema(spec).items():
        group = name.split(".")[0]
        expected[group] = expected.get(group, 0) + int(np.prod(param.shape))
    assert per_group == expected
    assert sum(per_group.values()) == count_parameters(spec)[0]


def test_googlenet_summary_reproduces_d2l_book():
    rows = backend.layer_summary(backend.build(GOOGLENET), (1, 1, 96, 96))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["b1", "b2", "b3", "b4", "b5", "head"]
    assert_params_per_group(rows, GOOGLENET)


def test_inception_net_summary_has_one_row_per_group():
    rows = backend.layer_summary(backend.build(MNIST_NET), (1, 1, 28, 28))
    assert [row.d2l_line() for row in rows] == MNIST_SUMMARY
    assert [row.group for row in rows] == ["conv1", "incep1", "conv2", "incep2", "fc"]
    assert_params_per_group(rows, MNIST_NET)


@pytest.mark.parametrize("spec, layer", [(BLOCK, "Inception"), (BLOCK_A, "InceptionA")], ids=SPEC_IDS[2:])
def test_block_summary_is_one_row(spec, layer):
    (row,) = backend.layer_summary(backend.build(spec), (1, spec.in_channels, 9, 11))
    assert (row.layer, row.shape, row.group) == (layer, (1, spec.out_channels, 9, 11), "block")
    assert row.params == count_parameters(spec)[0]


# --- native names ---


def test_native_names_are_the_books_branches_in_inception_blocks():
    rows = {canonical: native for canonical, native, _, _ in backend.table(GOOGLENET).rows(GOOGLENET)}
    assert rows["b1.conv.weight"] == "b1_conv_weight"
    assert rows["b3.0.b2_2.weight"] == "b3_inception0_p2_2_weight"
    assert rows["b4.4.b4_2.bias"] == "b4_inception4_p4_2_bias"
    assert rows["head.fc.bias"] == "head_fc_bias"
    rows = {canonical: native for canonical, native, _, _ in backend.table(BLOCK).rows(BLOCK)}
    assert [rows[f"{branch}.weight"] for branch in ("b1_1", "b2_1", "b2_2", "b3_1", "b3_2", "b4_2")] == [
        f"{branch}_weight" for branch in ("p1_1", "p2_1", "p2_2", "p3_1", "p3_2", "p4_2")
    ]
    rows = {canonical: native for canonical, native, _, _ in backend.table(MNIST_NET).rows(MNIST_NET)}
    assert rows["incep2.branch_pool.weight"] == "incep2_branch_pool_weight"
    assert rows["fc.weight"] == "fc_weight"


def test_inception_blocks_are_the_books_attributes():
    net = backend.build(GOOGLENET)
    block = net.net[2][0]
    assert isinstance(block, impl_mxnet.Inception) and block.name == "b3_inception0"
    assert [child.name for child in block._children.values()] == [
        f"b3_inception0_{branch}" for branch in ("p1_1", "p2_1", "p2_2", "p3_1", "p3_2", "p4_1", "p4_2")
    ]
    assert block.p4_1 is block._children["p4_1"]


# --- pooling paddings ---


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_max_pool_padding_never_wins_a_max(dtype):
    # All inputs negative: a max-pool padded with zeros would put 0 on every border cell.
    x = -1 - np.arange(2 * 12 * 5 * 6, dtype=dtype).reshape(2, 12, 5, 6)
    pooled = backend.activations(backend.build(BLOCK, dtype=dtype), x)["b4_1"]
    assert (pooled < 0).all()
    assert np.array_equal(pooled, reference.max_pool(x, 3, 1, 1))  # a max picks one of its inputs: exact


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_average_pool_counts_the_padded_zeros(dtype):
    x = np.ones((1, 6, 4, 5), dtype)
    pooled = backend.activations(backend.build(BLOCK_A, dtype=dtype), x)["branch_pool.avg"]
    expected = np.full((4, 5), 1.0)
    expected[[0, -1], :] = expected[:, [0, -1]] = 6 / 9
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 4 / 9
    # A sum of at most 9 ones is exact; only the division by 9 rounds, within an ulp of the dtype.
    np.testing.assert_allclose(pooled, np.broadcast_to(expected, pooled.shape), rtol=np.finfo(dtype).eps, atol=0)


# --- activations and forward against numpy ---


def numpy_inception(w, x, prefix=""):
    """Every activation point of d2l's Inception block (conv points before their ReLU)."""
    acts = {}
    p = functools.partial(join, prefix)

    def conv(name, x, padding=0):
        acts[p(name)] = reference.conv2d(x, w[f"{p(name)}.weight"], w.get(f"{p(name)}.bias"), 1, padding, 1)
        return reference.relu(acts[p(name)])

    b1 = conv("b1_1", x)
    b2 = conv("b2_2", conv("b2_1", x), 1)
    b3 = conv("b3_2", conv("b3_1", x), 2)
    acts[p("b4_1")] = reference.max_pool(x, 3, 1, 1)
    b4 = conv("b4_2", acts[p("b4_1")])
    acts[prefix or "output"] = np.concatenate([b1, b2, b3, b4], axis=1)
    return acts


def numpy_inception_a(w, x, prefix=""):
    """Every activation point of the tutorials' InceptionA block (no ReLUs)."""
    acts = {}
    p = functools.partial(join, prefix)

    def conv(name, x, padding=0):
        acts[p(name)] = reference.conv2d(x, w[f"{p(name)}.weight"], w[f"{p(name)}.bias"], 1, padding, 1)
        return acts[p(name)]

    branch1x1 = conv("branch1x1", x)
    branch5x5 = conv("branch5x5_2", conv("branch5x5_1", x), 2)
    branch3x3 = conv("branch3x3_3", conv("branch3x3_2", conv("branch3x3_1", x), 1), 1)
    acts[p("branch_pool.avg")] = reference.avg_pool(x, 3, 1, 1)
    branch_pool = conv("branch_pool", acts[p("branch_pool.avg")])
    acts[prefix or "output"] = np.concatenate([branch1x1, branch5x5, branch3x3, branch_pool], axis=1)
    return acts


def numpy_inception_net(w, x):
    """Every activation point of the tutorials' MNIST net; the flatten is NCHW's (C, H, W) order."""

    def conv_pool_relu(name, x):
        acts[name] = reference.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], 1, 0, 1)
        return reference.relu(reference.max_pool(acts[name], 2, 2))

    acts = {}
    acts["pool1"] = conv_pool_relu("conv1", x)
    acts |= numpy_inception_a(w, acts["pool1"], "incep1")
    acts["pool2"] = conv_pool_relu("conv2", acts["incep1"])
    acts |= numpy_inception_a(w, acts["pool2"], "incep2")
    acts["fc"] = acts["incep2"].reshape(len(x), -1) @ w["fc.weight"].T + w["fc.bias"]
    return acts


@pytest.mark.parametrize(
    "spec, expected",
    [
        (BLOCK, numpy_inception),
        (BLOCK_A, numpy_inception_a),
        (MNIST_NET, numpy_inception_net),
    ],
    ids=SPEC_IDS[2:] + SPEC_IDS[1:2],
)
def test_float64_activations_equal_numpy_at_every_point(spec, expected):
    model = backend.build(spec, seed=1, dtype="float64")
    x = input_for(spec, "float64")
    acts = backend.activations(model, x)
    reference_acts = expected(backend.export_weights(model), x)
    assert list(acts) == spec.activation_points() and set(reference_acts) == set(acts)
    for point in acts:
        # float64 against numpy float64: summation order only, ~1e-15 relative.
        assert max_relative_diff(acts[point], reference_acts[point]) < 1e-12, point
    assert np.array_equal(acts[spec.activation_points()[-1]], backend.forward(model, x))


def test_googlenet_activations_cover_every_point_and_end_in_the_logits():
    model = backend.build(GOOGLENET)
    x = randn((2, 1, 65, 47))
    acts = backend.activations(model, x)
    assert list(acts) == GOOGLENET.activation_points()
    assert np.array_equal(acts["head.fc"], backend.forward(model, x))
    assert acts["b1.conv"].shape == (2, 64, 33, 24) and (acts["b1.conv"] < 0).any()  # before the ReLU
    assert acts["b1"].shape == (2, 64, 17, 12) and (acts["b1"] >= 0).all()
    assert acts["b3.0.b4_1"].shape == (2, 192, 9, 6)
    assert acts["b3.1"].shape == (2, 480, 9, 6) and acts["b3"].shape == (2, 480, 5, 3)
    assert acts["b5"].shape == (2, 1024)
    # Global average pooling of the last block in float32: summation order only, far below 1e-5.
    np.testing.assert_allclose(acts["b5"], acts["b5.1"].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    # Within one Inception block, 1x1 branch = ReLU of its conv point (the concat's first 384 channels).
    assert np.array_equal(acts["b5.1"][:, :384], np.maximum(acts["b5.1.b1_1"], 0))
    hooks = []
    model.apply(lambda block: hooks.extend([*block._forward_hooks.values(), *block._forward_pre_hooks.values()]))
    assert not hooks


def test_googlenet_float64_computes_in_float64():
    model32 = backend.build(GOOGLENET)
    model64 = backend.build(GOOGLENET, dtype="float64")
    backend.load_weights(model64, cast(backend.export_weights(model32), "float64"))
    x = randn((2, 1, 96, 96), "float64")
    y64 = backend.forward(model64, x)
    assert y64.dtype == np.float64
    y32 = backend.forward(model32, x.astype(np.float32))
    # Relative to the logits' own scale (~1e-2 here): float32 rounding through ~60 convs measured ~1e-6;
    # 1e-4 leaves two orders of margin and is far below a structural bug, which moves logits by O(1).
    assert np.abs(y32 - y64).max() / np.abs(y64).max() < 1e-4
