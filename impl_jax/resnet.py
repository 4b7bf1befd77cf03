"""d2l's Residual block and ResNet (ResNet-18), and the PyTorch tutorials' residual MNIST net,
in Flax linen (NHWC), built from parity specs.

Read ``Residual``, ``ResNet`` and ``ResNet18`` side by side with d2l-en
``chapter_convolutional-modern/resnet.md`` (its JAX tab): the same block, ``b1``, ``block`` and
``net``, with the stages named as PyTorch's tab names them (``net/b2`` ... ``net/b5``), their
blocks ``block{j}`` and the classifier ``net/last/pool``, ``net/last/fc``. Unlike the book, the
BatchNorm epsilon and momentum come from the spec, the padding is explicit and symmetric (the
``same_padding`` pitfall builds the book's ``'same'``, a naive port), the max-pool is a named
module, and every layer computes in ``dtype``. ``ResidualBlock`` and ``ResidualNet`` are read
beside the tutorial's ``ResidualBlock`` and ``Net``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from impl_jax.anynet import Flatten, GlobalAvgPool2D, MaxPool2D, Sequential, batch_norm, conv2d, dense, padding
from impl_jax.inception import max_pool_relu
from parity import specs

Dtype = Any


class Residual(nn.Module, kw_only=True):
    """d2l's Residual block: 3x3 conv (strides) -> BN -> ReLU -> 3x3 conv -> BN, plus the input
    (through ``conv3``, a strided 1x1 conv without BatchNorm, where ``use_1x1conv``), then ReLU.

    ``pitfalls``: ``same_padding`` pads the 3x3 convs with Flax's ``'SAME'`` as d2l's JAX code does.
    """

    num_channels: int
    use_1x1conv: bool = False
    strides: int = 1
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, block: specs.Residual, **kwargs: Any) -> Residual:
        """The block ``block`` describes; ``kwargs``: pitfalls, training, dtype, name, parent.

        Its input channels are those of the input it is initialised with.
        """
        return cls(
            num_channels=block.num_channels,
            use_1x1conv=block.use_1x1conv,
            strides=block.stride,
            bn_eps=block.bn_eps,
            bn_momentum=block.bn_momentum,
            **kwargs,
        )

    def setup(self) -> None:
        conv = functools.partial(conv2d, self.num_channels, use_bias=True, dtype=self.dtype)
        norm = functools.partial(
            batch_norm, training=self.training, momentum=self.bn_momentum, epsilon=self.bn_eps, dtype=self.dtype
        )
        pad = padding(1, "same_padding" in self.pitfalls)
        self.conv1 = conv(3, strides=self.strides, padding=pad)
        self.conv2 = conv(3, padding=pad)
        self.conv3 = conv(1, strides=self.strides) if self.use_1x1conv else None
        self.bn1, self.bn2 = norm(), norm()

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        Y = nn.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return nn.relu(Y + X)


class ResNet(nn.Module):
    """d2l's ResNet: ``net`` = Sequential(b1, b2, ..., last); stage ``b{i+2}`` holds the Residual
    blocks ``block0``, ... of ``spec.arch[i]``, and ``last`` the global average pool and the dense layer.

    ``pitfalls``: ``same_padding`` puts Flax's ``'SAME'`` in every padded conv and pool.
    """

    spec: specs.ResNet = dataclasses.field(default_factory=specs.ResNet)
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        stages: dict[str, list[specs.Residual]] = {}
        for path, block in self.spec.blocks():
            stages.setdefault(path.split(".")[0], []).append(block)
        # Output shapes for a (1, 96, 96, 1) input, as d2l prints them.
        self.net = Sequential(
            [
                self.b1(),  # N x 24 x 24 x 64
                *(self.block(name, blocks) for name, blocks in stages.items()),  # ... N x 3 x 3 x 512
                self.last(),  # N x num_classes
            ]
        )

    def norm(self, name: str) -> nn.BatchNorm:
        return batch_norm(
            training=self.training,
            momentum=self.spec.bn_momentum,
            epsilon=self.spec.bn_eps,
            dtype=self.dtype,
            name=name,
        )

    def b1(self) -> Sequential:
        """7x7 conv (64, stride 2), BN, ReLU, 3x3 stride-2 max-pool, both padded."""
        pad = functools.partial(padding, same="same_padding" in self.pitfalls)
        conv = conv2d(64, 7, strides=2, padding=pad(3), use_bias=True, dtype=self.dtype, name="conv")
        pool = MaxPool2D(window=3, strides=2, padding=pad(1), parent=None, name="pool")
        return Sequential([conv, self.norm("bn"), nn.relu, pool], parent=None, name="b1")

    def block(self, name: str, blocks: Iterable[specs.Residual]) -> Sequential:
        """A stage of Residual blocks (its first projects and strides by 2, except in b2)."""
        residual = functools.partial(
            Residual.from_spec, pitfalls=self.pitfalls, training=self.training, dtype=self.dtype, parent=None
        )
        return Sequential([residual(spec, name=f"block{j}") for j, spec in enumerate(blocks)], parent=None, name=name)

    def last(self) -> Sequential:
        pool = GlobalAvgPool2D(parent=None, name="pool")
        return Sequential([pool, dense(self.spec.num_classes, dtype=self.dtype, name="fc")], parent=None, name="last")

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


class ResNet18(ResNet):
    """d2l's ResNet18: stages ((2, 64), (2, 128), (2, 256), (2, 512))."""

    spec: specs.ResNet | None = None  # d2l's ResNet-18 with ``num_classes``, set from it
    num_classes: int = 10

    def __post_init__(self) -> None:
        self.spec = specs.ResNet(num_classes=self.num_classes)
        super().__post_init__()


