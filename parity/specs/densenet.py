"""d2l's DenseNet (chapter_convolutional-modern/densenet.md)."""

from __future__ import annotations

from dataclasses import dataclass

from parity.specs.graph import Architecture, BookTab, GraphBuilder, Layer


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

    def book_tabs(self) -> dict[str, BookTab]:
        # d2l-en, chapter_convolutional-modern/densenet.md: DenseNet.b1, ConvBlock and create_net of each tab.
        return {
            "tf": BookTab(
                ("same_padding", "keras_bn_epsilon"),
                "densenet.md l. 339-344: b1's Conv2D(64, kernel_size=7, strides=2, padding='same'), "
                "BatchNormalization(), MaxPool2D(pool_size=3, strides=2, padding='same'); l. 112, 264 and 428: "
                "the BatchNormalization() of ConvBlock, TransitionBlock and the head",
                "BatchNormalization() keeps Keras' momentum 0.99 (PyTorch's 0.1 means 0.9)",
            ),
            "jax": BookTab(
                ("same_padding", "d2l_densenet_channels"),
                "densenet.md l. 360-367: b1's nn.Conv(64, kernel_size=(7, 7), strides=(2, 2), padding='same') and "
                "nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='same'); l. 444: create_net's "
                "num_channels = self.num_channels + (num_convs * self.growth_rate) (see d2l_jax_transition_channels); "
                "nn.BatchNorm at Flax's epsilon 1e-5",
                "nn.BatchNorm keeps Flax's momentum 0.99 (PyTorch's 0.1 means 0.9)",
            ),
        }

    def transition_channels(self) -> tuple[int, ...]:
        """Each transition block's output channels: half the channels of the dense block before it."""
        channels, halves = self.num_channels, []
        for num_convs in self.arch[:-1]:
            channels = (channels + num_convs * self.growth_rate) // 2
            halves.append(channels)
        return tuple(halves)

    def d2l_jax_transition_channels(self) -> tuple[int, ...]:
        """The transitions' output channels as d2l's JAX ``create_net`` computes them: each time from
        ``num_channels`` (64), not from the previous transition's, so ``(64 + 4 * 32) // 2 = 96`` for
        every transition of the book's net where the spec has 96, 112 and 120."""
        return tuple((self.num_channels + num_convs * self.growth_rate) // 2 for num_convs in self.arch[:-1])

    def bn_relu(self, g: GraphBuilder, path: str, X: str, channels: int) -> str:
        return g.relu(g.bn(path, X, channels, self.bn_eps, self.bn_momentum))

    def build_graph(self, g: GraphBuilder) -> str:
        return self.add_net(g, self.transition_channels())

    def add_net(self, g: GraphBuilder, transitions: tuple[int, ...]) -> str:
        """The net whose transition blocks output ``transitions`` channels."""
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
                    out = transitions[i - 1]
                    X = g.conv(f"{p}.conv", self.bn_relu(g, f"{p}.bn", X, c), c, out, 1)
                    X, c = g.avg_pool(X, 2, 2, name=p), out
        with g.group("last"):
            X = g.global_avg_pool(self.bn_relu(g, "last.bn", X, c), name="last.pool")
            return g.dense("last.fc", X, c, self.num_classes)


def d2l_densenet_channels_problem(spec: Architecture) -> str | None:
    """Why d2l's JAX channel count (``DenseNet.d2l_jax_transition_channels``) would not change ``spec``, or None."""
    if type(spec) is not DenseNet:
        return f"d2l's JAX create_net applies to DenseNet specs only, got a {type(spec).__name__} spec"
    if spec.d2l_jax_transition_channels() == spec.transition_channels():
        return f"its transitions output {spec.transition_channels()} channels either way"
    return None


def d2l_densenet_channels_layers(spec: Architecture) -> list[Layer]:
    """The layers of ``spec`` as d2l's JAX ``create_net`` builds it (none where its channel count is the spec's)."""
    if d2l_densenet_channels_problem(spec):
        return []
    g = GraphBuilder()
    spec.add_net(g, spec.d2l_jax_transition_channels())
    return [node.layer for node in g.nodes if node.layer is not None]
