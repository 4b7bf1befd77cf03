"""Unit tests of the PyTorch LeNet, BNLeNet, AlexNet, VGG, ResNet-18 (and its Residual block),
DenseNet and the tutorials' residual MNIST net (and its ResidualBlock).

d2l's printed layer summaries are reproduced line for line, with the spec's groups and shapes
and the book's parameter counts; the native names are the book's Sequential indices; every
activation point is checked in float64 against numpy built from ``parity.reference``'s
layers, which read only the spec and the canonical weights.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity.specs import VGG, AlexNet, Residual, ResidualBlock, infer_shapes
from parity.weights import count_parameters, schema
from support import randn

torch = pytest.importorskip("torch")
from impl_torch import backend  # noqa: E402

# The book's (trainable parameters, BatchNorm running statistics) of each net.
D2L_COUNTS = {
    "lenet": (61_706, 0),
    "bnlenet": (44_878, 452),
    "alexnet": (46_764_746, 0),
    "vgg": (128_806_154, 0),
    "resnet18": (11_178_378, 7_808),
    "densenet": (758_226, 6_608),
}
# The group of each row where a group has several rows (a Sigmoid or ReLU joins its layer's group,
# a Flatten the dense layer it feeds).
ROW_GROUPS = {
    "lenet": ["conv1"] * 3 + ["conv2"] * 3 + ["fc1"] * 3 + ["fc2"] * 2 + ["fc3"],
    "bnlenet": ["conv1"] * 4 + ["conv2"] * 4 + ["fc1"] * 4 + ["fc2"] * 3 + ["fc3"],
    "alexnet": ["conv1"] * 3
    + ["conv2"] * 3
    + ["conv3"] * 2
    + ["conv4"] * 2
    + ["conv5"] * 3
    + ["fc6"] * 4
    + ["fc7"] * 3
    + ["fc8"],
    "vgg": [f"blocks.{i}" for i in range(5)] + ["fc6"] * 4 + ["fc7"] * 3 + ["fc8"],
    "residual_mnist": ["conv1", "conv1", "rblock1", "conv2", "conv2", "rblock2", "fc", "fc"],
}

# Float64 numerics: the nets that take any size at the book's size and an odd one; LeNet, BNLeNet
# and the residual MNIST net take 28x28 only; AlexNet and VGG run on smaller specs (their fc6
# follows the input size), VGG with the narrower arch the book trains.
NUMERIC_CASES = {
    "lenet": (parity.get_spec("lenet"), (3, 1, 28, 28)),
    "bnlenet": (parity.get_spec("bnlenet"), (3, 1, 28, 28)),
    "residual_mnist": (parity.get_spec("residual_mnist"), (3, 1, 28, 28)),
    "alexnet_odd": (AlexNet(input_size=(67, 75)), (2, 1, 67, 75)),
    "vgg_odd": (
        VGG(arch=((1, 16), (1, 32), (2, 64), (2, 128), (2, 128)), input_size=(67, 75)),
        (2, 1, 67, 75),
    ),
    "vgg_two_blocks": (VGG(arch=((1, 8), (2, 16)), input_size=(21, 18)), (2, 1, 21, 18)),
    "resnet18": (parity.get_spec("resnet18"), (1, 1, 96, 96)),
    "resnet18_odd": (parity.get_spec("resnet18"), (2, 1, 35, 29)),
    "densenet": (parity.get_spec("densenet"), (1, 1, 96, 96)),
    "densenet_odd": (parity.get_spec("densenet"), (2, 1, 35, 29)),
    "residual_projection": (Residual(16, 24, use_1x1conv=True, stride=2), (2, 16, 13, 10)),
    "residual_identity": (Residual(24, 24, bn_eps=1e-3, bn_momentum=0.2), (2, 24, 9, 11)),
    "residual_block": (ResidualBlock(8), (2, 8, 9, 7)),
}


def native_names(spec) -> dict[str, str]:
    return {canonical: native for canonical, native, _, _ in backend.table(spec).rows(spec)}


# --- d2l's layer summaries ---


@pytest.mark.parametrize("name", list(D2L_COUNTS))
def test_layer_summary_rows_fall_in_the_specs_groups_with_their_shapes_and_parameters(name):
    """(d2l's printed lines themselves are checked in parity/test_classic.py, test_resnet.py and
    test_densenet.py.)"""
    spec = parity.get_spec(name)
    rows = backend.layer_summary(backend.build(spec), (1, 1, *spec.input_size))
    assert list(dict.fromkeys(row.group for row in rows)) == spec.summary_groups()
    if name in ROW_GROUPS:
        assert [row.group for row in rows] == ROW_GROUPS[name]
    # Each group's last row has the shape of the group's last node in the spec's graph.
    shapes = infer_shapes(spec.graph(), (1, 1, *spec.input_size))
    last_nodes = {node.group: node.name for node in spec.graph()}
    assert {row.group: row.shape for row in rows} == {group: shapes[node] for group, node in last_nodes.items()}
    # Each group's parameters are its layers' in the canonical schema.
    expected = dict.fromkeys(spec.summary_groups(), 0)
    group_of = {node.name: node.group for node in spec.graph()}
    for param in schema(spec).values():
        expected[group_of[param.layer.path]] += int(np.prod(param.shape)) if param.trainable else 0
    found = dict.fromkeys(spec.summary_groups(), 0)
    for row in rows:
        found[row.group] += row.params
    assert found == expected
    assert (sum(row.params for row in rows), count_parameters(spec)[1]) == count_parameters(spec) == D2L_COUNTS[name]


def test_residual_mnist_summary_rows_and_groups():
    spec = parity.get_spec("residual_mnist")
    rows = backend.layer_summary(backend.build(spec), (1, 1, 28, 28))
    assert [(row.layer, row.shape) for row in rows] == [
        ("Conv2d", (1, 16, 24, 24)),
        ("Sequential", (1, 16, 12, 12)),
        ("ResidualBlock", (1, 16, 12, 12)),
        ("Conv2d", (1, 32, 8, 8)),
        ("Sequential", (1, 32, 4, 4)),
        ("ResidualBlock", (1, 32, 4, 4)),
        ("Flatten", (1, 512)),
        ("Linear", (1, 10)),
    ]
    assert [row.group for row in rows] == ROW_GROUPS["residual_mnist"]
    assert sum(row.params for row in rows) == count_parameters(spec)[0]


def test_layer_summary_of_a_residual_block_is_one_row():
    spec = NUMERIC_CASES["residual_projection"][0]
    (row,) = backend.layer_summary(backend.build(spec), (1, 16, 9, 11))
    assert row.d2l_line() == "Residual output shape:\t torch.Size([1, 24, 5, 6])"
    assert row.group == "block" and row.params == count_parameters(spec)[0]


# --- native names: the book's Sequential indices and names ---


def test_native_names_of_the_classic_nets_are_the_books_sequential_indices():
    lenet = native_names(parity.get_spec("lenet"))
    assert lenet["conv2.weight"] == "net.3.weight" and lenet["fc3.bias"] == "net.11.bias"
    bnlenet = native_names(parity.get_spec("bnlenet"))
    assert bnlenet["bn1.running_mean"] == "net.1.running_mean"
    assert bnlenet["bn3.running_var"] == "net.10.running_var" and bnlenet["fc3.weight"] == "net.15.weight"
    alexnet = native_names(AlexNet(input_size=(67, 75)))
    assert alexnet["conv5.weight"] == "net.10.weight" and alexnet["fc6.weight"] == "net.14.weight"
    assert alexnet["fc8.bias"] == "net.20.bias"
    vgg = native_names(parity.get_spec("vgg"))
    assert vgg["blocks.0.conv1.weight"] == "net.0.0.weight" and vgg["blocks.4.conv2.bias"] == "net.4.2.bias"
    assert vgg["fc6.weight"] == "net.6.weight" and vgg["fc7.weight"] == "net.9.weight"
    assert vgg["fc8.bias"] == "net.12.bias"
    # The head follows the blocks: with two blocks, the Flatten is net.2 and fc6 net.3.
    small = native_names(NUMERIC_CASES["vgg_two_blocks"][0])
    assert small["blocks.1.conv2.weight"] == "net.1.2.weight" and small["fc6.weight"] == "net.3.weight"
    assert small["fc8.weight"] == "net.9.weight"
    assert backend.table(VGG()) is backend.table(VGG())


def test_native_names_of_resnet_densenet_and_residual_net():
    resnet = native_names(parity.get_spec("resnet18"))
    assert resnet["b1.conv.weight"] == "net.0.0.weight" and resnet["b1.bn.running_var"] == "net.0.1.running_var"
    assert resnet["b2.0.conv1.weight"] == "net.b2.0.conv1.weight"
    assert resnet["b3.0.conv3.bias"] == "net.b3.0.conv3.bias" and resnet["b5.1.bn2.weight"] == "net.b5.1.bn2.weight"
    assert resnet["last.fc.weight"] == "net.last.2.weight"
    assert native_names(NUMERIC_CASES["residual_projection"][0])["conv3.weight"] == "conv3.weight"
    densenet = native_names(parity.get_spec("densenet"))
    assert densenet["b1.bn.weight"] == "net.0.1.weight"
    assert densenet["dense_blk1.0.conv.weight"] == "net.dense_blk1.net.0.2.weight"
    assert densenet["dense_blk4.3.bn.running_mean"] == "net.dense_blk4.net.3.0.running_mean"
    assert densenet["tran_blk1.bn.bias"] == "net.tran_blk1.0.bias"
    assert densenet["tran_blk3.conv.weight"] == "net.tran_blk3.2.weight"
    assert densenet["last.bn.weight"] == "net.last.0.weight" and densenet["last.fc.bias"] == "net.last.4.bias"
    residual_net = native_names(parity.get_spec("residual_mnist"))
    assert all(canonical == native for canonical, native in residual_net.items())


def test_model_classes_are_shaped_like_the_books():
    from impl_torch import DenseBlock, DenseNet, Residual, ResidualNet, ResNet18

    resnet = ResNet18()
    assert resnet.spec == parity.get_spec("resnet18")
    assert [name for name, _ in resnet.net.named_children()] == ["0", "b2", "b3", "b4", "b5", "last"]
    assert [type(block).__name__ for block in resnet.net.b3] == ["Residual", "Residual"]
    assert resnet.net.b2[0].conv3 is None and resnet.net.b3[0].conv3.stride == (2, 2)
    assert resnet.net.b3[0].conv1.stride == (2, 2) and not hasattr(resnet.net.b3[0], "bn3")
    block = Residual(in_channels=16, num_channels=24, use_1x1conv=True, strides=2)
    assert block.spec == NUMERIC_CASES["residual_projection"][0]
    densenet = DenseNet()
    assert [name for name, _ in densenet.net.named_children()] == [
        "0",
        *(f"{kind}_blk{i}" for i in (1, 2, 3) for kind in ("dense", "tran")),
        "dense_blk4",
        "last",
    ]
    assert isinstance(densenet.net.dense_blk2, DenseBlock) and len(densenet.net.dense_blk2.net) == 4
    assert [type(m).__name__ for m in densenet.net.tran_blk1] == ["BatchNorm2d", "ReLU", "Conv2d", "AvgPool2d"]
    assert densenet.net.dense_blk1.net[3][2].in_channels == 64 + 3 * 32
    net = ResidualNet()
    assert [name for name, _ in net.named_children()] == [
        "conv1",
        "pool1",
        "rblock1",
        "conv2",
        "pool2",
        "rblock2",
        "flatten",
        "fc",
    ]


def test_batchnorm_settings_come_from_the_spec():
    from impl_torch import BNLeNet

    model = BNLeNet(parity.specs.BNLeNet(bn_eps=1e-3, bn_momentum=0.01))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert [type(m).__name__ for m in norms] == ["BatchNorm2d"] * 2 + ["BatchNorm1d"] * 2
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in norms)


# --- numerics ---


def test_densenet_concatenations_are_the_books_torch_cat():
    """The concatenation points that no module outputs are the DenseBlock's own concatenations: the
    last one of each block is the block's output, bit for bit."""
    spec = parity.get_spec("densenet")
    model = backend.build(spec, dtype="float64")
    x = randn((2, 1, 45, 39), "float64")
    acts = backend.activations(model, x)
    captured = {}
    handle = model.net.dense_blk2.register_forward_hook(lambda module, inputs, output: captured.update(out=output))
    try:
        backend.forward(model, x)
    finally:
        handle.remove()
    assert np.array_equal(acts["dense_blk2.3"], captured["out"].numpy())
    assert np.array_equal(acts["dense_blk2.0"], np.concatenate([acts["tran_blk1"], acts["dense_blk2.0.conv"]], 1))
