"""d2l's DenseNet in Keras 3.

Read side by side with d2l-en (chapter_convolutional-modern/densenet.md, the TensorFlow tab): the
same ``ConvBlock`` (BN, ReLU, 3x3 conv, its output concatenated after its input on the channel
axis, so the block's output is the concatenation), ``DenseBlock``, ``transition_block`` and ``net``.
The differences are on purpose:

- symmetric padding: ``ZeroPadding2D`` (``conv_pad``) before a 'valid' convolution, and b1's
  max-pool with PyTorch's explicit padding (see ``impl_tf.resnet``), where the book writes
  ``padding='same'``;
- BatchNormalization takes the spec's epsilon and momentum (Keras' defaults are 1e-3 and 0.99);
- ``net`` names its blocks as the book's PyTorch tab does: ``b1``, ``dense_blk{i}``,
  ``tran_blk{i}``, ``last``; a dense block's conv blocks are ``block0``, ``block1``, ...;
- every layer computes in the model's dtype, and ``build`` creates every variable from the
  spec's channel counts (Xavier-uniform kernels, as d2l's ``init_cnn``).
"""

from __future__ import annotations

import keras

from impl_tf.anynet import LayerMaker, SequentialNet, build_layers
from impl_tf.resnet import b1
from parity import specs


class ConvBlock(keras.Model):
    """BN, ReLU, then a 3x3 conv padded by 1 to ``num_channels``, whose output is concatenated after
    the input on the channel axis."""

    def __init__(self, make: LayerMaker, num_channels: int, *, name: str):
        super().__init__(name=name, dtype=make.dtype)
        self.bn = make.batch_norm(name="bn")
        self.relu = make.relu(name="relu")
        self.conv_pad, self.conv = make.padded_conv(num_channels, 3, 1, name="conv")

    def build(self, input_shape):
        build_layers([(self.bn, input_shape[-1]), (self.conv, input_shape[-1])])

    def call(self, X, training=False):
        Y = self.conv(self.conv_pad(self.relu(self.bn(X, training=training))))
        return keras.ops.concatenate([X, Y], axis=-1)


class DenseBlock(keras.Model):
    """``num_convs`` conv blocks ``block0``, ``block1``, ...: each adds ``num_channels`` (the growth
    rate) channels to its input."""

    def __init__(self, make: LayerMaker, num_convs: int, num_channels: int, *, name: str):
        super().__init__(name=name, dtype=make.dtype)
        self.num_channels = num_channels
        self.net = [ConvBlock(make, num_channels, name=f"block{j}") for j in range(num_convs)]

    def build(self, input_shape):
        channels = input_shape[-1]
        for blk in self.net:
            blk.build((None, None, None, channels))
            channels += self.num_channels

    def call(self, X, training=False):
        for blk in self.net:
            X = blk(X, training=training)
        return X


def transition_block(make: LayerMaker, num_channels: int, *, name: str) -> keras.Sequential:
    """BN, ReLU, a 1x1 conv to ``num_channels`` and a 2x2 stride-2 average pool."""
    return make.sequential(
        [
            make.batch_norm(name="bn"),
            make.relu(name="relu"),
            make.conv(num_channels, 1, name="conv"),
            make.avg_pool(2, strides=2, name="pool"),
        ],
        name=name,
    )


class DenseNet(SequentialNet):
    """d2l's DenseNet: ``net`` is Sequential(b1, dense_blk1, tran_blk1, ..., dense_blk4, last).

    Each transition block halves the channels the dense block before it grew; ``last`` is BN,
    ReLU, global average pooling and a dense layer.
    """

    def __init__(
        self,
        spec: specs.DenseNet = specs.DenseNet(),
        *,
        dtype: str = "float32",
        seed: int = 0,
        pitfalls: frozenset[str] = frozenset(),
        name: str = "densenet",
    ):
        super().__init__(name=name, dtype=dtype)
        self.spec, self.pitfalls = spec, frozenset(pitfalls)
        make = LayerMaker.for_spec(spec, dtype, seed, pitfalls)
        num_channels, growth_rate = spec.num_channels, spec.growth_rate
        # For a (1, 96, 96, 1) input: b1 N x 24 x 24 x 64, then 12 x 12, 6 x 6 and 3 x 3 maps.
        blocks = [b1(make, num_channels)]
        for i, num_convs in enumerate(spec.arch, start=1):
            blocks.append(DenseBlock(make, num_convs, growth_rate, name=f"dense_blk{i}"))
            num_channels += num_convs * growth_rate
            if i < len(spec.arch):
                num_channels //= 2
                blocks.append(transition_block(make, num_channels, name=f"tran_blk{i}"))
        last = make.sequential(
            [
                make.batch_norm(name="bn"),
                make.relu(name="relu"),
                make.global_avg_pool(name="pool"),
                make.dense(spec.num_classes, name="fc"),
            ],
            name="last",
        )
        self.net = make.sequential([*blocks, last], name="net")
