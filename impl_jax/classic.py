"""d2l's classic CNNs in Flax linen (NHWC), built from parity specs: LeNet, BNLeNet, AlexNet,
VGG and Network in Network (NiN).

Read side by side with the JAX tabs of d2l-en ``chapter_convolutional-neural-networks/lenet.md``
(``LeNet``), ``chapter_convolutional-modern/batch-norm.md`` (``BNLeNet``), ``alexnet.md``,
``vgg.md`` (``vgg_block``) and ``nin.md`` (``nin_block``): the same ``net`` Sequentials. Unlike
the book, layers are named as the spec names them (``net/conv1``, ``net/fc6``; VGG's block i's
convs ``net/block{i}/conv{k}``, NiN's ``net/block{i}/conv{k}``), every numeric choice comes from
the spec (channels, kernels, BatchNorm epsilon and momentum, dropout rate, the dense input size
that AlexNet's and VGG's ``input_size`` gives), the padding is explicit and symmetric (AlexNet's
``same_padding`` pitfall builds Flax's ``'SAME'``, a naive port), the pools are named modules (so
that their outputs can be inspected), NiN's global average pool takes the whole feature map at
any input size (the book's is a fixed 5x5 window: the ``d2l_nin_pool`` pitfall), and every layer
computes in ``dtype``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax.numpy as jnp
from flax import linen as nn

from impl_jax.anynet import (
    AdaptiveAvgPool2D,
    AvgPool2D,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    Sequential,
    batch_norm,
    conv2d,
    dense,
    padding,
)
from parity import specs

Dtype = Any


class LeNet(nn.Module):
    """d2l's LeNet-5: two 5x5 convs, each with a sigmoid and a 2x2 average pool, then three dense
    layers with sigmoids between. Input 28x28x1."""

    spec: specs.LeNet = dataclasses.field(default_factory=specs.LeNet)
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        conv = functools.partial(conv2d, use_bias=True, dtype=self.dtype)
        fc = functools.partial(dense, dtype=self.dtype)
        pool = functools.partial(AvgPool2D, window=2, strides=2, parent=None)
        self.net = Sequential(
            [
                conv(6, 5, padding=2, name="conv1"),  # N x 28 x 28 x 6
                nn.sigmoid,
                pool(name="pool1"),  # N x 14 x 14 x 6
                conv(16, 5, name="conv2"),  # N x 10 x 10 x 16
                nn.sigmoid,
                pool(name="pool2"),  # N x 5 x 5 x 16
                Flatten(parent=None, name="flatten"),  # N x 400
                fc(120, name="fc1"),
                nn.sigmoid,
                fc(84, name="fc2"),
                nn.sigmoid,
                fc(self.spec.num_classes, name="fc3"),
            ]
        )

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


class BNLeNet(nn.Module):
    """d2l's LeNet with BatchNorm after every conv and after the first two dense layers (over the
    features of an (N, C) input), each before its sigmoid; unpadded convs. Input 28x28x1.

    ``pitfalls``: ``d2l_bnlenet_padding`` leaves both convs at Flax's default ``padding='SAME'``, as
    d2l's JAX tab does: 28x28 and 14x14 maps, so fc1 takes 16 x 7 x 7 = 784 features, not 256.
    """

    spec: specs.BNLeNet = dataclasses.field(default_factory=specs.BNLeNet)
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        same = "d2l_bnlenet_padding" in self.pitfalls
        conv = functools.partial(conv2d, padding="SAME" if same else 0, use_bias=True, dtype=self.dtype)
        fc = functools.partial(dense, dtype=self.dtype)
        norm = functools.partial(
            batch_norm,
            training=self.training,
            momentum=self.spec.bn_momentum,
            epsilon=self.spec.bn_eps,
            dtype=self.dtype,
        )
        pool = functools.partial(AvgPool2D, window=2, strides=2, parent=None)
        self.net = Sequential(
            [
                conv(6, 5, name="conv1"),  # N x 24 x 24 x 6
                norm(name="bn1"),
                nn.sigmoid,
                pool(name="pool1"),  # N x 12 x 12 x 6
                conv(16, 5, name="conv2"),  # N x 8 x 8 x 16
                norm(name="bn2"),
                nn.sigmoid,
                pool(name="pool2"),  # N x 4 x 4 x 16
                Flatten(parent=None, name="flatten"),  # N x 256 (784 under d2l_bnlenet_padding)
                fc(120, name="fc1"),
                norm(name="bn3"),
                nn.sigmoid,
                fc(84, name="fc2"),
                norm(name="bn4"),
                nn.sigmoid,
                fc(self.spec.num_classes, name="fc3"),
            ]
        )

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


def head_layer(spec: specs.Spec, path: str, *, convolutional: bool, dtype: Dtype) -> nn.Module:
    """The head's dense layer ``path`` of ``spec`` (named ``path``), or with ``convolutional`` the conv that
    computes it at every position (``parity.specs.FullyConvolutional``: h x w over the feature map, else 1x1)."""
    layer = next(layer for layer in spec.layers() if layer.path == path)
    if not convolutional:
        return dense(layer.out_features, dtype=dtype, name=path)
    conv = specs.dense_as_conv(layer)
    return nn.Conv(
        conv.out_channels, conv.kernel_hw, padding="VALID", dtype=dtype, param_dtype=dtype, parent=None, name=path
    )


def flatten(convolutional: bool) -> Any:
    """The flatten before the head (named ``flatten``); a fully convolutional head keeps the map."""
    return (lambda x: x) if convolutional else Flatten(parent=None, name="flatten")


def dense_head(spec: specs.Spec, *, training: bool, dtype: Dtype, convolutional: bool = False) -> list[Any]:
    """AlexNet's and VGG's classifier after the flatten: fc6 and fc7 (4096, ReLU, dropout), then fc8
    (with ``convolutional``, as convolutions)."""
    fc = functools.partial(head_layer, spec, convolutional=convolutional, dtype=dtype)
    dropout = functools.partial(nn.Dropout, spec.dropout, deterministic=not training, parent=None)
    return [fc("fc6"), nn.relu, dropout(name="drop6"), fc("fc7"), nn.relu, dropout(name="drop7"), fc("fc8")]


def alexnet_features(spec: specs.Spec, dtype: Dtype, same_padding: bool = False) -> list[Any]:
    """AlexNet's five convs ``conv{k}`` with ReLUs and the 3x3 stride-2 max-pools ``pool{k}`` after the first,
    second and fifth (``spec.CONVS``); ``same_padding``: Flax's 'SAME' where a conv pads."""
    layers = []
    for k, (out, kernel, strides, amount, pooled) in enumerate(spec.CONVS, start=1):
        pad = padding(amount, same_padding)
        conv = conv2d(out, kernel, strides=strides, padding=pad, use_bias=True, dtype=dtype, name=f"conv{k}")
        layers += [conv, nn.relu]
        if pooled:
            layers.append(MaxPool2D(window=3, strides=2, parent=None, name=f"pool{k}"))
    return layers


