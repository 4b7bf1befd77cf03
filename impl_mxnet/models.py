"""d2l's ResNeXtBlock and AnyNet in Gluon, built from ``parity.specs`` objects.

Read side by side with d2l (chapter_convolutional-modern/resnet.md and
cnn-design.md, MXNet tab). Differences from the book, all on purpose: every layer
gets its input size (``in_channels`` / ``in_units``) so nothing is left to deferred
initialisation; BatchNorm takes epsilon and momentum from the spec; the group-width
argument is called ``group_width``; each block's channels come from
``AnyNet.blocks()``, so the book's ``stage`` bug (num_channels passed twice) is
absent unless asked for (``AnyNet(spec, d2l_stage_bug=True)``, the backend's
``d2l_stage_bug`` variant); every layer has an explicit prefix, which makes
parameter names predictable (``stage1_block0_conv2_weight``).
"""

from __future__ import annotations

import dataclasses
import itertools
import operator

from mxnet.gluon import nn

from parity import specs


def batch_norm(channels: int, *, eps: float, momentum: float, prefix: str) -> nn.BatchNorm:
    """BatchNorm over NCHW channels; ``momentum`` in the spec's (PyTorch) convention, which Gluon calls 1 - momentum."""
    return nn.BatchNorm(momentum=1 - momentum, epsilon=eps, in_channels=channels, prefix=prefix)


class ResNeXtBlock(nn.HybridBlock):
    """The ResNeXt block: 1x1 conv, grouped 3x3 conv (``stride``), 1x1 conv, each followed by BatchNorm.

    The grouped convolution has ``bot_channels // group_width`` groups. With
    ``use_1x1conv`` the shortcut is a strided 1x1 conv and BatchNorm (conv4, bn4).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_channels: int,
        group_width: int,
        bot_mul: float,
        use_1x1conv: bool = False,
        stride: int = 1,
        conv_bias: bool,
        bn_eps: float,
        bn_momentum: float,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec = specs.ResNeXtBlock(
            in_channels=in_channels,
            num_channels=num_channels,
            group_width=group_width,
            bot_mul=bot_mul,
            use_1x1conv=use_1x1conv,
            stride=stride,
            conv_bias=conv_bias,
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
        )
        bot_channels, groups = self.spec.bot_channels, self.spec.groups
        bn = dict(eps=bn_eps, momentum=bn_momentum)
        with self.name_scope():
            self.conv1 = nn.Conv2D(bot_channels, kernel_size=1, padding=0, strides=1,
                                   use_bias=conv_bias, in_channels=in_channels, prefix="conv1_")
            self.conv2 = nn.Conv2D(bot_channels, kernel_size=3, padding=1, strides=stride, groups=groups,
                                   use_bias=conv_bias, in_channels=bot_channels, prefix="conv2_")
            self.conv3 = nn.Conv2D(num_channels, kernel_size=1, padding=0, strides=1,
                                   use_bias=conv_bias, in_channels=bot_channels, prefix="conv3_")
            self.bn1 = batch_norm(bot_channels, **bn, prefix="bn1_")
            self.bn2 = batch_norm(bot_channels, **bn, prefix="bn2_")
            self.bn3 = batch_norm(num_channels, **bn, prefix="bn3_")
            if use_1x1conv:
                self.conv4 = nn.Conv2D(num_channels, kernel_size=1, padding=0, strides=stride,
                                       use_bias=conv_bias, in_channels=in_channels, prefix="conv4_")
                self.bn4 = batch_norm(num_channels, **bn, prefix="bn4_")
            else:
                self.conv4 = None

    @classmethod
    def from_spec(cls, spec: specs.ResNeXtBlock, **kwargs) -> "ResNeXtBlock":
        return cls(**dataclasses.asdict(spec), **kwargs)

    def hybrid_forward(self, F, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = F.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X))
        return F.relu(Y + X)


class AnyNet(nn.Block):
    """d2l's AnyNet: ``net`` is a Sequential of the stem, one Sequential per stage, GlobalAvgPool2D and Dense.

    The stem and stages are plain ``nn.Sequential`` as in the book, so the layer
    summary prints the book's class names. With ``d2l_stage_bug`` every stage builds its
    blocks after the first the way the book's MXNet ``stage`` does (``parity.specs.d2l_stage_bug_block``).
    """

    def __init__(self, spec: specs.AnyNet, *, d2l_stage_bug: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.d2l_stage_bug = d2l_stage_bug
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(self.stem())
                for i, blocks in itertools.groupby(spec.blocks(), key=operator.itemgetter(0)):
                    self.net.add(self.stage(i, [block for _, _, block in blocks]))
                self.net.add(
                    nn.GlobalAvgPool2D(prefix="head_pool_"),
                    nn.Dense(spec.num_classes, in_units=spec.stages[-1].width, prefix="head_fc_"),
                )

    def stem(self) -> nn.Sequential:
        """3x3 conv with stride 2, BatchNorm, ReLU."""
        spec = self.spec
        net = nn.Sequential(prefix="stem_")
        with net.name_scope():
            net.add(
                nn.Conv2D(spec.stem_width, kernel_size=3, padding=1, strides=2, use_bias=spec.conv_bias,
                          in_channels=spec.in_channels, prefix="conv_"),
                batch_norm(spec.stem_width, eps=spec.bn_eps, momentum=spec.bn_momentum, prefix="bn_"),
                nn.Activation("relu", prefix="relu_"),
            )
        return net

    def stage(self, index: int, blocks: list[specs.ResNeXtBlock]) -> nn.Sequential:
        net = nn.Sequential(prefix=f"stage{index}_")
        with net.name_scope():
            for j, block in enumerate(blocks):
                if j > 0 and self.d2l_stage_bug:
                    block = specs.d2l_stage_bug_block(block)
                net.add(ResNeXtBlock.from_spec(block, prefix=f"block{j}_"))
        return net

    def layers(self) -> list[specs.Layer]:
        """The canonical layers of the network as built, in execution order: the spec's stem and
        head, and each stage's blocks' layers as the blocks themselves were built."""
        spec_layers = self.spec.layers()
        blocks = [
            layer
            for i in range(len(self.spec.stages))
            for j, block in enumerate(self.net[1 + i])  # net: stem, the stages, pool, dense
            for layer in block.spec.layers(specs.block_path(i, j))
        ]
        stem = [layer for layer in spec_layers if layer.path.startswith("stem.")]
        head = [layer for layer in spec_layers if layer.path.startswith("head.")]
        return stem + blocks + head

    def forward(self, X):
        return self.net(X)
