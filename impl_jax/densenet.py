"""d2l's DenseNet in Flax linen (NHWC), built from a parity spec.

Read side by side with d2l-en ``chapter_convolutional-modern/densenet.md`` (its JAX tab): the
same ``ConvBlock`` (BN, ReLU, 3x3 conv, its output concatenated after its input on the channel
axis), ``DenseBlock``, transition block and ``net``. Unlike the book, the blocks are named as
PyTorch's tab names them (``net/dense_blk{i}``, ``net/tran_blk{i}``, ``net/last``) and their
layers as the spec does (``net/dense_blk1/block0/bn``, ``.../conv``), the BatchNorm epsilon and
momentum come from the spec, the padding is explicit and symmetric (the ``same_padding``
pitfall builds the book's ``'same'``, a naive port), each transition halves the channels of the
dense block before it (the book's ``create_net`` counts them from 64 each time: the
``d2l_densenet_channels`` pitfall), the pools are named modules, and every layer computes in ``dtype``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from impl_jax.anynet import AvgPool2D, GlobalAvgPool2D, MaxPool2D, Sequential, batch_norm, conv2d, dense, padding
from parity import specs

Dtype = Any


class ConvBlock(nn.Module, kw_only=True):
    """d2l's conv block of a dense block: BN -> ReLU -> 3x3 conv of ``num_channels``, whose output is
    concatenated after the input, as the book's JAX and TensorFlow ``ConvBlock`` do (its PyTorch
    and MXNet ``conv_block`` leaves the concatenation to ``DenseBlock``).

    ``pitfalls``: ``same_padding`` pads the conv with Flax's ``'SAME'``, as d2l's TensorFlow code does (its
    JAX code pads (1, 1)); at stride 1 that is the same symmetric padding.
    """

    num_channels: int
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.bn = batch_norm(training=self.training, momentum=self.bn_momentum, epsilon=self.bn_eps, dtype=self.dtype)
        pad = padding(1, "same_padding" in self.pitfalls)
        self.conv = conv2d(self.num_channels, 3, padding=pad, use_bias=True, dtype=self.dtype)

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        Y = self.conv(nn.relu(self.bn(X)))
        return jnp.concatenate((X, Y), axis=-1)


class DenseBlock(nn.Module, kw_only=True):
    """``num_convs`` conv blocks ``block0``, ...: each adds ``num_channels`` (the growth rate) channels."""

    preserve_adopted_names = True  # its blocks keep the names they are created with

    num_convs: int
    num_channels: int
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        block = functools.partial(
            ConvBlock,
            num_channels=self.num_channels,
            bn_eps=self.bn_eps,
            bn_momentum=self.bn_momentum,
            pitfalls=self.pitfalls,
            training=self.training,
            dtype=self.dtype,
            parent=None,
        )
        self.blocks = [block(name=f"block{j}") for j in range(self.num_convs)]

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        for blk in self.blocks:
            X = blk(X)
        return X


def transition_block(
    num_channels: int, *, training: bool, bn_eps: float, bn_momentum: float, dtype: Dtype, name: str
) -> Sequential:
    """BN -> ReLU -> 1x1 conv to ``num_channels`` -> 2x2 stride-2 average pool: halves the height and width."""
    return Sequential(
        [
            batch_norm(training=training, momentum=bn_momentum, epsilon=bn_eps, dtype=dtype, name="bn"),
            nn.relu,
            conv2d(num_channels, 1, use_bias=True, dtype=dtype, name="conv"),
            AvgPool2D(window=2, strides=2, parent=None, name="pool"),
        ],
        parent=None,
        name=name,
    )


class DenseNet(nn.Module):
    """d2l's DenseNet: ``net`` = Sequential(b1, dense_blk1, tran_blk1, ..., dense_blk4, last).

    ``pitfalls``: ``same_padding`` puts Flax's ``'SAME'`` in every padded conv and pool (it differs from
    the symmetric padding in b1's stride-2 conv and max-pool only); ``d2l_densenet_channels`` counts
    each dense block's output channels from ``spec.num_channels``, as d2l's JAX ``create_net`` does,
    so every transition outputs 96 channels in the book's net (the spec: 96, 112, 120). The book's
    JAX tab has both.
    """

    spec: specs.DenseNet = dataclasses.field(default_factory=specs.DenseNet)
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        spec = self.spec
        layers = [self.b1()]  # N x 24 x 24 x 64 for a (1, 96, 96, 1) input
        num_channels = spec.num_channels
        for i, num_convs in enumerate(spec.arch, start=1):
            layers.append(
                DenseBlock(
                    num_convs=num_convs,
                    num_channels=spec.growth_rate,
                    bn_eps=spec.bn_eps,
                    bn_momentum=spec.bn_momentum,
                    pitfalls=self.pitfalls,
                    training=self.training,
                    dtype=self.dtype,
                    parent=None,
                    name=f"dense_blk{i}",
                )
            )
            # The number of output channels in the previous dense block (d2l's JAX tab starts from
            # spec.num_channels every time)
            if "d2l_densenet_channels" in self.pitfalls:
                num_channels = spec.num_channels
            num_channels += num_convs * spec.growth_rate
            # A transition layer that halves the number of channels is added between the dense blocks
            if i < len(spec.arch):
                num_channels //= 2
                layers.append(transition_block(num_channels, name=f"tran_blk{i}", **self.bn_options()))
        self.net = Sequential([*layers, self.last()])

    def bn_options(self) -> dict[str, Any]:
        spec = self.spec
        return {"training": self.training, "bn_eps": spec.bn_eps, "bn_momentum": spec.bn_momentum, "dtype": self.dtype}

    def norm(self) -> nn.BatchNorm:
        spec = self.spec
        return batch_norm(
            training=self.training, momentum=spec.bn_momentum, epsilon=spec.bn_eps, dtype=self.dtype, name="bn"
        )

    def b1(self) -> Sequential:
        """7x7 conv (stride 2), BN, ReLU, 3x3 stride-2 max-pool, both padded (as ResNet's)."""
        pad = functools.partial(padding, same="same_padding" in self.pitfalls)
        conv = conv2d(
            self.spec.num_channels, 7, strides=2, padding=pad(3), use_bias=True, dtype=self.dtype, name="conv"
        )
        pool = MaxPool2D(window=3, strides=2, padding=pad(1), parent=None, name="pool")
        return Sequential([conv, self.norm(), nn.relu, pool], parent=None, name="b1")

    def last(self) -> Sequential:
        """BN, ReLU, global average pool, dense."""
        pool = GlobalAvgPool2D(parent=None, name="pool")
        fc = dense(self.spec.num_classes, dtype=self.dtype, name="fc")
        return Sequential([self.norm(), nn.relu, pool, fc], parent=None, name="last")

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)
