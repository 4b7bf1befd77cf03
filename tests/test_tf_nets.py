"""Unit tests of the Keras LeNet, BNLeNet, AlexNet, VGG, ResNet (and its Residual block), DenseNet
and the tutorials' residual MNIST net: d2l's layer summaries, the native names, the weight round
trip, and every activation point in float64 against ``parity.reference``'s numpy layers."""

from __future__ import annotations

import numpy as np
import pytest

from parity.report import group_view
from parity.specs import (
    VGG,
    AlexNet,
    BatchNorm,
    BNLeNet,
    DenseNet,
    LeNet,
    Residual,
    ResidualNet,
    ResNet,
    infer_shapes,
)
from parity.variants import variant_problem
from parity.weights import count_parameters, randomize_batchnorm, randomize_biases, schema
from support import assert_same_bits, max_relative_diff, randn

pytest.importorskip("tensorflow")
import keras  # noqa: E402

from impl_tf import backend, classic, densenet, resnet  # noqa: E402

# The book's nets at the book's input sizes, with the parameter counts d2l prints.
BOOK = {
    "lenet": (LeNet(), (1, 1, 28, 28), 61_706),
    "bnlenet": (BNLeNet(), (1, 1, 28, 28), 44_878),
    "alexnet": (AlexNet(), (1, 1, 224, 224), 46_764_746),
    "vgg": (VGG(), (1, 1, 224, 224), 128_806_154),
    "resnet18": (ResNet(), (1, 1, 96, 96), 11_178_378),
    "densenet": (DenseNet(), (1, 1, 96, 96), 758_226),
    "residual_mnist": (ResidualNet(), (1, 1, 28, 28), 41_514),
}

# The Keras rows of each summary for the book's input (NHWC): (layer, shape, group).
SUMMARIES = {
    "lenet": [
        ("ZeroPadding2D", (1, 32, 32, 1), "conv1"),
        ("Conv2D", (1, 28, 28, 6), "conv1"),
        ("Activation", (1, 28, 28, 6), "conv1"),
        ("AveragePooling2D", (1, 14, 14, 6), "conv1"),
        ("Conv2D", (1, 10, 10, 16), "conv2"),
        ("Activation", (1, 10, 10, 16), "conv2"),
        ("AveragePooling2D", (1, 5, 5, 16), "conv2"),
        ("Flatten", (1, 400), "fc1"),
        ("Dense", (1, 120), "fc1"),
        ("Activation", (1, 120), "fc1"),
        ("Dense", (1, 84), "fc2"),
        ("Activation", (1, 84), "fc2"),
        ("Dense", (1, 10), "fc3"),
    ],
    "bnlenet": [
        ("Conv2D", (1, 24, 24, 6), "conv1"),
        ("BatchNormalization", (1, 24, 24, 6), "conv1"),
        ("Activation", (1, 24, 24, 6), "conv1"),
        ("AveragePooling2D", (1, 12, 12, 6), "conv1"),
        ("Conv2D", (1, 8, 8, 16), "conv2"),
        ("BatchNormalization", (1, 8, 8, 16), "conv2"),
        ("Activation", (1, 8, 8, 16), "conv2"),
        ("AveragePooling2D", (1, 4, 4, 16), "conv2"),
        ("Flatten", (1, 256), "fc1"),
        ("Dense", (1, 120), "fc1"),
        ("BatchNormalization", (1, 120), "fc1"),
        ("Activation", (1, 120), "fc1"),
        ("Dense", (1, 84), "fc2"),
        ("BatchNormalization", (1, 84), "fc2"),
        ("Activation", (1, 84), "fc2"),
        ("Dense", (1, 10), "fc3"),
    ],
    "alexnet": [
        ("ZeroPadding2D", (1, 226, 226, 1), "conv1"),
        ("Conv2D", (1, 54, 54, 96), "conv1"),
        ("Activation", (1, 54, 54, 96), "conv1"),
        ("MaxPooling2D", (1, 26, 26, 96), "conv1"),
        ("ZeroPadding2D", (1, 30, 30, 96), "conv2"),
        ("Conv2D", (1, 26, 26, 256), "conv2"),
        ("Activation", (1, 26, 26, 256), "conv2"),
        ("MaxPooling2D", (1, 12, 12, 256), "conv2"),
        ("ZeroPadding2D", (1, 14, 14, 256), "conv3"),
        ("Conv2D", (1, 12, 12, 384), "conv3"),
        ("Activation", (1, 12, 12, 384), "conv3"),
        ("ZeroPadding2D", (1, 14, 14, 384), "conv4"),
        ("Conv2D", (1, 12, 12, 384), "conv4"),
        ("Activation", (1, 12, 12, 384), "conv4"),
        ("ZeroPadding2D", (1, 14, 14, 384), "conv5"),
        ("Conv2D", (1, 12, 12, 256), "conv5"),
        ("Activation", (1, 12, 12, 256), "conv5"),
        ("MaxPooling2D", (1, 5, 5, 256), "conv5"),
        ("Flatten", (1, 6400), "fc6"),
        ("Dense", (1, 4096), "fc6"),
        ("Activation", (1, 4096), "fc6"),
        ("Dropout", (1, 4096), "fc6"),
        ("Dense", (1, 4096), "fc7"),
        ("Activation", (1, 4096), "fc7"),
        ("Dropout", (1, 4096), "fc7"),
        ("Dense", (1, 10), "fc8"),
    ],
    "vgg": [
        ("Sequential", (1, 112, 112, 64), "blocks.0"),
        ("Sequential", (1, 56, 56, 128), "blocks.1"),
        ("Sequential", (1, 28, 28, 256), "blocks.2"),
        ("Sequential", (1, 14, 14, 512), "blocks.3"),
        ("Sequential", (1, 7, 7, 512), "blocks.4"),
        ("Flatten", (1, 25088), "fc6"),
        ("Dense", (1, 4096), "fc6"),
        ("Activation", (1, 4096), "fc6"),
        ("Dropout", (1, 4096), "fc6"),
        ("Dense", (1, 4096), "fc7"),
        ("Activation", (1, 4096), "fc7"),
        ("Dropout", (1, 4096), "fc7"),
        ("Dense", (1, 10), "fc8"),
    ],
    "resnet18": [
        ("Sequential", (1, 24, 24, 64), "b1"),
        ("Sequential", (1, 24, 24, 64), "b2"),
        ("Sequential", (1, 12, 12, 128), "b3"),
        ("Sequential", (1, 6, 6, 256), "b4"),
        ("Sequential", (1, 3, 3, 512), "b5"),
        ("Sequential", (1, 10), "last"),
    ],
    "densenet": [
        ("Sequential", (1, 24, 24, 64), "b1"),
        ("DenseBlock", (1, 24, 24, 192), "dense_blk1"),
        ("Sequential", (1, 12, 12, 96), "tran_blk1"),
        ("DenseBlock", (1, 12, 12, 224), "dense_blk2"),
        ("Sequential", (1, 6, 6, 112), "tran_blk2"),
        ("DenseBlock", (1, 6, 6, 240), "dense_blk3"),
        ("Sequential", (1, 3, 3, 120), "tran_blk3"),
        ("DenseBlock", (1, 3, 3, 248), "dense_blk4"),
        ("Sequential", (1, 10), "last"),
    ],
    "residual_mnist": [
        ("Conv2D", (1, 24, 24, 16), "conv1"),
        ("MaxPooling2D", (1, 12, 12, 16), "conv1"),
        ("Activation", (1, 12, 12, 16), "conv1"),
        ("ResidualBlock", (1, 12, 12, 16), "rblock1"),
        ("Conv2D", (1, 8, 8, 32), "conv2"),
        ("MaxPooling2D", (1, 4, 4, 32), "conv2"),
        ("Activation", (1, 4, 4, 32), "conv2"),
        ("ResidualBlock", (1, 4, 4, 32), "rblock2"),
        ("Flatten", (1, 512), "fc"),
        ("Dense", (1, 10), "fc"),
    ],
}


