"""d2l's Residual block, JAX tab, as the book publishes it (d2l-en, chapter_convolutional-modern/resnet.md)."""

from flax import linen as nn


class Residual(nn.Module):  # @save
    """The Residual block of ResNet models."""

    num_channels: int
    use_1x1conv: bool = False
    strides: tuple = (1, 1)
    training: bool = True

    def setup(self):
        self.conv1 = nn.Conv(self.num_channels, kernel_size=(3, 3), padding="same", strides=self.strides)
        self.conv2 = nn.Conv(self.num_channels, kernel_size=(3, 3), padding="same")
        if self.use_1x1conv:
            self.conv3 = nn.Conv(self.num_channels, kernel_size=(1, 1), strides=self.strides)
        else:
            self.conv3 = None
        self.bn1 = nn.BatchNorm(not self.training)
        self.bn2 = nn.BatchNorm(not self.training)

    def __call__(self, X):
        Y = nn.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        Y += X
        return nn.relu(Y)
