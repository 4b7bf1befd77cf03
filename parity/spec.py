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

from dataclasses import dataclass
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
    path: str
    in_features: int
    out_features: int


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


Spec = Union[AnyNet, ResNeXtBlock]


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


SPECS = {"regnetx32": regnetx32}


def get_spec(name: str) -> AnyNet:
    try:
        return SPECS[name]()
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(SPECS))}") from None
