"""d2l's classic CNNs in Keras 3, built from parity specs: LeNet and BNLeNet, AlexNet, VGG and
Network in Network (NiN).

Read side by side with d2l-en (chapter_convolutional-neural-networks/lenet.md,
chapter_convolutional-modern: batch-norm.md, alexnet.md, vgg.md, nin.md), the TensorFlow tabs:
the same flat Sequential ``net`` (VGG's and NiN's of blocks, ``vgg_block`` and ``nin_block``),
with every number taken from the spec. The differences are on purpose:

- symmetric padding: ``ZeroPadding2D(padding)`` (``conv1_pad``) before a 'valid' k x k
  convolution, where the book writes ``padding='same'`` (the same zeros at stride 1); AlexNet's
  stride-4 conv1, which the book leaves unpadded, is padded by 1 as the spec says (the
  ``dropped_padding`` pitfall builds the book's, and ``d2l_tf_tab`` is that);
- each activation is a layer of its own (``relu1``, ``sigmoid1``), so the conv or dense output
  before it is an activation point (the book folds it in with ``activation=...``);
- BatchNormalization takes the spec's epsilon and momentum (Keras' defaults are 1e-3 and 0.99);
- VGG's dense head is part of the flat ``net``, as in the book's PyTorch tab, so that fc6, fc7
  and fc8 are summary rows of their own;
- every layer is named (LeNet's ``conv1`` ... ``fc3``, AlexNet's and VGG's ``fc6`` ... ``fc8``,
  VGG's ``block{i}/conv{k}``, NiN's ``block{i}/conv{k}``, ``pool{i}``) and computes in the
  model's dtype;
- ``model.build`` creates every variable, Xavier-uniform kernels as d2l's ``init_cnn``; the dense
  layers after a flatten see (H, W, C) order, and ``parity.hub`` permutes the canonical (C, H, W)
  weights for them.

Dropout drops in training mode only (``forward(train=True)``), with Keras' own seeds: no parity
check runs these nets in training mode, so their masks need not match another framework's.
"""

from __future__ import annotations

import dataclasses
import functools

import keras
import tensorflow as tf
from keras import layers

from impl_tf.anynet import LayerMaker, SequentialNet
from parity import specs
from parity.variants import droppable_padding


