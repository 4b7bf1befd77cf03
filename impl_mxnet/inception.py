"""d2l's Inception block and GoogLeNet, and the tutorials' InceptionA MNIST net, in Gluon.

Read side by side with d2l (chapter_convolutional-modern/googlenet.md, MXNet tab).
Differences from the book, all on purpose: every layer gets its input channels, so
nothing is left to deferred initialisation; every layer has an explicit prefix, which
makes parameter names predictable: the book's branch names ``p1_1`` ... ``p4_2``, block
``k`` of a stage ``inception{k}`` (``b3_inception0_p2_2_weight``; the canonical name is
``b3.0.b2_2.weight``); the channels of each Inception block come from
``GoogLeNet.inceptions()``.

The padding is the book's, symmetric on every side. Gluon's max-pool never lets a
padded cell win a max, and its average pool counts the padded zeros
(``count_include_pad=True``, spelled out below): both as in PyTorch.
"""

from __future__ import annotations

import dataclasses
import functools

from mxnet.gluon import nn

from parity import specs


def max_pool() -> nn.MaxPool2D:
    """The 3x3, stride 2, padding 1 max-pool that closes b1 to b4."""
    return nn.MaxPool2D(pool_size=3, strides=2, padding=1)


class Inception(nn.HybridBlock):
    """d2l's Inception block: four branches, each conv followed by ReLU, concatenated on the channel axis.

    ``c1``--``c4`` are the output channels of each branch, as in the book; branch 4
    max-pools (3x3, stride 1, padding 1) before its 1x1 conv.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        c1: int,
        c2: tuple[int, int],
        c3: tuple[int, int],
        c4: int,
        conv_bias: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec = specs.Inception(in_channels, c1, tuple(c2), tuple(c3), c4, conv_bias)
        conv = functools.partial(nn.Conv2D, activation="relu", use_bias=conv_bias)
        with self.name_scope():
            # Branch 1
            self.p1_1 = conv(c1, kernel_size=1, in_channels=in_channels, prefix="p1_1_")
            # Branch 2
            self.p2_1 = conv(c2[0], kernel_size=1, in_channels=in_channels, prefix="p2_1_")
            self.p2_2 = conv(c2[1], kernel_size=3, padding=1, in_channels=c2[0], prefix="p2_2_")
            # Branch 3
            self.p3_1 = conv(c3[0], kernel_size=1, in_channels=in_channels, prefix="p3_1_")
            self.p3_2 = conv(c3[1], kernel_size=5, padding=2, in_channels=c3[0], prefix="p3_2_")
            # Branch 4
            self.p4_1 = nn.MaxPool2D(pool_size=3, strides=1, padding=1, prefix="p4_1_")
            self.p4_2 = conv(c4, kernel_size=1, in_channels=in_channels, prefix="p4_2_")

    @classmethod
    def from_spec(cls, spec: specs.Inception, **kwargs) -> Inception:
        return cls(**dataclasses.asdict(spec), **kwargs)

    def hybrid_forward(self, F, x):
        p1 = self.p1_1(x)
        p2 = self.p2_2(self.p2_1(x))
        p3 = self.p3_2(self.p3_1(x))
        p4 = self.p4_2(self.p4_1(x))
        return F.concat(p1, p2, p3, p4, dim=1)


class GoogLeNet(nn.Block):
    """d2l's GoogLeNet: ``net`` is a Sequential of b1 ... b5 and the Dense head, as in the book."""

    def __init__(self, spec: specs.GoogLeNet = specs.GoogLeNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    self.b1(),
                    self.b2(),
                    self.inception_stage("b3", max_pool),
                    self.inception_stage("b4", max_pool),
                    self.inception_stage("b5", nn.GlobalAvgPool2D),
                    nn.Dense(spec.num_classes, in_units=1024, prefix="head_fc_"),
                )

    def b1(self) -> nn.Sequential:
        """7x7 conv with stride 2 and padding 3, ReLU, max-pool."""
        net = nn.Sequential(prefix="b1_")
        with net.name_scope():
            net.add(
                nn.Conv2D(
                    64,
                    kernel_size=7,
                    strides=2,
                    padding=3,
                    activation="relu",
                    use_bias=self.spec.conv_bias,
                    in_channels=self.spec.in_channels,
                    prefix="conv_",
                ),
                max_pool(),
            )
        return net

    def b2(self) -> nn.Sequential:
        """1x1 conv, 3x3 conv to 192 channels, each with ReLU, max-pool."""
        bias = self.spec.conv_bias
        net = nn.Sequential(prefix="b2_")
        with net.name_scope():
            net.add(
                nn.Conv2D(64, kernel_size=1, activation="relu", use_bias=bias, in_channels=64, prefix="conv1_"),
                nn.Conv2D(
                    192, kernel_size=3, padding=1, activation="relu", use_bias=bias, in_channels=64, prefix="conv2_"
                ),
                max_pool(),
            )
        return net

    def inception_stage(self, stage: str, pool) -> nn.Sequential:
        """The Inception blocks of ``stage`` (b3, b4 or b5) in series, then the layer ``pool()`` makes."""
        net = nn.Sequential(prefix=f"{stage}_")
        with net.name_scope():
            for path, block in self.spec.inceptions():
                block_stage, k = path.split(".")
                if block_stage == stage:
                    net.add(Inception.from_spec(block, prefix=f"inception{k}_"))
            net.add(pool())
        return net

    def forward(self, x):
        return self.net(x)


