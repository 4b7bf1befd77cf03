"""d2l's Residual block and ResNet-18, and the tutorials' residual MNIST net, in Keras 3.

Read side by side with d2l-en (chapter_convolutional-modern/resnet.md, the TensorFlow tab) and
the common PyTorch tutorial's ``ResidualBlock`` / ``Net``. The differences are on purpose:

- symmetric padding: ``ZeroPadding2D`` (``conv1_pad``) before a 'valid' convolution, and b1's
  max-pool with PyTorch's explicit padding of -inf (``impl_tf.inception.max_pool``), where the
  book writes ``padding='same'`` (which at stride 2 pads only bottom and right);
- BatchNormalization takes the spec's epsilon and momentum (Keras' defaults are 1e-3 and 0.99);
- ``net`` names its stages ``b2``, ``b3``, ... as the book's PyTorch tab does, their blocks
  ``block0``, ``block1``, ...; b1's layers are ``conv``, ``bn``, ``relu``, ``pool``, the
  classifier ``last`` holds ``pool`` and ``fc``;
- every layer computes in the model's dtype, and ``build`` creates every variable from the
  spec's channel counts (Xavier-uniform kernels, as d2l's ``init_cnn``).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import keras

from impl_tf.anynet import LayerMaker, SequentialNet, build_layers
from impl_tf.inception import max_pool
from parity import specs


class Residual(keras.Model):
    """d2l's Residual block: 3x3 conv (strided) -> BN -> ReLU -> 3x3 conv -> BN, plus the input
    (through a strided 1x1 conv ``conv3`` with ``use_1x1conv``, no BatchNorm), then ReLU."""

    def __init__(
        self,
        spec: specs.Residual,
        *,
        dtype: str = "float32",
        seed: int | keras.random.SeedGenerator = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "residual",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        num_channels, strides = spec.num_channels, spec.stride
        self.conv1_pad, self.conv1 = make.padded_conv(num_channels, 3, 1, strides=strides, name="conv1")
        self.conv2_pad, self.conv2 = make.padded_conv(num_channels, 3, 1, name="conv2")
        self.conv3 = make.conv(num_channels, 1, strides=strides, name="conv3") if spec.use_1x1conv else None
        self.bn1, self.bn2 = make.batch_norm(name="bn1"), make.batch_norm(name="bn2")

    def build(self, input_shape):
        in_channels, num_channels = input_shape[-1], self.spec.num_channels
        channels_in = [
            (self.conv1, in_channels),
            (self.bn1, num_channels),
            (self.conv2, num_channels),
            (self.bn2, num_channels),
        ]
        if self.conv3 is not None:
            channels_in.append((self.conv3, in_channels))
        build_layers(channels_in)

    def call(self, X, training=False):
        Y = keras.ops.relu(self.bn1(self.conv1(self.conv1_pad(X)), training=training))
        Y = self.bn2(self.conv2(self.conv2_pad(Y)), training=training)
        if self.conv3 is not None:
            X = self.conv3(X)
        return keras.ops.relu(Y + X)


class ResNet(SequentialNet):
    """d2l's ResNet: ``net`` is Sequential(b1, b2, ..., last), as in the book.

    b1 is a 7x7 stride-2 conv, BN, ReLU and a 3x3 stride-2 max-pool; each stage a Sequential of
    Residual blocks (``spec.blocks()`` says their channels, strides and shortcuts); ``last``
    global average pooling and a dense layer.
    """

    def __init__(
        self,
        spec: specs.ResNet = specs.ResNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "resnet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        stages = [
            block(make, stage, [residual for _, residual in residuals])
            for stage, residuals in itertools.groupby(spec.blocks(), key=lambda item: item[0].split(".")[0])
        ]
        # For a (1, 96, 96, 1) input: b1 N x 24 x 24 x 64, b2 ... b5 down to N x 3 x 3 x 512, last N x 10.
        self.net = make.sequential([b1(make), *stages, last(make, spec.num_classes)], name="net")


class ResNet18(ResNet):
    """d2l's ResNet18: the ResNet of ``parity.specs.ResNet()``, with ``num_classes`` outputs."""

    def __init__(self, num_classes: int = 10, *, dtype: str = "float32", seed: int = 0, name: str = "resnet"):
        super().__init__(specs.ResNet(num_classes=num_classes), dtype=dtype, seed=seed, name=name)


