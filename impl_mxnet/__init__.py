"""d2l's ResNeXt block, AnyNet and RegNetX32, Inception block and GoogLeNet, LeNet, BNLeNet, AlexNet,
VGG, NiN, Residual block and ResNet, DenseNet, and the tutorials' InceptionA and residual MNIST nets,
in MXNet Gluon; ``impl_mxnet.backend`` is the parity suite's adapter for them."""

import numpy

# MXNet 1.9.1 reads numpy.bool, an alias that NumPy 1.24 removed: restore it before mxnet is imported.
if "bool" not in vars(numpy):
    numpy.bool = numpy.bool_

from impl_mxnet.anynet import AnyNet, RegNetX32, ResNeXtBlock  # noqa: E402
from impl_mxnet.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, nin_block, vgg_block  # noqa: E402
from impl_mxnet.densenet import DenseBlock, DenseNet, conv_block, transition_block  # noqa: E402
from impl_mxnet.inception import GoogLeNet, Inception, InceptionA, InceptionNet  # noqa: E402
from impl_mxnet.resnet import Residual, ResidualBlock, ResidualNet, ResNet, ResNet18  # noqa: E402

__all__ = [
    "VGG",
    "AlexNet",
    "AnyNet",
    "BNLeNet",
    "DenseBlock",
    "DenseNet",
    "GoogLeNet",
    "Inception",
    "InceptionA",
    "InceptionNet",
    "LeNet",
    "NiN",
    "RegNetX32",
    "ResNeXtBlock",
    "ResNet",
    "ResNet18",
    "Residual",
    "ResidualBlock",
    "ResidualNet",
    "conv_block",
    "nin_block",
    "transition_block",
    "vgg_block",
]
