"""d2l's Residual block, MXNet tab, as the book publishes it (d2l-en, chapter_convolutional-modern/resnet.md).

The book calls ``npx.set_np()`` once for the whole process; here the NumPy mode is on only inside
``numpy_mode()``, where the block must be built and run, so that other Gluon code keeps its own."""

import contextlib  # noqa: I001  (impl_mxnet must come before mxnet)

import impl_mxnet.backend  # noqa: F401  (imports mxnet as the suite does: numpy.bool restored first)
from mxnet import npx, util
from mxnet.gluon import nn


@contextlib.contextmanager
def numpy_mode():
    with util.np_shape(True), util.np_array(True):
        yield


class Residual(nn.Block):  # @save
    """The Residual block of ResNet models."""

    def __init__(self, num_channels, use_1x1conv=False, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = nn.Conv2D(num_channels, kernel_size=3, padding=1, strides=strides)
        self.conv2 = nn.Conv2D(num_channels, kernel_size=3, padding=1)
        if use_1x1conv:
            self.conv3 = nn.Conv2D(num_channels, kernel_size=1, strides=strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm()
        self.bn2 = nn.BatchNorm()

    def forward(self, X):
        Y = npx.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return npx.relu(Y + X)
