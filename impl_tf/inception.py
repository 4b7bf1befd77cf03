"""d2l's Inception block and GoogLeNet, and the tutorials' InceptionA MNIST net, in Keras 3.

Read side by side with d2l (chapter_convolutional-modern/googlenet.md, the TensorFlow
tab) and the common PyTorch tutorial's ``InceptionA`` / ``Net``. The differences are on purpose:

- symmetric padding: ``ZeroPadding2D(p)`` before a 'valid' convolution, and pooling
  layers with PyTorch's explicit padding (``PaddedMaxPool2D``, ``PaddedAvgPool2D``)
  where d2l's TensorFlow code says 'same' (which at stride 2 pads only bottom and right);
- each convolution's ReLU is a separate step, so its output before the ReLU is an
  activation point (d2l's TensorFlow code folds it in with ``activation='relu'``);
- every layer computes in the model's dtype, and ``build`` creates every variable
  from the spec's channel counts;
- the Inception block's paths keep the book's names ``p1_1`` ... ``p4_2``, GoogLeNet's
  blocks inside a stage are ``inception0``, ``inception1``, ...;
- branches are concatenated on the channel axis, the last one in NHWC;
- the dense layers after a flatten see (H, W, C) order; the canonical weights are in
  PyTorch's (C, H, W) order and ``parity.hub`` permutes them (``flatten_order="HWC"``).

A model built with ``pitfalls`` is a naive port instead: ``same_padding`` pads the
convolutions and max-pools with ``padding='same'`` (d2l's TensorFlow code), and
``avgpool_excludes_padding`` writes InceptionA's average pool as
``AveragePooling2D(padding='same')``.
"""

from __future__ import annotations

import functools
import itertools

import keras
from keras import layers

from impl_tf.anynet import LayerMaker, SequentialNet, build_layers
from parity import specs