def b1(make: LayerMaker, num_channels: int = 64) -> keras.Sequential:
    """7x7 stride-2 conv padded by 3, BN, ReLU, 3x3 stride-2 max-pool padded by 1."""
    return make.sequential(
        [
            *make.padded_conv(num_channels, 7, 3, strides=2, name="conv"),
            make.batch_norm(name="bn"),
            make.relu(name="relu"),
            max_pool(make, name="pool"),
        ],
        name="b1",
    )


def block(make: LayerMaker, name: str, residuals: list[specs.Residual]) -> keras.Sequential:
    """One stage: Residual blocks ``block0``, ``block1``, ...; their specs come from ``ResNet.blocks()``."""
    return make.sequential(
        [
            Residual(residual, dtype=make.dtype, seed=make.seeds, pitfalls=make.pitfalls, name=f"block{j}")
            for j, residual in enumerate(residuals)
        ],
        name=name,
    )


def last(make: LayerMaker, num_classes: int) -> keras.Sequential:
    return make.sequential([make.global_avg_pool(name="pool"), make.dense(num_classes, name="fc")], name="last")


class ResidualBlock(keras.Model):
    """The tutorials' ResidualBlock: ``relu(X + conv2(relu(conv1(X))))``, 3x3 convs padded by 1."""

    def __init__(
        self,
        spec: specs.ResidualBlock,
        *,
        dtype: str = "float32",
        seed: int | keras.random.SeedGenerator = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "residual_block",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        self.conv1_pad, self.conv1 = make.padded_conv(spec.channels, 3, 1, name="conv1")
        self.conv2_pad, self.conv2 = make.padded_conv(spec.channels, 3, 1, name="conv2")

    def build(self, input_shape):
        build_layers([(self.conv1, self.spec.channels), (self.conv2, self.spec.channels)])

    def call(self, X, training=False):
        Y = keras.ops.relu(self.conv1(self.conv1_pad(X)))
        Y = self.conv2(self.conv2_pad(Y))
        return keras.ops.relu(X + Y)


class ResidualNet(SequentialNet):
    """The tutorials' MNIST net around ResidualBlock, as one flat Sequential ``net``:
    conv1 (5x5), max-pool 2, ReLU, rblock1, conv2 (5x5), max-pool 2, ReLU, rblock2, flatten, fc."""

    def __init__(
        self,
        spec: specs.ResidualNet = specs.ResidualNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "residual_net",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        rblock = functools.partial(ResidualBlock, dtype=dtype, seed=make.seeds, pitfalls=make.pitfalls)
        self.net = make.sequential(
            [
                make.conv(16, 5, name="conv1"),  # N x 24 x 24 x 16
                make.max_pool(2, strides=2, name="pool1"),  # N x 12 x 12 x 16
                make.relu(name="relu1"),
                rblock(specs.ResidualBlock(16), name="rblock1"),
                make.conv(32, 5, name="conv2"),  # N x 8 x 8 x 32
                make.max_pool(2, strides=2, name="pool2"),  # N x 4 x 4 x 32
                make.relu(name="relu2"),
                rblock(specs.ResidualBlock(32), name="rblock2"),
                keras.layers.Flatten(name="flatten", dtype=dtype),  # N x 512, in (H, W, C) order
                make.dense(spec.num_classes, name="fc"),
            ],
            name="net",
        )


class TorchvisionBlock(keras.Model):
    """torchvision's BasicBlock (3x3 (strided) -> 3x3) or, for a bottleneck spec, Bottleneck (1x1 -> 3x3
    (strided) -> 1x1 to 4x ``width``), convs without bias, each with BatchNorm, plus the input (through
    ``downsample_conv`` and ``downsample_bn`` where the shape changes), then ReLU."""

    def __init__(self, make: LayerMaker, bottleneck: bool, in_channels: int, width: int, strides: int, *, name: str):
        super().__init__(name=name, dtype=make.dtype)
        self.bottleneck, self.in_channels, self.width = bottleneck, in_channels, width
        out = width * (4 if bottleneck else 1)
        if bottleneck:
            self.conv1 = make.conv(width, 1, name="conv1")
            self.conv2_pad, self.conv2 = make.padded_conv(width, 3, 1, strides=strides, name="conv2")
            self.conv3, self.bn3 = make.conv(out, 1, name="conv3"), make.batch_norm(name="bn3")
        else:
            self.conv1_pad, self.conv1 = make.padded_conv(width, 3, 1, strides=strides, name="conv1")
            self.conv2_pad, self.conv2 = make.padded_conv(width, 3, 1, name="conv2")
        self.bn1, self.bn2 = make.batch_norm(name="bn1"), make.batch_norm(name="bn2")
        self.downsample_conv = self.downsample_bn = None
        if strides != 1 or in_channels != out:
            self.downsample_conv = make.conv(out, 1, strides=strides, name="downsample_conv")
            self.downsample_bn = make.batch_norm(name="downsample_bn")
        self.out_channels = out

    def build(self, input_shape):
        width, out = self.width, self.out_channels
        convs = [(self.conv1, self.in_channels), (self.conv2, width), (self.bn1, width), (self.bn2, width)]
        if self.bottleneck:
            convs += [(self.conv3, width), (self.bn3, out)]
        if self.downsample_conv is not None:
            convs += [(self.downsample_conv, self.in_channels), (self.downsample_bn, out)]
        build_layers(convs)

    def call(self, X, training=False):
        identity = X
        if self.downsample_conv is not None:
            identity = self.downsample_bn(self.downsample_conv(X), training=training)
        if self.bottleneck:
            Y = keras.ops.relu(self.bn1(self.conv1(X), training=training))
            Y = keras.ops.relu(self.bn2(self.conv2(self.conv2_pad(Y)), training=training))
            Y = self.bn3(self.conv3(Y), training=training)
        else:
            Y = keras.ops.relu(self.bn1(self.conv1(self.conv1_pad(X)), training=training))
            Y = self.bn2(self.conv2(self.conv2_pad(Y)), training=training)
        return keras.ops.relu(Y + identity)


class TorchvisionResNet(SequentialNet):
    """torchvision's ResNet: ``net`` is Sequential(conv1, bn1, relu, maxpool, layer1 ... layer4, avgpool, fc),
    each stage a Sequential of blocks ``block{j}`` (``spec.blocks()``: widths and strides)."""

    def __init__(
        self,
        spec: specs.TorchvisionResNet = specs.TorchvisionResNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "resnet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        nets = specs.torchvision_nets
        make = LayerMaker.for_spec(spec, dtype, seed)
        make = dataclasses.replace(make, conv_bias=False, bn_eps=nets.BN_EPS, bn_momentum=nets.BN_MOMENTUM)
        stages = [
            make.sequential(
                [TorchvisionBlock(make, spec.bottleneck, *b[1:], name=f"block{b[0].split('.')[1]}") for b in blocks],
                name=stage,
            )
            for stage, blocks in itertools.groupby(spec.blocks(), key=lambda b: b[0].split(".")[0])
        ]
        stem = [
            *make.padded_conv(64, 7, 3, strides=2, name="conv1"),
            make.batch_norm(name="bn1"),
            make.relu(name="relu"),
        ]
        # For a (1, 224, 224, 3) input: maxpool N x 56 x 56 x 64, layer4 N x 7 x 7 x 512 * expansion.
        self.net = make.sequential(
            [
                *stem,
                max_pool(make, name="maxpool"),
                *stages,
                make.global_avg_pool(name="avgpool"),
                make.dense(spec.num_classes, name="fc"),
            ],
            name="net",
        )
