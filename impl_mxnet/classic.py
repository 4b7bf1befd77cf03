"""d2l's NiN block and NiN (Network in Network) in Gluon, built from a ``parity.specs.NiN``.

Read side by side with d2l (chapter_convolutional-modern/nin.md, MXNet tab). Differences
from the book, all on purpose: every conv gets its input channels, so nothing is left to
deferred initialisation; the block table, dropout rate, input channels and classes come
from the spec; every layer has an explicit prefix, which makes parameter names
predictable (``block0_conv1_weight`` is block 0's k x k conv, ``conv2``/``conv3`` its 1x1s).

The padding is the book's, symmetric on every side; Gluon's max-pool, like PyTorch's,
floors the output size (``ceil_mode=False``).
"""

from __future__ import annotations

from mxnet.gluon import nn

from parity import specs


def nin_block(
    num_channels: int, kernel_size: int, strides: int, padding: int, *, in_channels: int, prefix: str
) -> nn.Sequential:
    """A k x k conv, then two 1x1 convs, each with its ReLU fused (``activation="relu"``) as in the book."""
    blk = nn.Sequential(prefix=prefix)
    with blk.name_scope():
        blk.add(
            nn.Conv2D(
                num_channels, kernel_size, strides, padding, activation="relu", in_channels=in_channels, prefix="conv1_"
            ),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu", in_channels=num_channels, prefix="conv2_"),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu", in_channels=num_channels, prefix="conv3_"),
        )
    return blk


class NiN(nn.Block):
    """d2l's NiN: ``net`` is a Sequential of four nin_blocks with 3x3, stride-2 max-pools between the
    first three, dropout before the last, whose ``num_classes`` channels are averaged into the logits.

    Dropout drops only in training mode (``autograd.record`` or ``autograd.pause(train_mode=True)``).
    """

    def __init__(self, spec: specs.NiN = specs.NiN(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        (c0, *b0), (c1, *b1), (c2, *b2), (c3, *b3) = spec.blocks()  # (channels, kernel, strides, padding)
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    nin_block(c0, *b0, in_channels=spec.in_channels, prefix="block0_"),
                    nn.MaxPool2D(pool_size=3, strides=2, prefix="pool0_"),
                    nin_block(c1, *b1, in_channels=c0, prefix="block1_"),
                    nn.MaxPool2D(pool_size=3, strides=2, prefix="pool1_"),
                    nin_block(c2, *b2, in_channels=c1, prefix="block2_"),
                    nn.MaxPool2D(pool_size=3, strides=2, prefix="pool2_"),
                    nn.Dropout(spec.dropout, prefix="dropout_"),
                    # There are num_classes label classes
                    nin_block(c3, *b3, in_channels=c2, prefix="block3_"),
                    nn.GlobalAvgPool2D(prefix="head_pool_"),
                    # (N, num_classes, 1, 1) -> (N, num_classes)
                    nn.Flatten(prefix="head_flatten_"),
                )

    def forward(self, X):
        return self.net(X)
