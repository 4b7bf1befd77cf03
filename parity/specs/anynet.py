"""d2l's ResNeXt block, AnyNet and RegNetX32 (chapter_convolutional-modern: resnet.md, cnn-design.md)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, replace

from parity.specs.graph import OUTPUT, Architecture, Block, BookTab, GraphBuilder, join


@dataclass(frozen=True)
class ResNeXtBlock(Block):
    """d2l's ResNeXt block: 1x1 -> grouped 3x3 (stride) -> 1x1, plus a shortcut.

    ``group_width`` is the number of channels per group (d2l calls it ``groups``);
    the grouped convolution has ``bot_channels // group_width`` groups. With
    ``use_1x1conv`` the shortcut is a strided 1x1 convolution and BatchNorm
    (conv4/bn4); without it the shortcut is the identity, which needs
    ``in_channels == num_channels`` and ``stride == 1``.
    """

    in_channels: int
    num_channels: int
    group_width: int
    bot_mul: float
    use_1x1conv: bool = False
    stride: int = 1
    conv_bias: bool = True
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        for field in ("in_channels", "num_channels", "group_width", "stride"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ResNeXtBlock.{field} must be a positive int, got {value!r}")
        if not self.bot_mul > 0:
            raise ValueError(f"ResNeXtBlock.bot_mul must be > 0, got {self.bot_mul!r}")
        bot = self.bot_channels
        if bot < 1 or bot % self.group_width:
            raise ValueError(
                f"ResNeXtBlock: bottleneck channels round({self.num_channels} * {self.bot_mul}) = {bot} "
                f"must be a positive multiple of group_width={self.group_width}"
            )
        if not self.use_1x1conv and (self.in_channels != self.num_channels or self.stride != 1):
            raise ValueError(
                "ResNeXtBlock: an identity shortcut needs in_channels == num_channels and stride == 1, "
                f"got in_channels={self.in_channels}, num_channels={self.num_channels}, stride={self.stride}; "
                "set use_1x1conv=True"
            )

    @property
    def name(self) -> str:
        shortcut = "proj" if self.use_1x1conv else "id"
        return (
            f"resnext_block-{self.in_channels}to{self.num_channels}-gw{self.group_width}"
            f"-bm{self.bot_mul:g}-s{self.stride}-{shortcut}"
        )

    @property
    def bot_channels(self) -> int:
        return int(round(self.num_channels * self.bot_mul))

    @property
    def groups(self) -> int:
        return self.bot_channels // self.group_width

    def add_to(self, g: GraphBuilder, X: str, prefix: str = "") -> str:
        """Points: each conv, each BN (before its ReLU), and the block output (after the residual add and ReLU)."""
        p = functools.partial(join, prefix)
        bot, out, bias = self.bot_channels, self.num_channels, self.conv_bias

        def conv_bn(k: int, x: str, c_in: int, c_out: int, kernel: int, **conv) -> str:
            y = g.conv(p(f"conv{k}"), x, c_in, c_out, kernel, bias=bias, **conv)
            return g.bn(p(f"bn{k}"), y, c_out, self.bn_eps, self.bn_momentum)

        Y = g.relu(conv_bn(1, X, self.in_channels, bot, 1))
        Y = g.relu(conv_bn(2, Y, bot, bot, 3, stride=self.stride, padding=1, groups=self.groups))
        Y = conv_bn(3, Y, bot, out, 1)
        if self.use_1x1conv:
            X = conv_bn(4, X, self.in_channels, out, 1, stride=self.stride)
        return g.relu(g.sum(Y, X), name=prefix or OUTPUT)


@dataclass(frozen=True)
class Stage:
    """``depth`` ResNeXt blocks of width ``width``; the first one strides by ``stride``."""

    depth: int
    width: int
    group_width: int
    bot_mul: float
    stride: int = 2


@dataclass(frozen=True)
class AnyNet(Architecture):
    """d2l's AnyNet: stem (3x3 conv stride 2, BN, ReLU), ResNeXt stages, head (global avg pool, dense)."""

    name: str
    stem_width: int
    stages: tuple[Stage, ...]
    num_classes: int = 10
    in_channels: int = 1
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    conv_bias: bool = True
    input_size: tuple[int, int] = (96, 96)  # d2l trains on Fashion-MNIST resized to 96x96

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("AnyNet.stages must not be empty")
        list(self.blocks())  # every block validates its own arguments

    def book_tabs(self) -> dict[str, BookTab]:
        # d2l-en, chapter_convolutional-modern: cnn-design.md (AnyNet.stem, AnyNet.stage) and resnet.md
        # (ResNeXtBlock); every tab's BatchNorm is the framework's default.
        keras_momentum = "BatchNormalization() keeps Keras' momentum 0.99 (PyTorch's 0.1 means 0.9)"
        return {
            "tf": BookTab(
                ("same_padding", "keras_bn_epsilon"),
                "cnn-design.md l. 109-111: Conv2D(num_channels, 3, strides=2, padding='same'), "
                "BatchNormalization(); resnet.md l. 602-608: conv2 Conv2D(bot_channels, 3, strides=strides, "
                "padding='same', ...), bn1-bn4 BatchNormalization()",
                keras_momentum,
            ),
            "jax": BookTab(
                ("same_padding_in_blocks",),
                "cnn-design.md l. 129-131: nn.Conv(num_channels, (3, 3), strides=(2, 2), padding=(1, 1)); "
                "resnet.md l. 640-641: conv2 nn.Conv(bot_channels, (3, 3), strides=self.strides, padding='same', "
                "...); nn.BatchNorm(not self.training) at Flax's epsilon 1e-5",
                "nn.BatchNorm keeps Flax's momentum 0.99 (PyTorch's 0.1 means 0.9)",
            ),
            "mxnet": BookTab(
                ("d2l_stage_bug",),
                "cnn-design.md l. 148-149, the MXNet AnyNet.stage: ResNeXtBlock(num_channels, num_channels, "
                "groups, bot_mul) for every block after a stage's first (see d2l_stage_bug_block)",
            ),
        }

    def blocks(self) -> Iterator[tuple[int, int, ResNeXtBlock]]:
        """(stage index, block index, block spec) in execution order.

        The first block of a stage takes the previous width and strides; the rest keep
        width and resolution. (d2l's MXNet ``stage`` passes num_channels twice here;
        that is a bug and is not reproduced.)
        """
        in_channels = self.stem_width
        for i, stage in enumerate(self.stages):
            for j in range(stage.depth):
                first = j == 0
                yield (
                    i,
                    j,
                    ResNeXtBlock(
                        in_channels=in_channels if first else stage.width,
                        num_channels=stage.width,
                        group_width=stage.group_width,
                        bot_mul=stage.bot_mul,
                        use_1x1conv=first,
                        stride=stage.stride if first else 1,
                        conv_bias=self.conv_bias,
                        bn_eps=self.bn_eps,
                        bn_momentum=self.bn_momentum,
                    ),
                )
            in_channels = stage.width

    def build_graph(self, g: GraphBuilder) -> str:
        """Points: stem conv, stem BN (before ReLU), stem output, every block's points, the pooled
        features (N, C) and the logits."""
        with g.group("stem"):
            X = g.conv(
                "stem.conv", g.input, self.in_channels, self.stem_width, 3, stride=2, padding=1, bias=self.conv_bias
            )
            X = g.relu(g.bn("stem.bn", X, self.stem_width, self.bn_eps, self.bn_momentum), name="stem")
        for i, j, block in self.blocks():
            with g.group(f"stages.{i}"):
                X = block.add_to(g, X, block_path(i, j))
        with g.group("head"):
            X = g.global_avg_pool(X, name="head.pool")
            return g.dense("head.fc", X, self.stages[-1].width, self.num_classes)