def randomized(spec, dtype="float64"):
    """A model of ``spec`` whose biases and BatchNorm parameters and statistics are far from 0 and 1."""
    model = backend.build(spec, dtype=dtype)
    weights = randomize_biases(backend.export_weights(model), seed=1)
    if any(isinstance(layer, BatchNorm) for layer in spec.layers()):
        weights = randomize_batchnorm(weights, seed=2)
    backend.load_weights(model, weights)
    return model, weights


def spec_group_view(spec, input_shape) -> dict[str, tuple[tuple[int, ...], int]]:
    """{group: (NCHW shape of the group's last node, the group's trainable parameters)}, from the spec."""
    shapes = infer_shapes(spec.graph(), input_shape)
    view = {node.group: shapes[node.name] for node in spec.graph()}
    params = dict.fromkeys(view, 0)
    group_of = {node.layer.path: node.group for node in spec.graph() if node.layer is not None}
    for p in schema(spec).values():
        params[group_of[p.layer.path]] += int(np.prod(p.shape)) if p.trainable else 0
    return {group: (shape, params[group]) for group, shape in view.items()}


# --- d2l's summaries ---


@pytest.mark.parametrize("name", BOOK)
def test_summary_at_the_book_input_size(name):
    spec, input_shape, d2l_parameters = BOOK[name]
    n, c, h, w = input_shape
    rows = backend.layer_summary(backend.build(spec), (n, h, w, c))
    assert [(row.layer, row.shape, row.group) for row in rows] == SUMMARIES[name]
    assert list(dict.fromkeys(row.group for row in rows)) == spec.summary_groups()
    # Each group's last shape (NCHW) and parameters are the spec's.
    assert group_view("tf", rows) == spec_group_view(spec, input_shape)
    assert sum(row.params for row in rows) == count_parameters(spec)[0] == d2l_parameters


# --- native names ---


def native_names(spec) -> dict[str, str]:
    return {canonical: native for canonical, native, _, _ in backend.table(spec).rows(spec)}


