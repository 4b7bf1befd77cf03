"""d2l's classic CNNs in PyTorch, built from parity specs: LeNet, BNLeNet, AlexNet, VGG and NiN.

Read side by side with d2l-en ``chapter_convolutional-neural-networks/lenet.md`` and
``chapter_convolutional-modern/batch-norm.md``, ``alexnet.md``, ``vgg.md``, ``nin.md``: the
same Sequentials (so a layer's native name is its index in the book's ``net``, e.g. LeNet's
second conv is ``net.3``), the same ``vgg_block`` and ``nin_block``, but every shape explicit
(no Lazy modules) and every channel count, window, dropout rate and BatchNorm setting taken
from the spec. PyTorch's ``padding`` is already symmetric, and ``AvgPool2d`` without padding
has no padded cells to count.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from impl_torch.anynet import init_cnn
from parity import specs


def in_features(spec: specs.Spec, path: str) -> int:
    """The input size of the spec's dense layer ``path`` (fc6 follows AlexNet's and VGG's input size)."""
    return next(layer.in_features for layer in spec.layers() if layer.path == path)


class LeNet(nn.Module):
    """d2l's LeNet-5: two conv + sigmoid + 2x2 average-pool stages, then three dense layers."""

    def __init__(self, spec: specs.LeNet = specs.LeNet()) -> None:
        super().__init__()
        self.spec = spec
        # Output shapes for a (1, 1, 28, 28) input, as d2l prints them.
        self.net = nn.Sequential(
            nn.Conv2d(spec.in_channels, 6, kernel_size=5, padding=2),  # N x 6 x 28 x 28
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # N x 6 x 14 x 14
            nn.Conv2d(6, 16, kernel_size=5),  # N x 16 x 10 x 10
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # N x 16 x 5 x 5
            nn.Flatten(),  # N x 400
            nn.Linear(in_features(spec, "fc1"), 120),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.Sigmoid(),
            nn.Linear(84, spec.num_classes),
        )
        self.net.apply(init_cnn)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)


class BNLeNet(nn.Module):
    """d2l's LeNet with batch normalization: a BatchNorm before every sigmoid, ``BatchNorm2d`` over
    the channels of the conv stages and ``BatchNorm1d`` over the features of the dense layers."""

    def __init__(self, spec: specs.BNLeNet = specs.BNLeNet()) -> None:
        super().__init__()
        self.spec = spec
        eps, momentum = spec.bn_eps, spec.bn_momentum
        # Output shapes for a (1, 1, 28, 28) input.
        self.net = nn.Sequential(
            nn.Conv2d(spec.in_channels, 6, kernel_size=5),  # N x 6 x 24 x 24
            nn.BatchNorm2d(6, eps=eps, momentum=momentum),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # N x 6 x 12 x 12
            nn.Conv2d(6, 16, kernel_size=5),  # N x 16 x 8 x 8
            nn.BatchNorm2d(16, eps=eps, momentum=momentum),
            nn.Sigmoid(),
            nn.AvgPool2d(kernel_size=2, stride=2),  # N x 16 x 4 x 4
            nn.Flatten(),  # N x 256
            nn.Linear(in_features(spec, "fc1"), 120),
            nn.BatchNorm1d(120, eps=eps, momentum=momentum),
            nn.Sigmoid(),
            nn.Linear(120, 84),
            nn.BatchNorm1d(84, eps=eps, momentum=momentum),
            nn.Sigmoid(),
            nn.Linear(84, spec.num_classes),
        )
        self.net.apply(init_cnn)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)


def head_layer(spec: specs.Spec, path: str, convolutional: bool = False) -> nn.Module:
    """The head's dense layer ``path`` of ``spec``: ``nn.Linear``, or with ``convolutional`` the conv that
    computes it at every position (``parity.specs.FullyConvolutional``: h x w over the feature map, else 1x1)."""
    layer = next(layer for layer in spec.layers() if layer.path == path)
    if not convolutional:
        return nn.Linear(layer.in_features, layer.out_features)
    conv = specs.dense_as_conv(layer)
    return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_hw)


def dense_head(spec: specs.Spec, convolutional: bool = False) -> list[nn.Module]:
    """AlexNet's and VGG's classifier: two 4096-wide dense layers with ReLU and dropout, then the logits
    (with ``convolutional``, as convolutions)."""
    fc = functools.partial(head_layer, spec, convolutional=convolutional)
    return [
        fc("fc6"),
        nn.ReLU(),
        nn.Dropout(p=spec.dropout),
        fc("fc7"),
        nn.ReLU(),
        nn.Dropout(p=spec.dropout),
        fc("fc8"),
    ]


