"""d2l's ResNeXt block, AnyNet and RegNetX32 in Keras 3, numerically aligned with the other frameworks.

Read side by side with d2l (chapter_convolutional-modern: resnet.md ``ResNeXtBlock``,
cnn-design.md ``AnyNet`` and ``RegNetX32``, the TensorFlow tabs). The differences are on purpose:

- symmetric padding: ``ZeroPadding2D`` (``{conv}_pad``) before a 'valid' convolution, as in
  keras.applications (Keras 'same' at stride 2 pads only bottom and right);
- BatchNormalization epsilon and momentum come from the spec (Keras' defaults are
  1e-3 and 0.99; the spec's momentum is PyTorch's, so Keras gets ``1 - momentum``);
- every layer is named, and every layer, Sequential containers included, computes
  in the model's dtype (a float32 Sequential would cast float64 inputs down);
- input channels are explicit: ``model.build((None, None, None, in_channels))``
  creates every variable, with the spec's channel counts;
- grouped convolutions run TensorFlow's own grouped conv (``GroupedConv2D``), and BatchNorm's
  inference its fused kernel (``BatchNormalization``): Keras' layers, variables and result;
- stages are named ``stage1``, ``stage2``, ... as in the book (``f'stage{i+1}'``), their
  blocks ``block0``, ``block1``, ...

A model built with ``pitfalls`` (names from ``impl_tf.backend.VARIANTS``) is a naive port
instead: ``LayerMaker`` makes the layers with ``padding='same'`` (``same_padding``) or Keras'
default BatchNorm epsilon (``keras_bn_epsilon``); both together are d2l's TensorFlow code
(``d2l_tf_tab``), whose BatchNormalization() also keeps Keras' momentum 0.99, seen only in training.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import layers

from parity import specs


class GroupedConv2D(layers.Conv2D):
    """``Conv2D(groups=g)`` computed by TensorFlow's own grouped convolution: ``tf.nn.convolution`` with
    the ``(kh, kw, in/g, out)`` kernel, which oneDNN runs on the CPU, in float32 and float64, eagerly
    and in a graph. It holds Conv2D's own variables and gives its result.

    Keras' TensorFlow backend sends every grouped convolution through an XLA function instead, which
    on CPU is re-traced on each eager call and runs slower in a graph too (a 10-group 3x3 conv of
    8x28x28x160 in a ``tf.function``: 16.6 ms through XLA, 4.1 ms as 10 convs on channel slices,
    2.5 ms as one grouped conv).
    """

    def convolution_op(self, inputs, kernel):
        return tf.nn.convolution(
            inputs, kernel, strides=self.strides, padding=self.padding.upper(), dilations=self.dilation_rate
        )


class BatchNormalization(layers.BatchNormalization):
    """Keras' ``BatchNormalization``, whose inference on float32 NHWC feature maps runs TensorFlow's fused
    kernel (``FusedBatchNormV3``, ``is_training=False``): one pass over the map instead of Keras' separate
    multiply and add. Its values equal Keras' own form bit for bit on RegNetX-400MF (batch 8 here: 118 ->
    154 img/s). Training, float64 (the fused kernel has none) and flat (N, C) inputs take Keras' path.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = inputs.dtype == tf.float32 and len(inputs.shape) == 4 and self.axis in (-1, 3)
        if training or mask is not None or not fusable or not (self.scale and self.center):
            return super().call(inputs, training=training, mask=mask)
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs,
            self.gamma.value,
            self.beta.value,
            mean=self.moving_mean.value,
            variance=self.moving_variance.value,
            epsilon=self.epsilon,
            is_training=False,
        )
        return outputs


class SequentialNet(keras.Model):
    """A net whose layers are one Sequential ``self.net``, as d2l's ``self.net``: building and
    calling the model is building and calling ``net``."""

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, X, training=False):
        return self.net(X, training=training)


