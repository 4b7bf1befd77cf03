"""d2l's Inception block and GoogLeNet, and the tutorials' InceptionA MNIST net, in Flax linen (NHWC).

Read ``Inception`` and ``GoogLeNet`` side by side with d2l-en
``chapter_convolutional-modern/googlenet.md`` (its JAX tab; the branches are the
book's ``p1_1`` ... ``p4_2``), and ``InceptionA`` and ``InceptionNet`` with the PyTorch
tutorials' ``InceptionA``/``Net``. Unlike the book, every padding is explicit and
symmetric (Flax's ``'same'`` pads only bottom/right at stride 2; the ``same_padding``
pitfall builds the book's ``'same'``, a naive port), pools are named modules so that
their outputs can be inspected, and every layer computes in ``dtype``. Branches are
concatenated on the channel axis, the last one in NHWC.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterable
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from impl_jax.anynet import AvgPool2D, Flatten, GlobalAvgPool2D, MaxPool2D, Sequential, conv2d, dense, padding
from parity import specs

Dtype = Any


def concat_channels(branches: Iterable[jnp.ndarray]) -> jnp.ndarray:
    return jnp.concatenate(list(branches), axis=-1)


class Inception(nn.Module, kw_only=True):
    """d2l's Inception block: four paths, each conv followed by ReLU, concatenated on channels.

    ``c1`` -- ``c4`` are the output channels of each path; the input channels are
    those of the input it is initialised with. ``pitfalls``: ``same_padding`` puts Flax's
    ``'SAME'`` in every padded conv and pool (at stride 1 it pads symmetrically).
    """

    c1: int
    c2: tuple[int, int]
    c3: tuple[int, int]
    c4: int
    conv_bias: bool = True
    pitfalls: frozenset[str] = frozenset()
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, block: specs.Inception, **kwargs: Any) -> Inception:
        """The block ``block`` describes; ``kwargs``: pitfalls, dtype, name, parent."""
        return cls(c1=block.c1, c2=block.c2, c3=block.c3, c4=block.c4, conv_bias=block.conv_bias, **kwargs)

    def setup(self) -> None:
        conv = functools.partial(conv2d, use_bias=self.conv_bias, dtype=self.dtype)
        pad = functools.partial(padding, same="same_padding" in self.pitfalls)
        # Path 1 is a single 1 x 1 convolutional layer
        self.p1_1 = conv(self.c1, 1)
        # Path 2 is a 1 x 1 convolutional layer followed by a 3 x 3 convolutional layer
        self.p2_1 = conv(self.c2[0], 1)
        self.p2_2 = conv(self.c2[1], 3, padding=pad(1))
        # Path 3 is a 1 x 1 convolutional layer followed by a 5 x 5 convolutional layer
        self.p3_1 = conv(self.c3[0], 1)
        self.p3_2 = conv(self.c3[1], 5, padding=pad(2))
        # Path 4 is a 3 x 3 maximum pooling layer followed by a 1 x 1 convolutional layer
        self.p4_1 = MaxPool2D(window=3, strides=1, padding=pad(1))
        self.p4_2 = conv(self.c4, 1)

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        p1 = nn.relu(self.p1_1(X))
        p2 = nn.relu(self.p2_2(nn.relu(self.p2_1(X))))
        p3 = nn.relu(self.p3_2(nn.relu(self.p3_1(X))))
        p4 = nn.relu(self.p4_2(self.p4_1(X)))
        return concat_channels((p1, p2, p3, p4))


class GoogLeNet(nn.Module):
    """d2l's GoogLeNet: ``net`` = Sequential(b1, b2, b3, b4, b5, head), ``head`` the Dense layer
    itself as in the book (the book's Flax name is its index; here ``head``, as PyTorch's).

    ``pitfalls``: ``same_padding`` puts Flax's ``'SAME'`` in every padded conv and pool.
    """

    spec: specs.GoogLeNet = dataclasses.field(default_factory=specs.GoogLeNet)
    pitfalls: frozenset[str] = frozenset()
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        stages = itertools.groupby(self.spec.inceptions(), key=lambda path_block: path_block[0].split(".")[0])
        blocks = {stage: [block for _, block in path_blocks] for stage, path_blocks in stages}
        # Output shapes for a (1, 96, 96, 1) input, as d2l prints them.
        self.net = Sequential(
            [
                self.b1(),  # N x 24 x 24 x 64
                self.b2(),  # N x 12 x 12 x 192
                self.b3(blocks["b3"]),  # N x 6 x 6 x 480
                self.b4(blocks["b4"]),  # N x 3 x 3 x 832
                self.b5(blocks["b5"]),  # N x 1024
                dense(self.spec.num_classes, dtype=self.dtype, name="head"),  # N x num_classes
            ]
        )

    def conv(self, features: int, kernel_size: int, name: str, *, padding: int = 0, **kwargs: Any) -> nn.Conv:
        """A convolution with the spec's bias, in the model's dtype, padded as the model pads."""
        return conv2d(
            features,
            kernel_size,
            padding=self.pad(padding),
            use_bias=self.spec.conv_bias,
            dtype=self.dtype,
            name=name,
            **kwargs,
        )

    def pad(self, amount: int) -> int | str:
        return padding(amount, "same_padding" in self.pitfalls)

    def pool(self) -> MaxPool2D:
        """The downsampling between stages: 3x3, stride 2, padding 1."""
        return MaxPool2D(window=3, strides=2, padding=self.pad(1), parent=None, name="pool")

    def inceptions(self, blocks: Iterable[specs.Inception]) -> list[Inception]:
        block = functools.partial(Inception.from_spec, pitfalls=self.pitfalls, dtype=self.dtype, parent=None)
        return [block(spec, name=f"inception{k}") for k, spec in enumerate(blocks)]

    def b1(self) -> Sequential:
        return Sequential(
            [self.conv(64, 7, "conv", strides=2, padding=3), nn.relu, self.pool()], parent=None, name="b1"
        )

    def b2(self) -> Sequential:
        layers = [self.conv(64, 1, "conv1"), nn.relu, self.conv(192, 3, "conv2", padding=1), nn.relu, self.pool()]
        return Sequential(layers, parent=None, name="b2")

    def b3(self, blocks: Iterable[specs.Inception]) -> Sequential:
        return Sequential([*self.inceptions(blocks), self.pool()], parent=None, name="b3")

    def b4(self, blocks: Iterable[specs.Inception]) -> Sequential:
        return Sequential([*self.inceptions(blocks), self.pool()], parent=None, name="b4")

    def b5(self, blocks: Iterable[specs.Inception]) -> Sequential:
        return Sequential([*self.inceptions(blocks), GlobalAvgPool2D(parent=None, name="pool")], parent=None, name="b5")

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


class InceptionA(nn.Module):
    """The tutorials' InceptionA block: four branches without ReLUs, concatenated on channels in the
    order 1x1 (16), 5x5 (24), 3x3 (24), pool (24): 88 channels."""

    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, block: specs.InceptionA, **kwargs: Any) -> InceptionA:
        """The block ``block`` describes (it has no options); ``kwargs``: dtype, name, parent."""
        return cls(**kwargs)

    def setup(self) -> None:
        conv = functools.partial(conv2d, use_bias=True, dtype=self.dtype)
        self.branch1x1 = conv(16, 1)

        self.branch5x5_1 = conv(16, 1)
        self.branch5x5_2 = conv(24, 5, padding=2)

        self.branch3x3_1 = conv(16, 1)
        self.branch3x3_2 = conv(24, 3, padding=1)
        self.branch3x3_3 = conv(24, 3, padding=1)

        self.branch_pool_avg = AvgPool2D(window=3, strides=1, padding=1)
        self.branch_pool = conv(24, 1)

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        branch1x1 = self.branch1x1(X)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(X))
        branch3x3 = self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(X)))
        branch_pool = self.branch_pool(self.branch_pool_avg(X))
        return concat_channels((branch1x1, branch5x5, branch3x3, branch_pool))


def max_pool_relu() -> Sequential:
    """The tutorial's ``F.relu(self.mp(...))`` after each conv, with ``mp`` a 2x2 max-pool."""
    return Sequential([MaxPool2D(window=2, strides=2, parent=None, name="mp"), nn.relu])


