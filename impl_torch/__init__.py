"""PyTorch implementation of the parity suite's models; ``impl_torch.backend`` is its adapter."""

from impl_torch.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_torch.models import AnyNet, RegNetX32, ResNeXtBlock

__all__ = ["AnyNet", "GoogLeNet", "Inception", "InceptionA", "InceptionNet", "RegNetX32", "ResNeXtBlock"]
