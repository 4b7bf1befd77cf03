"""d2l's Inception block and GoogLeNet, and the tutorials' InceptionA MNIST net, in Flax linen (NHWC).

Read ``Inception`` and ``GoogLeNet`` side by side with d2l-en
``chapter_convolutional-modern/googlenet.md`` (its JAX tab), and ``InceptionA`` and
``InceptionNet`` with the PyTorch tutorials' ``InceptionA``/``Net``. Unlike the book,
every padding is explicit and symmetric (Flax's ``'same'`` pads only bottom/right
at stride 2; ``same_padding=True`` builds the book's ``'same'``, a naive port), pools are named modules so that their outputs can be inspected, and
every layer computes in ``dtype``. Branches are concatenated on the channel axis,
the last one in NHWC.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable

import jax.numpy as jnp
from flax import linen as nn

from impl_jax.models import GlobalAvgPool2D, Padding, Sequential, conv, flax_padding, padding
from parity import specs

Dtype = Any


class MaxPool2D(nn.Module):
    """A square max-pool, padded with ``padding`` cells on every side (or Flax's ``'SAME'``).

    Flax pads a max-pool with -inf, so a padded cell never wins a max, as in PyTorch.
    """

    window: int
    strides: int
    padding: Padding = 0

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        window, strides = (self.window, self.window), (self.strides, self.strides)
        return nn.max_pool(x, window, strides=strides, padding=flax_padding(self.padding))


class AvgPool2D(nn.Module):
    """A square average pool, padded with ``padding`` zeros on every side that count in the mean
    (PyTorch's ``count_include_pad=True``): a corner of a 3x3 pool with padding 1 averages 4 cells over 9."""

    window: int
    strides: int
    padding: int = 0

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        p = self.padding
        window, strides = (self.window, self.window), (self.strides, self.strides)
        return nn.avg_pool(x, window, strides=strides, padding=((p, p), (p, p)), count_include_pad=True)


class Flatten(nn.Module):
    """(N, H, W, C) -> (N, H * W * C): NHWC flattens in H-W-C order (the hub permutes the next dense weight)."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return x.reshape((x.shape[0], -1))


def concat_channels(branches: Iterable[jnp.ndarray]) -> jnp.ndarray:
    return jnp.concatenate(list(branches), axis=-1)


class Inception(nn.Module, kw_only=True):
    """d2l's Inception block: four branches, each conv followed by ReLU, concatenated on channels.

    ``c1`` -- ``c4`` are the output channels of each branch; the input channels are
    those of the input it is initialised with. ``same_padding``: Flax's ``'SAME'`` in
    every padded conv and pool (the ``same_padding`` variant; at stride 1 it pads symmetrically).
    """

    c1: int
    c2: tuple[int, int]
    c3: tuple[int, int]
    c4: int
    conv_bias: bool = True
    same_padding: bool = False
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, block: specs.Inception, **kwargs: Any) -> Inception:
        """The block ``block`` describes; ``kwargs``: same_padding, dtype, name, parent."""
        return cls(c1=block.c1, c2=block.c2, c3=block.c3, c4=block.c4, conv_bias=block.conv_bias, **kwargs)

    def setup(self) -> None:
        options = dict(use_bias=self.conv_bias, dtype=self.dtype)
        # Branch 1
        self.b1_1 = conv(self.c1, 1, **options)
        # Branch 2
        self.b2_1 = conv(self.c2[0], 1, **options)
        self.b2_2 = conv(self.c2[1], 3, padding=self.pad(1), **options)
        # Branch 3
        self.b3_1 = conv(self.c3[0], 1, **options)
        self.b3_2 = conv(self.c3[1], 5, padding=self.pad(2), **options)
        # Branch 4
        self.b4_1 = MaxPool2D(window=3, strides=1, padding=self.pad(1))
        self.b4_2 = conv(self.c4, 1, **options)

    def pad(self, amount: int) -> Padding:
        return padding(amount, self.same_padding)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b1 = nn.relu(self.b1_1(x))
        b2 = nn.relu(self.b2_2(nn.relu(self.b2_1(x))))
        b3 = nn.relu(self.b3_2(nn.relu(self.b3_1(x))))
        b4 = nn.relu(self.b4_2(self.b4_1(x)))
        return concat_channels((b1, b2, b3, b4))


def max_pool_3x3_s2(same_padding: bool = False) -> MaxPool2D:
    """GoogLeNet's downsampling: 3x3, stride 2, padding 1 (or Flax's ``'SAME'``)."""
    return MaxPool2D(window=3, strides=2, padding=padding(1, same_padding), parent=None, name="pool")


class GoogLeNet(nn.Module):
    """d2l's GoogLeNet: ``net`` = Sequential(b1, b2, b3, b4, b5, head).

    The book's ``net`` holds its final ``Dense`` directly; here it sits in ``head``
    (as ``head/fc``) because its canonical name, shared with AnyNet, is ``head.fc``.
    The layer summary shows it as the book does, as the last top-level layer.
    ``same_padding``: Flax's ``'SAME'`` in every padded conv and pool (the ``same_padding`` variant).
    """

    spec: specs.GoogLeNet = dataclasses.field(default_factory=specs.GoogLeNet)
    same_padding: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        stages = itertools.groupby(self.spec.inceptions(), key=lambda path_block: path_block[0].split(".")[0])
        blocks = {stage: [block for _, block in path_blocks] for stage, path_blocks in stages}
        self.net = Sequential(
            [self.b1(), self.b2(), self.b3(blocks["b3"]), self.b4(blocks["b4"]), self.b5(blocks["b5"]), self.head()]
        )

    def spec_conv(self, features: int, kernel_size: int, name: str, *, padding: int = 0, **kwargs: Any) -> nn.Conv:
        """A convolution with the spec's bias, in the model's dtype, padded as the model pads."""
        return conv(
            features,
            kernel_size,
            padding=self.pad(padding),
            use_bias=self.spec.conv_bias,
            dtype=self.dtype,
            name=name,
            **kwargs,
        )

    def pad(self, amount: int) -> Padding:
        return padding(amount, self.same_padding)

    def pool(self) -> MaxPool2D:
        return max_pool_3x3_s2(self.same_padding)

    def inceptions(self, blocks: Iterable[specs.Inception]) -> list[Inception]:
        return [
            Inception.from_spec(
                block, same_padding=self.same_padding, dtype=self.dtype, parent=None, name=f"inception_{k}"
            )
            for k, block in enumerate(blocks)
        ]

    def b1(self) -> Sequential:
        return Sequential(
            [self.spec_conv(64, 7, "conv", strides=2, padding=3), nn.relu, self.pool()], parent=None, name="b1"
        )

    def b2(self) -> Sequential:
        return Sequential(
            [
                self.spec_conv(64, 1, "conv1"),
                nn.relu,
                self.spec_conv(192, 3, "conv2", padding=1),
                nn.relu,
                self.pool(),
            ],
            parent=None,
            name="b2",
        )

    def b3(self, blocks: Iterable[specs.Inception]) -> Sequential:
        return Sequential([*self.inceptions(blocks), self.pool()], parent=None, name="b3")

    def b4(self, blocks: Iterable[specs.Inception]) -> Sequential:
        return Sequential([*self.inceptions(blocks), self.pool()], parent=None, name="b4")

    def b5(self, blocks: Iterable[specs.Inception]) -> Sequential:
        return Sequential([*self.inceptions(blocks), GlobalAvgPool2D(parent=None, name="pool")], parent=None, name="b5")

    def head(self) -> Sequential:
        dense = nn.Dense(self.spec.num_classes, dtype=self.dtype, param_dtype=self.dtype, parent=None, name="fc")
        return Sequential([dense], parent=None, name="head")

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.net(x)


class InceptionA(nn.Module):
    """The tutorials' InceptionA block: four branches without ReLUs, concatenated on channels in the
    order 1x1 (16), 5x5 (24), 3x3 (24), pool (24): 88 channels."""

    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        options = dict(use_bias=True, dtype=self.dtype)
        self.branch1x1 = conv(16, 1, **options)

        self.branch5x5_1 = conv(16, 1, **options)
        self.branch5x5_2 = conv(24, 5, padding=2, **options)

        self.branch3x3_1 = conv(16, 1, **options)
        self.branch3x3_2 = conv(24, 3, padding=1, **options)
        self.branch3x3_3 = conv(24, 3, padding=1, **options)

        self.branch_pool_avg = AvgPool2D(window=3, strides=1, padding=1)
        self.branch_pool = conv(24, 1, **options)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3 = self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(x)))
        branch_pool = self.branch_pool(self.branch_pool_avg(x))
        return concat_channels((branch1x1, branch5x5, branch3x3, branch_pool))


def max_pool_relu() -> Sequential:
    """The tutorial's ``F.relu(self.mp(...))`` after each conv, with ``mp`` a 2x2 max-pool."""
    return Sequential([MaxPool2D(window=2, strides=2, parent=None, name="mp"), nn.relu])


class InceptionNet(nn.Module):
    """The tutorials' MNIST net around InceptionA, for 1x28x28 inputs:
    conv1 -> max-pool -> ReLU -> incep1 -> conv2 -> max-pool -> ReLU -> incep2 -> flatten -> fc."""

    num_classes: int = 10
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        self.conv1 = conv(10, 5, use_bias=True, dtype=self.dtype)
        self.pool1 = max_pool_relu()
        self.incep1 = InceptionA(dtype=self.dtype)
        self.conv2 = conv(20, 5, use_bias=True, dtype=self.dtype)
        self.pool2 = max_pool_relu()
        self.incep2 = InceptionA(dtype=self.dtype)
        self.flatten = Flatten()
        self.fc = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.dtype)

    def layers(self) -> list[nn.Module]:
        """The top-level layers in execution order: ``__call__`` runs them, and so does the layer summary."""
        return [self.conv1, self.pool1, self.incep1, self.conv2, self.pool2, self.incep2, self.flatten, self.fc]

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for layer in self.layers():
            x = layer(x)
        return x
