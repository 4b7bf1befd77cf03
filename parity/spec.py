"""Architectures as data.

A spec is a frozen, framework-neutral description of a network. Every backend
builds its native model from a spec, and the canonical weight names and shapes
(``parity.weights.schema``) are derived from it, so two frameworks that build the
same spec agree on every name without talking to each other.

BatchNorm follows PyTorch's conventions in a spec: ``bn_eps`` is added to the
variance, and ``bn_momentum`` is the weight of the *new* batch statistic
(running = (1 - m) * running + m * batch). Keras, Flax and Gluon call
``1 - bn_momentum`` their momentum; backends convert, never use a default.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Union


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution, with symmetric zero padding ``padding`` on every side."""

    path: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = True


@dataclass(frozen=True)
class BatchNorm:
    path: str
    channels: int
    eps: float
    momentum: float


@dataclass(frozen=True)
class Dense:
    """A dense layer. ``flatten_from`` is the (C, H, W) feature map flattened into its input, if
    any: the canonical weight's input axis is in NCHW flatten order (C, H, W), and NHWC
    frameworks, which flatten in (H, W, C) order, see it permuted."""

    path: str
    in_features: int
    out_features: int
    flatten_from: tuple[int, int, int] | None = None


Layer = Union[Conv, BatchNorm, Dense]


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


@dataclass(frozen=True)
class ResNeXtBlock:
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

    def layers(self, prefix: str = "") -> list[Layer]:
        """The block's parameterised layers, in execution order, with canonical paths."""
        bot, out, bias = self.bot_channels, self.num_channels, self.conv_bias
        p = lambda name: _join(prefix, name)  # noqa: E731
        bn = lambda name, c: BatchNorm(p(name), c, self.bn_eps, self.bn_momentum)  # noqa: E731
        layers: list[Layer] = [
            Conv(p("conv1"), self.in_channels, bot, 1, bias=bias),
            bn("bn1", bot),
            Conv(p("conv2"), bot, bot, 3, self.stride, 1, self.groups, bias),
            bn("bn2", bot),
            Conv(p("conv3"), bot, out, 1, bias=bias),
            bn("bn3", out),
        ]
        if self.use_1x1conv:
            layers += [Conv(p("conv4"), self.in_channels, out, 1, self.stride, bias=bias), bn("bn4", out)]
        return layers

    def activation_points(self, prefix: str = "") -> list[str]:
        """Canonical keys of ``activations()``, in execution order: each conv, each BN
        (before its ReLU), and the block output (after the residual add and ReLU), keyed
        by ``prefix``, or ``output`` for a standalone block."""
        names = ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"] + (["conv4", "bn4"] if self.use_1x1conv else [])
        return [_join(prefix, n) for n in names] + [prefix or "output"]

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        n, _, h, w = input_shape
        return (n, self.num_channels, conv_output_size(h, 3, self.stride, 1), conv_output_size(w, 3, self.stride, 1))


@dataclass(frozen=True)
class Stage:
    """``depth`` ResNeXt blocks of width ``width``; the first one strides by ``stride``."""

    depth: int
    width: int
    group_width: int
    bot_mul: float
    stride: int = 2


@dataclass(frozen=True)
class AnyNet:
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
                yield i, j, ResNeXtBlock(
                    in_channels=in_channels if first else stage.width,
                    num_channels=stage.width,
                    group_width=stage.group_width,
                    bot_mul=stage.bot_mul,
                    use_1x1conv=first,
                    stride=stage.stride if first else 1,
                    conv_bias=self.conv_bias,
                    bn_eps=self.bn_eps,
                    bn_momentum=self.bn_momentum,
                )
            in_channels = stage.width

    def layers(self) -> list[Layer]:
        layers: list[Layer] = [
            Conv("stem.conv", self.in_channels, self.stem_width, 3, 2, 1, bias=self.conv_bias),
            BatchNorm("stem.bn", self.stem_width, self.bn_eps, self.bn_momentum),
        ]
        for i, j, block in self.blocks():
            layers += block.layers(block_path(i, j))
        layers.append(Dense("head.fc", self.stages[-1].width, self.num_classes))
        return layers

    def activation_points(self) -> list[str]:
        """Canonical keys of ``activations()``, in execution order: stem conv, stem BN
        (before ReLU), stem output, every block's points, the pooled features (N, C)
        and the logits."""
        points = ["stem.conv", "stem.bn", "stem"]
        for i, j, block in self.blocks():
            points += block.activation_points(block_path(i, j))
        return points + ["head.pool", "head.fc"]

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, int]:
        return (input_shape[0], self.num_classes)


