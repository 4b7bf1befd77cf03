"""d2l's ResNeXt block and AnyNet in Keras 3, numerically aligned with the other frameworks.

Read side by side with d2l (chapter_convolutional-modern: resnet.md ``ResNeXtBlock``,
cnn-design.md ``AnyNet``). The differences are on purpose:

- symmetric padding: ``ZeroPadding2D(1)`` before a 'valid' 3x3 conv, as in
  keras.applications (Keras 'same' at stride 2 pads only bottom and right);
- BatchNormalization epsilon and momentum come from the spec (Keras' defaults are
  1e-3 and 0.99; the spec's momentum is PyTorch's, so Keras gets ``1 - momentum``);
- every layer is named, and every layer, Sequential containers included, computes
  in the model's dtype (a float32 Sequential would cast float64 inputs down);
- input channels are explicit: ``model.build((None, None, None, in_channels))``
  creates every variable, with the spec's channel counts;
- grouped convolutions run per group (``GroupedConv2D``), same variables and result.

A model built with a ``variant`` (one of ``impl_tf.backend.VARIANTS``) is the naive port
instead: ``LayerMaker`` makes the layers the way d2l's TensorFlow code does
(``padding='same'``, Keras' default BatchNorm epsilon).
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

import keras
from keras import layers

from parity import specs


class GroupedConv2D(layers.Conv2D):
    """``Conv2D(groups=g)`` computed as g plain convolutions on channel slices, concatenated.

    It holds Conv2D's own variables (kernel ``(kh, kw, in/g, out)``, bias) and gives
    the same result. Keras' TensorFlow backend sends every grouped convolution
    through an XLA function, which on CPU is re-traced on each eager call and runs
    slower inside a graph too.
    """

    def convolution_op(self, inputs, kernel):
        convolve = super().convolution_op
        pairs = zip(keras.ops.split(inputs, self.groups, axis=-1), keras.ops.split(kernel, self.groups, axis=-1))
        return keras.ops.concatenate([convolve(x, k) for x, k in pairs], axis=-1)


@dataclass(frozen=True)
class LayerMaker:
    """Makes a model's layers: all in ``dtype``, conv and dense kernels drawn from ``seeds``;
    ``variant`` names the naive port whose layers it makes instead, if any."""

    dtype: str
    seeds: keras.random.SeedGenerator
    conv_bias: bool = True
    bn_eps: float | None = None
    bn_momentum: float | None = None
    variant: str | None = None

    @classmethod
    def for_spec(
        cls, spec: specs.Spec, dtype: str, seed: int | keras.random.SeedGenerator, variant: str | None = None
    ) -> LayerMaker:
        """The spec's settings; specs without BatchNorm (the Inception family) have no ``bn_*``,
        and InceptionA's convolutions always carry a bias."""
        seeds = seed if isinstance(seed, keras.random.SeedGenerator) else keras.random.SeedGenerator(seed)
        settings = {key: getattr(spec, key) for key in ("conv_bias", "bn_eps", "bn_momentum") if hasattr(spec, key)}
        return cls(dtype, seeds, **settings, variant=variant)

    def padded_conv(
        self, filters: int, kernel_size: int, *, name: str, pad_name: str, strides: int = 1, groups: int = 1
    ) -> tuple[layers.Layer, layers.Conv2D]:
        """A convolution and the padding step before it: ``kernel_size // 2`` zeros on every side.

        Under ``same_padding`` the convolution pads itself, as in d2l's TensorFlow code
        (``padding='same'``: at stride 2 on an even size, one zero fewer on the top and left), and the
        padding step passes its input through.
        """
        if self.variant == "same_padding":
            pad = layers.Identity(name=pad_name, dtype=self.dtype)
            return pad, self.conv(filters, kernel_size, name=name, strides=strides, groups=groups, padding="same")
        pad = layers.ZeroPadding2D(padding=kernel_size // 2, name=pad_name, dtype=self.dtype)
        return pad, self.conv(filters, kernel_size, name=name, strides=strides, groups=groups)

    def conv(
        self, filters: int, kernel_size: int, *, name: str, strides: int = 1, groups: int = 1, padding: str = "valid"
    ) -> layers.Conv2D:
        conv_class = GroupedConv2D if groups > 1 else layers.Conv2D
        return conv_class(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            groups=groups,
            use_bias=self.conv_bias,
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.seeds),
            name=name,
            dtype=self.dtype,
        )

    def batch_norm(self, *, name: str) -> layers.BatchNormalization:
        """BatchNorm with the spec's epsilon; under ``keras_bn_epsilon`` with Keras' default (1e-3)."""
        epsilon = {} if self.variant == "keras_bn_epsilon" else {"epsilon": self.bn_eps}
        return layers.BatchNormalization(axis=-1, momentum=1 - self.bn_momentum, name=name, dtype=self.dtype, **epsilon)

    def relu(self, *, name: str) -> layers.Activation:
        return layers.Activation("relu", name=name, dtype=self.dtype)

    def global_avg_pool(self, *, name: str) -> layers.GlobalAveragePooling2D:
        return layers.GlobalAveragePooling2D(name=name, dtype=self.dtype)

    def dense(self, units: int, *, name: str) -> layers.Dense:
        return layers.Dense(
            units, kernel_initializer=keras.initializers.GlorotUniform(seed=self.seeds), name=name, dtype=self.dtype
        )

    def sequential(self, children: list[layers.Layer], *, name: str) -> keras.Sequential:
        net = keras.Sequential(children, name=name)
        net.dtype_policy = self.dtype
        return net


