"""Unit tests of the PyTorch Inception block, GoogLeNet, InceptionA and InceptionNet.

The torch backend is the reference the other backends are compared with, so every
activation point is checked against numpy built from ``parity.reference``'s layers
(its max-pool pads with -inf, its average pool counts the padded zeros), which read
only the spec and the canonical weights.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import reference
from parity.specs import INPUT, GoogLeNet, Inception, InceptionA, InceptionNet
from support import assert_same_bits, max_relative_diff, randn

torch = pytest.importorskip("torch")
from impl_torch import backend  # noqa: E402

SPECS = {
    "googlenet": GoogLeNet(),
    "inception_mnist": InceptionNet(),
    "inception": Inception(in_channels=16, c1=8, c2=(8, 12), c3=(4, 6), c4=5),
    "inception_a": InceptionA(in_channels=10),
}
# Odd, non-square sizes where the nets allow them (InceptionNet's flatten needs 28x28).
INPUTS = {
    "googlenet": (2, 1, 65, 47),
    "inception_mnist": (2, 1, 28, 28),
    "inception": (2, 16, 9, 7),
    "inception_a": (2, 10, 9, 7),
}
D2L_SUMMARY = [
    "Sequential output shape:\t torch.Size([1, 64, 24, 24])",
    "Sequential output shape:\t torch.Size([1, 192, 12, 12])",
    "Sequential output shape:\t torch.Size([1, 480, 6, 6])",
    "Sequential output shape:\t torch.Size([1, 832, 3, 3])",
    "Sequential output shape:\t torch.Size([1, 1024])",
    "Linear output shape:\t torch.Size([1, 10])",
]


def state(model) -> dict[str, np.ndarray]:
    return {key: t.detach().numpy().copy() for key, t in model.state_dict().items()}


# --- every activation point in numpy, from the spec's graph and canonical weights only ---


def np_reference(spec, weights, x) -> dict[str, np.ndarray]:
    """Every activation point of ``spec``: ``parity.reference`` applied to each node of its graph."""
    values = {INPUT: x}
    for node in spec.graph():
        values[node.name] = reference.apply(node, [values[name] for name in node.inputs], weights)
    return {key: values[key] for key in spec.activation_points()}


# --- native names ---


def test_tables_map_canonical_paths_to_d2l_and_tutorial_names():
    def rows(spec):
        return {canonical: native for canonical, native, _, _ in backend.table(spec).rows(spec)}

    googlenet = rows(SPECS["googlenet"])
    assert googlenet["b1.conv.weight"] == "net.b1.conv.weight"
    assert googlenet["b2.conv2.bias"] == "net.b2.conv2.bias"
    assert googlenet["b3.0.b1_1.weight"] == "net.b3.0.p1_1.weight"
    assert googlenet["b4.4.b3_2.weight"] == "net.b4.4.p3_2.weight"
    assert googlenet["b5.1.b4_2.bias"] == "net.b5.1.p4_2.bias"
    assert googlenet["head.fc.weight"] == "net.head.weight"
    assert rows(SPECS["inception"])["b2_2.weight"] == "p2_2.weight"
    assert all(canonical == native for canonical, native in rows(SPECS["inception_mnist"]).items())
    assert all(canonical == native for canonical, native in rows(SPECS["inception_a"]).items())
    assert backend.table(SPECS["inception_mnist"]).flatten_order == "CHW"


def test_d2l_and_tutorial_model_classes_are_shaped_like_the_originals():
    from impl_torch import GoogLeNet as TorchGoogLeNet
    from impl_torch import InceptionNet as TorchInceptionNet

    googlenet = TorchGoogLeNet()
    assert googlenet.spec == SPECS["googlenet"]
    assert [name for name, _ in googlenet.net.named_children()] == ["b1", "b2", "b3", "b4", "b5", "head"]
    assert [type(m).__name__ for m in googlenet.net.b5] == ["Inception", "Inception", "AdaptiveAvgPool2d", "Flatten"]
    assert [name for name, _ in googlenet.net.b3[0].named_children()] == [
        "p1_1",
        "p2_1",
        "p2_2",
        "p3_1",
        "p3_2",
        "p4_1",
        "p4_2",
    ]
    assert all(pool.padding == 1 and pool.stride == 2 for pool in (googlenet.net.b1.pool, googlenet.net.b4.pool))
    net = TorchInceptionNet()
    assert net.spec == SPECS["inception_mnist"]
    assert [name for name, _ in net.named_children()] == [
        "conv1",
        "pool1",
        "incep1",
        "conv2",
        "pool2",
        "incep2",
        "flatten",
        "fc",
    ]
    assert net.incep1.avg_pool.count_include_pad


# --- numerics ---


@pytest.mark.parametrize("name", SPECS)
def test_every_activation_matches_numpy_reference(name):
    spec, shape = SPECS[name], INPUTS[name]
    model = backend.build(spec, dtype="float64")
    x = randn(shape, "float64")
    weights = backend.export_weights(model)
    expected = np_reference(spec, weights, x)
    actual = backend.activations(model, x)
    assert list(actual) == spec.activation_points()
    for key in expected:
        assert actual[key].shape == expected[key].shape, key
        # float64 rounds ~1e-16 per operation over sums of at most 832 * 9 terms: honest
        # rounding stays far below 1e-12, and a wrong pool, padding or concat order is O(1).
        assert max_relative_diff(actual[key], expected[key]) < 1e-12, key
    y = backend.forward(model, x)
    assert y.dtype == np.float64 and y.shape == spec.output_shape(x.shape)
    assert np.array_equal(y, actual[list(actual)[-1]])
    # The same float64 rounding argument, against parity.reference's whole-net forward.
    assert max_relative_diff(y, reference.forward(spec, weights, x)) < 1e-12


@pytest.mark.parametrize("name", ["googlenet", "inception_mnist"])
def test_float32_matches_float64_numpy_reference(name):
    spec = SPECS[name]
    model = backend.build(spec, dtype="float32")
    x = randn(INPUTS[name])
    expected = reference.forward(
        spec, parity.weights.cast(backend.export_weights(model), "float64"), x.astype(np.float64)
    )
    y = backend.forward(model, x)
    assert y.dtype == np.float32
    # The suite's float32 parity target: float32 rounds ~6e-8 relative per operation,
    # which stays near 1e-6 relative to the logits over these ~25 layers.
    assert max_relative_diff(y, expected) < 1e-5
    # A float32 model that secretly computed in float64 would agree to ~1e-16.
    assert max_relative_diff(y, expected) > 1e-12


def test_max_pool_padding_never_wins_a_max():
    """On an all-negative input, zero padding would put 0 on the border of the max-pool path."""
    spec = SPECS["inception"]
    x = -1 - np.abs(randn((1, spec.in_channels, 5, 4), "float64"))
    pooled = backend.activations(backend.build(spec, dtype="float64"), x)["b4_1"]
    assert (pooled < -1).all()
    assert np.array_equal(pooled, reference.max_pool(x, 3, 1, 1))
    corner = x[0, :, :2, :2].reshape(spec.in_channels, -1).max(axis=1)
    assert np.array_equal(pooled[0, :, 0, 0], corner)


def test_average_pool_counts_the_padded_zeros():
    """A constant input of ones: PyTorch's count_include_pad gives 4/9 in the corners and 6/9 on the edges."""
    spec = SPECS["inception_a"]
    pooled = backend.activations(backend.build(spec, dtype="float64"), np.ones((1, 10, 5, 6)))["branch_pool.avg"]
    expected = np.full((5, 6), 9.0)
    expected[[0, -1], :] = expected[:, [0, -1]] = 6
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 4
    # Sums of at most nine ones are exact; only the division by 9 rounds, once, at 1.1e-16.
    np.testing.assert_allclose(pooled, np.broadcast_to(expected / 9, pooled.shape), rtol=1e-15, atol=0)


