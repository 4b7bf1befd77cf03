"""Unit tests of the Gluon Residual block, ResNet-18, and the tutorials' ResidualBlock and residual
MNIST net: d2l's layer summary, the native names, and the activation points, checked in float64
against ``parity.reference``'s numpy layers."""

from __future__ import annotations

import pytest

import parity
from parity import specs
from parity.weights import count_parameters

pytest.importorskip("impl_mxnet.backend")

from impl_mxnet import ResNet, ResNet18, backend  # noqa: E402

RESNET18 = parity.get_spec("resnet18")
RESIDUAL_NET = parity.get_spec("residual_mnist")
# d2l's rows for a (1, 1, 96, 96) input, with Gluon's class names: b1 and each stage are Sequentials,
# and the head is a global pool and a Dense, as in the book's MXNet tab.
RESNET18_SUMMARY = [
    ("Sequential", (1, 64, 24, 24), "b1", 3_328),
    ("Sequential", (1, 64, 24, 24), "b2", 148_224),
    ("Sequential", (1, 128, 12, 12), "b3", 525_952),
    ("Sequential", (1, 256, 6, 6), "b4", 2_100_480),
    ("Sequential", (1, 512, 3, 3), "b5", 8_395_264),
    ("GlobalAvgPool2D", (1, 512, 1, 1), "last", 0),
    ("Dense", (1, 10), "last", 5_130),
]
# The tutorials' net for a (1, 1, 28, 28) input: each conv, its max-pool and ReLU are one Sequential.
RESIDUAL_NET_SUMMARY = [
    ("Sequential", (1, 16, 12, 12), "conv1", 416),
    ("ResidualBlock", (1, 16, 12, 12), "rblock1", 4_640),
    ("Sequential", (1, 32, 4, 4), "conv2", 12_832),
    ("ResidualBlock", (1, 32, 4, 4), "rblock2", 18_496),
    ("Dense", (1, 10), "fc", 5_130),
]


@pytest.mark.parametrize(
    "spec, expected, parameters",
    [(RESNET18, RESNET18_SUMMARY, 11_178_378), (RESIDUAL_NET, RESIDUAL_NET_SUMMARY, 41_514)],
    ids=["resnet18", "residual_mnist"],
)
def test_summary_has_the_books_shapes_the_specs_groups_and_its_parameter_count(spec, expected, parameters):
    rows = backend.layer_summary(backend.build(spec), (1, 1, *spec.input_size))
    assert [(row.layer, row.shape, row.group, row.params) for row in rows] == expected
    assert list(dict.fromkeys(row.group for row in rows)) == spec.summary_groups()
    assert sum(row.params for row in rows) == count_parameters(spec)[0] == parameters


def test_native_names_are_stage_b_i_block_j():
    rows = {canonical: native for canonical, native, _, _ in backend.table(RESNET18).rows(RESNET18)}
    assert rows["b1.conv.weight"] == "b1_conv_weight" and rows["b1.bn.weight"] == "b1_bn_gamma"
    assert rows["b2.0.conv1.weight"] == "b2_block0_conv1_weight"
    assert rows["b3.0.conv3.weight"] == "b3_block0_conv3_weight"
    assert rows["b5.1.bn2.running_var"] == "b5_block1_bn2_running_var"
    assert rows["last.fc.bias"] == "last_fc_bias"
    rows = {canonical: native for canonical, native, _, _ in backend.table(RESIDUAL_NET).rows(RESIDUAL_NET)}
    assert rows["rblock2.conv1.weight"] == "rblock2_conv1_weight" and rows["fc.weight"] == "fc_weight"
    model = ResNet(RESNET18, prefix="")
    assert [layer.name for layer in model.net] == ["b1", "b2", "b3", "b4", "b5", "last_pool", "last_fc"]
    assert [block.name for block in model.net[2]] == ["b3_block0", "b3_block1"]
    # only the first block of b3 .. b5 projects: a strided 1x1 conv3, without BatchNorm
    assert [block.conv3 is not None for stage in model.net[1:5] for block in stage] == [False] * 2 + [True, False] * 3


def test_resnet18_is_the_resnet_of_the_spec():
    net = ResNet18(num_classes=7, prefix="")
    assert net.spec == specs.ResNet(num_classes=7)
    net.initialize()
    expected = {native: shape for _, native, shape, _ in backend.table(net.spec).rows(net.spec)}
    assert {key: param.data().shape for key, param in net.collect_params().items()} == expected


# ResNet-18 at an odd, non-square size (it takes any size from 17x17); the residual MNIST net at its
# one size, 28x28; both blocks standalone.
