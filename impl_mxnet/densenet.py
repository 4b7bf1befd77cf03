"""d2l's DenseNet in Gluon, built from a ``parity.specs.DenseNet``.

Read side by side with d2l (chapter_convolutional-modern/densenet.md, MXNet tab). Differences
from the book, all on purpose: every layer gets its input channels, so nothing is left to
deferred initialisation; BatchNorm takes epsilon and momentum from the spec; every layer has
an explicit prefix, which makes parameter names predictable: ``b1_conv``, dense block ``i``'s
conv block ``j`` ``dense_blk{i}_block{j}`` (``dense_blk1_block0_conv_weight``), transition
``tran_blk{i}``, the head ``last_bn`` ... ``last_fc``.

Where the book's ``DenseBlock.forward`` concatenates each conv block's output after its
input in a loop, each step here is a block of its own, as in the Gluon model zoo's DenseNet:
a ``HybridConcurrent`` of the identity and the conv block, whose output is that
concatenation.
"""

from __future__ import annotations

from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import HybridConcurrent, Identity

from impl_mxnet.anynet import batch_norm
from parity import specs


def conv_block(num_channels: int, *, in_channels: int, eps: float, momentum: float) -> nn.HybridSequential:
    """BatchNorm, ReLU, then a 3x3 conv padded by 1 (``bn``, ``relu``, ``conv``)."""
    blk = nn.HybridSequential(prefix="")
    with blk.name_scope():
        blk.add(
            batch_norm(in_channels, eps=eps, momentum=momentum, prefix="bn_"),
            nn.Activation("relu", prefix="relu_"),
            nn.Conv2D(num_channels, kernel_size=3, padding=1, in_channels=in_channels, prefix="conv_"),
        )
    return blk


class DenseBlock(nn.Block):
    """``num_convs`` conv blocks of ``num_channels`` (the growth rate) each; every block's input is
    the concatenation, on the channel axis, of the dense block's input and all earlier outputs."""

    def __init__(self, num_convs: int, num_channels: int, *, in_channels: int, eps: float, momentum: float, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                for i in range(num_convs):
                    # Concatenate the input and the output of each block along the channels
                    step = HybridConcurrent(axis=1, prefix=f"block{i}_")
                    with step.name_scope():
                        step.add(
                            Identity(prefix="identity_"),
                            conv_block(num_channels, in_channels=in_channels, eps=eps, momentum=momentum),
                        )
                    self.net.add(step)
                    in_channels += num_channels

    def forward(self, X):
        return self.net(X)


def transition_block(num_channels: int, *, in_channels: int, eps: float, momentum: float, prefix: str) -> nn.Sequential:
    """BatchNorm, ReLU, a 1x1 conv to ``num_channels``, then a 2x2 stride-2 average pool."""
    blk = nn.Sequential(prefix=prefix)
    with blk.name_scope():
        blk.add(
            batch_norm(in_channels, eps=eps, momentum=momentum, prefix="bn_"),
            nn.Activation("relu", prefix="relu_"),
            nn.Conv2D(num_channels, kernel_size=1, in_channels=in_channels, prefix="conv_"),
            nn.AvgPool2D(pool_size=2, strides=2, prefix="pool_"),
        )
    return blk


class DenseNet(nn.Block):
    """d2l's DenseNet: ``net`` is a Sequential of b1, dense blocks with transition blocks between
    them, then BatchNorm, ReLU, GlobalAvgPool2D and Dense, as in the book."""

    def __init__(self, spec: specs.DenseNet = specs.DenseNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        bn = dict(eps=spec.bn_eps, momentum=spec.bn_momentum)
        num_channels, growth_rate, arch = spec.num_channels, spec.growth_rate, spec.arch
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(self.b1())
                for i, num_convs in enumerate(arch):
                    self.net.add(
                        DenseBlock(num_convs, growth_rate, in_channels=num_channels, **bn, prefix=f"dense_blk{i + 1}_")
                    )
                    # The number of output channels in the previous dense block
                    num_channels += num_convs * growth_rate
                    # A transition layer that halves the number of channels is added between the dense blocks
                    if i != len(arch) - 1:
                        num_channels //= 2
                        self.net.add(
                            transition_block(
                                num_channels, in_channels=num_channels * 2, **bn, prefix=f"tran_blk{i + 1}_"
                            )
                        )
                self.net.add(
                    batch_norm(num_channels, **bn, prefix="last_bn_"),
                    nn.Activation("relu", prefix="last_relu_"),
                    nn.GlobalAvgPool2D(prefix="last_pool_"),
                    nn.Dense(spec.num_classes, in_units=num_channels, prefix="last_fc_"),
                )

    def b1(self) -> nn.Sequential:
        """7x7 conv (stride 2, padding 3), BatchNorm, ReLU, 3x3 stride-2 max-pool padded by 1."""
        spec = self.spec
        net = nn.Sequential(prefix="b1_")
        with net.name_scope():
            net.add(
                nn.Conv2D(
                    spec.num_channels, kernel_size=7, strides=2, padding=3, in_channels=spec.in_channels, prefix="conv_"
                ),
                batch_norm(spec.num_channels, eps=spec.bn_eps, momentum=spec.bn_momentum, prefix="bn_"),
                nn.Activation("relu", prefix="relu_"),
                nn.MaxPool2D(pool_size=3, strides=2, padding=1, prefix="pool_"),
            )
        return net

    def forward(self, X):
        return self.net(X)
