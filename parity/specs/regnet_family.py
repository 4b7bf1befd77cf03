"""The RegNetX design space as data: the paper's generator and its eight named models.

Radosavovic et al., "Designing Network Design Spaces" (2020), generate a network from
five numbers: ``depth`` blocks whose continuous widths grow linearly,
``u_j = w0 + wa * j``; each is snapped to ``w0 * wm**s_j`` with
``s_j = round(log(u_j / w0) / log(wm))`` and quantised to a multiple of 8. Runs of
equal width form the stages (each first block strides by 2). Finally each stage width
is made a multiple of its group width (the group width itself capped at the stage
width). RegNetX has no bottleneck (``bot_mul = 1``) and no squeeze-excitation.

That last rounding differs between implementations:

- pycls (the paper's code) and Keras take the nearest multiple, ties to even
  (Python's ``round``): 392 with group width 16 is 24.5 groups -> 384.
- torchvision's ``_make_divisible`` rounds ties up and adds one more group when the
  result would fall below 90% of the width: 392 -> 400.

RegNetX-400MF's last stage is the one place where the eight models differ (400 in
torchvision, 384 in pycls and Keras). Specs follow torchvision by default, so that its
checkpoints load; torchvision's convolutions carry no bias before BatchNorm, and
neither do these specs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from parity.specs.anynet import AnyNet, Stage

QUANTUM = 8  # per-block widths are multiples of 8
STRIDE = 2  # every stage halves the resolution in its first block
STEM_WIDTH = 32


@dataclass(frozen=True)
class RegNetParams:
    """The five numbers of a RegNetX: total blocks, initial width, slope, log-step, group width."""

    depth: int
    w0: int
    wa: float
    wm: float
    group_width: int


# The paper's RegNetX models (pycls configs/dds_baselines/regnetx/RegNetX-*.yaml). torchvision
# builds the seven from 400MF up with the same numbers; it ships no 200MF.
REGNETX = {
    "200mf": RegNetParams(depth=13, w0=24, wa=36.44, wm=2.49, group_width=8),
    "400mf": RegNetParams(depth=22, w0=24, wa=24.48, wm=2.54, group_width=16),
    "800mf": RegNetParams(depth=16, w0=56, wa=35.73, wm=2.28, group_width=16),
    "1_6gf": RegNetParams(depth=18, w0=80, wa=34.01, wm=2.25, group_width=24),
    "3_2gf": RegNetParams(depth=25, w0=88, wa=26.31, wm=2.25, group_width=48),
    "8gf": RegNetParams(depth=23, w0=80, wa=49.56, wm=2.88, group_width=120),
    "16gf": RegNetParams(depth=22, w0=216, wa=55.59, wm=2.1, group_width=128),
    "32gf": RegNetParams(depth=23, w0=320, wa=69.86, wm=2.0, group_width=168),
}
SIZES = tuple(REGNETX)


def pycls_round(width: int, group_width: int) -> int:
    """pycls ``adjust_block_compatibility`` (bot_mul 1): nearest multiple of ``group_width``, ties to even."""
    return max(group_width, int(round(width / group_width) * group_width))


def torchvision_round(width: int, group_width: int) -> int:
    """torchvision ``_make_divisible``: nearest multiple of ``group_width``, ties up, never below 90% of ``width``."""
    rounded = max(group_width, int(width + group_width / 2) // group_width * group_width)
    return rounded + group_width if rounded < 0.9 * width else rounded


ROUNDINGS: dict[str, Callable[[int, int], int]] = {"torchvision": torchvision_round, "pycls": pycls_round}


def block_widths(params: RegNetParams) -> list[int]:
    """The quantised width of every block, in order (the paper's eq. 2-4)."""
    widths = []
    for j in range(params.depth):
        continuous = params.w0 + params.wa * j
        step = round(math.log(continuous / params.w0) / math.log(params.wm))
        widths.append(round(params.w0 * params.wm**step / QUANTUM) * QUANTUM)
    return widths


def stage_widths_and_depths(widths: list[int]) -> list[tuple[int, int]]:
    """(width, depth) of each run of equal block widths."""
    return [(width, len(list(run))) for width, run in itertools.groupby(widths)]


def stages(params: RegNetParams, rounding: str = "torchvision") -> tuple[Stage, ...]:
    """The expanded stages: width made a multiple of the group width, capped at the stage width."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding: expected one of {', '.join(ROUNDINGS)}, got {rounding!r}")
    expanded = []
    for width, depth in stage_widths_and_depths(block_widths(params)):
        group_width = min(params.group_width, width)
        expanded.append(Stage(depth, ROUNDINGS[rounding](width, group_width), group_width, bot_mul=1, stride=STRIDE))
    return tuple(expanded)


def spec_name(size: str, rounding: str = "torchvision") -> str:
    return f"regnetx_{size}" if rounding == "torchvision" else f"regnetx_{size}_{rounding}"


def regnetx(size: str, rounding: str = "torchvision", num_classes: int = 1000) -> AnyNet:
    """The AnyNet spec of RegNetX-``size`` for ImageNet: 3 input channels, 224x224, convs without bias."""
    if size not in REGNETX:
        raise KeyError(f"unknown RegNetX size {size!r}; known sizes: {', '.join(SIZES)}")
    return AnyNet(
        name=spec_name(size, rounding),
        stem_width=STEM_WIDTH,
        stages=stages(REGNETX[size], rounding),
        num_classes=num_classes,
        in_channels=3,
        conv_bias=False,
        input_size=(224, 224),
    )
