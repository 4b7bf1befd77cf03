"""The classic CNNs of d2l: LeNet (chapter_convolutional-neural-networks/lenet.md), BNLeNet
(chapter_convolutional-modern/batch-norm.md), AlexNet (alexnet.md), VGG (vgg.md) and NiN (nin.md).

Layer names follow the papers where d2l's Sequentials leave them unnamed: LeNet's ``conv1``,
``conv2``, ``fc1`` ... ``fc3``; AlexNet's and VGG's classifier ``fc6``, ``fc7``, ``fc8``.
"""

from __future__ import annotations

from dataclasses import dataclass

from parity.specs.graph import Architecture, BookTab, GraphBuilder, Layer, conv_output_size

BN_EPS = 1e-5  # PyTorch's BatchNorm defaults, which d2l's PyTorch tab uses
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class LeNet(Architecture):
    """d2l's LeNet-5: two 5x5 convs (the first padded by 2) each with a sigmoid and a 2x2 average pool,
    then three dense layers with sigmoids between. Input 1x28x28 (its flatten feeds a dense layer).

    Points: each conv and dense layer (before its sigmoid) and each pool (``pool1``, ``pool2``).
    """

    name: str = "lenet"
    in_channels: int = 1
    num_classes: int = 10
    input_size: tuple[int, int] = (28, 28)

    def build_graph(self, g: GraphBuilder) -> str:
        with g.group("conv1"):
            X = g.conv("conv1", g.input, self.in_channels, 6, 5, padding=2)
            X = g.avg_pool(g.sigmoid(X), 2, 2, name="pool1")
        with g.group("conv2"):
            X = g.conv("conv2", X, 6, 16, 5)
            X = g.avg_pool(g.sigmoid(X), 2, 2, name="pool2")
        with g.group("fc1"):
            X = g.sigmoid(g.dense("fc1", g.flatten(X), 16 * 5 * 5, 120, flatten_from=(16, 5, 5)))
        with g.group("fc2"):
            X = g.sigmoid(g.dense("fc2", X, 120, 84))
        with g.group("fc3"):
            return g.dense("fc3", X, 84, self.num_classes)


