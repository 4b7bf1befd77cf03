"""d2l's Inception block and GoogLeNet (chapter_convolutional-modern/googlenet.md), and the
tutorials' InceptionA block and its MNIST net."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from parity.specs.graph import OUTPUT, Architecture, Block, BookTab, GraphBuilder, join


@dataclass(frozen=True)
class Inception(Block):
    """d2l's Inception block: four branches concatenated on the channel axis, each conv + ReLU.

    b1: 1x1 (c1); b2: 1x1 (c2[0]) -> 3x3 pad 1 (c2[1]); b3: 1x1 (c3[0]) -> 5x5 pad 2 (c3[1]);
    b4: 3x3 max-pool stride 1 pad 1 -> 1x1 (c4). Output channels c1 + c2[1] + c3[1] + c4.
    """

    in_channels: int
    c1: int
    c2: tuple[int, int]
    c3: tuple[int, int]
    c4: int
    conv_bias: bool = True

    name = "inception_block"

    @property
    def out_channels(self) -> int:
        return self.c1 + self.c2[1] + self.c3[1] + self.c4

    def add_to(self, g: GraphBuilder, X: str, prefix: str = "") -> str:
        """Points: each conv's output (before its ReLU), the max-pool, and the concatenated output."""
        p = functools.partial(join, prefix)
        c_in, bias = self.in_channels, self.conv_bias
        b1 = g.conv(p("b1_1"), X, c_in, self.c1, 1, bias=bias)
        b2 = g.relu(g.conv(p("b2_1"), X, c_in, self.c2[0], 1, bias=bias))
        b2 = g.conv(p("b2_2"), b2, self.c2[0], self.c2[1], 3, padding=1, bias=bias)
        b3 = g.relu(g.conv(p("b3_1"), X, c_in, self.c3[0], 1, bias=bias))
        b3 = g.conv(p("b3_2"), b3, self.c3[0], self.c3[1], 5, padding=2, bias=bias)
        b4 = g.max_pool(X, 3, 1, 1, name=p("b4_1"))
        b4 = g.conv(p("b4_2"), b4, c_in, self.c4, 1, bias=bias)
        return g.concat(*(g.relu(b) for b in (b1, b2, b3, b4)), name=prefix or OUTPUT)


@dataclass(frozen=True)
class GoogLeNet(Architecture):
    """d2l's GoogLeNet: b1 (7x7 conv stride 2, max-pool), b2 (1x1, 3x3, max-pool), b3..b5 of Inception
    blocks with max-pools between, global average pooling in b5, then a dense head.

    Every max-pool is 3x3, stride 2, padding 1 (padded cells never win a max).
    """

    name: str = "googlenet"
    in_channels: int = 1
    num_classes: int = 10
    conv_bias: bool = True
    input_size: tuple[int, int] = (96, 96)

    def book_tabs(self) -> dict[str, BookTab]:
        # d2l-en, chapter_convolutional-modern/googlenet.md: b1 to b4 of each tab (no BatchNorm in GoogLeNet).
        return {
            "tf": BookTab(
                ("same_padding",),
                "googlenet.md l. 220-223: b1's Conv2D(64, 7, strides=2, padding='same') and MaxPool2D(pool_size=3, "
                "strides=2, padding='same'); l. 267, 310, 362: b2's to b4's MaxPool2D(3, strides=2, padding='same')",
            ),
            "jax": BookTab(
                ("same_padding",),
                "googlenet.md l. 238-241: b1's nn.Conv(64, (7, 7), strides=(2, 2), padding='same') and "
                "nn.max_pool(x, (3, 3), strides=(2, 2), padding='same'); l. 275, 316, 371: b2's to b4's max-pools",
            ),
        }

    # (c1, (c2_1, c2_2), (c3_1, c3_2), c4) per Inception block, as in the book
    B3 = ((64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64))
    B4 = (
        (192, (96, 208), (16, 48), 64),
        (160, (112, 224), (24, 64), 64),
        (128, (128, 256), (24, 64), 64),
        (112, (144, 288), (32, 64), 64),
        (256, (160, 320), (32, 128), 128),
    )
    B5 = ((256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128))

    def inceptions(self) -> Iterator[tuple[str, Inception]]:
        """(canonical path, block spec) of every Inception block, in execution order."""
        in_channels = 192
        for stage, blocks in (("b3", self.B3), ("b4", self.B4), ("b5", self.B5)):
            for k, (c1, c2, c3, c4) in enumerate(blocks):
                block = Inception(in_channels, c1, c2, c3, c4, self.conv_bias)
                yield f"{stage}.{k}", block
                in_channels = block.out_channels

    def build_graph(self, g: GraphBuilder) -> str:
        """Points: each conv (before its ReLU), b1 and b2 after their max-pools, every Inception
        block's points, b3 and b4 after their max-pools, b5 (global average, (N, C)) and the logits."""
        bias = self.conv_bias
        with g.group("b1"):
            X = g.conv("b1.conv", g.input, self.in_channels, 64, 7, stride=2, padding=3, bias=bias)
            X = g.max_pool(g.relu(X), 3, 2, 1, name="b1")
        with g.group("b2"):
            X = g.relu(g.conv("b2.conv1", X, 64, 64, 1, bias=bias))
            X = g.conv("b2.conv2", X, 64, 192, 3, padding=1, bias=bias)
            X = g.max_pool(g.relu(X), 3, 2, 1, name="b2")
        for stage in ("b3", "b4", "b5"):
            with g.group(stage):
                for path, block in self.inceptions():
                    if path.startswith(f"{stage}."):
                        X = block.add_to(g, X, path)
                if stage == "b5":
                    X = g.global_avg_pool(X, name="b5")
                else:
                    X = g.max_pool(X, 3, 2, 1, name=stage)
        with g.group("head"):
            return g.dense("head.fc", X, 1024, self.num_classes)


