"""Unit tests of the Gluon LeNet, BNLeNet, AlexNet, VGG and NiN: d2l's layer summaries, the native
names, and the activation points, checked in float64 against ``parity.reference``'s numpy layers."""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity.weights import count_parameters
from support import randn

pytest.importorskip("impl_mxnet.backend")
from mxnet import autograd, nd  # noqa: E402

from impl_mxnet import VGG, NiN, backend  # noqa: E402

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


# --- LeNet, BNLeNet, AlexNet, VGG ---

# d2l's rows for a (1, 1, 28, 28) or (1, 1, 224, 224) input, with Gluon's class names, each with its
# summary group and trainable parameters. Gluon's convs and dense layers fuse their activation.
SUMMARIES = {
    "lenet": [
        ("Conv2D", (1, 6, 28, 28), "conv1", 156),
        ("AvgPool2D", (1, 6, 14, 14), "conv1", 0),
        ("Conv2D", (1, 16, 10, 10), "conv2", 2_416),
        ("AvgPool2D", (1, 16, 5, 5), "conv2", 0),
        ("Dense", (1, 120), "fc1", 48_120),
        ("Dense", (1, 84), "fc2", 10_164),
        ("Dense", (1, 10), "fc3", 850),
    ],
    "bnlenet": [
        ("Conv2D", (1, 6, 24, 24), "conv1", 156),
        ("BatchNorm", (1, 6, 24, 24), "conv1", 12),
        ("Activation", (1, 6, 24, 24), "conv1", 0),
        ("AvgPool2D", (1, 6, 12, 12), "conv1", 0),
        ("Conv2D", (1, 16, 8, 8), "conv2", 2_416),
        ("BatchNorm", (1, 16, 8, 8), "conv2", 32),
        ("Activation", (1, 16, 8, 8), "conv2", 0),
        ("AvgPool2D", (1, 16, 4, 4), "conv2", 0),
        ("Dense", (1, 120), "fc1", 30_840),
        ("BatchNorm", (1, 120), "fc1", 240),
        ("Activation", (1, 120), "fc1", 0),
        ("Dense", (1, 84), "fc2", 10_164),
        ("BatchNorm", (1, 84), "fc2", 168),
        ("Activation", (1, 84), "fc2", 0),
        ("Dense", (1, 10), "fc3", 850),
    ],
    "alexnet": [
        ("Conv2D", (1, 96, 54, 54), "conv1", 11_712),
        ("MaxPool2D", (1, 96, 26, 26), "conv1", 0),
        ("Conv2D", (1, 256, 26, 26), "conv2", 614_656),
        ("MaxPool2D", (1, 256, 12, 12), "conv2", 0),
        ("Conv2D", (1, 384, 12, 12), "conv3", 885_120),
        ("Conv2D", (1, 384, 12, 12), "conv4", 1_327_488),
        ("Conv2D", (1, 256, 12, 12), "conv5", 884_992),
        ("MaxPool2D", (1, 256, 5, 5), "conv5", 0),
        ("Dense", (1, 4096), "fc6", 26_218_496),
        ("Dropout", (1, 4096), "fc6", 0),
        ("Dense", (1, 4096), "fc7", 16_781_312),
        ("Dropout", (1, 4096), "fc7", 0),
        ("Dense", (1, 10), "fc8", 40_970),
    ],
    "vgg": [
        ("Sequential", (1, 64, 112, 112), "blocks.0", 640),
        ("Sequential", (1, 128, 56, 56), "blocks.1", 73_856),
        ("Sequential", (1, 256, 28, 28), "blocks.2", 885_248),
        ("Sequential", (1, 512, 14, 14), "blocks.3", 3_539_968),
        ("Sequential", (1, 512, 7, 7), "blocks.4", 4_719_616),
        ("Dense", (1, 4096), "fc6", 102_764_544),
        ("Dropout", (1, 4096), "fc6", 0),
        ("Dense", (1, 4096), "fc7", 16_781_312),
        ("Dropout", (1, 4096), "fc7", 0),
        ("Dense", (1, 10), "fc8", 40_970),
    ],
}
# d2l's parameter counts for one input channel and 10 classes
D2L_PARAMETERS = {"lenet": 61_706, "bnlenet": 44_878, "alexnet": 46_764_746, "vgg": 128_806_154}


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_summary_has_the_books_shapes_the_specs_groups_and_its_parameter_count(name):
    spec = parity.get_spec(name)
    rows = backend.layer_summary(backend.build(spec), (1, 1, *spec.input_size))
    assert [(row.layer, row.shape, row.group, row.params) for row in rows] == SUMMARIES[name]
    assert list(dict.fromkeys(row.group for row in rows)) == spec.summary_groups()
    assert sum(row.params for row in rows) == count_parameters(spec)[0] == D2L_PARAMETERS[name]


def test_native_names_are_the_specs_layer_names_and_vggs_block_i_conv_k():
    lenet, bnlenet, alexnet, vgg = (parity.get_spec(name) for name in ("lenet", "bnlenet", "alexnet", "vgg"))
    rows = {
        canonical: native
        for spec in (lenet, bnlenet, alexnet, vgg)
        for canonical, native, _, _ in backend.table(spec).rows(spec)
    }
    assert rows["conv1.weight"] == "conv1_weight" and rows["fc3.bias"] == "fc3_bias"
    assert rows["bn3.weight"] == "bn3_gamma" and rows["bn4.running_var"] == "bn4_running_var"
    assert rows["fc6.weight"] == "fc6_weight" and rows["conv5.bias"] == "conv5_bias"
    assert rows["blocks.4.conv2.weight"] == "block4_conv2_weight"
    model = VGG(vgg, prefix="")
    assert [layer.name for layer in model.net] == [f"block{i}" for i in range(5)] + [
        "fc6",
        "drop6",
        "fc7",
        "drop7",
        "fc8",
    ]
    assert [layer.name for layer in model.net[2]] == ["block2_conv1", "block2_conv2", "block2_pool"]


# The book's LeNets take 28x28 only; AlexNet and VGG with a small fc6, at an odd, non-square size.