@dataclass(frozen=True)
class BNLeNet(Architecture):
    """d2l's LeNet with BatchNorm (8.5): BatchNorm after every conv (over channels) and after the first
    two dense layers (over features, (N, C)), each before its sigmoid; the convs are unpadded, so the
    flatten holds 16 x 4 x 4 = 256 features. Input 1x28x28.

    Points: every conv, BatchNorm and dense layer (before a sigmoid) and each pool.
    """

    name: str = "bnlenet"
    in_channels: int = 1
    num_classes: int = 10
    bn_eps: float = BN_EPS
    bn_momentum: float = BN_MOMENTUM
    input_size: tuple[int, int] = (28, 28)

    def book_tabs(self) -> dict[str, BookTab]:
        # d2l-en, chapter_convolutional-modern/batch-norm.md, BNLeNet of each tab (MXNet's Gluon BatchNorm
        # has PyTorch's epsilon 1e-5 and momentum 0.9 = 1 - 0.1).
        return {
            "tf": BookTab(
                ("keras_bn_epsilon",),
                "batch-norm.md l. 752, 756, 760 and 763: BatchNormalization() after each conv and dense layer",
                "BatchNormalization() keeps Keras' momentum 0.99 (PyTorch's 0.1 means 0.9)",
            ),
            "jax": BookTab(
                ("d2l_bnlenet_padding",),
                "batch-norm.md l. 777 and 781: nn.Conv(6, kernel_size=(5, 5)) and nn.Conv(16, kernel_size=(5, 5)) "
                "at Flax's default padding='SAME', so 16 x 7 x 7 = 784 features reach nn.Dense(120) (l. 786); "
                "nn.BatchNorm at Flax's epsilon 1e-5",
                "nn.BatchNorm keeps Flax's momentum 0.99 (PyTorch's 0.1 means 0.9)",
            ),
        }

    def build_graph(self, g: GraphBuilder) -> str:
        return self.add_net(g, conv_padding=0)

    def add_net(self, g: GraphBuilder, conv_padding: int) -> str:
        """The net with both 5x5 convs padded by ``conv_padding`` (the spec's 0; Flax's default 'SAME' pads
        a stride-1 5x5 conv by 2), its flatten sized to match."""

        def bn(path: str, X: str, channels: int) -> str:
            return g.sigmoid(g.bn(path, X, channels, self.bn_eps, self.bn_momentum))

        h, w = self.input_size
        with g.group("conv1"):
            X = bn("bn1", g.conv("conv1", g.input, self.in_channels, 6, 5, padding=conv_padding), 6)
            X = g.avg_pool(X, 2, 2, name="pool1")
        with g.group("conv2"):
            X = bn("bn2", g.conv("conv2", X, 6, 16, 5, padding=conv_padding), 16)
            X = g.avg_pool(X, 2, 2, name="pool2")
        for _ in range(2):  # each conv, then its 2x2 pool
            h, w = (conv_output_size(size, 5, 1, conv_padding) // 2 for size in (h, w))
        with g.group("fc1"):
            X = bn("bn3", g.dense("fc1", g.flatten(X), 16 * h * w, 120, flatten_from=(16, h, w)), 120)
        with g.group("fc2"):
            X = bn("bn4", g.dense("fc2", X, 120, 84), 84)
        with g.group("fc3"):
            return g.dense("fc3", X, 84, self.num_classes)


def dense_head(g: GraphBuilder, X: str, in_features: int, flatten_from, spec: AlexNet | VGG) -> str:
    """AlexNet's and VGG's classifier: fc6 and fc7 (``spec.head_width``, ReLU, dropout), then fc8.

    Points: each dense layer (before its ReLU) and each dropout (``drop6``, ``drop7``)."""
    width, dropout = spec.head_width, spec.dropout
    with g.group("fc6"):
        X = g.dense("fc6", g.flatten(X), in_features, width, flatten_from=flatten_from)
        X = g.dropout(g.relu(X), dropout, name="drop6")
    with g.group("fc7"):
        X = g.dropout(g.relu(g.dense("fc7", X, width, width)), dropout, name="drop7")
    with g.group("fc8"):
        return g.dense("fc8", X, width, spec.num_classes)


@dataclass(frozen=True)
class AlexNet(Architecture):
    """d2l's AlexNet (8.1): five convs (11x11 stride 4 padded by 1, 5x5, three 3x3), 3x3 stride-2
    max-pools after the first, second and fifth, then the dense head with dropout. Input 1x224x224.

    Points: each conv (before its ReLU), each max-pool (``pool1``, ``pool2``, ``pool5``), the head's.
    """

    name: str = "alexnet"
    in_channels: int = 1
    num_classes: int = 10
    dropout: float = 0.5
    input_size: tuple[int, int] = (224, 224)
    # fc6's and fc7's units: the book's 4096; narrower in tests of a mechanism, not of the book's sizes
    head_width: int = 4096

    # (out_channels, kernel_size, stride, padding, max-pool after it) of each conv, as in the book
    CONVS = (
        (96, 11, 4, 1, True),
        (256, 5, 1, 2, True),
        (384, 3, 1, 1, False),
        (384, 3, 1, 1, False),
        (256, 3, 1, 1, True),
    )

    def book_tabs(self) -> dict[str, BookTab]:
        # d2l-en, chapter_convolutional-modern/alexnet.md, AlexNet.__init__ of each tab. conv1 unpadded
        # gives 54x54 from 224x224 as padded by 1 does, its windows one pixel further down and right. The
        # TF tab's other convs have padding='same' at stride 1: kernel_size // 2 zeros a side, as the spec
        # pads them. The JAX tab pads conv1 by 1 and leaves the others at Flax's default 'SAME', the same.
        return {
            "tf": BookTab(
                ("dropped_padding",),
                "alexnet.md l. 361-362: conv1 Conv2D(filters=96, kernel_size=11, strides=4, activation='relu'), "
                "no padding; l. 364-372: conv2-conv5 Conv2D(..., padding='same', ...) at stride 1",
            ),
            "mxnet": BookTab(
                ("dropped_padding",),
                "alexnet.md l. 333: conv1 nn.Conv2D(96, kernel_size=11, strides=4, activation='relu'), no padding",
            ),
        }

    def build_graph(self, g: GraphBuilder) -> str:
        """The flatten before fc6 holds 256 x 5 x 5 features at 224x224 (another ``input_size`` gives
        another fc6)."""
        X, channels, (h, w) = g.input, self.in_channels, self.input_size
        for k, (out, kernel, stride, padding, pool) in enumerate(self.CONVS, start=1):
            with g.group(f"conv{k}"):
                X = g.relu(g.conv(f"conv{k}", X, channels, out, kernel, stride=stride, padding=padding))
                h, w = (conv_output_size(size, kernel, stride, padding) for size in (h, w))
                if pool:
                    X = g.max_pool(X, 3, 2, name=f"pool{k}")
                    h, w = (conv_output_size(size, 3, 2, 0) for size in (h, w))
            channels = out
        return dense_head(g, X, channels * h * w, (channels, h, w), self)


@dataclass(frozen=True)
class VGG(Architecture):
    """d2l's VGG (8.2): ``vgg_block``s of 3x3 padded convs with ReLUs, each block closed by a 2x2
    max-pool, then the dense head with dropout. ``arch`` is ((num_convs, out_channels), ...); the
    book's is VGG-11's, ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)). Input 1x224x224.

    Points: each conv (before its ReLU), each block's max-pool (``blocks.{i}``), the head's.
    """

    name: str = "vgg"
    arch: tuple[tuple[int, int], ...] = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    in_channels: int = 1
    num_classes: int = 10
    dropout: float = 0.5
    input_size: tuple[int, int] = (224, 224)
    # fc6's and fc7's units: the book's 4096; narrower in tests of a mechanism, not of the book's sizes
    head_width: int = 4096

    def build_graph(self, g: GraphBuilder) -> str:
        X, channels = g.input, self.in_channels
        for i, (num_convs, out) in enumerate(self.arch):
            with g.group(f"blocks.{i}"):
                for k in range(1, num_convs + 1):
                    X = g.relu(g.conv(f"blocks.{i}.conv{k}", X, channels, out, 3, padding=1))
                    channels = out
                X = g.max_pool(X, 2, 2, name=f"blocks.{i}")
        h, w = (size >> len(self.arch) for size in self.input_size)  # each block halves, rounding down
        return dense_head(g, X, channels * h * w, (channels, h, w), self)


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
    # d2l's JAX NiN pools with nn.avg_pool(x, (5, 5)): a 5x5 window at stride 1, the last map's size at 224x224
    D2L_JAX_POOL = 5

    def book_tabs(self) -> dict[str, BookTab]:
        # d2l-en, chapter_convolutional-modern/nin.md, NiN of each tab; the TF tab's padding='same' is at stride 1.
        return {
            "jax": BookTab(
                ("d2l_nin_pool",),
                "nin.md l. 203: nn.avg_pool(x, (5, 5)), a 5x5 window at Flax's default stride 1, then l. 204: "
                "x.reshape((x.shape[0], -1)) in place of the global average pool (see D2L_JAX_POOL)",
            ),
        }

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


def d2l_bnlenet_padding_problem(spec: Architecture) -> str | None:
    """Why d2l's JAX BNLeNet (its convs at Flax's default padding='SAME') does not apply to ``spec``, or None."""
    if type(spec) is not BNLeNet:
        return f"d2l's JAX BNLeNet applies to BNLeNet specs only, got a {type(spec).__name__} spec"
    return None


def d2l_bnlenet_padding_layers(spec: Architecture) -> list[Layer]:
    """The layers of ``spec`` as d2l's JAX BNLeNet builds it: both convs padded 'SAME' (2 a side), so fc1
    takes 16 x 7 x 7 = 784 features at 28x28 (none where it does not apply)."""
    if d2l_bnlenet_padding_problem(spec):
        return []
    g = GraphBuilder()
    spec.add_net(g, conv_padding=2)
    return [node.layer for node in g.nodes if node.layer is not None]


def d2l_nin_pool_problem(spec: Architecture) -> str | None:
    """Why d2l's JAX NiN pool (``NiN.D2L_JAX_POOL``) does not apply to ``spec``, or None."""
    if type(spec) is not NiN:
        return f"d2l's JAX NiN pool applies to NiN specs only, got a {type(spec).__name__} spec"
    return None
