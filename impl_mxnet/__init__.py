"""d2l's ResNeXt block and AnyNet in MXNet Gluon, and the parity backend for them."""

import numpy

# MXNet 1.9.1 reads numpy.bool, an alias that NumPy 1.24 removed.
if "bool" not in vars(numpy):
    numpy.bool = numpy.bool_