class AlexNet(nn.Module):
    """d2l's AlexNet: five convs with ReLUs, 3x3 stride-2 max-pools after the first, second and
    fifth, then the dense head with dropout. fc6's input size follows ``spec.input_size``.

    ``training`` makes the dropout drop (its rng is the ``dropout`` stream of ``apply``);
    ``pitfalls``: ``same_padding`` puts Flax's ``'SAME'`` in every padded conv.
    """

    spec: specs.AlexNet = dataclasses.field(default_factory=specs.AlexNet)
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32
    convolutional: bool = False

    def setup(self) -> None:
        layers = alexnet_features(self.spec, self.dtype, same_padding="same_padding" in self.pitfalls)
        # Output shapes for a (1, 224, 224, 1) input, as d2l prints them: conv1 N x 54 x 54 x 96,
        # pool1 N x 26 x 26 x 96, conv2 N x 26 x 26 x 256, pool2 N x 12 x 12 x 256, conv3 to conv5
        # N x 12 x 12 x (384, 384, 256), pool5 N x 5 x 5 x 256, flatten N x 6400, fc6 and fc7 N x 4096.
        head = dense_head(self.spec, training=self.training, dtype=self.dtype, convolutional=self.convolutional)
        self.net = Sequential([*layers, flatten(self.convolutional), *head])

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


def vgg_block(num_convs: int, out_channels: int, *, dtype: Dtype, name: str) -> Sequential:
    """``num_convs`` 3x3 convs padded by 1, each followed by a ReLU, then a 2x2 max-pool that halves
    the height and width."""
    layers = []
    for k in range(1, num_convs + 1):
        layers += [conv2d(out_channels, 3, padding=1, use_bias=True, dtype=dtype, name=f"conv{k}"), nn.relu]
    layers.append(MaxPool2D(window=2, strides=2, parent=None, name="pool"))
    return Sequential(layers, parent=None, name=name)


