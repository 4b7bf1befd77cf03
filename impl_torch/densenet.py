"""d2l's DenseNet in PyTorch, built from a parity spec.

Read side by side with d2l-en ``chapter_convolutional-modern/densenet.md``: the same
``conv_block``, ``DenseBlock``, ``transition_block`` and one Sequential holding ``b1`` (``net.0``),
``dense_blk1``, ``tran_blk1``, ... and ``last``, so a conv block's conv is
``net.dense_blk1.net.0.2``, but every shape explicit (no Lazy modules) and the channels, growth
rate and BatchNorm settings taken from the spec. ``AvgPool2d`` without padding has no padded
cells to count.
"""

from __future__ import annotations

import torch
from torch import nn

from impl_torch.anynet import init_cnn
from parity import specs


def conv_block(in_channels: int, num_channels: int, bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> nn.Sequential:
    """BatchNorm, ReLU, then a 3x3 conv padded by 1 to ``num_channels``."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels, eps=bn_eps, momentum=bn_momentum),
        nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=3, padding=1),
    )


class DenseBlock(nn.Module):
    """``num_convs`` conv blocks, each one's output concatenated after its input on the channels,
    so the block adds ``num_convs * num_channels`` channels."""

    def __init__(
        self, num_convs: int, in_channels: int, num_channels: int, bn_eps: float = 1e-5, bn_momentum: float = 0.1
    ) -> None:
        super().__init__()
        layer = [
            conv_block(in_channels + i * num_channels, num_channels, bn_eps, bn_momentum) for i in range(num_convs)
        ]
        self.net = nn.Sequential(*layer)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        for blk in self.net:
            Y = blk(X)
            # Concatenate input and output of each block along the channels
            X = torch.cat((X, Y), dim=1)
        return X


def transition_block(
    in_channels: int, num_channels: int, bn_eps: float = 1e-5, bn_momentum: float = 0.1
) -> nn.Sequential:
    """BatchNorm, ReLU, a 1x1 conv to ``num_channels``, then a 2x2 stride-2 average pool."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels, eps=bn_eps, momentum=bn_momentum),
        nn.ReLU(),
        nn.Conv2d(in_channels, num_channels, kernel_size=1),
        nn.AvgPool2d(kernel_size=2, stride=2),
    )


class DenseNet(nn.Module):
    """d2l's DenseNet: b1, then a DenseBlock per entry of ``arch`` with a transition block halving the
    channels (and the size) between two, then ``last`` (BatchNorm, ReLU, global average pool, dense)."""

    def __init__(self, spec: specs.DenseNet = specs.DenseNet()) -> None:
        super().__init__()
        self.spec = spec
        bn = {"bn_eps": spec.bn_eps, "bn_momentum": spec.bn_momentum}
        num_channels, growth_rate, arch = spec.num_channels, spec.growth_rate, spec.arch
        # Output shapes for a (1, 1, 96, 96) input: b1 N x 64 x 24 x 24, then the dense blocks
        # N x 192 x 24 x 24, N x 224 x 12 x 12, N x 240 x 6 x 6, N x 248 x 3 x 3.
        self.net = nn.Sequential(self.b1())
        for i, num_convs in enumerate(arch):
            self.net.add_module(f"dense_blk{i + 1}", DenseBlock(num_convs, num_channels, growth_rate, **bn))
            # The number of output channels in the previous dense block
            num_channels += num_convs * growth_rate
            # A transition layer that halves the number of channels is added between the dense blocks
            if i != len(arch) - 1:
                self.net.add_module(f"tran_blk{i + 1}", transition_block(num_channels, num_channels // 2, **bn))
                num_channels //= 2
        self.net.add_module(
            "last",
            nn.Sequential(
                nn.BatchNorm2d(num_channels, eps=spec.bn_eps, momentum=spec.bn_momentum),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d((1, 1)),
                nn.Flatten(),
                nn.Linear(num_channels, spec.num_classes),
            ),
        )
        self.net.apply(init_cnn)

    def b1(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(self.spec.in_channels, self.spec.num_channels, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(self.spec.num_channels, eps=self.spec.bn_eps, momentum=self.spec.bn_momentum),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)