class ResidualBlock(nn.Module):
    """The tutorials' ResidualBlock: ``relu(X + conv2(relu(conv1(X))))``, two 3x3 convs padded by 1
    that keep the ``channels``."""

    channels: int
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, block: specs.ResidualBlock, **kwargs: Any) -> ResidualBlock:
        """The block ``block`` describes; ``kwargs``: dtype, name, parent."""
        return cls(block.channels, **kwargs)

    def setup(self) -> None:
        self.conv1 = conv2d(self.channels, 3, padding=1, use_bias=True, dtype=self.dtype)
        self.conv2 = conv2d(self.channels, 3, padding=1, use_bias=True, dtype=self.dtype)

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        Y = nn.relu(self.conv1(X))
        Y = self.conv2(Y)
        return nn.relu(X + Y)


class ResidualNet(nn.Module):
    """The tutorials' residual MNIST net, for 28x28x1 inputs: conv1 -> max-pool -> ReLU -> rblock1
    -> conv2 -> max-pool -> ReLU -> rblock2 -> flatten (4 x 4 x 32) -> fc."""

    num_classes: int = 10
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, net: specs.ResidualNet, **kwargs: Any) -> ResidualNet:
        """The net ``net`` describes; ``kwargs``: dtype, name, parent."""
        return cls(num_classes=net.num_classes, **kwargs)

    def setup(self) -> None:
        conv = functools.partial(conv2d, use_bias=True, dtype=self.dtype)
        self.conv1 = conv(16, 5)
        self.pool1 = max_pool_relu()
        self.rblock1 = ResidualBlock(16, dtype=self.dtype)
        self.conv2 = conv(32, 5)
        self.pool2 = max_pool_relu()
        self.rblock2 = ResidualBlock(32, dtype=self.dtype)
        self.flatten = Flatten()
        self.fc = dense(self.num_classes, dtype=self.dtype)

    def layers(self) -> list[nn.Module]:
        """The top-level layers in execution order: ``__call__`` runs them, and so does the layer summary."""
        return [self.conv1, self.pool1, self.rblock1, self.conv2, self.pool2, self.rblock2, self.flatten, self.fc]

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        for layer in self.layers():
            X = layer(X)
        return X


