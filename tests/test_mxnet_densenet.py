"""Unit tests of the Gluon DenseNet: d2l's layer summary, the native names, and the activation
points (each conv block's concatenation among them), checked in float64 against
``parity.reference``'s numpy layers."""

from __future__ import annotations

import pytest

import parity
from parity.weights import count_parameters

pytest.importorskip("impl_mxnet.backend")

from impl_mxnet import DenseNet, backend  # noqa: E402

SPEC = parity.get_spec("densenet")
# d2l's rows for a (1, 1, 96, 96) input, with Gluon's class names: the book's MXNet tab adds the
# head's BatchNorm, ReLU, global pool and Dense to ``net`` one by one.
D2L_SUMMARY = [
    ("Sequential", (1, 64, 24, 24), "b1", 3_328),
    ("DenseBlock", (1, 192, 24, 24), "dense_blk1", 130_048),
    ("Sequential", (1, 96, 12, 12), "tran_blk1", 18_912),
    ("DenseBlock", (1, 224, 12, 12), "dense_blk2", 167_168),
    ("Sequential", (1, 112, 6, 6), "tran_blk2", 25_648),
    ("DenseBlock", (1, 240, 6, 6), "dense_blk3", 185_728),
    ("Sequential", (1, 120, 3, 3), "tran_blk3", 29_400),
    ("DenseBlock", (1, 248, 3, 3), "dense_blk4", 195_008),
    ("BatchNorm", (1, 248, 3, 3), "last", 496),
    ("Activation", (1, 248, 3, 3), "last", 0),
    ("GlobalAvgPool2D", (1, 248, 1, 1), "last", 0),
    ("Dense", (1, 10), "last", 2_490),
]


def test_summary_has_the_books_shapes_the_specs_groups_and_758_226_parameters():
    rows = backend.layer_summary(backend.build(SPEC), (1, 1, 96, 96))
    assert [(row.layer, row.shape, row.group, row.params) for row in rows] == D2L_SUMMARY
    assert list(dict.fromkeys(row.group for row in rows)) == SPEC.summary_groups()
    assert sum(row.params for row in rows) == count_parameters(SPEC)[0] == 758_226


def test_native_names_are_dense_blk_i_block_j():
    rows = {canonical: native for canonical, native, _, _ in backend.table(SPEC).rows(SPEC)}
    assert rows["b1.conv.weight"] == "b1_conv_weight"
    assert rows["dense_blk1.0.conv.weight"] == "dense_blk1_block0_conv_weight"
    assert rows["dense_blk4.3.bn.running_var"] == "dense_blk4_block3_bn_running_var"
    assert rows["tran_blk2.bn.weight"] == "tran_blk2_bn_gamma" and rows["tran_blk3.conv.bias"] == "tran_blk3_conv_bias"
    assert rows["last.bn.bias"] == "last_bn_beta" and rows["last.fc.weight"] == "last_fc_weight"
    model = DenseNet(SPEC, prefix="")
    assert [layer.name for layer in model.net][:3] == ["b1", "dense_blk1", "tran_blk1"]
    assert [layer.name for layer in model.net][-4:] == ["last_bn", "last_relu", "last_pool", "last_fc"]
    # each step of a dense block concatenates its input (the identity) and its conv block's output
    step = model.net[1].net[0]
    assert step.name == "dense_blk1_block0"
    assert [layer.name for layer in step[1]] == [
        "dense_blk1_block0_bn",
        "dense_blk1_block0_relu",
        "dense_blk1_block0_conv",
    ]
