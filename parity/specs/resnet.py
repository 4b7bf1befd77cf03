"""d2l's Residual block and ResNet-18 (chapter_convolutional-modern/resnet.md), and the residual
MNIST net of the PyTorch tutorials, as its author meant it."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from parity.specs.graph import OUTPUT, Architecture, Block, BookTab, GraphBuilder, join


@dataclass(frozen=True)
class Residual(Block):
    """d2l's Residual block: 3x3 conv (stride) -> BN -> ReLU -> 3x3 conv -> BN, plus the input, then
    ReLU. With ``use_1x1conv`` the shortcut is a strided 1x1 conv (``conv3``, no BatchNorm, as in
    the book); otherwise the identity, which needs ``in_channels == num_channels`` and stride 1.

    Points: each conv and BN (before ReLU) and the block output.
    """

    in_channels: int
    num_channels: int
    use_1x1conv: bool = False
    stride: int = 1
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        if not self.use_1x1conv and (self.in_channels != self.num_channels or self.stride != 1):
            raise ValueError(
                "Residual: an identity shortcut needs in_channels == num_channels and stride == 1, "
                f"got in_channels={self.in_channels}, num_channels={self.num_channels}, stride={self.stride}; "
                "set use_1x1conv=True"
            )

    @property
    def name(self) -> str:
        shortcut = "proj" if self.use_1x1conv else "id"
        return f"residual-{self.in_channels}to{self.num_channels}-s{self.stride}-{shortcut}"

    def add_to(self, g: GraphBuilder, X: str, prefix: str = "") -> str:
        p = functools.partial(join, prefix)
        c_in, c = self.in_channels, self.num_channels
        Y = g.conv(p("conv1"), X, c_in, c, 3, stride=self.stride, padding=1)
        Y = g.relu(g.bn(p("bn1"), Y, c, self.bn_eps, self.bn_momentum))
        Y = g.bn(p("bn2"), g.conv(p("conv2"), Y, c, c, 3, padding=1), c, self.bn_eps, self.bn_momentum)
        if self.use_1x1conv:
            X = g.conv(p("conv3"), X, c_in, c, 1, stride=self.stride)
        return g.relu(g.sum(Y, X), name=prefix or OUTPUT)


@dataclass(frozen=True)
class ResNet(Architecture):
    """d2l's ResNet: b1 (7x7 conv stride 2, BN, ReLU, 3x3 stride-2 max-pool), stages b2, b3, ... of
    Residual blocks (each stage's first block after b2 projects and strides by 2), then ``last``
    (global average pool, dense). ``arch`` is ((num_residuals, num_channels), ...).

    Points: ``b1.conv``, ``b1.bn``, ``b1`` (after the max-pool), every block's, ``last.pool`` (N, C)
    and ``last.fc``.
    """

    name: str = "resnet18"
    arch: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (2, 256), (2, 512))
    in_channels: int = 1
    num_classes: int = 10
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    input_size: tuple[int, int] = (96, 96)

    def book_tabs(self) -> dict[str, BookTab]:
        # d2l-en, chapter_convolutional-modern/resnet.md: Residual and ResNet.b1 of each tab.
        return {
            "tf": BookTab(
                ("same_padding", "keras_bn_epsilon"),
                "resnet.md l. 188-197: Residual's conv1 Conv2D(num_channels, padding='same', kernel_size=3, "
                "strides=strides), bn1 and bn2 BatchNormalization(); l. 310-315: b1's Conv2D(64, 7, strides=2, "
                "padding='same'), BatchNormalization(), MaxPool2D(3, strides=2, padding='same')",
                "BatchNormalization() keeps Keras' momentum 0.99 (PyTorch's 0.1 means 0.9)",
            ),
            "jax": BookTab(
                ("same_padding",),
                "resnet.md l. 218-221: Residual's conv1 nn.Conv(num_channels, (3, 3), padding='same', "
                "strides=self.strides); l. 331-334: b1's nn.Conv(64, (7, 7), strides=(2, 2), padding='same') and "
                "nn.max_pool(x, (3, 3), strides=(2, 2), padding='same'); nn.BatchNorm at Flax's epsilon 1e-5",
                "nn.BatchNorm keeps Flax's momentum 0.99 (PyTorch's 0.1 means 0.9)",
            ),
        }

    def blocks(self) -> Iterator[tuple[str, Residual]]:
        """(canonical path ``b{s}.{j}``, block spec) in execution order, as d2l's ``block`` builds them."""
        in_channels = 64
        for i, (num_residuals, num_channels) in enumerate(self.arch):
            for j in range(num_residuals):
                project = j == 0 and i > 0
                yield (
                    f"b{i + 2}.{j}",
                    Residual(in_channels, num_channels, project, 2 if project else 1, self.bn_eps, self.bn_momentum),
                )
                in_channels = num_channels

    def build_graph(self, g: GraphBuilder) -> str:
        with g.group("b1"):
            X = g.conv("b1.conv", g.input, self.in_channels, 64, 7, stride=2, padding=3)
            X = g.relu(g.bn("b1.bn", X, 64, self.bn_eps, self.bn_momentum))
            X = g.max_pool(X, 3, 2, 1, name="b1")
        for path, block in self.blocks():
            with g.group(path.split(".")[0]):
                X = block.add_to(g, X, path)
        with g.group("last"):
            X = g.global_avg_pool(X, name="last.pool")
            return g.dense("last.fc", X, self.arch[-1][1], self.num_classes)


@dataclass(frozen=True)
class ResidualBlock(Block):
    """The tutorials' ResidualBlock: ``relu(x + conv2(relu(conv1(x))))``, two 3x3 convs padded by 1,
    ``channels`` in and out. Points: each conv (before ReLU) and the block output."""

    channels: int

    name = "residual_block"

    @property
    def in_channels(self) -> int:
        return self.channels

    def add_to(self, g: GraphBuilder, X: str, prefix: str = "") -> str:
        p = functools.partial(join, prefix)
        c = self.channels
        Y = g.conv(p("conv2"), g.relu(g.conv(p("conv1"), X, c, c, 3, padding=1)), c, c, 3, padding=1)
        return g.relu(g.sum(X, Y), name=prefix or OUTPUT)


@dataclass(frozen=True)
class ResidualNet(Architecture):
    """The tutorials' residual MNIST net, as its author meant it (the published code has typos:
    ``cov1``, ``F.relue``, ``self.incep1`` for the residual blocks, a second block of 16 channels
    where 32 arrive): conv1 5x5 (16) -> max-pool 2 -> ReLU -> rblock1 -> conv2 5x5 (32) -> max-pool 2
    -> ReLU -> rblock2 -> flatten (32 x 4 x 4 = 512) -> fc (10). Input 1x28x28.

    Points: the convs, each conv's max-pool + ReLU (``pool1``, ``pool2``; ReLU commutes with max
    exactly), both blocks' points, fc.
    """

    name: str = "residual_mnist"
    in_channels: int = 1
    num_classes: int = 10
    input_size: tuple[int, int] = (28, 28)

    def build_graph(self, g: GraphBuilder) -> str:
        with g.group("conv1"):
            X = g.max_pool(g.relu(g.conv("conv1", g.input, self.in_channels, 16, 5)), 2, 2, name="pool1")
        with g.group("rblock1"):
            X = ResidualBlock(16).add_to(g, X, "rblock1")
        with g.group("conv2"):
            X = g.max_pool(g.relu(g.conv("conv2", X, 16, 32, 5)), 2, 2, name="pool2")
        with g.group("rblock2"):
            X = ResidualBlock(32).add_to(g, X, "rblock2")
        with g.group("fc"):
            return g.dense("fc", g.flatten(X), 512, self.num_classes, flatten_from=(32, 4, 4))