class VGG(nn.Module):
    """d2l's VGG: a ``vgg_block`` per (num_convs, out_channels) of ``spec.arch``, then the dense head
    with dropout. fc6's input size follows ``spec.input_size``.

    ``training`` makes the dropout drop (its rng is the ``dropout`` stream of ``apply``).
    """

    spec: specs.VGG = dataclasses.field(default_factory=specs.VGG)
    training: bool = False
    dtype: Dtype = jnp.float32
    convolutional: bool = False

    def setup(self) -> None:
        conv_blks = [vgg_block(*b, dtype=self.dtype, name=f"block{i}") for i, b in enumerate(self.spec.arch)]
        head = dense_head(self.spec, training=self.training, dtype=self.dtype, convolutional=self.convolutional)
        # For a (1, 224, 224, 1) input, the book's arch gives N x 7 x 7 x 512 after the last block.
        self.net = Sequential([*conv_blks, flatten(self.convolutional), *head])

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


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
    ``pitfalls``: ``d2l_nin_pool`` averages a fixed 5x5 window at stride 1 instead, as d2l's JAX tab
    does: the global pool where the last map is 5x5 (a 224x224 input), more outputs on a larger map.
    """

    spec: specs.NiN = dataclasses.field(default_factory=specs.NiN)
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        block = functools.partial(nin_block, dtype=self.dtype)
        pool = functools.partial(MaxPool2D, window=3, strides=2, parent=None)
        b1, b2, b3, b4 = self.spec.blocks()  # (out_channels, kernel_size, strides, padding) of each block
        if "d2l_nin_pool" in self.pitfalls:
            head_pool = AvgPool2D(window=self.spec.D2L_JAX_POOL, strides=1, parent=None, name="avg_pool")
        else:
            head_pool = GlobalAvgPool2D(keepdims=True, parent=None, name="avg_pool")  # N x 1 x 1 x num_classes
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
                head_pool,
                Flatten(parent=None, name="flatten"),  # N x num_classes
            ]
        )

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


class TorchvisionAlexNet(nn.Module):
    """torchvision's AlexNet: ``net`` holds conv1 ... conv5 (ReLUs, max-pools ``pool1``, ``pool2``, ``pool5``),
    the 6x6 adaptive pool ``avgpool`` and the classifier, dropout before fc6 and fc7. ``convolutional``:
    the classifier as convolutions, without the adaptive pool (``parity.specs.FullyConvolutional``)."""

    spec: specs.TorchvisionAlexNet = dataclasses.field(default_factory=specs.TorchvisionAlexNet)
    training: bool = False
    dtype: Dtype = jnp.float32
    convolutional: bool = False

    def setup(self) -> None:
        layers = alexnet_features(self.spec, self.dtype)
        if not self.convolutional:  # N x 6 x 6 x 256 at any size
            layers.append(AdaptiveAvgPool2D(self.spec.POOL, parent=None, name="avgpool"))
        fc = functools.partial(head_layer, self.spec, convolutional=self.convolutional, dtype=self.dtype)
        dropout = functools.partial(nn.Dropout, self.spec.dropout, deterministic=not self.training, parent=None)
        head = [dropout(name="drop6"), fc("fc6"), nn.relu, dropout(name="drop7"), fc("fc7"), nn.relu, fc("fc8")]
        self.net = Sequential([*layers, flatten(self.convolutional), *head])

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


class TorchvisionVGG(nn.Module):
    """torchvision's VGG: ``net`` holds blocks ``block{i}`` of 3x3 convs ``conv{k}`` (each with BatchNorm
    ``bn{k}`` if ``spec.batch_norm``, then ReLU) and a max-pool ``pool``, the 7x7 adaptive pool ``avgpool``
    and the dense head. ``convolutional``: the head as convolutions, without the adaptive pool."""

    spec: specs.TorchvisionVGG = dataclasses.field(default_factory=specs.TorchvisionVGG)
    training: bool = False
    dtype: Dtype = jnp.float32
    convolutional: bool = False

    def setup(self) -> None:
        conv = functools.partial(conv2d, padding=1, use_bias=True, dtype=self.dtype)
        norm = functools.partial(
            batch_norm,
            training=self.training,
            momentum=specs.torchvision_nets.BN_MOMENTUM,
            epsilon=specs.torchvision_nets.BN_EPS,
            dtype=self.dtype,
        )
        blocks = []
        for i, (num_convs, out) in enumerate(self.spec.arch):
            layers = []
            for k in range(1, num_convs + 1):
                layers += [conv(out, 3, name=f"conv{k}"), *([norm(name=f"bn{k}")] if self.spec.batch_norm else [])]
                layers.append(nn.relu)
            layers.append(MaxPool2D(window=2, strides=2, parent=None, name="pool"))
            blocks.append(Sequential(layers, parent=None, name=f"block{i}"))
        if not self.convolutional:  # N x 7 x 7 x 512 at any size
            blocks.append(AdaptiveAvgPool2D(self.spec.POOL, parent=None, name="avgpool"))
        head = dense_head(self.spec, training=self.training, dtype=self.dtype, convolutional=self.convolutional)
        self.net = Sequential([*blocks, flatten(self.convolutional), *head])

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)
