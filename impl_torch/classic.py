"""d2l's Network in Network (NiN) in PyTorch, built from a parity spec.

Read side by side with d2l-en ``chapter_convolutional-modern/nin.md``: the same
``nin_block`` and the same Sequential, so block i's convs are ``net.{0,2,4,7}.{0,2,4}``
as in the book, but every shape explicit (no Lazy modules) and every block's
(out_channels, kernel_size, strides, padding), the dropout rate and the class count
taken from the spec. PyTorch's ``padding`` is already symmetric.
"""

from __future__ import annotations

import torch
from torch import nn

from impl_torch.anynet import init_cnn
from parity import specs


def nin_block(in_channels: int, out_channels: int, kernel_size: int, strides: int, padding: int) -> nn.Sequential:
    """A k x k conv, then two 1x1 convs (per-pixel fully connected layers), each followed by a ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1),
        nn.ReLU(),
    )


class NiN(nn.Module):
    """d2l's NiN: four ``nin_block``s with 3x3 stride-2 max-pools between the first three, dropout
    before the last, whose ``num_classes`` channels are averaged globally into the logits."""

    def __init__(self, spec: specs.NiN = specs.NiN()) -> None:
        super().__init__()
        self.spec = spec
        b1, b2, b3, b4 = spec.blocks()  # (out_channels, kernel_size, strides, padding) of each block
        # Output shapes for a (1, 1, 224, 224) input, as d2l prints them.
        self.net = nn.Sequential(
            nin_block(spec.in_channels, *b1),  # N x 96 x 54 x 54
            nn.MaxPool2d(3, stride=2),  # N x 96 x 26 x 26
            nin_block(b1[0], *b2),  # N x 256 x 26 x 26
            nn.MaxPool2d(3, stride=2),  # N x 256 x 12 x 12
            nin_block(b2[0], *b3),  # N x 384 x 12 x 12
            nn.MaxPool2d(3, stride=2),  # N x 384 x 5 x 5
            nn.Dropout(spec.dropout),
            nin_block(b3[0], *b4),  # N x num_classes x 5 x 5
            nn.AdaptiveAvgPool2d((1, 1)),  # N x num_classes x 1 x 1
            nn.Flatten(),  # N x num_classes
        )
        self.net.apply(init_cnn)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)
