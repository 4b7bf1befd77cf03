"""d2l's Inception block and GoogLeNet, and the tutorials' InceptionA MNIST net, in PyTorch.

Read ``Inception`` and ``GoogLeNet`` side by side with d2l-en
``chapter_convolutional-modern/googlenet.md``: the same paths ``p1_1`` ... ``p4_2``
and stages ``b1`` ... ``b5``, but every shape explicit and every block's channels
taken from the spec (``GoogLeNet.inceptions()``). ``InceptionA`` and ``InceptionNet``
keep the attribute names of the common PyTorch tutorials' MNIST example.

PyTorch's own padding is already what the specs ask for: symmetric, max-pools pad
with -inf (a padded cell never wins a max) and ``AvgPool2d`` counts padded zeros
(``count_include_pad=True``, spelled out below).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from impl_torch.anynet import init_cnn
from parity import specs


class Inception(nn.Module):
    """d2l's Inception block: four paths, each ending in a conv + ReLU, concatenated on the channel axis.

    ``c1`` .. ``c4`` are the output channels of each path; ``c2`` and ``c3`` are
    (1x1 reduction, 3x3 or 5x5 output) pairs.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        c1: int,
        c2: tuple[int, int],
        c3: tuple[int, int],
        c4: int,
        conv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.spec = specs.Inception(in_channels, c1, tuple(c2), tuple(c3), c4, conv_bias)
        # Path 1
        self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1, bias=conv_bias)
        # Path 2
        self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1, bias=conv_bias)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1, bias=conv_bias)
        # Path 3
        self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1, bias=conv_bias)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2, bias=conv_bias)
        # Path 4
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1, bias=conv_bias)

    @classmethod
    def from_spec(cls, spec: specs.Inception) -> Inception:
        return cls(
            in_channels=spec.in_channels, c1=spec.c1, c2=spec.c2, c3=spec.c3, c4=spec.c4, conv_bias=spec.conv_bias
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        p1 = F.relu(self.p1_1(X))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(X))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(X))))
        p4 = F.relu(self.p4_2(self.p4_1(X)))
        return torch.cat((p1, p2, p3, p4), dim=1)


class GoogLeNet(nn.Module):
    """d2l's GoogLeNet: ``net`` = Sequential(b1, b2, b3, b4, b5, head), ``head`` the Linear layer.

    Every max-pool is 3x3, stride 2, padding 1; b5 ends in global average pooling and a flatten.
    """

    def __init__(self, spec: specs.GoogLeNet = specs.GoogLeNet()) -> None:
        super().__init__()
        self.spec = spec
        self.net = nn.Sequential(
            OrderedDict(
                b1=self.b1(),
                b2=self.b2(),
                b3=self.b3(),
                b4=self.b4(),
                b5=self.b5(),
                head=nn.Linear(1024, spec.num_classes),
            )
        )
        self.net.apply(init_cnn)

    def b1(self) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(self.spec.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=self.spec.conv_bias),
                relu=nn.ReLU(),
                pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )

    def b2(self) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(64, 64, kernel_size=1, bias=self.spec.conv_bias),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(64, 192, kernel_size=3, padding=1, bias=self.spec.conv_bias),
                relu2=nn.ReLU(),
                pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )

    def b3(self) -> nn.Sequential:
        return self.stage("b3", pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b4(self) -> nn.Sequential:
        return self.stage("b4", pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def b5(self) -> nn.Sequential:
        return self.stage("b5", pool=nn.AdaptiveAvgPool2d((1, 1)), flatten=nn.Flatten())

    def stage(self, name: str, **tail: nn.Module) -> nn.Sequential:
        """Stage ``name``'s Inception blocks, keyed by their index in the spec (``b3.0`` is ``b3[0]``),
        then ``tail``."""
        blocks = []
        for path, block in self.spec.inceptions():
            stage, index = path.split(".")
            if stage == name:
                blocks.append((index, Inception.from_spec(block)))
        return nn.Sequential(OrderedDict([*blocks, *tail.items()]))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)


class InceptionA(nn.Module):
    """The tutorials' InceptionA block: four branches without ReLUs, concatenated in the order
    1x1 (16), 5x5 (24), 3x3 (24), pool (24): 88 channels."""

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        self.spec = specs.InceptionA(in_channels)
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)
        self.branch3x3_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.avg_pool = nn.AvgPool2d(kernel_size=3, stride=1, padding=1, count_include_pad=True)
        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    @classmethod
    def from_spec(cls, spec: specs.InceptionA) -> InceptionA:
        return cls(in_channels=spec.in_channels)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        branch1x1 = self.branch1x1(X)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(X))
        branch3x3 = self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(X)))
        branch_pool = self.branch_pool(self.avg_pool(X))
        return torch.cat((branch1x1, branch5x5, branch3x3, branch_pool), dim=1)


class InceptionNet(nn.Sequential):
    """The tutorials' MNIST net, input 1x28x28, as a Sequential of its steps:
    conv1 -> pool1 (max-pool 2, ReLU) -> incep1 -> conv2 -> pool2 -> incep2 -> flatten -> fc.

    The tutorial's default PyTorch initialisation is kept (no ``init_cnn``).
    """

    def __init__(self, spec: specs.InceptionNet = specs.InceptionNet()) -> None:
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(spec.in_channels, 10, kernel_size=5),
                pool1=nn.Sequential(nn.MaxPool2d(2), nn.ReLU()),
                incep1=InceptionA(in_channels=10),
                conv2=nn.Conv2d(88, 20, kernel_size=5),
                pool2=nn.Sequential(nn.MaxPool2d(2), nn.ReLU()),
                incep2=InceptionA(in_channels=20),
                flatten=nn.Flatten(),
                fc=nn.Linear(1408, spec.num_classes),
            )
        )
        self.spec = spec