class ResNeXtBlock(keras.Model):
    """d2l's ResNeXt block: 1x1 -> grouped 3x3 (strided) -> 1x1, plus an identity or 1x1 shortcut.

    Built from a ``parity.specs.ResNeXtBlock``: ``spec.group_width`` channels per group,
    so ``conv2`` has ``spec.groups`` groups. ``seed`` is an int or a generator shared
    with the enclosing network.
    """

    def __init__(
        self,
        spec: specs.ResNeXtBlock,
        *,
        dtype: str = "float32",
        seed: int | keras.random.SeedGenerator = 0,
        variant: str | None = None,
        name: str = "resnext_block",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.variant = spec, variant
        make = LayerMaker.for_spec(spec, dtype, seed, variant)
        bot_channels, num_channels = spec.bot_channels, spec.num_channels
        self.conv1 = make.conv(bot_channels, 1, name="conv1")
        self.bn1 = make.batch_norm(name="bn1")
        self.pad2, self.conv2 = make.padded_conv(
            bot_channels, 3, strides=spec.stride, groups=spec.groups, name="conv2", pad_name="pad2"
        )
        self.bn2 = make.batch_norm(name="bn2")
        self.conv3 = make.conv(num_channels, 1, name="conv3")
        self.bn3 = make.batch_norm(name="bn3")
        if spec.use_1x1conv:
            self.conv4 = make.conv(num_channels, 1, strides=spec.stride, name="conv4")
            self.bn4 = make.batch_norm(name="bn4")
        else:
            self.conv4 = self.bn4 = None

    def build(self, input_shape):
        in_channels, bot_channels, num_channels = input_shape[-1], self.spec.bot_channels, self.spec.num_channels
        channels_in = [
            (self.conv1, in_channels),
            (self.bn1, bot_channels),
            (self.conv2, bot_channels),
            (self.bn2, bot_channels),
            (self.conv3, bot_channels),
            (self.bn3, num_channels),
        ]
        if self.conv4 is not None:
            channels_in += [(self.conv4, in_channels), (self.bn4, num_channels)]
        for layer, channels in channels_in:
            layer.build((None, None, None, channels))

    def call(self, X, training=False, return_points=False):
        """The block's output; with ``return_points``, a dict of every conv and BN output
        (BN before its ReLU) by layer name, and the output under ``"output"``."""
        points = {}
        points["conv1"] = self.conv1(X)
        points["bn1"] = self.bn1(points["conv1"], training=training)
        points["conv2"] = self.conv2(self.pad2(keras.ops.relu(points["bn1"])))
        points["bn2"] = self.bn2(points["conv2"], training=training)
        points["conv3"] = self.conv3(keras.ops.relu(points["bn2"]))
        points["bn3"] = self.bn3(points["conv3"], training=training)
        if self.conv4 is not None:
            points["conv4"] = self.conv4(X)
            points["bn4"] = X = self.bn4(points["conv4"], training=training)
        points["output"] = keras.ops.relu(points["bn3"] + X)
        return points if return_points else points["output"]


class AnyNet(keras.Model):
    """d2l's AnyNet: ``net`` is Sequential(stem, stage0, stage1, ..., head), as in the book.

    The stem is a strided 3x3 conv, BN and ReLU; each stage a Sequential of ResNeXt
    blocks (``spec.blocks()`` says their channels and strides); the head global
    average pooling and a dense layer.
    """

    def __init__(
        self,
        spec: specs.AnyNet,
        *,
        dtype: str = "float32",
        seed: int = 0,
        variant: str | None = None,
        name: str = "anynet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.variant = spec, variant
        make = LayerMaker.for_spec(spec, dtype, seed, variant)
        stages = [
            stage(make, i, [block for _, _, block in blocks])
            for i, blocks in itertools.groupby(spec.blocks(), key=operator.itemgetter(0))
        ]
        self.net = make.sequential([stem(make, spec.stem_width), *stages, head(make, spec.num_classes)], name="net")

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, X, training=False):
        return self.net(X, training=training)

    def points(self, X) -> dict:
        """Eval-mode outputs keyed by canonical path: each stem and head layer by name
        (``stem.conv``, ``stem.bn`` before the ReLU, ..., ``head.pool``, ``head.fc``), the
        stem's output ``stem``, and each block's points (``stages.0.blocks.0.conv1``, ...)
        and output (``stages.0.blocks.0``)."""
        stem_net, *stage_nets, head_net = self.net.layers
        out = {}
        for layer in stem_net.layers:
            X = out[f"stem.{layer.name}"] = layer(X, training=False)
        out["stem"] = X
        for i, stage_net in enumerate(stage_nets):
            for j, block in enumerate(stage_net.layers):
                path = specs.block_path(i, j)
                block_points = block(X, training=False, return_points=True)
                X = block_points.pop("output")
                out |= {f"{path}.{name}": value for name, value in block_points.items()}
                out[path] = X
        for layer in head_net.layers:
            X = out[f"head.{layer.name}"] = layer(X, training=False)
        return out


def stem(make: LayerMaker, num_channels: int) -> keras.Sequential:
    return make.sequential(
        [
            *make.padded_conv(num_channels, 3, strides=2, name="conv", pad_name="pad"),
            make.batch_norm(name="bn"),
            make.relu(name="relu"),
        ],
        name="stem",
    )


def stage(make: LayerMaker, index: int, blocks: list[specs.ResNeXtBlock]) -> keras.Sequential:
    """ResNeXt blocks ``block0``, ``block1``, ...; their specs come from ``AnyNet.blocks()``."""
    return make.sequential(
        [
            ResNeXtBlock(block, dtype=make.dtype, seed=make.seeds, variant=make.variant, name=f"block{j}")
            for j, block in enumerate(blocks)
        ],
        name=f"stage{index}",
    )


def head(make: LayerMaker, num_classes: int) -> keras.Sequential:
    return make.sequential([make.global_avg_pool(name="pool"), make.dense(num_classes, name="fc")], name="head")


class RegNetX32(AnyNet):
    """d2l's RegNetX32: the AnyNet of ``parity.specs.regnetx32()``."""

    def __init__(self, *, dtype: str = "float32", seed: int = 0, name: str = "anynet"):
        super().__init__(specs.regnetx32(), dtype=dtype, seed=seed, name=name)