@dataclass(frozen=True)
class Inception:
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

    def layers(self, prefix: str = "") -> list[Layer]:
        p = lambda name: _join(prefix, name)  # noqa: E731
        c_in, bias = self.in_channels, self.conv_bias
        return [
            Conv(p("b1_1"), c_in, self.c1, 1, bias=bias),
            Conv(p("b2_1"), c_in, self.c2[0], 1, bias=bias),
            Conv(p("b2_2"), self.c2[0], self.c2[1], 3, padding=1, bias=bias),
            Conv(p("b3_1"), c_in, self.c3[0], 1, bias=bias),
            Conv(p("b3_2"), self.c3[0], self.c3[1], 5, padding=2, bias=bias),
            Conv(p("b4_2"), c_in, self.c4, 1, bias=bias),
        ]

    def activation_points(self, prefix: str = "") -> list[str]:
        """Each conv's output (before its ReLU), the max-pool, and the concatenated output."""
        names = ["b1_1", "b2_1", "b2_2", "b3_1", "b3_2", "b4_1", "b4_2"]
        return [_join(prefix, n) for n in names] + [prefix or "output"]

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        n, _, h, w = input_shape
        return (n, self.out_channels, h, w)


@dataclass(frozen=True)
class GoogLeNet:
    """d2l's GoogLeNet: b1 (7x7 conv stride 2, max-pool), b2 (1x1, 3x3, max-pool), b3..b5 of Inception
    blocks with max-pools between, global average pooling in b5, then a dense head.

    Every max-pool is 3x3, stride 2, padding 1 (padded cells never win a max).
    """

    name: str = "googlenet"
    in_channels: int = 1
    num_classes: int = 10
    conv_bias: bool = True
    input_size: tuple[int, int] = (96, 96)

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

    def layers(self) -> list[Layer]:
        bias = self.conv_bias
        layers: list[Layer] = [
            Conv("b1.conv", self.in_channels, 64, 7, 2, 3, bias=bias),
            Conv("b2.conv1", 64, 64, 1, bias=bias),
            Conv("b2.conv2", 64, 192, 3, padding=1, bias=bias),
        ]
        for path, block in self.inceptions():
            layers += block.layers(path)
        return layers + [Dense("head.fc", 1024, self.num_classes)]

    def activation_points(self) -> list[str]:
        points = ["b1.conv", "b1", "b2.conv1", "b2.conv2", "b2"]
        for path, block in self.inceptions():
            points += block.activation_points(path)
            if path in ("b3.1", "b4.4"):
                points.append(path.split(".")[0])  # the stage output, after its max-pool
        return points + ["b5", "head.fc"]

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, int]:
        return (input_shape[0], self.num_classes)


@dataclass(frozen=True)
class InceptionA:
    """The "InceptionA" block of common PyTorch tutorials: four branches without ReLUs,
    concatenated in the order 1x1 (16), 5x5 (16 -> 24), 3x3 (16 -> 24 -> 24), pool (24): 88 channels.

    The pool branch is a 3x3 average pool, stride 1, padding 1, counting the padded
    zeros (PyTorch's default), then a 1x1 conv.
    """

    in_channels: int

    out_channels = 88
    name = "inception_a_block"

    def layers(self, prefix: str = "") -> list[Layer]:
        p = lambda name: _join(prefix, name)  # noqa: E731
        c = self.in_channels
        return [
            Conv(p("branch1x1"), c, 16, 1),
            Conv(p("branch5x5_1"), c, 16, 1),
            Conv(p("branch5x5_2"), 16, 24, 5, padding=2),
            Conv(p("branch3x3_1"), c, 16, 1),
            Conv(p("branch3x3_2"), 16, 24, 3, padding=1),
            Conv(p("branch3x3_3"), 24, 24, 3, padding=1),
            Conv(p("branch_pool"), c, 24, 1),
        ]

    def activation_points(self, prefix: str = "") -> list[str]:
        """Each conv's output, the average pool (``branch_pool.avg``) and the concatenated output."""
        names = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3_1", "branch3x3_2", "branch3x3_3", "branch_pool.avg", "branch_pool"]
        return [_join(prefix, n) for n in names] + [prefix or "output"]

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        n, _, h, w = input_shape
        return (n, self.out_channels, h, w)


