"""JAX/Flax (linen) implementation of the parity suite's models; ``impl_jax.backend`` is its adapter.

Importing ``impl_jax.anynet`` (which this package and the backend do) turns on
JAX's 64-bit mode for the whole process; see that module's docstring.
"""

from impl_jax.anynet import AnyNet, RegNetX32, ResNeXtBlock
from impl_jax.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, vgg_block
from impl_jax.densenet import ConvBlock, DenseBlock, DenseNet, transition_block
from impl_jax.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_jax.resnet import Residual, ResidualBlock, ResidualNet, ResNet, ResNet18

__all__ = [
    "VGG",
    "AlexNet",
    "AnyNet",
    "BNLeNet",
    "ConvBlock",
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
    "transition_block",
    "vgg_block",
]
