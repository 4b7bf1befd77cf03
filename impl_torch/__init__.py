"""PyTorch implementation of the parity suite's models; ``impl_torch.backend`` is its adapter."""

from impl_torch.anynet import AnyNet, RegNetX32, ResNeXtBlock
from impl_torch.classic import NiN
from impl_torch.inception import GoogLeNet, Inception, InceptionA, InceptionNet

__all__ = ["AnyNet", "GoogLeNet", "Inception", "InceptionA", "InceptionNet", "NiN", "RegNetX32", "ResNeXtBlock"]