class InceptionNet(nn.Module):
    """The tutorials' MNIST net around InceptionA, for 1x28x28 inputs:
    conv1 -> max-pool -> ReLU -> incep1 -> conv2 -> max-pool -> ReLU -> incep2 -> flatten -> fc."""

    num_classes: int = 10
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, net: specs.InceptionNet, **kwargs: Any) -> InceptionNet:
        """The net ``net`` describes; ``kwargs``: dtype, name, parent."""
        return cls(num_classes=net.num_classes, **kwargs)

    def setup(self) -> None:
        conv = functools.partial(conv2d, use_bias=True, dtype=self.dtype)
        self.conv1 = conv(10, 5)
        self.pool1 = max_pool_relu()
        self.incep1 = InceptionA(dtype=self.dtype)
        self.conv2 = conv(20, 5)
        self.pool2 = max_pool_relu()
        self.incep2 = InceptionA(dtype=self.dtype)
        self.flatten = Flatten()
        self.fc = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.dtype)

    def layers(self) -> list[nn.Module]:
        """The top-level layers in execution order: ``__call__`` runs them, and so does the layer summary."""
        return [self.conv1, self.pool1, self.incep1, self.conv2, self.pool2, self.incep2, self.flatten, self.fc]

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        for layer in self.layers():
            X = layer(X)
        return X
