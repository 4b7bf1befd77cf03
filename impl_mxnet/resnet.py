"""d2l's Residual block and ResNet-18, and the tutorials' residual MNIST net, in Gluon, built from
``parity.specs`` objects.

Read side by side with d2l (chapter_convolutional-modern/resnet.md, MXNet tab). Differences
from the book, all on purpose: every layer gets its input size, so nothing is left to
deferred initialisation; BatchNorm takes epsilon and momentum from the spec; every layer has
an explicit prefix, which makes parameter names predictable: ``b1_conv``, ``b1_bn``, stage
``b{i}``'s block ``j`` ``b{i}_block{j}`` (``b2_block0_conv1_weight``), the head ``last_pool``
and ``last_fc``; the blocks' ReLUs are oneDNN's, ``F.Activation(..., act_type="relu")``, for the
reason ``impl_mxnet.anynet`` gives.
"""

from __future__ import annotations

import itertools

from mxnet.gluon import nn

from impl_mxnet.anynet import batch_norm
from impl_mxnet.inception import conv_pool_relu
from parity import specs


class Residual(nn.HybridBlock):
    """d2l's Residual block: 3x3 conv (``strides``), BatchNorm, ReLU, 3x3 conv, BatchNorm, plus the
    input, then ReLU. With ``use_1x1conv`` the shortcut is a strided 1x1 conv (``conv3``, without
    BatchNorm, as in the book)."""

    def __init__(
        self,
        num_channels: int,
        use_1x1conv: bool = False,
        strides: int = 1,
        *,
        in_channels: int,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec = specs.Residual(in_channels, num_channels, use_1x1conv, strides, bn_eps, bn_momentum)
        bn = dict(eps=bn_eps, momentum=bn_momentum)
        with self.name_scope():
            self.conv1 = nn.Conv2D(
                num_channels, kernel_size=3, padding=1, strides=strides, in_channels=in_channels, prefix="conv1_"
            )
            self.conv2 = nn.Conv2D(num_channels, kernel_size=3, padding=1, in_channels=num_channels, prefix="conv2_")
            if use_1x1conv:
                self.conv3 = nn.Conv2D(
                    num_channels, kernel_size=1, strides=strides, in_channels=in_channels, prefix="conv3_"
                )
            else:
                self.conv3 = None
            self.bn1 = batch_norm(num_channels, **bn, prefix="bn1_")
            self.bn2 = batch_norm(num_channels, **bn, prefix="bn2_")

    @classmethod
    def from_spec(cls, spec: specs.Residual, **kwargs) -> Residual:
        return cls(
            spec.num_channels,
            spec.use_1x1conv,
            spec.stride,
            in_channels=spec.in_channels,
            bn_eps=spec.bn_eps,
            bn_momentum=spec.bn_momentum,
            **kwargs,
        )

    def hybrid_forward(self, F, X):
        Y = F.Activation(self.bn1(self.conv1(X)), act_type="relu")
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.Activation(Y + X, act_type="relu")


class ResNet(nn.Block):
    """d2l's ResNet: ``net`` is a Sequential of b1, one Sequential of Residual blocks per stage
    (``b2``, ``b3``, ...), GlobalAvgPool2D and Dense, as in the book."""

    def __init__(self, spec: specs.ResNet = specs.ResNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(self.b1())
                in_channels = 64
                for i, b in enumerate(spec.arch):
                    self.net.add(self.block(*b, first_block=(i == 0), in_channels=in_channels, prefix=f"b{i + 2}_"))
                    in_channels = b[1]
                self.net.add(
                    nn.GlobalAvgPool2D(prefix="last_pool_"),
                    nn.Dense(spec.num_classes, in_units=spec.arch[-1][1], prefix="last_fc_"),
                )

    def b1(self) -> nn.Sequential:
        """7x7 conv (64, stride 2, padding 3), BatchNorm, ReLU, 3x3 stride-2 max-pool padded by 1."""
        spec = self.spec
        net = nn.Sequential(prefix="b1_")
        with net.name_scope():
            net.add(
                nn.Conv2D(64, kernel_size=7, strides=2, padding=3, in_channels=spec.in_channels, prefix="conv_"),
                batch_norm(64, eps=spec.bn_eps, momentum=spec.bn_momentum, prefix="bn_"),
                nn.Activation("relu", prefix="relu_"),
                nn.MaxPool2D(pool_size=3, strides=2, padding=1, prefix="pool_"),
            )
        return net

    def block(
        self, num_residuals: int, num_channels: int, first_block: bool = False, *, in_channels: int, prefix: str
    ) -> nn.Sequential:
        """A stage of ``num_residuals`` Residual blocks; unless ``first_block``, the first projects and
        strides by 2."""
        blk = nn.Sequential(prefix=prefix)
        with blk.name_scope():
            for i in range(num_residuals):
                # every block gets its input channels, the spec's BatchNorm, and the name block{i}
                kwargs = dict(in_channels=in_channels, bn_eps=self.spec.bn_eps, bn_momentum=self.spec.bn_momentum)
                if i == 0 and not first_block:
                    blk.add(Residual(num_channels, use_1x1conv=True, strides=2, **kwargs, prefix=f"block{i}_"))
                else:
                    blk.add(Residual(num_channels, **kwargs, prefix=f"block{i}_"))
                in_channels = num_channels
        return blk

    def forward(self, X):
        return self.net(X)


class ResNet18(ResNet):
    """d2l's ResNet18: stages of two Residual blocks each with 64, 128, 256 and 512 channels."""

    def __init__(self, num_classes: int = 10, **kwargs):
        super().__init__(specs.ResNet(arch=((2, 64), (2, 128), (2, 256), (2, 512)), num_classes=num_classes), **kwargs)


class ResidualBlock(nn.HybridBlock):
    """The tutorials' ResidualBlock: ``relu(x + conv2(relu(conv1(x))))`` with two 3x3 convs padded by 1."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.spec = specs.ResidualBlock(channels)
        self.channels = channels
        with self.name_scope():
            self.conv1 = nn.Conv2D(channels, kernel_size=3, padding=1, in_channels=channels, prefix="conv1_")
            self.conv2 = nn.Conv2D(channels, kernel_size=3, padding=1, in_channels=channels, prefix="conv2_")

    @classmethod
    def from_spec(cls, spec: specs.ResidualBlock, **kwargs) -> ResidualBlock:
        return cls(spec.channels, **kwargs)

    def hybrid_forward(self, F, X):
        Y = F.Activation(self.conv1(X), act_type="relu")
        Y = self.conv2(Y)
        return F.Activation(X + Y, act_type="relu")


class ResidualNet(nn.Block):
    """The tutorials' residual MNIST net: ``net`` is a Sequential of conv1 (conv, max-pool, ReLU),
    rblock1, conv2, rblock2 and fc. Gluon's Dense flattens its NCHW input in (C, H, W) order."""

    def __init__(self, spec: specs.ResidualNet = specs.ResidualNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    conv_pool_relu(spec.in_channels, 16, conv="conv1", output="pool1"),
                    ResidualBlock(16, prefix="rblock1_"),
                    conv_pool_relu(16, 32, conv="conv2", output="pool2"),
                    ResidualBlock(32, prefix="rblock2_"),
                    nn.Dense(spec.num_classes, in_units=32 * 4 * 4, prefix="fc_"),
                )

    def forward(self, X):
        return self.net(X)


class TorchvisionBlock(nn.HybridBlock):
    """torchvision's BasicBlock (3x3 (strides) -> 3x3) or, with ``bottleneck``, Bottleneck (1x1 -> 3x3
    (strides) -> 1x1 to 4x ``width``), convs without bias, each with BatchNorm, plus the input (through
    ``downsample_conv`` and ``downsample_bn`` where the shape changes), then ReLU."""

    def __init__(self, bottleneck: bool, in_channels: int, width: int, strides: int, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck = bottleneck
        out = width * (4 if bottleneck else 1)
        nets = specs.torchvision_nets

        def conv(channels: int, kernel: int, c_in: int, name: str, strides: int = 1) -> nn.Conv2D:
            return nn.Conv2D(
                channels, kernel, strides, kernel // 2, use_bias=False, in_channels=c_in, prefix=f"{name}_"
            )

        def bn(channels: int, name: str) -> nn.BatchNorm:
            return batch_norm(channels, eps=nets.BN_EPS, momentum=nets.BN_MOMENTUM, prefix=f"{name}_")

        with self.name_scope():
            if bottleneck:
                self.conv1 = conv(width, 1, in_channels, "conv1")
                self.conv2 = conv(width, 3, width, "conv2", strides)
                self.conv3, self.bn3 = conv(out, 1, width, "conv3"), bn(out, "bn3")
            else:
                self.conv1 = conv(width, 3, in_channels, "conv1", strides)
                self.conv2 = conv(width, 3, width, "conv2")
            self.bn1, self.bn2 = bn(width, "bn1"), bn(width, "bn2")
            self.downsample_conv = self.downsample_bn = None
            if strides != 1 or in_channels != out:
                self.downsample_conv = conv(out, 1, in_channels, "downsample_conv", strides)
                self.downsample_bn = bn(out, "downsample_bn")

    def hybrid_forward(self, F, X):
        identity = X if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(X))
        Y = F.Activation(self.bn1(self.conv1(X)), act_type="relu")
        Y = self.bn2(self.conv2(Y))
        if self.bottleneck:
            Y = self.bn3(self.conv3(F.Activation(Y, act_type="relu")))
        return F.Activation(Y + identity, act_type="relu")


class TorchvisionResNet(nn.Block):
    """torchvision's ResNet: ``net`` is a Sequential of conv1, bn1, ReLU, maxpool, stages ``layer1`` ...
    ``layer4`` of blocks ``block{j}`` (``spec.blocks()``: widths and strides), avgpool and fc."""

    def __init__(self, spec: specs.TorchvisionResNet = specs.TorchvisionResNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        nets = specs.torchvision_nets
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    nn.Conv2D(64, 7, 2, 3, use_bias=False, in_channels=spec.in_channels, prefix="conv1_"),
                    batch_norm(64, eps=nets.BN_EPS, momentum=nets.BN_MOMENTUM, prefix="bn1_"),
                    nn.Activation("relu", prefix="relu_"),
                    nn.MaxPool2D(pool_size=3, strides=2, padding=1, prefix="maxpool_"),
                )
                for stage, blocks in itertools.groupby(spec.blocks(), key=lambda b: b[0].split(".")[0]):
                    layer = nn.Sequential(prefix=f"{stage}_")
                    with layer.name_scope():
                        for path, *block in blocks:
                            layer.add(TorchvisionBlock(spec.bottleneck, *block, prefix=f"block{path.split('.')[1]}_"))
                    self.net.add(layer)
                self.net.add(
                    nn.GlobalAvgPool2D(prefix="avgpool_"),
                    nn.Dense(spec.num_classes, in_units=512 * spec.expansion, prefix="fc_"),
                )

    def forward(self, X):
        return self.net(X)