@dataclass(frozen=True)
class LayerMaker:
    """Makes a model's layers: all in ``dtype``, conv and dense kernels drawn from ``seeds``
    (Xavier-uniform, as d2l's ``init_cnn``); ``pitfalls`` are the naive port's, if any."""

    dtype: str
    seeds: keras.random.SeedGenerator
    pitfalls: frozenset[str] = frozenset()
    conv_bias: bool = True
    bn_eps: float | None = None
    bn_momentum: float | None = None

    @classmethod
    def for_spec(
        cls,
        spec: specs.Spec,
        dtype: str,
        seed: int | keras.random.SeedGenerator,
        pitfalls: frozenset[str] = frozenset(),
    ) -> LayerMaker:
        """The spec's settings; specs without BatchNorm (the Inception family, NiN) have no ``bn_*``,
        and those without ``conv_bias`` always give their convolutions a bias."""
        seeds = seed if isinstance(seed, keras.random.SeedGenerator) else keras.random.SeedGenerator(seed)
        settings = {key: getattr(spec, key) for key in ("conv_bias", "bn_eps", "bn_momentum") if hasattr(spec, key)}
        return cls(dtype, seeds, frozenset(pitfalls), **settings)

    def padded_conv(
        self, filters: int, kernel_size: int, padding: int, *, name: str, strides: int = 1, groups: int = 1
    ) -> list[layers.Layer]:
        """``ZeroPadding2D(padding)`` named ``{name}_pad``, then a 'valid' convolution ``name``, as in
        keras.applications; no padding step where ``padding`` is 0.

        Under ``same_padding`` the convolution pads itself, as d2l's TensorFlow code does
        (``padding='same'``, which is ``kernel_size // 2`` zeros a side at stride 1, and at stride 2
        on an even size one zero fewer on the top and left), and the padding step passes its input through.
        """
        conv = {"name": name, "strides": strides, "groups": groups}
        if not padding:
            return [self.conv(filters, kernel_size, **conv)]
        if "same_padding" in self.pitfalls:
            # d2l's TF tab (d2l-en chapter_convolutional-modern): cnn-design.md l. 109-110, resnet.md
            # l. 188-191, 310-315 and 602-603, googlenet.md l. 220-223
            pad = layers.Identity(name=f"{name}_pad", dtype=self.dtype)
            return [pad, self.conv(filters, kernel_size, padding="same", **conv)]
        pad = layers.ZeroPadding2D(padding, name=f"{name}_pad", dtype=self.dtype)
        return [pad, self.conv(filters, kernel_size, **conv)]

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

    def batch_norm(self, *, name: str) -> BatchNormalization:
        """BatchNorm with the spec's epsilon; under ``keras_bn_epsilon`` with Keras' default (1e-3)."""
        # d2l's TF tab: BatchNormalization() (cnn-design.md l. 111, resnet.md l. 196-197, 312 and 606-612)
        epsilon = {} if "keras_bn_epsilon" in self.pitfalls else {"epsilon": self.bn_eps}
        return BatchNormalization(axis=-1, momentum=1 - self.bn_momentum, name=name, dtype=self.dtype, **epsilon)

    def relu(self, *, name: str) -> layers.Activation:
        return layers.Activation("relu", name=name, dtype=self.dtype)

    def sigmoid(self, *, name: str) -> layers.Activation:
        return layers.Activation("sigmoid", name=name, dtype=self.dtype)

    def max_pool(self, pool_size: int, *, strides: int, name: str) -> layers.MaxPooling2D:
        """An unpadded max-pool ('valid', as PyTorch's ``MaxPool2d`` without padding)."""
        return layers.MaxPooling2D(pool_size, strides=strides, name=name, dtype=self.dtype)

    def avg_pool(self, pool_size: int, *, strides: int, name: str) -> layers.AveragePooling2D:
        """An unpadded average pool ('valid', as PyTorch's ``AvgPool2d`` without padding)."""
        return layers.AveragePooling2D(pool_size, strides=strides, name=name, dtype=self.dtype)

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
        pitfalls: frozenset[str] = frozenset(),
        name: str = "resnext_block",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        bot_channels, num_channels, strides = spec.bot_channels, spec.num_channels, spec.stride
        self.conv1 = make.conv(bot_channels, 1, name="conv1")
        self.conv2_pad, self.conv2 = make.padded_conv(
            bot_channels, 3, 1, strides=strides, groups=spec.groups, name="conv2"
        )
        self.conv3 = make.conv(num_channels, 1, name="conv3")
        self.bn1, self.bn2, self.bn3 = (make.batch_norm(name=f"bn{k}") for k in (1, 2, 3))
        if spec.use_1x1conv:
            self.conv4 = make.conv(num_channels, 1, strides=strides, name="conv4")
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
        build_layers(channels_in)

    def call(self, X, training=False):
        Y = keras.ops.relu(self.bn1(self.conv1(X), training=training))
        Y = keras.ops.relu(self.bn2(self.conv2(self.conv2_pad(Y)), training=training))
        Y = self.bn3(self.conv3(Y), training=training)
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X), training=training)
        return keras.ops.relu(Y + X)


class AnyNet(SequentialNet):
    """d2l's AnyNet: ``net`` is Sequential(stem, stage1, stage2, ..., head), as in the book.

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
        pitfalls: frozenset[str] = frozenset(),
        name: str = "anynet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        stages = [
            stage(make, f"stage{i + 1}", [block for _, _, block in blocks])
            for i, blocks in itertools.groupby(spec.blocks(), key=operator.itemgetter(0))
        ]
        self.net = make.sequential([stem(make, spec.stem_width), *stages, head(make, spec.num_classes)], name="net")


def stem(make: LayerMaker, num_channels: int) -> keras.Sequential:
    return make.sequential(
        [
            *make.padded_conv(num_channels, 3, 1, strides=2, name="conv"),
            make.batch_norm(name="bn"),
            make.relu(name="relu"),
        ],
        name="stem",
    )


def stage(make: LayerMaker, name: str, blocks: list[specs.ResNeXtBlock]) -> keras.Sequential:
    """ResNeXt blocks ``block0``, ``block1``, ...; their specs come from ``AnyNet.blocks()``."""
    return make.sequential(
        [
            ResNeXtBlock(block, dtype=make.dtype, seed=make.seeds, pitfalls=make.pitfalls, name=f"block{j}")
            for j, block in enumerate(blocks)
        ],
        name=name,
    )


def head(make: LayerMaker, num_classes: int) -> keras.Sequential:
    return make.sequential([make.global_avg_pool(name="pool"), make.dense(num_classes, name="fc")], name="head")


def build_layers(channels_in: list[tuple[layers.Layer, int]]) -> None:
    """Create each layer's variables for its number of input channels."""
    for layer, channels in channels_in:
        layer.build((None, None, None, channels))


class RegNetX32(AnyNet):
    """d2l's RegNetX32: the AnyNet of ``parity.specs.regnetx32()``, with ``num_classes`` outputs."""

    def __init__(self, num_classes: int = 10, *, dtype: str = "float32", seed: int = 0, name: str = "anynet"):
        spec = dataclasses.replace(specs.regnetx32(), num_classes=num_classes)
        super().__init__(spec, dtype=dtype, seed=seed, name=name)
