"""d2l's ResNeXtBlock, AnyNet and RegNetX32 in Gluon, built from ``parity.specs`` objects.

Read side by side with d2l (chapter_convolutional-modern/resnet.md and
cnn-design.md, MXNet tab). Differences from the book, all on purpose: every layer
gets its input size (``in_channels`` / ``in_units``) so nothing is left to deferred
initialisation; BatchNorm takes epsilon and momentum from the spec; the group-width
argument is called ``group_width``; each block's channels come from
``AnyNet.blocks()``, so the book's ``stage`` bug (num_channels passed twice) is
absent unless asked for (``pitfalls={"d2l_stage_bug"}``); every layer has an explicit
prefix, which makes parameter names predictable: stages count from 1 as the book's
``f'stage{i+1}'``, blocks from 0 (``stage1_block0_conv2_weight``). The block's ReLUs are
``F.Activation(..., act_type="relu")``, as in the Gluon model zoo, where the book has
``npx.relu``: the same max(x, 0), but on MXNet's oneDNN CPU build it is oneDNN's ReLU, which
takes the convs' and BatchNorms' blocked memory layout as it is, while ``relu`` reorders its
input to the plain layout and the next conv reorders it back (RegNetX-400MF's forward takes
about 1.5x as long).
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
    """The ResNeXt block: 1x1 conv, grouped 3x3 conv (``strides``), 1x1 conv, each followed by BatchNorm.

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
        strides: int = 1,
        conv_bias: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec = specs.ResNeXtBlock(
            in_channels=in_channels,
            num_channels=num_channels,
            group_width=group_width,
            bot_mul=bot_mul,
            use_1x1conv=use_1x1conv,
            stride=strides,
            conv_bias=conv_bias,
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
        )
        bot_channels, groups = self.spec.bot_channels, self.spec.groups
        bn = dict(eps=bn_eps, momentum=bn_momentum)
        with self.name_scope():
            self.conv1 = nn.Conv2D(
                bot_channels,
                kernel_size=1,
                padding=0,
                strides=1,
                use_bias=conv_bias,
                in_channels=in_channels,
                prefix="conv1_",
            )
            self.conv2 = nn.Conv2D(
                bot_channels,
                kernel_size=3,
                padding=1,
                strides=strides,
                groups=groups,
                use_bias=conv_bias,
                in_channels=bot_channels,
                prefix="conv2_",
            )
            self.conv3 = nn.Conv2D(
                num_channels,
                kernel_size=1,
                padding=0,
                strides=1,
                use_bias=conv_bias,
                in_channels=bot_channels,
                prefix="conv3_",
            )
            self.bn1 = batch_norm(bot_channels, **bn, prefix="bn1_")
            self.bn2 = batch_norm(bot_channels, **bn, prefix="bn2_")
            self.bn3 = batch_norm(num_channels, **bn, prefix="bn3_")
            if use_1x1conv:
                self.conv4 = nn.Conv2D(
                    num_channels,
                    kernel_size=1,
                    padding=0,
                    strides=strides,
                    use_bias=conv_bias,
                    in_channels=in_channels,
                    prefix="conv4_",
                )
                self.bn4 = batch_norm(num_channels, **bn, prefix="bn4_")
            else:
                self.conv4 = None

    @classmethod
    def from_spec(cls, spec: specs.ResNeXtBlock, **kwargs) -> ResNeXtBlock:
        fields = dataclasses.asdict(spec)
        return cls(strides=fields.pop("stride"), **fields, **kwargs)

    def hybrid_forward(self, F, X):
        Y = F.Activation(self.bn1(self.conv1(X)), act_type="relu")
        Y = F.Activation(self.bn2(self.conv2(Y)), act_type="relu")
        Y = self.bn3(self.conv3(Y))
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X))
        return F.Activation(Y + X, act_type="relu")


class AnyNet(nn.Block):
    """d2l's AnyNet: ``net`` is a Sequential of the stem, one Sequential per stage, GlobalAvgPool2D and Dense.

    The stem and stages are plain ``nn.Sequential`` as in the book, so the layer summary
    prints the book's class names (a ``HybridSequential`` would print its own). With
    ``"d2l_stage_bug"`` in ``pitfalls`` every stage builds its blocks after the first the way
    the book's MXNet ``stage`` does (``parity.specs.d2l_stage_bug_block``).
    """

    def __init__(self, spec: specs.AnyNet, *, pitfalls: frozenset[str] = frozenset(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(self.stem(spec.in_channels, spec.stem_width))
                for i, blocks in itertools.groupby(spec.blocks(), key=operator.itemgetter(0)):
                    self.net.add(self.stage(i, [block for _, _, block in blocks], pitfalls))
                self.net.add(
                    nn.GlobalAvgPool2D(prefix="head_pool_"),
                    nn.Dense(spec.num_classes, in_units=spec.stages[-1].width, prefix="head_fc_"),
                )

    def stem(self, in_channels: int, num_channels: int) -> nn.Sequential:
        """3x3 conv with stride 2, BatchNorm, ReLU."""
        spec = self.spec
        net = nn.Sequential(prefix="stem_")
        with net.name_scope():
            net.add(
                nn.Conv2D(
                    num_channels,
                    kernel_size=3,
                    padding=1,
                    strides=2,
                    use_bias=spec.conv_bias,
                    in_channels=in_channels,
                    prefix="conv_",
                ),
                batch_norm(num_channels, eps=spec.bn_eps, momentum=spec.bn_momentum, prefix="bn_"),
                nn.Activation("relu", prefix="relu_"),
            )
        return net

    def stage(self, i: int, blocks: list[specs.ResNeXtBlock], pitfalls: frozenset[str]) -> nn.Sequential:
        """Stage ``i`` (0-based; named ``stage{i+1}`` as in the book) from its blocks' specs: the first
        one projects and strides (``AnyNet.blocks()``)."""
        net = nn.Sequential(prefix=f"stage{i + 1}_")
        with net.name_scope():
            for j, block in enumerate(blocks):
                if j > 0 and "d2l_stage_bug" in pitfalls:
                    # the book: ResNeXtBlock(num_channels, num_channels, groups, bot_mul)
                    block = specs.d2l_stage_bug_block(block)
                net.add(ResNeXtBlock.from_spec(block, prefix=f"block{j}_"))
        return net

    def forward(self, X):
        return self.net(X)


class RegNetX32(AnyNet):
    """d2l's RegNetX32: stem 32; stages (depth 4, width 32) and (6, 80); group width 16; no bottleneck."""

    def __init__(self, num_classes: int = 10, **kwargs):
        super().__init__(dataclasses.replace(specs.regnetx32(), num_classes=num_classes), **kwargs)