class InceptionA(nn.HybridBlock):
    """The tutorials' InceptionA: four branches without ReLUs, concatenated on the channel axis
    in the order 1x1 (16), 5x5 (24), 3x3 (24), pool (24): 88 channels.

    The pool branch is a layer here (the tutorials call ``F.avg_pool2d``): a 3x3 average,
    stride 1, padding 1, counting the padded zeros, then a 1x1 conv.
    """

    def __init__(self, *, in_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.spec = specs.InceptionA(in_channels)
        with self.name_scope():
            self.branch1x1 = nn.Conv2D(16, kernel_size=1, in_channels=in_channels, prefix="branch1x1_")
            self.branch5x5_1 = nn.Conv2D(16, kernel_size=1, in_channels=in_channels, prefix="branch5x5_1_")
            self.branch5x5_2 = nn.Conv2D(24, kernel_size=5, padding=2, in_channels=16, prefix="branch5x5_2_")
            self.branch3x3_1 = nn.Conv2D(16, kernel_size=1, in_channels=in_channels, prefix="branch3x3_1_")
            self.branch3x3_2 = nn.Conv2D(24, kernel_size=3, padding=1, in_channels=16, prefix="branch3x3_2_")
            self.branch3x3_3 = nn.Conv2D(24, kernel_size=3, padding=1, in_channels=24, prefix="branch3x3_3_")
            self.branch_pool_avg = nn.AvgPool2D(
                pool_size=3, strides=1, padding=1, count_include_pad=True, prefix="branch_pool_avg_"
            )
            self.branch_pool = nn.Conv2D(24, kernel_size=1, in_channels=in_channels, prefix="branch_pool_")

    @classmethod
    def from_spec(cls, spec: specs.InceptionA, **kwargs) -> InceptionA:
        return cls(in_channels=spec.in_channels, **kwargs)

    def hybrid_forward(self, F, x):
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3 = self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(x)))
        branch_pool = self.branch_pool(self.branch_pool_avg(x))
        return F.concat(branch1x1, branch5x5, branch3x3, branch_pool, dim=1)


def conv_pool_relu(in_channels: int, channels: int, *, conv: str, output: str) -> nn.Sequential:
    """The tutorials' ``F.relu(self.mp(self.conv1(x)))``: a 5x5 conv named ``conv``, a 2x2
    max-pool, and a ReLU named ``output``, the activation point it produces (``pool1``)."""
    net = nn.Sequential(prefix="")
    with net.name_scope():
        net.add(
            nn.Conv2D(channels, kernel_size=5, in_channels=in_channels, prefix=f"{conv}_"),
            nn.MaxPool2D(pool_size=2, prefix=f"{conv}_pool_"),
            nn.Activation("relu", prefix=f"{output}_"),
        )
    return net


class InceptionNet(nn.Block):
    """The tutorials' MNIST net: ``net`` is a Sequential of conv1 (conv, max-pool, ReLU), incep1,
    conv2, incep2 and fc. Gluon's Dense flattens its NCHW input in (C, H, W) order."""

    def __init__(self, spec: specs.InceptionNet = specs.InceptionNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    conv_pool_relu(spec.in_channels, 10, conv="conv1", output="pool1"),
                    InceptionA(in_channels=10, prefix="incep1_"),
                    conv_pool_relu(88, 20, conv="conv2", output="pool2"),
                    InceptionA(in_channels=20, prefix="incep2_"),
                    nn.Dense(spec.num_classes, in_units=88 * 4 * 4, prefix="fc_"),
                )

    def forward(self, x):
        return self.net(x)