class PaddedMaxPool2D(layers.Layer):
    """PyTorch's ``MaxPool2d(pool_size, stride, padding)``: ``padding`` cells of -inf on
    every side, so a padded cell never wins a max, whatever the sign of the input."""

    def __init__(self, pool_size: int, *, strides: int, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding

    def call(self, X):
        p = self.padding
        X = keras.ops.pad(X, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=float("-inf"))
        return keras.ops.max_pool(X, self.pool_size, self.strides, padding="valid")


class PaddedAvgPool2D(layers.Layer):
    """PyTorch's ``AvgPool2d(pool_size, stride, padding)``: ``padding`` zeros on every side that
    count in every average (``count_include_pad=True``; Keras' 'same' leaves them out)."""

    def __init__(self, pool_size: int, *, strides: int, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides, self.padding = pool_size, strides, padding

    def call(self, X):
        p = self.padding
        X = keras.ops.pad(X, ((0, 0), (p, p), (p, p), (0, 0)))
        return keras.ops.average_pool(X, self.pool_size, self.strides, padding="valid")


class Inception(keras.Model):
    """d2l's Inception block: four paths, each convolution followed by a ReLU, concatenated on channels.

    Path 1 a 1x1 conv (``c1``); path 2 1x1 then 3x3 (``c2``); path 3 1x1 then 5x5
    (``c3``); path 4 a 3x3 max-pool (stride 1, padding 1) then 1x1 (``c4``).
    """

    def __init__(
        self,
        spec: specs.Inception,
        *,
        dtype: str = "float32",
        seed: int | keras.random.SeedGenerator = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "inception",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        (c2_1, c2_2), (c3_1, c3_2) = spec.c2, spec.c3
        self.p1_1 = make.conv(spec.c1, 1, name="p1_1")
        self.p2_1 = make.conv(c2_1, 1, name="p2_1")
        self.p2_2_pad, self.p2_2 = make.padded_conv(c2_2, 3, 1, name="p2_2")
        self.p3_1 = make.conv(c3_1, 1, name="p3_1")
        self.p3_2_pad, self.p3_2 = make.padded_conv(c3_2, 5, 2, name="p3_2")
        self.p4_1 = max_pool(make, strides=1, name="p4_1")
        self.p4_2 = make.conv(spec.c4, 1, name="p4_2")

    def build(self, input_shape):
        in_channels, (c2_1, _), (c3_1, _) = input_shape[-1], self.spec.c2, self.spec.c3
        build_layers(
            [
                (self.p1_1, in_channels),
                (self.p2_1, in_channels),
                (self.p2_2, c2_1),
                (self.p3_1, in_channels),
                (self.p3_2, c3_1),
                (self.p4_2, in_channels),
            ]
        )

    def call(self, X, training=False):
        relu = keras.ops.relu
        p1 = relu(self.p1_1(X))
        p2 = relu(self.p2_2(self.p2_2_pad(relu(self.p2_1(X)))))
        p3 = relu(self.p3_2(self.p3_2_pad(relu(self.p3_1(X)))))
        p4 = relu(self.p4_2(self.p4_1(X)))
        return keras.ops.concatenate([p1, p2, p3, p4], axis=-1)


class GoogLeNet(SequentialNet):
    """d2l's GoogLeNet: ``net`` is Sequential(b1, b2, b3, b4, b5, Dense), as in the book.

    b1: 7x7 conv stride 2, ReLU, max-pool; b2: 1x1 and 3x3 convs with ReLUs, max-pool;
    b3 and b4: Inception blocks, then a max-pool; b5: Inception blocks, then global
    average pooling. Every max-pool is 3x3, stride 2, padding 1. ``spec.inceptions()``
    says each Inception block's channels.
    """

    def __init__(
        self,
        spec: specs.GoogLeNet,
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "googlenet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        stages = {
            stage: [block for _, block in blocks]
            for stage, blocks in itertools.groupby(spec.inceptions(), key=lambda item: item[0].split(".")[0])
        }
        self.net = make.sequential(
            [
                b1(make),  # N x 24 x 24 x 64 for a 96 x 96 input
                b2(make),  # N x 12 x 12 x 192
                inception_stage(make, "b3", stages["b3"], max_pool(make, name="pool")),  # N x 6 x 6 x 480
                inception_stage(make, "b4", stages["b4"], max_pool(make, name="pool")),  # N x 3 x 3 x 832
                inception_stage(make, "b5", stages["b5"], make.global_avg_pool(name="pool")),  # N x 1024
                make.dense(spec.num_classes, name="fc"),
            ],
            name="net",
        )


def max_pool(make: LayerMaker, *, name: str, strides: int = 2) -> layers.Layer:
    """GoogLeNet's 3x3 max-pool with padding 1 (stride 2 downsamples); under ``same_padding``
    Keras' ``MaxPooling2D(padding='same')``, which at stride 2 on an even size pads only bottom and right."""
    if "same_padding" in make.pitfalls:
        return layers.MaxPooling2D(3, strides=strides, padding="same", name=name, dtype=make.dtype)
    return PaddedMaxPool2D(3, strides=strides, padding=1, name=name, dtype=make.dtype)


def avg_pool(make: LayerMaker, *, name: str) -> layers.Layer:
    """InceptionA's 3x3 average pool, stride 1, padding 1, counting the padded zeros; under
    ``avgpool_excludes_padding`` Keras' ``AveragePooling2D(padding='same')``, which leaves them out."""
    if "avgpool_excludes_padding" in make.pitfalls:
        return layers.AveragePooling2D(3, strides=1, padding="same", name=name, dtype=make.dtype)
    return PaddedAvgPool2D(3, strides=1, padding=1, name=name, dtype=make.dtype)


def b1(make: LayerMaker) -> keras.Sequential:
    return make.sequential(
        [*make.padded_conv(64, 7, 3, strides=2, name="conv"), make.relu(name="relu"), max_pool(make, name="pool")],
        name="b1",
    )


def b2(make: LayerMaker) -> keras.Sequential:
    return make.sequential(
        [
            make.conv(64, 1, name="conv1"),
            make.relu(name="relu1"),
            *make.padded_conv(192, 3, 1, name="conv2"),
            make.relu(name="relu2"),
            max_pool(make, name="pool"),
        ],
        name="b2",
    )


def inception_stage(make: LayerMaker, name: str, blocks: list[specs.Inception], pool: layers.Layer) -> keras.Sequential:
    """Inception blocks ``inception0``, ``inception1``, ..., then ``pool``."""
    inceptions = [
        Inception(block, dtype=make.dtype, seed=make.seeds, pitfalls=make.pitfalls, name=f"inception{k}")
        for k, block in enumerate(blocks)
    ]
    return make.sequential([*inceptions, pool], name=name)


class InceptionA(keras.Model):
    """The tutorials' InceptionA block: four branches without ReLUs, concatenated on channels in the
    order 1x1 (16), 5x5 (16 -> 24), 3x3 (16 -> 24 -> 24), pool (3x3 average, counting the padded
    zeros, then 1x1 to 24): 88 channels."""

    def __init__(
        self,
        spec: specs.InceptionA,
        *,
        dtype: str = "float32",
        seed: int | keras.random.SeedGenerator = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "inception_a",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        self.branch1x1 = make.conv(16, 1, name="branch1x1")
        self.branch5x5_1 = make.conv(16, 1, name="branch5x5_1")
        self.branch5x5_2_pad, self.branch5x5_2 = make.padded_conv(24, 5, 2, name="branch5x5_2")
        self.branch3x3_1 = make.conv(16, 1, name="branch3x3_1")
        self.branch3x3_2_pad, self.branch3x3_2 = make.padded_conv(24, 3, 1, name="branch3x3_2")
        self.branch3x3_3_pad, self.branch3x3_3 = make.padded_conv(24, 3, 1, name="branch3x3_3")
        self.branch_pool_avg = avg_pool(make, name="branch_pool_avg")
        self.branch_pool = make.conv(24, 1, name="branch_pool")

    def build(self, input_shape):
        in_channels = input_shape[-1]
        build_layers(
            [
                (self.branch1x1, in_channels),
                (self.branch5x5_1, in_channels),
                (self.branch5x5_2, 16),
                (self.branch3x3_1, in_channels),
                (self.branch3x3_2, 16),
                (self.branch3x3_3, 24),
                (self.branch_pool, in_channels),
            ]
        )

    def call(self, X, training=False):
        branch1x1 = self.branch1x1(X)
        branch5x5 = self.branch5x5_2(self.branch5x5_2_pad(self.branch5x5_1(X)))
        branch3x3 = self.branch3x3_2(self.branch3x3_2_pad(self.branch3x3_1(X)))
        branch3x3 = self.branch3x3_3(self.branch3x3_3_pad(branch3x3))
        branch_pool = self.branch_pool(self.branch_pool_avg(X))
        return keras.ops.concatenate([branch1x1, branch5x5, branch3x3, branch_pool], axis=-1)


class InceptionNet(SequentialNet):
    """The tutorials' MNIST net around InceptionA, as one flat Sequential ``net``:
    conv1 (5x5), max-pool 2, ReLU, incep1, conv2 (5x5), max-pool 2, ReLU, incep2, flatten, fc."""

    def __init__(
        self,
        spec: specs.InceptionNet,
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "inception_net",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        incep = functools.partial(InceptionA, dtype=dtype, seed=make.seeds, pitfalls=make.pitfalls)
        self.net = make.sequential(
            [
                make.conv(10, 5, name="conv1"),  # N x 24 x 24 x 10
                make.max_pool(2, strides=2, name="pool1"),  # N x 12 x 12 x 10
                make.relu(name="relu1"),
                incep(specs.InceptionA(10), name="incep1"),  # N x 12 x 12 x 88
                make.conv(20, 5, name="conv2"),  # N x 8 x 8 x 20
                make.max_pool(2, strides=2, name="pool2"),  # N x 4 x 4 x 20
                make.relu(name="relu2"),
                incep(specs.InceptionA(20), name="incep2"),  # N x 4 x 4 x 88
                layers.Flatten(name="flatten", dtype=dtype),  # N x 1408, in (H, W, C) order
                make.dense(spec.num_classes, name="fc"),
            ],
            name="net",
        )
