"""d2l's Network in Network (NiN) in Keras 3, built from a parity spec.

Read side by side with d2l-en ``chapter_convolutional-modern/nin.md``, the TensorFlow tab:
the same ``nin_block`` and the same flat Sequential ``net``, with every block's
(out_channels, kernel_size, strides, padding), the dropout rate and the class count taken
from the spec. The differences are on purpose:

- symmetric padding: ``ZeroPadding2D(padding)`` (``conv1_pad``) before a 'valid' k x k
  convolution, where the book writes ``padding='same'`` (the same zeros at stride 1);
- every layer is named (``block{i}/conv{k}``, ``pool{i}``) and computes in the model's dtype;
- ``model.build((None, None, None, in_channels))`` creates every variable, Xavier-uniform
  kernels as d2l's ``init_cnn``.
"""

from __future__ import annotations

import keras
from keras import layers

from impl_tf.anynet import LayerMaker
from parity import specs


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


class NiN(keras.Model):
    """d2l's NiN: four ``nin_block``s with 3x3 stride-2 max-pools between the first three, dropout
    before the last, whose ``num_classes`` channels are averaged globally into the logits.

    Dropout drops in training mode only (``forward(train=True)``), with Keras' own seeds: no
    parity check runs NiN in training mode, so its masks need not match another framework's.
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

    def build(self, input_shape):
        self.net.build(input_shape)

    def call(self, X, training=False):
        return self.net(X, training=training)