def test_native_names_follow_one_scheme():
    assert native_names(LeNet())["conv1.weight"] == "net/conv1/kernel"
    assert native_names(BNLeNet())["bn3.running_var"] == "net/bn3/moving_variance"
    assert native_names(AlexNet())["fc6.weight"] == "net/fc6/kernel"
    assert native_names(VGG())["blocks.2.conv2.bias"] == "net/block2/conv2/bias"
    resnet = native_names(ResNet())
    assert resnet["b1.conv.weight"] == "net/b1/conv/kernel"
    assert resnet["b3.0.conv3.weight"] == "net/b3/block0/conv3/kernel"
    assert resnet["last.fc.bias"] == "net/last/fc/bias"
    dense = native_names(DenseNet())
    assert dense["dense_blk1.0.conv.weight"] == "net/dense_blk1/block0/conv/kernel"
    assert dense["tran_blk3.bn.weight"] == "net/tran_blk3/bn/gamma"
    assert native_names(ResidualNet())["rblock2.conv1.weight"] == "net/rblock2/conv1/kernel"
    assert native_names(Residual(8, 12, use_1x1conv=True, stride=2))["conv3.weight"] == "conv3/kernel"
    # Activation points: a block's output is the block's layer (the concatenation, for DenseNet's).
    table = backend.table(DenseNet())
    assert [table.native_module(p) for p in ("b1", "dense_blk2.3", "tran_blk1", "last.pool")] == [
        "net/b1",
        "net/dense_blk2/block3",
        "net/tran_blk1",
        "net/last/pool",
    ]
    assert backend.table(ResidualNet()).native_module("pool2") == "net/relu2"  # max-pool, then ReLU


def test_models_are_d2l_shaped():
    vgg = backend.build(VGG(input_size=(32, 32)))
    assert isinstance(vgg, classic.VGG)
    assert [layer.name for layer in vgg.net.get_layer("block2").layers] == [
        "conv1_pad",
        "conv1",
        "relu1",
        "conv2_pad",
        "conv2",
        "relu2",
        "pool",
    ]
    model = backend.build(ResNet())
    assert isinstance(model, resnet.ResNet)
    assert [layer.name for layer in model.net.layers] == ["b1", "b2", "b3", "b4", "b5", "last"]
    b3 = model.net.get_layer("b3")
    assert [type(block).__name__ for block in b3.layers] == ["Residual", "Residual"]
    assert b3.layers[0].conv3 is not None and b3.layers[1].conv3 is None
    assert resnet.ResNet18(num_classes=7).spec == ResNet(num_classes=7)
    model = backend.build(DenseNet())
    assert isinstance(model, densenet.DenseNet)
    assert [layer.name for layer in model.net.layers][:3] == ["b1", "dense_blk1", "tran_blk1"]
    assert [type(block).__name__ for block in model.net.get_layer("dense_blk1").layers] == ["ConvBlock"] * 4


@pytest.mark.parametrize("spec", [BNLeNet(), AlexNet(), ResNet(), DenseNet()], ids=lambda spec: spec.name)
def test_padding_is_explicit_and_batchnorm_has_the_spec_settings(spec):
    layers = list(backend.build(spec)._flatten_layers())
    assert {layer.padding for layer in layers if isinstance(layer, keras.layers.Conv2D)} == {"valid"}
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) and layer.padding != "valid" for layer in layers)
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    # Keras' momentum is the weight of the old statistic: 1 - PyTorch's 0.1.
    assert all(bn.epsilon == 1e-5 and bn.momentum == pytest.approx(0.9) for bn in bns)
    assert len(bns) == sum(isinstance(layer, BatchNorm) for layer in spec.layers())


# --- numerics in float64 ---


# --- naive ports ---

# Small enough to build in float64 many times; between them every variant and every kind of layer.
VARIANT_SPECS = [LeNet(), BNLeNet(), Residual(8, 12, True, 2), ResNet(arch=((1, 64), (1, 32))), DenseNet(arch=(2, 2))]


@pytest.mark.parametrize("spec", VARIANT_SPECS, ids=lambda spec: spec.name)
def test_every_applicable_variant_builds_loads_and_round_trips(spec):
    """Every variant ``parity.variants`` says applies builds, takes the faithful weights, gives
    them back bit for bit and computes another function; the others are refused."""
    faithful, weights = randomized(spec)
    # Even sizes: 'same' padding at stride 2 pads one side only there.
    x = randn((2, spec.in_channels, *(spec.fixed_input_size() or (32, 34))), "float64")
    y = backend.forward(faithful, x)
    for variant in backend.VARIANTS:
        if variant_problem(spec, variant):
            with pytest.raises(ValueError, match=variant):
                backend.build(spec, variant=variant)
            continue
        model = backend.build(spec, dtype="float64", variant=variant)
        backend.load_weights(model, weights)
        assert_same_bits(backend.export_weights(model), weights)
        # Far above float64 rounding; each pitfall moves the output by 1e-4 or more.
        assert max_relative_diff(backend.forward(model, x), y) > 1e-6, variant
