"""JAX/Flax (linen) implementation of the parity suite's models; ``impl_jax.backend`` is its adapter.

Importing ``impl_jax.anynet`` (which this package and the backend do) turns on
JAX's 64-bit mode for the whole process; see that module's docstring.
"""

from impl_jax.anynet import AnyNet, RegNetX32, ResNeXtBlock
from impl_jax.classic import NiN
from impl_jax.inception import GoogLeNet, Inception, InceptionA, InceptionNet

__all__ = ["AnyNet", "GoogLeNet", "Inception", "InceptionA", "InceptionNet", "NiN", "RegNetX32", "ResNeXtBlock"]