def block_path(stage: int, block: int) -> str:
    return f"stages.{stage}.blocks.{block}"


def d2l_block_arguments(num_channels, groups, bot_mul, use_1x1conv=False, strides=1) -> dict:
    """The ``ResNeXtBlock`` fields that a call of d2l's MXNet ``ResNeXtBlock``, whose signature
    this is, binds its arguments to (the book's ``groups`` is the group width)."""
    return {
        "num_channels": num_channels,
        "group_width": groups,
        "bot_mul": bot_mul,
        "use_1x1conv": bool(use_1x1conv),
        "stride": strides,
    }


def d2l_stage_bug_block(block: ResNeXtBlock) -> ResNeXtBlock:
    """The block that d2l's MXNet ``stage`` builds in place of ``block``, a stage's block after the first.

    The book calls ``ResNeXtBlock(num_channels, num_channels, groups, bot_mul)``: every argument
    after the first shifts one place, so the group width becomes ``num_channels``, the bottleneck
    multiplier becomes ``groups`` and the (truthy) ``bot_mul`` turns the projection shortcut on.
    The block still maps ``num_channels`` to ``num_channels`` at stride 1: no shape changes.
    """
    return replace(
        block, **d2l_block_arguments(block.num_channels, block.num_channels, block.group_width, block.bot_mul)
    )


