"""d2l's classic CNNs in Gluon, built from ``parity.specs`` objects: LeNet, BNLeNet, AlexNet, VGG
(with ``vgg_block``), and NiN (with ``nin_block``).

Read side by side with d2l (chapter_convolutional-neural-networks/lenet.md and
chapter_convolutional-modern/batch-norm.md, alexnet.md, vgg.md, nin.md, MXNet tab).
Differences from the book, all on purpose: every layer gets its input size
(``in_channels`` / ``in_units``), so nothing is left to deferred initialisation; sizes,
dropout rates, BatchNorm epsilon and momentum, input channels and classes come from the
spec (AlexNet's first conv is padded by 1, as the book's PyTorch tab and the spec have
it, where its MXNet tab leaves it unpadded: the ``dropped_padding`` pitfall); every layer
has an explicit prefix, which makes parameter names predictable: the spec's layer names
(``conv1_weight``, ``bn3_gamma``, ``fc6_weight``), and block ``i``'s convs ``block{i}_conv{k}``
(``block0_conv1_weight`` is NiN's k x k conv, ``conv2``/``conv3`` its 1x1s).

The book's Gluon convs and dense layers fuse their activation (``activation="relu"``),
as here. Padding is symmetric on every side; Gluon's pools, like PyTorch's, floor the
output size (``ceil_mode=False``), and a Dense flattens its NCHW input in PyTorch's
(C, H, W) order.
"""

from __future__ import annotations

from mxnet.gluon import nn

from impl_mxnet.anynet import batch_norm
from parity import specs
from parity.variants import droppable_padding


class LeNet(nn.Block):
    """d2l's LeNet-5: ``net`` is a Sequential of two sigmoid convs, each followed by a 2x2 average
    pool, and three dense layers (sigmoids on the first two)."""

    def __init__(self, spec: specs.LeNet = specs.LeNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    nn.Conv2D(
                        6, kernel_size=5, padding=2, activation="sigmoid", in_channels=spec.in_channels, prefix="conv1_"
                    ),
                    nn.AvgPool2D(pool_size=2, strides=2, prefix="pool1_"),
                    nn.Conv2D(16, kernel_size=5, activation="sigmoid", in_channels=6, prefix="conv2_"),
                    nn.AvgPool2D(pool_size=2, strides=2, prefix="pool2_"),
                    nn.Dense(120, activation="sigmoid", in_units=16 * 5 * 5, prefix="fc1_"),
                    nn.Dense(84, activation="sigmoid", in_units=120, prefix="fc2_"),
                    nn.Dense(spec.num_classes, in_units=84, prefix="fc3_"),
                )

    def forward(self, X):
        return self.net(X)


