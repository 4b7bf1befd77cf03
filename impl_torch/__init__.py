"""PyTorch implementation of the parity suite's models; ``impl_torch.backend`` is its adapter."""

from impl_torch.anynet import AnyNet, RegNetX32, ResNeXtBlock
from impl_torch.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, nin_block, vgg_block
from impl_torch.densenet import DenseBlock, DenseNet, conv_block, transition_block
from impl_torch.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_torch.resnet import Residual, ResidualBlock, ResidualNet, ResNet, ResNet18

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