@dataclass(frozen=True)
class InceptionNet:
    """The tutorials' MNIST net around InceptionA, input 1x28x28:
    conv1 5x5 (10) -> max-pool 2 -> ReLU -> incep1 -> conv2 5x5 (20) -> max-pool 2 -> ReLU -> incep2
    -> flatten (88 x 4 x 4 = 1408) -> fc (10). The flatten feeds a dense layer, so NCHW and NHWC
    frameworks flatten in different orders (``Dense.flatten_from``).
    """

    name: str = "inception_mnist"
    in_channels: int = 1
    num_classes: int = 10
    input_size: tuple[int, int] = (28, 28)

    def layers(self) -> list[Layer]:
        return [
            Conv("conv1", self.in_channels, 10, 5),
            *InceptionA(10).layers("incep1"),
            Conv("conv2", 88, 20, 5),
            *InceptionA(20).layers("incep2"),
            Dense("fc", 1408, self.num_classes, flatten_from=(88, 4, 4)),
        ]

    def activation_points(self) -> list[str]:
        """conv outputs, each conv's block output after max-pool and ReLU, both InceptionA blocks, fc."""
        return ["conv1", "pool1", *InceptionA(10).activation_points("incep1"), "conv2", "pool2", *InceptionA(20).activation_points("incep2"), "fc"]

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, int]:
        return (input_shape[0], self.num_classes)


Spec = Union[AnyNet, ResNeXtBlock, Inception, GoogLeNet, InceptionA, InceptionNet]


def spatial_size_problem(spec: Spec, height: int, width: int) -> str | None:
    """Why ``spec`` cannot take an input of this spatial size, or None.

    Strided 3x3 convs and pools with padding 1 map any size >= 1 to a size >= 1, so
    only a net whose flatten feeds a fixed-size dense layer constrains the input.
    """
    if isinstance(spec, InceptionNet) and (height, width) != spec.input_size:
        h, w = spec.input_size
        return f"{spec.name} needs {h}x{w} inputs (its flatten feeds a dense layer of 88*4*4 = 1408 inputs)"
    return None


def d2l_block_arguments(num_channels, groups, bot_mul, use_1x1conv=False, strides=1) -> dict:
    """The ``parity.spec.ResNeXtBlock`` fields that a call of d2l's MXNet ``ResNeXtBlock``, whose
    signature this is, binds its arguments to (the book's ``groups`` is the group width)."""
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


def block_path(stage: int, block: int) -> str:
    return f"stages.{stage}.blocks.{block}"


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def regnetx32() -> AnyNet:
    """d2l's RegNetX32: stem 32, stages (depth 4, width 32) and (6, 80), group width 16, no bottleneck."""
    return AnyNet(
        name="regnetx32",
        stem_width=32,
        stages=(Stage(depth=4, width=32, group_width=16, bot_mul=1), Stage(depth=6, width=80, group_width=16, bot_mul=1)),
        num_classes=10,
        in_channels=1,
    )


SPECS = {
    "regnetx32": regnetx32,
    "googlenet": GoogLeNet,
    "inception_mnist": InceptionNet,
    # the RegNetX family with torchvision's widths; parity.regnet_family imports this module, so it is imported on first use
    **{
        f"regnetx_{size}": lambda size=size: __import__("parity.regnet_family", fromlist=["regnetx"]).regnetx(size)
        for size in ("200mf", "400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")
    },
}


def get_spec(name: str) -> Spec:
    try:
        return SPECS[name]()
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(SPECS))}") from None