class BNLeNet(nn.Block):
    """d2l's LeNet with batch normalization: BatchNorm after every conv and after the first two
    dense layers (over the features of an (N, C) input), each before its sigmoid."""

    def __init__(self, spec: specs.BNLeNet = specs.BNLeNet(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        bn = dict(eps=spec.bn_eps, momentum=spec.bn_momentum)
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    nn.Conv2D(6, kernel_size=5, in_channels=spec.in_channels, prefix="conv1_"),
                    batch_norm(6, **bn, prefix="bn1_"),
                    nn.Activation("sigmoid", prefix="sigmoid1_"),
                    nn.AvgPool2D(pool_size=2, strides=2, prefix="pool1_"),
                    nn.Conv2D(16, kernel_size=5, in_channels=6, prefix="conv2_"),
                    batch_norm(16, **bn, prefix="bn2_"),
                    nn.Activation("sigmoid", prefix="sigmoid2_"),
                    nn.AvgPool2D(pool_size=2, strides=2, prefix="pool2_"),
                    nn.Dense(120, in_units=16 * 4 * 4, prefix="fc1_"),
                    batch_norm(120, **bn, prefix="bn3_"),
                    nn.Activation("sigmoid", prefix="sigmoid3_"),
                    nn.Dense(84, in_units=120, prefix="fc2_"),
                    batch_norm(84, **bn, prefix="bn4_"),
                    nn.Activation("sigmoid", prefix="sigmoid4_"),
                    nn.Dense(spec.num_classes, in_units=84, prefix="fc3_"),
                )

    def forward(self, X):
        return self.net(X)


def head_layer(spec: specs.Spec, path: str, convolutional: bool = False, activation: str | None = "relu") -> nn.Block:
    """The head's dense layer ``path`` of ``spec`` (its ReLU fused, as the book's), or with ``convolutional`` the
    conv that computes it at every position (``parity.specs.FullyConvolutional``: h x w over the map, else 1x1)."""
    layer = next(layer for layer in spec.layers() if layer.path == path)
    if not convolutional:
        return nn.Dense(layer.out_features, activation=activation, in_units=layer.in_features, prefix=f"{path}_")
    conv = specs.dense_as_conv(layer)
    return nn.Conv2D(
        conv.out_channels, conv.kernel_hw, activation=activation, in_channels=conv.in_channels, prefix=f"{path}_"
    )


def dense_head(spec: specs.Spec, convolutional: bool = False) -> list[nn.Block]:
    """AlexNet's and VGG's classifier: fc6 and fc7 (4096 units, ReLU, dropout), then fc8 (with
    ``convolutional``, as convolutions; Gluon's Dense flattens its input itself)."""
    return [
        head_layer(spec, "fc6", convolutional),
        nn.Dropout(spec.dropout, prefix="drop6_"),
        head_layer(spec, "fc7", convolutional),
        nn.Dropout(spec.dropout, prefix="drop7_"),
        head_layer(spec, "fc8", convolutional, activation=None),
    ]


class AlexNet(nn.Block):
    """d2l's AlexNet: ``net`` is a Sequential of five ReLU convs, 3x3 stride-2 max-pools after the first,
    second and fifth, and the dense head. Dropout drops only in training mode.

    ``pitfalls``: ``dropped_padding`` builds conv1 unpadded, as d2l's MXNet tab does (at 224x224 it
    still outputs 54x54; ``parity.variants.droppable_padding``).
    """

    def __init__(
        self,
        spec: specs.AlexNet = specs.AlexNet(),
        pitfalls: frozenset[str] = frozenset(),
        convolutional: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.spec = spec
        unpadded = droppable_padding(spec) if "dropped_padding" in pitfalls else frozenset()
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                channels = spec.in_channels
                for k, (out, kernel, strides, padding, pool) in enumerate(spec.CONVS, start=1):
                    padding = 0 if f"conv{k}" in unpadded else padding
                    self.net.add(
                        nn.Conv2D(
                            out, kernel, strides, padding, activation="relu", in_channels=channels, prefix=f"conv{k}_"
                        )
                    )
                    if pool:
                        self.net.add(nn.MaxPool2D(pool_size=3, strides=2, prefix=f"pool{k}_"))
                    channels = out
                self.net.add(*dense_head(spec, convolutional))

    def forward(self, X):
        return self.net(X)


def vgg_block(num_convs: int, num_channels: int, *, in_channels: int, prefix: str) -> nn.Sequential:
    """``num_convs`` 3x3 ReLU convs padded by 1 (``conv1``, ``conv2``, ...), then a 2x2 stride-2 max-pool."""
    blk = nn.Sequential(prefix=prefix)
    with blk.name_scope():
        for k in range(1, num_convs + 1):
            conv = nn.Conv2D(
                num_channels, kernel_size=3, padding=1, activation="relu", in_channels=in_channels, prefix=f"conv{k}_"
            )
            blk.add(conv)
            in_channels = num_channels
        blk.add(nn.MaxPool2D(pool_size=2, strides=2, prefix="pool_"))
    return blk


class VGG(nn.Block):
    """d2l's VGG: ``net`` is a Sequential of one ``vgg_block`` per (num_convs, num_channels) of
    ``spec.arch``, then the dense head. Dropout drops only in training mode."""

    def __init__(self, spec: specs.VGG = specs.VGG(), convolutional: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                in_channels = spec.in_channels
                for i, (num_convs, num_channels) in enumerate(spec.arch):
                    self.net.add(vgg_block(num_convs, num_channels, in_channels=in_channels, prefix=f"block{i}_"))
                    in_channels = num_channels
                self.net.add(*dense_head(spec, convolutional))

    def forward(self, X):
        return self.net(X)


def nin_block(
    num_channels: int, kernel_size: int, strides: int, padding: int, *, in_channels: int, prefix: str
) -> nn.Sequential:
    """A k x k conv, then two 1x1 convs, each with its ReLU fused (``activation="relu"``) as in the book."""
    blk = nn.Sequential(prefix=prefix)
    with blk.name_scope():
        blk.add(
            nn.Conv2D(
                num_channels, kernel_size, strides, padding, activation="relu", in_channels=in_channels, prefix="conv1_"
            ),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu", in_channels=num_channels, prefix="conv2_"),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu", in_channels=num_channels, prefix="conv3_"),
        )
    return blk


class NiN(nn.Block):
    """d2l's NiN: ``net`` is a Sequential of four nin_blocks with 3x3, stride-2 max-pools between the
    first three, dropout before the last, whose ``num_classes`` channels are averaged into the logits.

    Dropout drops only in training mode (``autograd.record`` or ``autograd.pause(train_mode=True)``).
    """

    def __init__(self, spec: specs.NiN = specs.NiN(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        (c0, *b0), (c1, *b1), (c2, *b2), (c3, *b3) = spec.blocks()  # (channels, kernel, strides, padding)
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                self.net.add(
                    nin_block(c0, *b0, in_channels=spec.in_channels, prefix="block0_"),
                    nn.MaxPool2D(pool_size=3, strides=2, prefix="pool0_"),
                    nin_block(c1, *b1, in_channels=c0, prefix="block1_"),
                    nn.MaxPool2D(pool_size=3, strides=2, prefix="pool1_"),
                    nin_block(c2, *b2, in_channels=c1, prefix="block2_"),
                    nn.MaxPool2D(pool_size=3, strides=2, prefix="pool2_"),
                    nn.Dropout(spec.dropout, prefix="dropout_"),
                    # There are num_classes label classes
                    nin_block(c3, *b3, in_channels=c2, prefix="block3_"),
                    nn.GlobalAvgPool2D(prefix="head_pool_"),
                    # (N, num_classes, 1, 1) -> (N, num_classes)
                    nn.Flatten(prefix="head_flatten_"),
                )

    def forward(self, X):
        return self.net(X)


def torchvision_bn(channels: int, *, prefix: str) -> nn.BatchNorm:
    nets = specs.torchvision_nets
    return batch_norm(channels, eps=nets.BN_EPS, momentum=nets.BN_MOMENTUM, prefix=prefix)


class AdaptiveAvgPool2D(nn.HybridBlock):
    """PyTorch's ``AdaptiveAvgPool2d``, through MXNet's own ``contrib.AdaptiveAvgPooling2D``, which bins as
    PyTorch does: output cell i averages rows floor(i*H/o) to ceil((i+1)*H/o), and the columns likewise."""

    def __init__(self, output_size: tuple[int, int], **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(output_size)

    def hybrid_forward(self, F, X):
        return F.contrib.AdaptiveAvgPooling2D(X, output_size=self.output_size)


class TorchvisionAlexNet(nn.Block):
    """torchvision's AlexNet: ``net`` is a Sequential of five ReLU convs (max-pools ``pool1``, ``pool2``,
    ``pool5``), the 6x6 adaptive pool ``avgpool`` and the classifier, dropout before fc6 and fc7.
    ``convolutional``: the classifier as convolutions, without the adaptive pool."""

    def __init__(
        self, spec: specs.TorchvisionAlexNet = specs.TorchvisionAlexNet(), convolutional: bool = False, **kwargs
    ):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                channels = spec.in_channels
                for k, (out, kernel, strides, padding, pool) in enumerate(spec.CONVS, start=1):
                    conv = nn.Conv2D(out, kernel, strides, padding, in_channels=channels, prefix=f"conv{k}_")
                    self.net.add(conv, nn.Activation("relu", prefix=f"relu{k}_"))
                    if pool:
                        self.net.add(nn.MaxPool2D(pool_size=3, strides=2, prefix=f"pool{k}_"))
                    channels = out
                if not convolutional:  # N x 256 x 6 x 6 at any size
                    self.net.add(AdaptiveAvgPool2D(spec.POOL, prefix="avgpool_"))
                self.net.add(
                    nn.Dropout(spec.dropout, prefix="drop6_"),
                    head_layer(spec, "fc6", convolutional),
                    nn.Dropout(spec.dropout, prefix="drop7_"),
                    head_layer(spec, "fc7", convolutional),
                    head_layer(spec, "fc8", convolutional, activation=None),
                )

    def forward(self, X):
        return self.net(X)


class TorchvisionVGG(nn.Block):
    """torchvision's VGG: ``net`` is a Sequential of blocks ``block{i}`` (3x3 convs ``conv{k}``, each with
    BatchNorm ``bn{k}`` if ``spec.batch_norm``, ReLUs and a max-pool), the 7x7 adaptive pool ``avgpool``
    and the dense head. ``convolutional``: the head as convolutions, without the adaptive pool."""

    def __init__(self, spec: specs.TorchvisionVGG = specs.TorchvisionVGG(), convolutional: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.net = nn.Sequential(prefix="")
            with self.net.name_scope():
                channels = spec.in_channels
                for i, (num_convs, out) in enumerate(spec.arch):
                    blk = nn.Sequential(prefix=f"block{i}_")
                    with blk.name_scope():
                        for k in range(1, num_convs + 1):
                            blk.add(nn.Conv2D(out, 3, padding=1, in_channels=channels, prefix=f"conv{k}_"))
                            if spec.batch_norm:
                                blk.add(torchvision_bn(out, prefix=f"bn{k}_"))
                            blk.add(nn.Activation("relu", prefix=f"relu{k}_"))
                            channels = out
                        blk.add(nn.MaxPool2D(pool_size=2, strides=2, prefix="pool_"))
                    self.net.add(blk)
                if not convolutional:  # N x 512 x 7 x 7 at any size
                    self.net.add(AdaptiveAvgPool2D(spec.POOL, prefix="avgpool_"))
                self.net.add(*dense_head(spec, convolutional))

    def forward(self, X):
        return self.net(X)