class TorchvisionBlock(nn.Module, kw_only=True):
    """torchvision's BasicBlock (3x3 (strides) -> 3x3) or, with ``bottleneck``, Bottleneck (1x1 -> 3x3
    (strides) -> 1x1 to 4x ``width``), each conv without bias and with BatchNorm, plus the input (through
    ``downsample_conv`` and ``downsample_bn`` with ``downsample``), then ReLU."""

    width: int
    strides: int = 1
    bottleneck: bool = False
    downsample: bool = False
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        conv = functools.partial(conv2d, use_bias=False, dtype=self.dtype)
        norm = functools.partial(
            batch_norm,
            training=self.training,
            momentum=specs.torchvision_nets.BN_MOMENTUM,
            epsilon=specs.torchvision_nets.BN_EPS,
            dtype=self.dtype,
        )
        out = self.width * (4 if self.bottleneck else 1)
        if self.bottleneck:
            self.conv1 = conv(self.width, 1)
            self.conv2 = conv(self.width, 3, strides=self.strides, padding=1)
            self.conv3 = conv(out, 1)
            self.bn3 = norm()
        else:
            self.conv1 = conv(self.width, 3, strides=self.strides, padding=1)
            self.conv2 = conv(self.width, 3, padding=1)
        self.bn1, self.bn2 = norm(), norm()
        if self.downsample:
            self.downsample_conv = conv(out, 1, strides=self.strides)
            self.downsample_bn = norm()

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        identity = self.downsample_bn(self.downsample_conv(X)) if self.downsample else X
        Y = nn.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.bottleneck:
            Y = self.bn3(self.conv3(nn.relu(Y)))
        return nn.relu(Y + identity)


class TorchvisionResNet(nn.Module):
    """torchvision's ResNet in Flax: conv1, bn1, maxpool, stages ``layer1`` ... ``layer4`` of blocks
    ``block{j}`` (``spec.blocks()``: widths and strides), avgpool, fc; the names are torchvision's."""

    spec: specs.TorchvisionResNet = dataclasses.field(default_factory=specs.TorchvisionResNet)
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        spec = self.spec
        self.conv1 = conv2d(64, 7, strides=2, padding=3, use_bias=False, dtype=self.dtype)  # N x 112 x 112 x 64
        self.bn1 = batch_norm(
            training=self.training,
            momentum=specs.torchvision_nets.BN_MOMENTUM,
            epsilon=specs.torchvision_nets.BN_EPS,
            dtype=self.dtype,
        )
        self.maxpool = MaxPool2D(window=3, strides=2, padding=1, parent=None)  # N x 56 x 56 x 64
        stages: dict[str, list[TorchvisionBlock]] = {}
        for path, in_channels, width, strides in spec.blocks():
            stage, j = path.split(".")
            block = TorchvisionBlock(
                width=width,
                strides=strides,
                bottleneck=spec.bottleneck,
                downsample=strides != 1 or in_channels != width * spec.expansion,
                training=self.training,
                dtype=self.dtype,
                parent=None,
                name=f"block{j}",
            )
            stages.setdefault(stage, []).append(block)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            Sequential(blocks, parent=None) for blocks in stages.values()
        )  # ... N x 7 x 7 x 512 * expansion
        self.avgpool = GlobalAvgPool2D(parent=None)
        self.fc = dense(spec.num_classes, dtype=self.dtype)

    def layers(self) -> list[nn.Module]:
        """The top-level layers in execution order: ``__call__`` runs them, and so does the layer summary."""
        stem = [self.conv1, self.bn1, nn.relu, self.maxpool]
        return [*stem, self.layer1, self.layer2, self.layer3, self.layer4, self.avgpool, self.fc]

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        for layer in self.layers():
            X = layer(X)
        return X