def test_concat_is_on_the_channel_axis_in_branch_order():
    spec = SPECS["inception_a"]
    acts = backend.activations(backend.build(spec), randn(INPUTS["inception_a"]))
    branches = [acts[k] for k in ("branch1x1", "branch5x5_2", "branch3x3_3", "branch_pool")]
    assert np.array_equal(acts["output"], np.concatenate(branches, axis=1))


def test_forward_activations_and_summary_change_nothing():
    spec = SPECS["inception_mnist"]
    model = backend.build(spec)
    before = state(model)
    x = randn(INPUTS["inception_mnist"])
    y = backend.forward(model, x, train=True)
    backend.activations(model, x)
    backend.layer_summary(model, (1, 1, 28, 28))
    assert_same_bits(state(model), before)
    assert not model.training
    # BN-free and dropout-free: training mode computes the same function, bit for bit.
    assert np.array_equal(y, backend.forward(model, x))


# --- d2l layer summaries ---


def test_googlenet_layer_summary_reproduces_the_d2l_book():
    spec = SPECS["googlenet"]
    rows = backend.layer_summary(backend.build(spec), (1, 1, 96, 96))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["b1", "b2", "b3", "b4", "b5", "head"]
    assert [row.params for row in rows] == _params_per_group(spec, ["b1", "b2", "b3", "b4", "b5", "head"])
    assert sum(row.params for row in rows) == parity.count_parameters(spec)[0] == 5_977_530


def test_inception_net_layer_summary():
    spec = SPECS["inception_mnist"]
    rows = backend.layer_summary(backend.build(spec), (1, 1, 28, 28))
    assert [(row.layer, row.shape, row.group) for row in rows] == [
        ("Conv2d", (1, 10, 24, 24), "conv1"),
        ("Sequential", (1, 10, 12, 12), "conv1"),
        ("InceptionA", (1, 88, 12, 12), "incep1"),
        ("Conv2d", (1, 20, 8, 8), "conv2"),
        ("Sequential", (1, 20, 4, 4), "conv2"),
        ("InceptionA", (1, 88, 4, 4), "incep2"),
        ("Flatten", (1, 1408), "fc"),
        ("Linear", (1, 10), "fc"),
    ]
    groups = ["conv1", "incep1", "conv2", "incep2", "fc"]
    assert [sum(row.params for row in rows if row.group == g) for g in groups] == _params_per_group(spec, groups)


@pytest.mark.parametrize(
    "name, line",
    [
        ("inception", "Inception output shape:\t torch.Size([1, 31, 9, 7])"),
        ("inception_a", "InceptionA output shape:\t torch.Size([1, 88, 9, 7])"),
    ],
)
def test_layer_summary_of_a_block_is_one_row(name, line):
    spec = SPECS[name]
    (row,) = backend.layer_summary(backend.build(spec), (1, spec.in_channels, 9, 7))
    assert row.d2l_line() == line
    assert row.group == "block" and row.params == parity.count_parameters(spec)[0]


def _params_per_group(spec, groups) -> list[int]:
    """Trainable parameters of each top-level canonical group, counted from the schema."""
    return [
        sum(int(np.prod(p.shape)) for name, p in parity.schema(spec).items() if name.split(".")[0] == g) for g in groups
    ]
