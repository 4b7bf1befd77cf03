"""d2l's ResNeXt block, AnyNet, Inception block and GoogLeNet, and the tutorials' InceptionA net,
in MXNet Gluon, and the parity backend for them."""

import numpy

# MXNet 1.9.1 reads numpy.bool, an alias that NumPy 1.24 removed.
if "bool" not in vars(numpy):
    numpy.bool = numpy.bool_
