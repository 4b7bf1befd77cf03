"""d2l's ResNeXt block, AnyNet and RegNetX32, Inception block and GoogLeNet, NiN, and the tutorials'
InceptionA net, in MXNet Gluon; ``impl_mxnet.backend`` is the parity suite's adapter for them."""

import numpy

# MXNet 1.9.1 reads numpy.bool, an alias that NumPy 1.24 removed: restore it before mxnet is imported.
if "bool" not in vars(numpy):
    numpy.bool = numpy.bool_

from impl_mxnet.anynet import AnyNet, RegNetX32, ResNeXtBlock  # noqa: E402
from impl_mxnet.classic import NiN  # noqa: E402
from impl_mxnet.inception import GoogLeNet, Inception, InceptionA, InceptionNet  # noqa: E402

__all__ = ["AnyNet", "GoogLeNet", "Inception", "InceptionA", "InceptionNet", "NiN", "RegNetX32", "ResNeXtBlock"]