def regnetx32() -> AnyNet:
    """d2l's RegNetX32: stem 32, stages (depth 4, width 32) and (6, 80), group width 16, no bottleneck."""
    return AnyNet(
        name="regnetx32",
        stem_width=32,
        stages=(
            Stage(depth=4, width=32, group_width=16, bot_mul=1),
            Stage(depth=6, width=80, group_width=16, bot_mul=1),
        ),
        num_classes=10,
        in_channels=1,
    )


def d2l_stage_bug_blocks(spec: Architecture) -> dict[str, ResNeXtBlock]:
    """{block path: the block d2l's MXNet ``stage`` builds there} for every block after a stage's
    first (``d2l_stage_bug_block``); empty where the bug cannot occur."""
    if not isinstance(spec, AnyNet):
        return {}
    return {block_path(i, j): d2l_stage_bug_block(block) for i, j, block in spec.blocks() if j > 0}


def same_padding_in_blocks_problem(spec: Architecture) -> str | None:
    """Why 'same' padding in the ResNeXt blocks' grouped 3x3 convs only (d2l's JAX ResNeXtBlock, its
    AnyNet stem padded symmetrically) would not change ``spec``'s function, or None."""
    if type(spec) is not AnyNet:
        return f"it pads d2l's AnyNet's ResNeXt blocks, got a {type(spec).__name__} spec"
    if all(block.stride == 1 for _, _, block in spec.blocks()):
        return "every block has stride 1, and 'same' pads a stride-1 3x3 conv symmetrically, as the spec does"
    return None


def d2l_stage_bug_problem(spec: Architecture) -> str | None:
    """Why d2l's MXNet stage bug cannot occur in ``spec``, or None."""
    if type(spec) is not AnyNet:
        return f"d2l's AnyNet.stage applies to AnyNet specs only, got a {type(spec).__name__} spec"
    if not d2l_stage_bug_blocks(spec):
        return f"it changes the blocks after a stage's first, and every stage of {spec.name} has depth 1"
    return None


def d2l_stage_bug_layers(spec: Architecture) -> list:
    """The layers of ``spec`` as d2l's MXNet code builds it: every block after a stage's first replaced
    (none where the bug cannot occur)."""
    buggy = d2l_stage_bug_blocks(spec)
    if not buggy:
        return []
    layers = []
    for layer in spec.layers():
        prefix = layer.path.rsplit(".", 1)[0]
        if prefix in buggy:
            if layer.path == f"{prefix}.conv1":
                layers += buggy[prefix].layers(prefix)
        else:
            layers.append(layer)
    return layers