def flatten(convolutional: bool) -> nn.Module:
    """The flatten before the head; a fully convolutional head keeps the map (an Identity holds the
    flatten's place, so the head's layers keep their indices)."""
    return nn.Identity() if convolutional else nn.Flatten()


def alexnet_features(spec: specs.AlexNet | specs.TorchvisionAlexNet) -> list[nn.Module]:
    """AlexNet's five convs with ReLUs and the 3x3 stride-2 max-pools after the first, second and fifth:
    ``spec.CONVS`` holds (out_channels, kernel_size, stride, padding, max-pool after it) of each conv."""
    layers, channels = [], spec.in_channels
    for out_channels, kernel_size, stride, padding, pool in spec.CONVS:
        layers += [nn.Conv2d(channels, out_channels, kernel_size, stride, padding), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        channels = out_channels
    return layers


class AlexNet(nn.Module):
    """d2l's AlexNet: five convs with ReLUs, 3x3 stride-2 max-pools after the first, second and
    fifth, then the dense head. ``spec.input_size`` sets fc6's input size (6400 at 224x224)."""

    def __init__(self, spec: specs.AlexNet = specs.AlexNet(), convolutional: bool = False) -> None:
        super().__init__()
        self.spec = spec
        # For a (1, 1, 224, 224) input the last max-pool gives N x 256 x 5 x 5, flattened to N x 6400.
        self.net = nn.Sequential(*alexnet_features(spec), flatten(convolutional), *dense_head(spec, convolutional))
        self.net.apply(init_cnn)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """``num_convs`` 3x3 convs padded by 1, each with a ReLU, then a 2x2 stride-2 max-pool."""
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """d2l's VGG: one ``vgg_block`` per (num_convs, out_channels) of ``spec.arch``, then the dense head."""

    def __init__(self, spec: specs.VGG = specs.VGG(), convolutional: bool = False) -> None:
        super().__init__()
        self.spec = spec
        conv_blks, channels = [], spec.in_channels
        for num_convs, out_channels in spec.arch:
            conv_blks.append(vgg_block(num_convs, channels, out_channels))
            channels = out_channels
        # Each block halves the height and width: N x 512 x 7 x 7 for a (1, 1, 224, 224) input.
        self.net = nn.Sequential(*conv_blks, flatten(convolutional), *dense_head(spec, convolutional))
        self.net.apply(init_cnn)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.net(X)


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


class TorchvisionAlexNet(nn.Module):
    """torchvision's AlexNet, written as torchvision writes it (``features``, ``avgpool``, ``classifier``:
    its state_dict is torchvision's). With ``convolutional`` the classifier is convolutions and the
    adaptive pool an Identity (``parity.specs.FullyConvolutional``)."""

    def __init__(self, spec: specs.TorchvisionAlexNet = specs.TorchvisionAlexNet(), convolutional: bool = False):
        super().__init__()
        self.spec = spec
        self.features = nn.Sequential(*alexnet_features(spec))  # N x 256 x 6 x 6 for a (1, 3, 224, 224) input
        self.avgpool = nn.Identity() if convolutional else nn.AdaptiveAvgPool2d(spec.POOL)
        self.flatten = flatten(convolutional)
        fc = functools.partial(head_layer, spec, convolutional=convolutional)
        self.classifier = nn.Sequential(
            nn.Dropout(p=spec.dropout),
            fc("fc6"),
            nn.ReLU(),
            nn.Dropout(p=spec.dropout),
            fc("fc7"),
            nn.ReLU(),
            fc("fc8"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class TorchvisionVGG(nn.Module):
    """torchvision's VGG, written as torchvision writes it (``features``: each conv, its BatchNorm if any,
    a ReLU, and each block's max-pool; ``avgpool``; ``classifier``). With ``convolutional`` the
    classifier is convolutions and the adaptive pool an Identity."""

    def __init__(self, spec: specs.TorchvisionVGG = specs.TorchvisionVGG(), convolutional: bool = False):
        super().__init__()
        self.spec = spec
        layers, channels = [], spec.in_channels
        for num_convs, out_channels in spec.arch:
            for _ in range(num_convs):
                layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
                layers += [nn.BatchNorm2d(out_channels)] if spec.batch_norm else []
                layers.append(nn.ReLU())
                channels = out_channels
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)  # N x 512 x 7 x 7 for a (1, 3, 224, 224) input
        self.avgpool = nn.Identity() if convolutional else nn.AdaptiveAvgPool2d(spec.POOL)
        self.flatten = flatten(convolutional)
        self.classifier = nn.Sequential(*dense_head(spec, convolutional))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))
