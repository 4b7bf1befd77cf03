"""The classic CNNs of d2l's modern-CNN chapter: NiN (chapter_convolutional-modern/nin.md)."""

from __future__ import annotations

from dataclasses import dataclass

from parity.specs.graph import Architecture, GraphBuilder


@dataclass(frozen=True)
class NiN(Architecture):
    """d2l's Network in Network: four ``nin_block``s (a k x k conv, then two 1x1 convs, each with a
    ReLU), 3x3 stride-2 max-pools between the first three, dropout before the last, whose
    ``num_classes`` channels are averaged globally into the logits (no dense layer).

    Canonical paths: ``blocks.{i}.conv1`` is block i's k x k conv, ``conv2``/``conv3`` its 1x1s.
    """

    name: str = "nin"
    in_channels: int = 1
    num_classes: int = 10
    dropout: float = 0.5
    input_size: tuple[int, int] = (224, 224)

    # (out_channels, kernel_size, stride, padding) of each nin_block, as in the book
    BLOCKS = ((96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1))

    def blocks(self) -> tuple[tuple[int, int, int, int], ...]:
        return (*self.BLOCKS, (self.num_classes, 3, 1, 1))

    def nin_block(self, g: GraphBuilder, X: str, i: int, in_channels: int) -> str:
        """Points: each conv (before its ReLU) and the block's output."""
        out, kernel, stride, padding = self.blocks()[i]
        p = f"blocks.{i}"
        X = g.relu(g.conv(f"{p}.conv1", X, in_channels, out, kernel, stride=stride, padding=padding))
        X = g.relu(g.conv(f"{p}.conv2", X, out, out, 1))
        return g.relu(g.conv(f"{p}.conv3", X, out, out, 1), name=p)

    def build_graph(self, g: GraphBuilder) -> str:
        """Points: every block's, each max-pool (``pools.{i}``), the dropout and the logits (``head.pool``)."""
        X, channels = g.input, self.in_channels
        for i in range(3):
            with g.group(f"blocks.{i}"):
                X = self.nin_block(g, X, i, channels)
            with g.group(f"pools.{i}"):
                X = g.max_pool(X, 3, 2, name=f"pools.{i}")
            channels = self.blocks()[i][0]
        with g.group("dropout"):
            X = g.dropout(X, self.dropout, name="dropout")
        with g.group("blocks.3"):
            X = self.nin_block(g, X, 3, channels)
        with g.group("head"):
            return g.global_avg_pool(X, name="head.pool")
