"""d2l's Network in Network (NiN) in Flax linen (NHWC), built from a parity spec.

Read side by side with d2l-en ``chapter_convolutional-modern/nin.md`` (its JAX tab):
the same ``nin_block`` and the same ``net`` Sequential, with block i's convs named
``net/block{i}/conv{k}``. Unlike the book, every block's (out_channels, kernel_size,
strides, padding), the dropout rate and the class count come from the spec, the
padding is explicit and symmetric, the pools are named modules (so that their outputs
can be inspected), the global average pool takes the whole feature map at any input
size (the book's is a fixed 5x5 window), and every layer computes in ``dtype``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from impl_jax.anynet import Flatten, GlobalAvgPool2D, MaxPool2D, Sequential, conv2d
from parity import specs

Dtype = Any


def nin_block(
    out_channels: int, kernel_size: int, strides: int, padding: int, *, dtype: Dtype, name: str
) -> Sequential:
    """A k x k conv, then two 1x1 convs (per-pixel fully connected layers), each followed by a ReLU."""
    conv = functools.partial(conv2d, out_channels, use_bias=True, dtype=dtype)
    return Sequential(
        [
            conv(kernel_size, strides=strides, padding=padding, name="conv1"),
            nn.relu,
            conv(1, name="conv2"),
            nn.relu,
            conv(1, name="conv3"),
            nn.relu,
        ],
        parent=None,
        name=name,
    )


class NiN(nn.Module):
    """d2l's NiN: four ``nin_block``s with 3x3 stride-2 max-pools between the first three, dropout
    before the last, whose ``num_classes`` channels are averaged globally into the logits.

    ``training`` makes the dropout drop (its rng is the ``dropout`` stream of ``apply``).
    """

    spec: specs.NiN = dataclasses.field(default_factory=specs.NiN)
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        block = functools.partial(nin_block, dtype=self.dtype)
        pool = functools.partial(MaxPool2D, window=3, strides=2, parent=None)
        b1, b2, b3, b4 = self.spec.blocks()  # (out_channels, kernel_size, strides, padding) of each block
        # Output shapes for a (1, 224, 224, 1) input, as d2l prints them.
        self.net = Sequential(
            [
                block(*b1, name="block0"),  # N x 54 x 54 x 96
                pool(name="pool0"),  # N x 26 x 26 x 96
                block(*b2, name="block1"),  # N x 26 x 26 x 256
                pool(name="pool1"),  # N x 12 x 12 x 256
                block(*b3, name="block2"),  # N x 12 x 12 x 384
                pool(name="pool2"),  # N x 5 x 5 x 384
                nn.Dropout(self.spec.dropout, deterministic=not self.training, parent=None, name="dropout"),
                block(*b4, name="block3"),  # N x 5 x 5 x num_classes
                GlobalAvgPool2D(keepdims=True, parent=None, name="avg_pool"),  # N x 1 x 1 x num_classes
                Flatten(parent=None, name="flatten"),  # N x num_classes
            ]
        )

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)
