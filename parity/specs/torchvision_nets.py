"""torchvision's classic ImageNet nets as specs: ResNet (``models/resnet.py``), AlexNet (``alexnet.py``)
and VGG (``vgg.py``), so that their checkpoints load into every framework.

These are torchvision's architectures, not d2l's: ResNet's convs have no bias, its blocks are
torchvision's ``BasicBlock`` and ``Bottleneck`` (v1.5: the stride on the 3x3 conv), with a
``downsample`` shortcut (1x1 conv + BatchNorm) wherever the shape changes; AlexNet has 64/192
channels and pads conv1 by 2; both AlexNet and VGG pass their last feature map through an
adaptive average pool (6x6, 7x7) before the classifier, so they take any input size from their
smallest up. Canonical paths: ResNet keeps torchvision's module names (``layer2.0.downsample.0``);
AlexNet and VGG use the papers' names, as d2l's specs do (``conv1`` ... ``conv5``,
``blocks.{i}.conv{k}`` and ``blocks.{i}.bn{k}``, ``fc6``, ``fc7``, ``fc8``);
``parity.torchvision_io`` maps them to ``features.{k}`` and ``classifier.{k}``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from parity.specs.graph import Architecture, GraphBuilder, join

BN_EPS = 1e-5  # torchvision's BatchNorm2d defaults
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class TorchvisionResNet(Architecture):
    """torchvision's ResNet: conv1 (7x7, stride 2) -> bn1 -> ReLU -> 3x3 stride-2 max-pool, four stages
    ``layer1`` ... ``layer4`` of ``depths[i]`` blocks at widths 64, 128, 256, 512 (the first block of
    stages 2-4 strides by 2), global average pool, ``fc``. ``bottleneck`` selects ``Bottleneck``
    (1x1 -> 3x3 (stride) -> 1x1 at 4x the width) over ``BasicBlock`` (3x3 (stride) -> 3x3).

    Points: every conv and BatchNorm, ``maxpool``, every block's output, ``avgpool`` (N, C), ``fc``.
    """

    name: str = "tv_resnet18"
    depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    bottleneck: bool = False
    in_channels: int = 3
    num_classes: int = 1000
    input_size: tuple[int, int] = (224, 224)

    @property
    def expansion(self) -> int:
        return 4 if self.bottleneck else 1

    def blocks(self) -> list[tuple[str, int, int, int]]:
        """(path ``layer{s}.{j}``, in_channels, width, stride) of every block, in order."""
        blocks, in_channels = [], 64
        for s, depth in enumerate(self.depths):
            width = 64 * 2**s
            for j in range(depth):
                blocks.append((f"layer{s + 1}.{j}", in_channels, width, 2 if s and not j else 1))
                in_channels = width * self.expansion
        return blocks

    def add_block(self, g: GraphBuilder, X: str, path: str, in_channels: int, width: int, stride: int) -> str:
        p = functools.partial(join, path)

        def conv_bn(k: int, Y: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> str:
            Y = g.conv(p(f"conv{k}"), Y, c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
            return g.bn(p(f"bn{k}"), Y, c_out, BN_EPS, BN_MOMENTUM)

        out = width * self.expansion
        if self.bottleneck:
            Y = g.relu(conv_bn(1, X, in_channels, width, 1))
            Y = g.relu(conv_bn(2, Y, width, width, 3, stride))
            Y = conv_bn(3, Y, width, out, 1)
        else:
            Y = g.relu(conv_bn(1, X, in_channels, width, 3, stride))
            Y = conv_bn(2, Y, width, width, 3)
        if stride != 1 or in_channels != out:
            X = g.conv(p("downsample.0"), X, in_channels, out, 1, stride=stride, bias=False)
            X = g.bn(p("downsample.1"), X, out, BN_EPS, BN_MOMENTUM)
        return g.relu(g.sum(Y, X), name=path)

    def build_graph(self, g: GraphBuilder) -> str:
        with g.group("conv1"):
            X = g.conv("conv1", g.input, self.in_channels, 64, 7, stride=2, padding=3, bias=False)
            X = g.relu(g.bn("bn1", X, 64, BN_EPS, BN_MOMENTUM))
            X = g.max_pool(X, 3, 2, 1, name="maxpool")
        for block in self.blocks():
            with g.group(block[0].split(".")[0]):
                X = self.add_block(g, X, *block)
        with g.group("fc"):
            X = g.global_avg_pool(X, name="avgpool")
            return g.dense("fc", X, 512 * self.expansion, self.num_classes)


@dataclass(frozen=True)
class TorchvisionAlexNet(Architecture):
    """torchvision's AlexNet (the "one weird trick" variant): five convs with ReLUs, 3x3 stride-2 max-pools
    after conv1, conv2 and conv5, a 6x6 adaptive average pool, then dropout -> fc6 -> ReLU -> dropout -> fc7
    -> ReLU -> fc8 (torchvision drops out before each dense layer, d2l after).

    Points: each conv (before its ReLU), ``pool1``, ``pool2``, ``pool5``, ``avgpool``, fc6, fc7, fc8.
    """

    name: str = "tv_alexnet"
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.5
    input_size: tuple[int, int] = (224, 224)

    # (out_channels, kernel_size, stride, padding, max-pool after it) of each conv
    CONVS = (
        (64, 11, 4, 2, True),
        (192, 5, 1, 2, True),
        (384, 3, 1, 1, False),
        (256, 3, 1, 1, False),
        (256, 3, 1, 1, True),
    )
    POOL = (6, 6)

    def build_graph(self, g: GraphBuilder) -> str:
        X, channels = g.input, self.in_channels
        for k, (out, kernel, stride, padding, pool) in enumerate(self.CONVS, start=1):
            with g.group(f"conv{k}"):
                X = g.relu(g.conv(f"conv{k}", X, channels, out, kernel, stride=stride, padding=padding))
                if pool:
                    X = g.max_pool(X, 3, 2, name=f"pool{k}")
            channels = out
        with g.group("avgpool"):
            X = g.adaptive_avg_pool(X, self.POOL, name="avgpool")
        features = channels * self.POOL[0] * self.POOL[1]
        with g.group("fc6"):
            X = g.dropout(g.flatten(X), self.dropout)
            X = g.dense("fc6", X, features, 4096, flatten_from=(channels, *self.POOL))
        with g.group("fc7"):
            X = g.dense("fc7", g.dropout(g.relu(X), self.dropout), 4096, 4096)
        with g.group("fc8"):
            return g.dense("fc8", g.relu(X), 4096, self.num_classes)


@dataclass(frozen=True)
class TorchvisionVGG(Architecture):
    """torchvision's VGG: blocks of 3x3 convs padded by 1 (each with BatchNorm when ``batch_norm``, then
    a ReLU) closed by 2x2 max-pools, a 7x7 adaptive average pool, then fc6 -> ReLU -> dropout -> fc7 ->
    ReLU -> dropout -> fc8. ``arch`` is ((num_convs, out_channels), ...) as in d2l's VGG; torchvision's
    convs keep their bias, with BatchNorm too.

    Points: each conv and BatchNorm (before its ReLU), each block's max-pool (``blocks.{i}``),
    ``avgpool``, fc6, fc7, fc8.
    """

    name: str = "tv_vgg11"
    arch: tuple[tuple[int, int], ...] = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
    batch_norm: bool = False
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.5
    input_size: tuple[int, int] = (224, 224)

    POOL = (7, 7)

    def build_graph(self, g: GraphBuilder) -> str:
        X, channels = g.input, self.in_channels
        for i, (num_convs, out) in enumerate(self.arch):
            with g.group(f"blocks.{i}"):
                for k in range(1, num_convs + 1):
                    X = g.conv(f"blocks.{i}.conv{k}", X, channels, out, 3, padding=1)
                    if self.batch_norm:
                        X = g.bn(f"blocks.{i}.bn{k}", X, out, BN_EPS, BN_MOMENTUM)
                    X = g.relu(X)
                    channels = out
                X = g.max_pool(X, 2, 2, name=f"blocks.{i}")
        with g.group("avgpool"):
            X = g.adaptive_avg_pool(X, self.POOL, name="avgpool")
        with g.group("fc6"):
            features = channels * self.POOL[0] * self.POOL[1]
            X = g.dense("fc6", g.flatten(X), features, 4096, flatten_from=(channels, *self.POOL))
            X = g.dropout(g.relu(X), self.dropout)
        with g.group("fc7"):
            X = g.dropout(g.relu(g.dense("fc7", X, 4096, 4096)), self.dropout)
        with g.group("fc8"):
            return g.dense("fc8", X, 4096, self.num_classes)


VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
VGG16 = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))

# spec name -> spec, one line per torchvision model
TORCHVISION_NETS = {
    "tv_resnet18": lambda: TorchvisionResNet("tv_resnet18", (2, 2, 2, 2)),
    "tv_resnet50": lambda: TorchvisionResNet("tv_resnet50", (3, 4, 6, 3), bottleneck=True),
    "tv_alexnet": TorchvisionAlexNet,
    "tv_vgg11": lambda: TorchvisionVGG("tv_vgg11", VGG11),
    "tv_vgg16": lambda: TorchvisionVGG("tv_vgg16", VGG16),
    "tv_vgg16_bn": lambda: TorchvisionVGG("tv_vgg16_bn", VGG16, batch_norm=True),
}
