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
- branches are concatenated on the channel axis, the last one in NHWC;
- the dense layers after a flatten see (H, W, C) order; the canonical weights are in
  PyTorch's (C, H, W) order and ``parity.hub`` permutes them (``flatten_order="HWC"``).

A model built with a ``variant`` is the naive port instead: ``same_padding`` pads the
convolutions and max-pools with ``padding='same'`` (d2l's TensorFlow code), and
``avgpool_excludes_padding`` writes InceptionA's average pool as
``AveragePooling2D(padding='same')``.
"""

from __future__ import annotations

import itertools

import keras
from keras import layers

from impl_tf.models import LayerMaker
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


def build_layers(channels_in: list[tuple[layers.Layer, int]]) -> None:
    """Create each layer's variables for its number of input channels."""
    for layer, channels in channels_in:
        layer.build((None, None, None, channels))


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
        variant: str | None = None,
        name: str = "inception",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.variant = spec, variant
        make = LayerMaker.for_spec(spec, dtype, seed, variant)
        self.b1_1 = make.conv(spec.c1, 1, name="b1_1")
        self.b2_1 = make.conv(spec.c2[0], 1, name="b2_1")
        self.b2_pad, self.b2_2 = make.padded_conv(spec.c2[1], 3, name="b2_2", pad_name="b2_pad")
        self.b3_1 = make.conv(spec.c3[0], 1, name="b3_1")
        self.b3_pad, self.b3_2 = make.padded_conv(spec.c3[1], 5, name="b3_2", pad_name="b3_pad")
        self.b4_1 = max_pool(make, strides=1, name="b4_1")
        self.b4_2 = make.conv(spec.c4, 1, name="b4_2")

    def build(self, input_shape):
        in_channels, (c2_1, _), (c3_1, _) = input_shape[-1], self.spec.c2, self.spec.c3
        build_layers(
            [
                (self.b1_1, in_channels),
                (self.b2_1, in_channels),
                (self.b2_2, c2_1),
                (self.b3_1, in_channels),
                (self.b3_2, c3_1),
                (self.b4_2, in_channels),
            ]
        )

    def call(self, X, training=False, return_points=False):
        """The concatenated paths; with ``return_points``, a dict of each convolution's output
        (before its ReLU) and the max-pool's by layer name, and the output under ``"output"``."""
        relu = keras.ops.relu
        points = {}
        points["b1_1"] = self.b1_1(X)
        points["b2_1"] = self.b2_1(X)
        points["b2_2"] = self.b2_2(self.b2_pad(relu(points["b2_1"])))
        points["b3_1"] = self.b3_1(X)
        points["b3_2"] = self.b3_2(self.b3_pad(relu(points["b3_1"])))
        points["b4_1"] = self.b4_1(X)
        points["b4_2"] = self.b4_2(points["b4_1"])
        paths = [relu(points[name]) for name in ("b1_1", "b2_2", "b3_2", "b4_2")]
        points["output"] = keras.ops.concatenate(paths, axis=-1)
        return points if return_points else points["output"]


class GoogLeNet(keras.Model):
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
        variant: str | None = None,
        name: str = "googlenet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.variant = spec, variant
        make = LayerMaker.for_spec(spec, dtype, seed, variant)
        stages = {
            stage: [block for _, block in blocks]
            for stage, blocks in itertools.groupby(spec.inceptions(), key=lambda item: item[0].split(".")[0])
        }
        self.net = make.sequential(
            [
                b1(make),
                b2(make),
                inception_stage(make, "b3", stages["b3"], max_pool(make, name="pool")),
                inception_stage(make, "b4", stages["b4"], max_pool(make, name="pool")),
                inception_stage(make, "b5", stages["b5"], make.global_avg_pool(name="pool")),
                make.dense(spec.num_classes, name="fc"),
            ],
            name="net",
        )

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, X, training=False):
        return self.net(X, training=training)

    def points(self, X) -> dict:
        """Eval-mode outputs keyed by canonical path: every layer of b1 and b2 by name
        (``b1.conv`` before its ReLU, ...), every Inception block's points (``b3.0.b1_1``,
        ...) and output (``b3.0``), each stage's output (``b1`` ... ``b5``) and ``head.fc``."""
        *stages, fc = self.net.layers
        out = {}
        for stage in stages:
            for k, layer in enumerate(stage.layers):
                if isinstance(layer, Inception):
                    path = f"{stage.name}.{k}"
                    block_points = layer(X, return_points=True)
                    X = out[path] = block_points.pop("output")
                    out |= {f"{path}.{name}": value for name, value in block_points.items()}
                else:
                    X = out[f"{stage.name}.{layer.name}"] = layer(X)
            out[stage.name] = X
        out["head.fc"] = fc(X)
        return out


def max_pool(make: LayerMaker, *, name: str, strides: int = 2) -> layers.Layer:
    """GoogLeNet's 3x3 max-pool with padding 1 (stride 2 downsamples); under ``same_padding``
    Keras' ``MaxPooling2D(padding='same')``, which at stride 2 on an even size pads only bottom and right."""
    if make.variant == "same_padding":
        return layers.MaxPooling2D(3, strides=strides, padding="same", name=name, dtype=make.dtype)
    return PaddedMaxPool2D(3, strides=strides, padding=1, name=name, dtype=make.dtype)


def avg_pool(make: LayerMaker, *, name: str) -> layers.Layer:
    """InceptionA's 3x3 average pool, stride 1, padding 1, counting the padded zeros; under
    ``avgpool_excludes_padding`` Keras' ``AveragePooling2D(padding='same')``, which leaves them out."""
    if make.variant == "avgpool_excludes_padding":
        return layers.AveragePooling2D(3, strides=1, padding="same", name=name, dtype=make.dtype)
    return PaddedAvgPool2D(3, strides=1, padding=1, name=name, dtype=make.dtype)


