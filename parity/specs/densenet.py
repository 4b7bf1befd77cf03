"""d2l's DenseNet (chapter_convolutional-modern/densenet.md)."""

from __future__ import annotations

from dataclasses import dataclass

from parity.specs.graph import Architecture, GraphBuilder


@dataclass(frozen=True)
class DenseNet(Architecture):
    """d2l's DenseNet: b1 (as ResNet's), dense blocks ``dense_blk{i}`` of ``conv_block``s (BN, ReLU,
    3x3 conv of ``growth_rate`` channels, its output concatenated after its input), a
    ``transition_block`` ``tran_blk{i}`` between dense blocks (BN, ReLU, 1x1 conv halving the
    channels, 2x2 average pool), then ``last`` (BN, ReLU, global average pool, dense).

    Points: ``b1.conv``, ``b1.bn``, ``b1``; per conv block its BN (before ReLU), conv and the
    concatenation (``dense_blk{i}.{j}``); per transition its BN, conv and pool (``tran_blk{i}``);
    ``last.bn``, ``last.pool`` (N, C) and ``last.fc``.
    """

    name: str = "densenet"
    num_channels: int = 64
    growth_rate: int = 32
    arch: tuple[int, ...] = (4, 4, 4, 4)
    in_channels: int = 1
    num_classes: int = 10
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    input_size: tuple[int, int] = (96, 96)

    def bn_relu(self, g: GraphBuilder, path: str, X: str, channels: int) -> str:
        return g.relu(g.bn(path, X, channels, self.bn_eps, self.bn_momentum))

    def build_graph(self, g: GraphBuilder) -> str:
        c = self.num_channels
        with g.group("b1"):
            X = g.conv("b1.conv", g.input, self.in_channels, c, 7, stride=2, padding=3)
            X = g.max_pool(self.bn_relu(g, "b1.bn", X, c), 3, 2, 1, name="b1")
        for i, num_convs in enumerate(self.arch, start=1):
            with g.group(f"dense_blk{i}"):
                for j in range(num_convs):
                    p = f"dense_blk{i}.{j}"
                    Y = g.conv(f"{p}.conv", self.bn_relu(g, f"{p}.bn", X, c), c, self.growth_rate, 3, padding=1)
                    X, c = g.concat(X, Y, name=p), c + self.growth_rate
            if i < len(self.arch):
                with g.group(f"tran_blk{i}"):
                    p = f"tran_blk{i}"
                    X = g.conv(f"{p}.conv", self.bn_relu(g, f"{p}.bn", X, c), c, c // 2, 1)
                    X, c = g.avg_pool(X, 2, 2, name=p), c // 2
        with g.group("last"):
            X = g.global_avg_pool(self.bn_relu(g, "last.bn", X, c), name="last.pool")
            return g.dense("last.fc", X, c, self.num_classes)
