"""Every named model: ``get_spec(name)`` for the API and the command line."""

from __future__ import annotations

from collections.abc import Callable

from parity.specs.anynet import regnetx32
from parity.specs.classic import VGG, AlexNet, BNLeNet, LeNet, NiN
from parity.specs.densenet import DenseNet
from parity.specs.graph import Architecture
from parity.specs.inception import GoogLeNet, InceptionNet
from parity.specs.regnet_family import SIZES, regnetx
from parity.specs.resnet import ResidualNet, ResNet
from parity.specs.torchvision_nets import TORCHVISION_NETS

SPECS: dict[str, Callable[[], Architecture]] = {
    "regnetx32": regnetx32,
    "googlenet": GoogLeNet,
    "inception_mnist": InceptionNet,
    "nin": NiN,
    "lenet": LeNet,
    "bnlenet": BNLeNet,
    "alexnet": AlexNet,
    "vgg": VGG,
    "resnet18": ResNet,
    "densenet": DenseNet,
    "residual_mnist": ResidualNet,
    # the RegNetX family with torchvision's widths
    **{f"regnetx_{size}": lambda size=size: regnetx(size) for size in SIZES},
    # torchvision's ResNet, AlexNet and VGG
    **TORCHVISION_NETS,
}


def get_spec(name: str) -> Architecture:
    try:
        return SPECS[name]()
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(SPECS))}") from None