def b1(make: LayerMaker) -> keras.Sequential:
    return make.sequential(
        [
            *make.padded_conv(64, 7, strides=2, name="conv", pad_name="pad"),
            make.relu(name="relu"),
            max_pool(make, name="pool"),
        ],
        name="b1",
    )


def b2(make: LayerMaker) -> keras.Sequential:
    return make.sequential(
        [
            make.conv(64, 1, name="conv1"),
            make.relu(name="relu1"),
            *make.padded_conv(192, 3, name="conv2", pad_name="pad2"),
            make.relu(name="relu2"),
            max_pool(make, name="pool"),
        ],
        name="b2",
    )


def inception_stage(make: LayerMaker, name: str, blocks: list[specs.Inception], pool: layers.Layer) -> keras.Sequential:
    """Inception blocks ``inception0``, ``inception1``, ..., then ``pool``."""
    inceptions = [
        Inception(block, dtype=make.dtype, seed=make.seeds, variant=make.variant, name=f"inception{k}")
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
        variant: str | None = None,
        name: str = "inception_a",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.variant = spec, variant
        make = LayerMaker.for_spec(spec, dtype, seed, variant)
        self.branch1x1 = make.conv(16, 1, name="branch1x1")
        self.branch5x5_1 = make.conv(16, 1, name="branch5x5_1")
        self.branch5x5_pad, self.branch5x5_2 = make.padded_conv(24, 5, name="branch5x5_2", pad_name="branch5x5_pad")
        self.branch3x3_1 = make.conv(16, 1, name="branch3x3_1")
        self.branch3x3_pad2, self.branch3x3_2 = make.padded_conv(24, 3, name="branch3x3_2", pad_name="branch3x3_pad2")
        self.branch3x3_pad3, self.branch3x3_3 = make.padded_conv(24, 3, name="branch3x3_3", pad_name="branch3x3_pad3")
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

    def call(self, X, training=False, return_points=False):
        """The concatenated branches; with ``return_points``, a dict of each convolution's output
        by layer name, the average pool's under ``branch_pool.avg``, and the output under ``"output"``."""
        points = {}
        points["branch1x1"] = self.branch1x1(X)
        points["branch5x5_1"] = self.branch5x5_1(X)
        points["branch5x5_2"] = self.branch5x5_2(self.branch5x5_pad(points["branch5x5_1"]))
        points["branch3x3_1"] = self.branch3x3_1(X)
        points["branch3x3_2"] = self.branch3x3_2(self.branch3x3_pad2(points["branch3x3_1"]))
        points["branch3x3_3"] = self.branch3x3_3(self.branch3x3_pad3(points["branch3x3_2"]))
        points["branch_pool.avg"] = self.branch_pool_avg(X)
        points["branch_pool"] = self.branch_pool(points["branch_pool.avg"])
        branches = [points[name] for name in ("branch1x1", "branch5x5_2", "branch3x3_3", "branch_pool")]
        points["output"] = keras.ops.concatenate(branches, axis=-1)
        return points if return_points else points["output"]


class InceptionNet(keras.Model):
    """The tutorials' MNIST net around InceptionA, as one flat Sequential ``net``:
    conv1 (5x5), max-pool 2, ReLU, incep1, conv2 (5x5), max-pool 2, ReLU, incep2, flatten, fc.

    ``GROUPS`` names the canonical group of each layer, ``POINTS`` the activation point
    that each layer's output is (``pool1`` is the output after max-pool and ReLU).
    """

    GROUPS = {
        "conv1": "conv1",
        "pool1": "conv1",
        "relu1": "conv1",
        "incep1": "incep1",
        "conv2": "conv2",
        "pool2": "conv2",
        "relu2": "conv2",
        "incep2": "incep2",
        "flatten": "fc",
        "fc": "fc",
    }
    POINTS = {"conv1": "conv1", "relu1": "pool1", "incep1": "incep1", "conv2": "conv2", "relu2": "pool2", "incep2": "incep2", "fc": "fc"}

    def __init__(
        self,
        spec: specs.InceptionNet,
        *,
        dtype: str = "float32",
        seed: int = 0,
        variant: str | None = None,
        name: str = "inception_net",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.variant = spec, variant
        make = LayerMaker.for_spec(spec, dtype, seed, variant)
        self.net = make.sequential(
            [
                make.conv(10, 5, name="conv1"),
                layers.MaxPooling2D(2, name="pool1", dtype=dtype),
                make.relu(name="relu1"),
                InceptionA(specs.InceptionA(10), dtype=dtype, seed=make.seeds, variant=variant, name="incep1"),
                make.conv(20, 5, name="conv2"),
                layers.MaxPooling2D(2, name="pool2", dtype=dtype),
                make.relu(name="relu2"),
                InceptionA(specs.InceptionA(20), dtype=dtype, seed=make.seeds, variant=variant, name="incep2"),
                layers.Flatten(name="flatten", dtype=dtype),
                make.dense(spec.num_classes, name="fc"),
            ],
            name="net",
        )

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, X, training=False):
        return self.net(X, training=training)

    def points(self, X) -> dict:
        """Eval-mode outputs keyed by canonical path (see ``POINTS``), and each InceptionA
        block's points (``incep1.branch1x1``, ..., ``incep1.branch_pool.avg``)."""
        out = {}
        for layer in self.net.layers:
            if isinstance(layer, InceptionA):
                block_points = layer(X, return_points=True)
                X = block_points.pop("output")
                out |= {f"{layer.name}.{name}": value for name, value in block_points.items()}
            else:
                X = layer(X)
            if layer.name in self.POINTS:
                out[self.POINTS[layer.name]] = X
        return out
