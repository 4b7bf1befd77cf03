"""Unit tests of the Gluon NiN: d2l's layer summary, the native names, and the activation points,
checked in float64 against ``parity.reference``'s numpy layers."""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import reference
from parity.weights import count_parameters
from support import max_relative_diff, randn

pytest.importorskip("impl_mxnet.backend")
from mxnet import autograd, nd  # noqa: E402

from impl_mxnet import NiN, backend  # noqa: E402

SPEC = parity.get_spec("nin")
# d2l's rows for a (1, 1, 224, 224) input, with Gluon's class names: its head is a global pool and a Flatten.
D2L_SUMMARY = [
    ("Sequential", (1, 96, 54, 54), "blocks.0"),
    ("MaxPool2D", (1, 96, 26, 26), "pools.0"),
    ("Sequential", (1, 256, 26, 26), "blocks.1"),
    ("MaxPool2D", (1, 256, 12, 12), "pools.1"),
    ("Sequential", (1, 384, 12, 12), "blocks.2"),
    ("MaxPool2D", (1, 384, 5, 5), "pools.2"),
    ("Dropout", (1, 384, 5, 5), "dropout"),
    ("Sequential", (1, 10, 5, 5), "blocks.3"),
    ("GlobalAvgPool2D", (1, 10, 1, 1), "head"),
    ("Flatten", (1, 10), "head"),
]


def test_summary_has_d2l_shapes_and_groups_and_counts_1_992_166_parameters():
    rows = backend.layer_summary(backend.build(SPEC), (1, 1, 224, 224))
    assert [(row.layer, row.shape, row.group) for row in rows] == D2L_SUMMARY
    assert rows[0].d2l_line() == "Sequential output shape:\t (1, 96, 54, 54)"
    assert [row.params for row in rows] == [30_336, 0, 746_240, 0, 1_180_800, 0, 0, 34_790, 0, 0]
    assert sum(row.params for row in rows) == count_parameters(SPEC)[0] == 1_992_166


def test_native_names_are_block_i_conv_k():
    rows = {canonical: native for canonical, native, _, _ in backend.table(SPEC).rows(SPEC)}
    assert rows["blocks.0.conv1.weight"] == "block0_conv1_weight"
    assert rows["blocks.3.conv3.bias"] == "block3_conv3_bias"
    model = NiN(SPEC, prefix="")
    assert [layer.name for layer in model.net] == [
        "block0",
        "pool0",
        "block1",
        "pool1",
        "block2",
        "pool2",
        "dropout",
        "block3",
        "head_pool",
        "head_flatten",
    ]
    assert [conv.name for conv in model.net[7]] == ["block3_conv1", "block3_conv2", "block3_conv3"]


def numpy_nin(w, x):
    """Every activation point of d2l's NiN (conv points before their ReLU); dropout is the identity."""
    acts = {}

    def conv_relu(name, x, strides=1, padding=0):
        acts[name] = reference.conv2d(x, w[f"{name}.weight"], w[f"{name}.bias"], strides, padding, 1)
        return reference.relu(acts[name])

    for i, (_, _, strides, padding) in enumerate(SPEC.blocks()):
        if i == 3:
            acts["dropout"] = x
        x = conv_relu(f"blocks.{i}.conv1", x, strides, padding)
        acts[f"blocks.{i}"] = x = conv_relu(f"blocks.{i}.conv3", conv_relu(f"blocks.{i}.conv2", x))
        if i < 3:
            acts[f"pools.{i}"] = x = reference.max_pool(x, 3, 2)
    acts["head.pool"] = x.mean(axis=(2, 3))
    return acts


@pytest.mark.parametrize("size", [(224, 224), (67, 75)], ids=["224x224", "67x75"])
def test_float64_activations_equal_numpy_at_every_point(size):
    model = backend.build(SPEC, seed=1, dtype="float64")
    x = randn((2, 1, *size), "float64")
    acts = backend.activations(model, x)
    expected = numpy_nin(backend.export_weights(model), x)
    assert list(acts) == SPEC.activation_points() and set(expected) == set(acts)
    for point in acts:
        # float64 against numpy float64: summation order only, ~1e-15 relative.
        assert max_relative_diff(acts[point], expected[point]) < 1e-12, point
    assert acts["head.pool"].shape == (2, 10)
    assert np.array_equal(acts["head.pool"], backend.forward(model, x))
    hooks = []
    model.apply(lambda block: hooks.extend([*block._forward_hooks.values(), *block._forward_pre_hooks.values()]))
    assert not hooks


def test_dropout_drops_at_the_specs_rate_in_training_mode_only():
    model = backend.build(SPEC, dtype="float64")
    dropout = model.net[6]
    X = nd.ones((4, 384, 5, 5), dtype="float64")
    with autograd.pause(train_mode=False):
        assert (dropout(X).asnumpy() == 1).all()
    with autograd.pause(train_mode=True):
        dropped = dropout(X).asnumpy()
    # rate 0.5: a kept unit is scaled by 1 / (1 - 0.5) = 2, exactly; about half of 38,400 units are dropped
    assert set(np.unique(dropped)) == {0.0, 2.0}
    assert abs((dropped == 0).mean() - SPEC.dropout) < 0.05
    x = randn((2, 1, 67, 75), "float64")
    assert np.array_equal(backend.forward(model, x), backend.forward(model, x))