@dataclass(frozen=True)
class InceptionA(Block):
    """The "InceptionA" block of common PyTorch tutorials: four branches without ReLUs,
    concatenated in the order 1x1 (16), 5x5 (16 -> 24), 3x3 (16 -> 24 -> 24), pool (24): 88 channels.

    The pool branch is a 3x3 average pool, stride 1, padding 1, counting the padded
    zeros (PyTorch's default), then a 1x1 conv.
    """

    in_channels: int

    out_channels = 88
    name = "inception_a_block"

    def add_to(self, g: GraphBuilder, X: str, prefix: str = "") -> str:
        """Points: each conv's output, the average pool (``branch_pool.avg``) and the concatenated output."""
        p = functools.partial(join, prefix)
        c = self.in_channels
        b1 = g.conv(p("branch1x1"), X, c, 16, 1)
        b5 = g.conv(p("branch5x5_1"), X, c, 16, 1)
        b5 = g.conv(p("branch5x5_2"), b5, 16, 24, 5, padding=2)
        b3 = g.conv(p("branch3x3_1"), X, c, 16, 1)
        b3 = g.conv(p("branch3x3_2"), b3, 16, 24, 3, padding=1)
        b3 = g.conv(p("branch3x3_3"), b3, 24, 24, 3, padding=1)
        bp = g.avg_pool(X, 3, 1, 1, name=p("branch_pool.avg"))
        bp = g.conv(p("branch_pool"), bp, c, 24, 1)
        return g.concat(b1, b5, b3, bp, name=prefix or OUTPUT)


@dataclass(frozen=True)
class InceptionNet(Architecture):
    """The tutorials' MNIST net around InceptionA, input 1x28x28:
    conv1 5x5 (10) -> max-pool 2 -> ReLU -> incep1 -> conv2 5x5 (20) -> max-pool 2 -> ReLU -> incep2
    -> flatten (88 x 4 x 4 = 1408) -> fc (10). The flatten feeds a dense layer, so NCHW and NHWC
    frameworks flatten in different orders (``Dense.flatten_from``).
    """

    name: str = "inception_mnist"
    in_channels: int = 1
    num_classes: int = 10
    input_size: tuple[int, int] = (28, 28)

    def build_graph(self, g: GraphBuilder) -> str:
        """Points: the convs, each conv's max-pool + ReLU (``pool1``, ``pool2``), both InceptionA
        blocks' points, fc. (The tutorial pools, then applies ReLU; ReLU commutes with max exactly.)"""
        with g.group("conv1"):
            X = g.conv("conv1", g.input, self.in_channels, 10, 5)
            X = g.max_pool(g.relu(X), 2, 2, name="pool1")
        with g.group("incep1"):
            X = InceptionA(10).add_to(g, X, "incep1")
        with g.group("conv2"):
            X = g.conv("conv2", X, 88, 20, 5)
            X = g.max_pool(g.relu(X), 2, 2, name="pool2")
        with g.group("incep2"):
            X = InceptionA(20).add_to(g, X, "incep2")
        with g.group("fc"):
            return g.dense("fc", g.flatten(X), 1408, self.num_classes, flatten_from=(88, 4, 4))
