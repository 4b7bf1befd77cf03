"""d2l's ResNeXt block, AnyNet and RegNetX32 in PyTorch, built from parity specs.

Read side by side with d2l-en ``chapter_convolutional-modern/resnet.md``
(``ResNeXtBlock``) and ``cnn-design.md`` (``AnyNet``, ``RegNetX32``). Unlike the
book, every shape is explicit (no Lazy modules), and every numeric choice, the
symmetric padding, BatchNorm eps and momentum and the conv bias, comes from the spec.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from parity import specs


def init_cnn(module: nn.Module) -> None:
    """d2l's initialisation: Xavier-uniform conv and dense weights; biases keep PyTorch's default."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)


class ResNeXtBlock(nn.Module):
    """The ResNeXt block: 1x1 -> grouped 3x3 (``strides``) -> 1x1, plus an identity or 1x1 shortcut.

    ``group_width`` is the number of channels per group (d2l calls it ``groups``);
    the 3x3 convolution has ``bot_channels // group_width`` groups.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_channels: int,
        group_width: int,
        bot_mul: float,
        use_1x1conv: bool = False,
        strides: int = 1,
        conv_bias: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.spec = specs.ResNeXtBlock(
            in_channels=in_channels,
            num_channels=num_channels,
            group_width=group_width,
            bot_mul=bot_mul,
            use_1x1conv=use_1x1conv,
            stride=strides,
            conv_bias=conv_bias,
            bn_eps=bn_eps,
            bn_momentum=bn_momentum,
        )
        bot_channels = self.spec.bot_channels
        self.conv1 = nn.Conv2d(in_channels, bot_channels, kernel_size=1, bias=conv_bias)
        self.conv2 = nn.Conv2d(
            bot_channels,
            bot_channels,
            kernel_size=3,
            stride=strides,
            padding=1,
            groups=self.spec.groups,
            bias=conv_bias,
        )
        self.conv3 = nn.Conv2d(bot_channels, num_channels, kernel_size=1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(bot_channels, eps=bn_eps, momentum=bn_momentum)
        self.bn2 = nn.BatchNorm2d(bot_channels, eps=bn_eps, momentum=bn_momentum)
        self.bn3 = nn.BatchNorm2d(num_channels, eps=bn_eps, momentum=bn_momentum)
        if use_1x1conv:
            self.conv4 = nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides, bias=conv_bias)
            self.bn4 = nn.BatchNorm2d(num_channels, eps=bn_eps, momentum=bn_momentum)
        else:
            self.conv4 = None

    @classmethod
    def from_spec(cls, spec: specs.ResNeXtBlock) -> ResNeXtBlock:
        arguments = dataclasses.asdict(spec)
        strides = arguments.pop("stride")
        return cls(**arguments, strides=strides)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        # In place where the book allocates (as torchvision's ReLU(inplace=True)): each BatchNorm's output
        # and the sum are read by nothing else.
        Y = F.relu(self.bn1(self.conv1(X)), inplace=True)
        Y = F.relu(self.bn2(self.conv2(Y)), inplace=True)
        Y = self.bn3(self.conv3(Y))
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X))
        Y += X
        return F.relu(Y, inplace=True)


class AnyNet(nn.Module):
    """d2l's AnyNet: ``net`` = Sequential(stem, stage1, stage2, ..., head)."""

    def __init__(self, spec: specs.AnyNet) -> None:
        super().__init__()
        self.spec = spec
        stages = itertools.groupby(spec.blocks(), key=lambda stage_block: stage_block[0])
        self.net = nn.Sequential(
            OrderedDict(
                stem=self.stem(spec.in_channels, spec.stem_width),
                **{f"stage{i + 1}": self.stage(block for _, _, block in blocks) for i, blocks in stages},
                head=self.head(spec.stages[-1].width, spec.num_classes),
            )
        )
        self.net.apply(init_cnn)

    def stem(self, in_channels: int, num_channels: int) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, num_channels, kernel_size=3, stride=2, padding=1, bias=self.spec.conv_bias),
                bn=nn.BatchNorm2d(num_channels, eps=self.spec.bn_eps, momentum=self.spec.bn_momentum),
                relu=nn.ReLU(inplace=True),
            )
        )

    def stage(self, blocks: Iterable[specs.ResNeXtBlock]) -> nn.Sequential:
        """One stage from its blocks' specs (``AnyNet.blocks()``: the first one projects and strides)."""
        return nn.Sequential(*(ResNeXtBlock.from_spec(block) for block in blocks))

    def head(self, in_features: int, num_classes: int) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d((1, 1)),
                flatten=nn.Flatten(),
                fc=nn.Linear(in_features, num_classes),
            )
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)


class RegNetX32(AnyNet):
    """d2l's RegNetX32: stem 32; stages (depth 4, width 32) and (6, 80); group width 16; no bottleneck."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(dataclasses.replace(specs.regnetx32(), num_classes=num_classes))
