"""d2l's Residual block and ResNet-18, and the tutorials' residual MNIST net, in PyTorch.

Read ``Residual`` and ``ResNet`` side by side with d2l-en
``chapter_convolutional-modern/resnet.md``: the same ``b1``, stages ``b2`` ... and ``last``
added to one Sequential (so ``b1`` is ``net.0`` and a block's first conv is ``net.b2.0.conv1``),
but every shape explicit (no Lazy modules) and each block's channels, stride and BatchNorm
settings taken from the spec (``ResNet.blocks()``). ``ResidualBlock`` and ``ResidualNet`` keep
the attribute names of the common PyTorch tutorials' MNIST example.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from impl_torch.anynet import init_cnn
from parity import specs


class Residual(nn.Module):
    """d2l's Residual block: two 3x3 convs with BatchNorm, plus the input (through a strided 1x1
    conv without BatchNorm when ``use_1x1conv``), then a ReLU."""

    def __init__(
        self,
        *,
        in_channels: int,
        num_channels: int,
        use_1x1conv: bool = False,
        strides: int = 1,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.spec = specs.Residual(in_channels, num_channels, use_1x1conv, strides, bn_eps, bn_momentum)
        self.conv1 = nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2d(in_channels, num_channels, kernel_size=1, stride=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm2d(num_channels, eps=bn_eps, momentum=bn_momentum)
        self.bn2 = nn.BatchNorm2d(num_channels, eps=bn_eps, momentum=bn_momentum)

    @classmethod
    def from_spec(cls, spec: specs.Residual) -> Residual:
        arguments = dataclasses.asdict(spec)
        strides = arguments.pop("stride")
        return cls(**arguments, strides=strides)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.relu(Y + X)


class ResNet(nn.Module):
    """d2l's ResNet: ``net`` = Sequential(b1, b2, ..., last); stage ``b{i+2}`` holds ``arch[i]``'s
    Residual blocks, the first of every stage after ``b2`` projecting and striding by 2."""

    def __init__(self, spec: specs.ResNet = specs.ResNet()) -> None:
        super().__init__()
        self.spec = spec
        self.net = nn.Sequential(self.b1())  # N x 64 x 24 x 24 for a (1, 1, 96, 96) input
        stages = itertools.groupby(spec.blocks(), key=lambda path_block: path_block[0].split(".")[0])
        for name, blocks in stages:  # b2 keeps N x 64 x 24 x 24; b3, b4, b5 halve the size
            self.net.add_module(name, self.block(block for _, block in blocks))
        self.net.add_module(
            "last",
            nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(spec.arch[-1][1], spec.num_classes)),
        )
        self.net.apply(init_cnn)

    def b1(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(self.spec.in_channels, 64, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(64, eps=self.spec.bn_eps, momentum=self.spec.bn_momentum),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )

    def block(self, blocks: Iterable[specs.Residual]) -> nn.Sequential:
        """One stage from its blocks' specs (``ResNet.blocks()`` decides which one projects)."""
        return nn.Sequential(*(Residual.from_spec(block) for block in blocks))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)


class ResNet18(ResNet):
    """d2l's ResNet18: stages ((2, 64), (2, 128), (2, 256), (2, 512))."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(specs.ResNet(num_classes=num_classes))


class ResidualBlock(nn.Module):
    """The tutorials' ResidualBlock: ``relu(x + conv2(relu(conv1(x))))`` with 3x3 convs padded by 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.spec = specs.ResidualBlock(channels)
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    @classmethod
    def from_spec(cls, spec: specs.ResidualBlock) -> ResidualBlock:
        return cls(spec.channels)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Y = F.relu(self.conv1(X))
        Y = self.conv2(Y)
        return F.relu(X + Y)


class ResidualNet(nn.Sequential):
    """The tutorials' residual MNIST net, input 1x28x28, as a Sequential of its steps:
    conv1 -> pool1 (max-pool 2, ReLU) -> rblock1 -> conv2 -> pool2 -> rblock2 -> flatten -> fc.

    The tutorial's default PyTorch initialisation is kept (no ``init_cnn``).
    """

    def __init__(self, spec: specs.ResidualNet = specs.ResidualNet()) -> None:
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(spec.in_channels, 16, kernel_size=5),  # N x 16 x 24 x 24
                pool1=nn.Sequential(nn.MaxPool2d(2), nn.ReLU()),  # N x 16 x 12 x 12
                rblock1=ResidualBlock(16),
                conv2=nn.Conv2d(16, 32, kernel_size=5),  # N x 32 x 8 x 8
                pool2=nn.Sequential(nn.MaxPool2d(2), nn.ReLU()),  # N x 32 x 4 x 4
                rblock2=ResidualBlock(32),
                flatten=nn.Flatten(),  # N x 512
                fc=nn.Linear(512, spec.num_classes),
            )
        )
        self.spec = spec


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: 3x3 conv (stride) -> BN -> ReLU -> 3x3 conv -> BN, plus the input
    (through ``downsample``, a strided 1x1 conv and BN, where the shape changes), then ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()  # not in place: the BatchNorm's output is an activation point
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5): 1x1 -> 3x3 (stride) -> 1x1 to 4x ``planes``, each with BN,
    plus the input (through ``downsample`` where the shape changes), then ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class TorchvisionResNet(nn.Module):
    """torchvision's ResNet, written as torchvision writes it (same module names, so its state_dict is
    torchvision's): conv1, bn1, relu, maxpool, layer1 ... layer4, avgpool, fc."""

    def __init__(self, spec: specs.TorchvisionResNet = specs.TorchvisionResNet()) -> None:
        super().__init__()
        self.spec = spec
        block = Bottleneck if spec.bottleneck else BasicBlock
        self.conv1 = nn.Conv2d(spec.in_channels, 64, 7, stride=2, padding=3, bias=False)  # N x 64 x 112 x 112
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # N x 64 x 56 x 56
        stages = itertools.groupby(spec.blocks(), key=lambda b: b[0].split(".")[0])
        for name, blocks in stages:  # layer2 ... layer4 halve the size: N x 512 * expansion x 7 x 7
            self.add_module(name, nn.Sequential(*(self.make_block(block, *b[1:]) for b in blocks)))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, spec.num_classes)

    @staticmethod
    def make_block(block: type[nn.Module], inplanes: int, planes: int, stride: int) -> nn.Module:
        downsample = None
        if stride != 1 or inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        return block(inplanes, planes, stride, downsample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