class LeNet(SequentialNet):
    """d2l's LeNet-5: two 5x5 convs, each with a sigmoid and a 2x2 average pool, then three dense
    layers with sigmoids between (``net``: one flat Sequential, as in the book)."""

    def __init__(
        self,
        spec: specs.LeNet = specs.LeNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "lenet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        # Output shapes for a (1, 28, 28, 1) input.
        self.net = make.sequential(
            [
                *make.padded_conv(6, 5, 2, name="conv1"),  # N x 28 x 28 x 6
                make.sigmoid(name="sigmoid1"),
                make.avg_pool(2, strides=2, name="pool1"),  # N x 14 x 14 x 6
                make.conv(16, 5, name="conv2"),  # N x 10 x 10 x 16
                make.sigmoid(name="sigmoid2"),
                make.avg_pool(2, strides=2, name="pool2"),  # N x 5 x 5 x 16
                layers.Flatten(name="flatten", dtype=dtype),  # N x 400, in (H, W, C) order
                make.dense(120, name="fc1"),
                make.sigmoid(name="sigmoid3"),
                make.dense(84, name="fc2"),
                make.sigmoid(name="sigmoid4"),
                make.dense(spec.num_classes, name="fc3"),
            ],
            name="net",
        )


class BNLeNet(SequentialNet):
    """d2l's LeNet with batch normalization: BatchNorm after every conv (over channels) and after
    the first two dense layers (over features), each before its sigmoid; unpadded convs."""

    def __init__(
        self,
        spec: specs.BNLeNet = specs.BNLeNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "bnlenet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        # Output shapes for a (1, 28, 28, 1) input.
        self.net = make.sequential(
            [
                make.conv(6, 5, name="conv1"),  # N x 24 x 24 x 6
                make.batch_norm(name="bn1"),
                make.sigmoid(name="sigmoid1"),
                make.avg_pool(2, strides=2, name="pool1"),  # N x 12 x 12 x 6
                make.conv(16, 5, name="conv2"),  # N x 8 x 8 x 16
                make.batch_norm(name="bn2"),
                make.sigmoid(name="sigmoid2"),
                make.avg_pool(2, strides=2, name="pool2"),  # N x 4 x 4 x 16
                layers.Flatten(name="flatten", dtype=dtype),  # N x 256, in (H, W, C) order
                make.dense(120, name="fc1"),
                make.batch_norm(name="bn3"),  # over the (N, 120) features
                make.sigmoid(name="sigmoid3"),
                make.dense(84, name="fc2"),
                make.batch_norm(name="bn4"),
                make.sigmoid(name="sigmoid4"),
                make.dense(spec.num_classes, name="fc3"),
            ],
            name="net",
        )


def head_layer(make: LayerMaker, spec: specs.Spec, path: str, convolutional: bool = False) -> layers.Layer:
    """The head's dense layer ``path`` of ``spec``, or with ``convolutional`` the conv that computes it at
    every position (``parity.specs.FullyConvolutional``: h x w over the feature map, else 1x1)."""
    layer = next(layer for layer in spec.layers() if layer.path == path)
    if not convolutional:
        return make.dense(layer.out_features, name=path)
    conv = specs.dense_as_conv(layer)
    return dataclasses.replace(make, conv_bias=True).conv(conv.out_channels, conv.kernel_hw, name=path)


def flatten(make: LayerMaker, convolutional: bool = False) -> list[layers.Layer]:
    """The flatten before the head, in (H, W, C) order; none before a fully convolutional head."""
    return [] if convolutional else [layers.Flatten(name="flatten", dtype=make.dtype)]


def dense_head(make: LayerMaker, spec: specs.Spec, seed: int, convolutional: bool = False) -> list[layers.Layer]:
    """AlexNet's and VGG's classifier: flatten, fc6 and fc7 (4096 units, ReLU, dropout), fc8 (with
    ``convolutional``, as convolutions after no flatten)."""
    dtype, fc = make.dtype, functools.partial(head_layer, make, spec, convolutional=convolutional)
    return [
        *flatten(make, convolutional),
        fc("fc6"),
        make.relu(name="relu6"),
        layers.Dropout(spec.dropout, seed=seed, name="drop6", dtype=dtype),
        fc("fc7"),
        make.relu(name="relu7"),
        layers.Dropout(spec.dropout, seed=seed + 1, name="drop7", dtype=dtype),
        fc("fc8"),
    ]


class AdaptiveAvgPool2D(layers.Layer):
    """PyTorch's ``AdaptiveAvgPool2d`` at any input size (Keras' ``AdaptiveAveragePooling2D`` needs static
    sizes; the forward graph's are dynamic): output cell i averages rows floor(i*H/o) to ceil((i+1)*H/o),
    and the columns likewise; the mean of a bin's row means is the bin's mean."""

    def __init__(self, output_size: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(output_size)

    def call(self, X):
        (oh, ow), h, w = self.output_size, tf.shape(X)[1], tf.shape(X)[2]
        X = tf.stack([tf.reduce_mean(X[:, i * h // oh : ((i + 1) * h + oh - 1) // oh], axis=1) for i in range(oh)], 1)
        return tf.stack(
            [tf.reduce_mean(X[:, :, j * w // ow : ((j + 1) * w + ow - 1) // ow], axis=2) for j in range(ow)], 2
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])


def alexnet_features(
    make: LayerMaker, spec: specs.AlexNet | specs.TorchvisionAlexNet, unpadded: frozenset[str] = frozenset()
) -> list[layers.Layer]:
    """AlexNet's five convs ``conv{k}`` with ReLUs and the 3x3 stride-2 max-pools ``pool{k}`` after the first,
    second and fifth (``spec.CONVS``: out_channels, kernel_size, strides, padding, max-pool after it); the convs
    in ``unpadded`` lose their padding (``dropped_padding``)."""
    features = []
    for k, (out_channels, kernel_size, strides, padding, pool) in enumerate(spec.CONVS, start=1):
        padding = 0 if f"conv{k}" in unpadded else padding
        features += [
            *make.padded_conv(out_channels, kernel_size, padding, strides=strides, name=f"conv{k}"),
            make.relu(name=f"relu{k}"),
        ]
        if pool:
            features.append(make.max_pool(3, strides=2, name=f"pool{k}"))
    return features


class AlexNet(SequentialNet):
    """d2l's AlexNet: five convs with ReLUs (3x3 stride-2 max-pools after the first, second and
    fifth), then the dense head with dropout. The flatten's size follows ``spec.input_size``.

    ``pitfalls``: ``dropped_padding`` builds conv1 unpadded, as d2l's TensorFlow tab does (at 224x224
    it still outputs 54x54; ``parity.variants.droppable_padding``).
    """

    def __init__(
        self,
        spec: specs.AlexNet = specs.AlexNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        convolutional: bool = False,
        name: str = "alexnet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        unpadded = droppable_padding(spec) if "dropped_padding" in self.pitfalls else frozenset()
        features = alexnet_features(make, spec, unpadded)
        # For a (1, 224, 224, 1) input: conv1 N x 54 x 54 x 96, pool1 N x 26 x 26 x 96,
        # pool2 N x 12 x 12 x 256, pool5 N x 5 x 5 x 256, fc8 N x num_classes.
        self.net = make.sequential([*features, *dense_head(make, spec, seed, convolutional)], name="net")


def vgg_block(make: LayerMaker, num_convs: int, out_channels: int, *, name: str) -> keras.Sequential:
    """``num_convs`` 3x3 convs padded by 1, each followed by a ReLU, then a 2x2 stride-2 max-pool."""
    convs = []
    for k in range(1, num_convs + 1):
        convs += [*make.padded_conv(out_channels, 3, 1, name=f"conv{k}"), make.relu(name=f"relu{k}")]
    return make.sequential([*convs, make.max_pool(2, strides=2, name="pool")], name=name)


class VGG(SequentialNet):
    """d2l's VGG: one ``vgg_block`` per (num_convs, out_channels) of ``spec.arch`` (the book's is
    VGG-11's), then the dense head with dropout. The flatten's size follows ``spec.input_size``."""

    def __init__(
        self,
        spec: specs.VGG = specs.VGG(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        convolutional: bool = False,
        name: str = "vgg",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        # For a (1, 224, 224, 1) input the blocks give N x 112 x 112 x 64 ... N x 7 x 7 x 512.
        blocks = [vgg_block(make, *arch, name=f"block{i}") for i, arch in enumerate(spec.arch)]
        self.net = make.sequential([*blocks, *dense_head(make, spec, seed, convolutional)], name="net")


def nin_block(
    make: LayerMaker, out_channels: int, kernel_size: int, strides: int, padding: int, *, name: str
) -> keras.Sequential:
    """A k x k conv, then two 1x1 convs (per-pixel fully connected layers), each followed by a ReLU."""
    return make.sequential(
        [
            *make.padded_conv(out_channels, kernel_size, padding, strides=strides, name="conv1"),
            make.relu(name="relu1"),
            make.conv(out_channels, 1, name="conv2"),
            make.relu(name="relu2"),
            make.conv(out_channels, 1, name="conv3"),
            make.relu(name="relu3"),
        ],
        name=name,
    )


class NiN(SequentialNet):
    """d2l's NiN: four ``nin_block``s with 3x3 stride-2 max-pools between the first three, dropout
    before the last, whose ``num_classes`` channels are averaged globally into the logits.

    Dropout drops in training mode only (see the module's docstring).
    """

    def __init__(
        self,
        spec: specs.NiN = specs.NiN(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "nin",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        b0, b1, b2, b3 = spec.blocks()  # (out_channels, kernel_size, strides, padding) of each block
        # Output shapes for a (1, 224, 224, 1) input, as d2l prints them.
        self.net = make.sequential(
            [
                nin_block(make, *b0, name="block0"),  # N x 54 x 54 x 96
                make.max_pool(3, strides=2, name="pool0"),  # N x 26 x 26 x 96
                nin_block(make, *b1, name="block1"),  # N x 26 x 26 x 256
                make.max_pool(3, strides=2, name="pool1"),  # N x 12 x 12 x 256
                nin_block(make, *b2, name="block2"),  # N x 12 x 12 x 384
                make.max_pool(3, strides=2, name="pool2"),  # N x 5 x 5 x 384
                layers.Dropout(spec.dropout, seed=seed, name="dropout", dtype=dtype),
                nin_block(make, *b3, name="block3"),  # N x 5 x 5 x num_classes
                make.global_avg_pool(name="avg_pool"),  # N x num_classes
                layers.Flatten(name="flatten", dtype=dtype),  # N x num_classes, as in the book
            ],
            name="net",
        )


def torchvision_maker(spec: specs.Spec, dtype: str, seed: int) -> LayerMaker:
    """torchvision's BatchNorm settings (its specs carry none)."""
    nets = specs.torchvision_nets
    return dataclasses.replace(LayerMaker.for_spec(spec, dtype, seed), bn_eps=nets.BN_EPS, bn_momentum=nets.BN_MOMENTUM)


class TorchvisionAlexNet(SequentialNet):
    """torchvision's AlexNet: ``net`` holds conv1 ... conv5 (ReLUs, max-pools ``pool1``, ``pool2``, ``pool5``),
    the 6x6 adaptive pool ``avgpool``, the flatten and the classifier, dropout before fc6 and fc7.
    ``convolutional``: the classifier as convolutions, without the pool and the flatten."""

    def __init__(
        self,
        spec: specs.TorchvisionAlexNet = specs.TorchvisionAlexNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        convolutional: bool = False,
        name: str = "alexnet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = torchvision_maker(spec, dtype, seed)
        features = alexnet_features(make, spec)
        if not convolutional:  # N x 6 x 6 x 256 at any size
            features += [AdaptiveAvgPool2D(spec.POOL, name="avgpool", dtype=dtype), *flatten(make)]
        fc = functools.partial(head_layer, make, spec, convolutional=convolutional)
        dropout = functools.partial(layers.Dropout, spec.dropout, dtype=dtype)
        head = [dropout(seed=seed, name="drop6"), fc("fc6"), make.relu(name="relu6")]
        head += [dropout(seed=seed + 1, name="drop7"), fc("fc7"), make.relu(name="relu7"), fc("fc8")]
        self.net = make.sequential([*features, *head], name="net")


class TorchvisionVGG(SequentialNet):
    """torchvision's VGG: ``net`` holds blocks ``block{i}`` of padded 3x3 convs ``conv{k}`` (each with
    BatchNorm ``bn{k}`` if ``spec.batch_norm``, then ReLU) and a max-pool, the 7x7 adaptive pool
    ``avgpool`` and the dense head. ``convolutional``: the head as convolutions, without the pool."""

    def __init__(
        self,
        spec: specs.TorchvisionVGG = specs.TorchvisionVGG(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        convolutional: bool = False,
        name: str = "vgg",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = torchvision_maker(spec, dtype, seed)
        blocks = []
        for i, (num_convs, out_channels) in enumerate(spec.arch):
            convs = []
            for k in range(1, num_convs + 1):
                convs += make.padded_conv(out_channels, 3, 1, name=f"conv{k}")
                convs += [make.batch_norm(name=f"bn{k}")] if spec.batch_norm else []
                convs.append(make.relu(name=f"relu{k}"))
            blocks.append(make.sequential([*convs, make.max_pool(2, strides=2, name="pool")], name=f"block{i}"))
        if not convolutional:  # N x 7 x 7 x 512 at any size
            blocks.append(AdaptiveAvgPool2D(spec.POOL, name="avgpool", dtype=dtype))
        self.net = make.sequential([*blocks, *dense_head(make, spec, seed, convolutional)], name="net")
