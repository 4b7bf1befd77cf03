"""d2l's ResNeXt block, AnyNet and RegNetX32 in Flax linen (NHWC), built from parity specs.

Read side by side with d2l-en ``chapter_convolutional-modern/resnet.md``
(``ResNeXtBlock``) and ``cnn-design.md`` (``AnyNet``, ``RegNetX32``). Unlike the
book, every numeric choice comes from the spec: symmetric explicit padding (Flax's
``'same'`` pads only bottom/right at stride 2; ``same_padding=True`` builds the
book's ``'same'``, a naive port), BatchNorm epsilon and momentum, the
conv bias, and ``dtype`` for both computation and parameters. Every submodule has
an explicit name, so parameters live at readable paths such as
``params/net/stages_0/blocks_1/conv2/kernel``.

Importing this module turns on JAX's 64-bit mode (``jax_enable_x64``) for the
whole process: float64 models need it, and JAX otherwise silently makes float32
arrays where float64 ones are asked for. Float32 models stay float32: every
layer gets ``dtype`` and ``param_dtype`` explicitly.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable

import jax
import jax.numpy as jnp
from flax import linen as nn

from parity import specs

jax.config.update("jax_enable_x64", True)

Dtype = Any
Padding = int | str


class Sequential(nn.Sequential):
    """``nn.Sequential`` whose layers keep the names they were given.

    Flax renames the modules a plain ``nn.Sequential`` adopts to ``layers_0``,
    ``layers_1``, ...; this one keeps ``name=``. Its layers are created with
    ``parent=None`` so that the Sequential adopts them, not the module whose
    ``setup`` happens to be running.
    """

    preserve_adopted_names = True


def padding(amount: int, same: bool) -> Padding:
    """``amount`` zeros on every side or, for a padded layer of a naive port (``same``), Flax's own
    ``'SAME'`` as in d2l's JAX code, which at stride 2 on an even size pads only the bottom/right."""
    return "SAME" if same and amount else amount


def flax_padding(padding: Padding) -> str | tuple[tuple[int, int], tuple[int, int]]:
    """Flax's ``padding`` argument: an int pads that many zeros on every side, a string is Flax's own mode."""
    return padding if isinstance(padding, str) else ((padding, padding), (padding, padding))


def conv(
    features: int,
    kernel_size: int,
    *,
    strides: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    use_bias: bool,
    dtype: Dtype,
    name: str | None = None,
) -> nn.Conv:
    """A square convolution with ``padding`` zeros on every side (or Flax's ``'SAME'``)."""
    return nn.Conv(
        features,
        kernel_size=(kernel_size, kernel_size),
        strides=(strides, strides),
        padding=flax_padding(padding),
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=dtype,
        parent=None,
        name=name,
    )


def batch_norm(
    *, training: bool, momentum: float, epsilon: float, dtype: Dtype, name: str | None = None
) -> nn.BatchNorm:
    """BatchNorm with the spec's PyTorch-convention ``momentum`` (Flax's is ``1 - momentum``).

    ``use_fast_variance=False``: batch variance as mean((x - mean)^2), as PyTorch
    computes it, not mean(x^2) - mean^2, which loses digits when the mean is large.
    ``force_float32_reductions=False``: running statistics in ``dtype``; Flax would
    otherwise keep them in float32 even in a float64 model.
    """
    return nn.BatchNorm(
        use_running_average=not training,
        momentum=1 - momentum,
        epsilon=epsilon,
        use_fast_variance=False,
        force_float32_reductions=False,
        dtype=dtype,
        param_dtype=dtype,
        parent=None,
        name=name,
    )


class GlobalAvgPool2D(nn.Module):
    """d2l's head pooling: the mean over the whole spatial extent, flattened to (N, C)."""

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.avg_pool(x, window_shape=x.shape[1:3], strides=x.shape[1:3], padding="VALID")
        return x.reshape((x.shape[0], -1))


class ResNeXtBlock(nn.Module, kw_only=True):
    """The ResNeXt block: 1x1 -> grouped 3x3 (stride) -> 1x1, plus an identity or 1x1 shortcut.

    ``group_width`` is the number of channels per group (d2l calls it ``groups``);
    the 3x3 convolution has ``bot_channels // group_width`` groups. ``same_padding``
    pads it with Flax's ``'SAME'`` as d2l's JAX code does (the ``same_padding`` variant).
    """

    num_channels: int
    group_width: int
    bot_mul: float
    use_1x1conv: bool = False
    strides: int = 1
    conv_bias: bool = True
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    same_padding: bool = False
    training: bool = False
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, block: specs.ResNeXtBlock, **kwargs: Any) -> ResNeXtBlock:
        """The block ``block`` describes; ``kwargs``: same_padding, training, dtype, name, parent.

        Its input channels are those of the input it is initialised with.
        """
        return cls(
            num_channels=block.num_channels,
            group_width=block.group_width,
            bot_mul=block.bot_mul,
            use_1x1conv=block.use_1x1conv,
            strides=block.stride,
            conv_bias=block.conv_bias,
            bn_eps=block.bn_eps,
            bn_momentum=block.bn_momentum,
            **kwargs,
        )

    def setup(self) -> None:
        bot_channels = int(round(self.num_channels * self.bot_mul))
        options = dict(use_bias=self.conv_bias, dtype=self.dtype)
        self.conv1 = conv(bot_channels, 1, **options)
        self.conv2 = conv(
            bot_channels,
            3,
            strides=self.strides,
            padding=padding(1, self.same_padding),
            groups=bot_channels // self.group_width,
            **options,
        )
        self.conv3 = conv(self.num_channels, 1, **options)
        self.bn1 = self.batch_norm()
        self.bn2 = self.batch_norm()
        self.bn3 = self.batch_norm()
        if self.use_1x1conv:
            self.conv4 = conv(self.num_channels, 1, strides=self.strides, **options)
            self.bn4 = self.batch_norm()
        else:
            self.conv4 = None

    def batch_norm(self) -> nn.BatchNorm:
        return batch_norm(training=self.training, momentum=self.bn_momentum, epsilon=self.bn_eps, dtype=self.dtype)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nn.relu(self.bn1(self.conv1(x)))
        y = nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.conv4 is not None:
            x = self.bn4(self.conv4(x))
        return nn.relu(y + x)


class AnyNet(nn.Module):
    """d2l's AnyNet: ``net`` = Sequential(stem, stages_0, stages_1, ..., head).

    ``same_padding``: Flax's ``'SAME'`` in every padded conv (the ``same_padding`` variant).
    """

    spec: specs.AnyNet
    same_padding: bool = False
    training: bool = False
    dtype: Dtype = jnp.float32

    def setup(self) -> None:
        stages = itertools.groupby(self.spec.blocks(), key=lambda stage_block: stage_block[0])
        self.net = Sequential(
            [
                self.stem(self.spec.stem_width),
                *(self.stage(i, (block for _, _, block in blocks)) for i, blocks in stages),
                self.head(self.spec.num_classes),
            ]
        )

    def stem(self, num_channels: int) -> Sequential:
        return Sequential(
            [
                conv(
                    num_channels,
                    3,
                    strides=2,
                    padding=padding(1, self.same_padding),
                    use_bias=self.spec.conv_bias,
                    dtype=self.dtype,
                    name="conv",
                ),
                batch_norm(
                    training=self.training,
                    momentum=self.spec.bn_momentum,
                    epsilon=self.spec.bn_eps,
                    dtype=self.dtype,
                    name="bn",
                ),
                nn.relu,
            ],
            parent=None,
            name="stem",
        )

    def stage(self, index: int, blocks: Iterable[specs.ResNeXtBlock]) -> Sequential:
        """Stage ``index`` from its blocks' specs (``AnyNet.blocks()``: the first one projects and strides)."""
        return Sequential(
            [
                ResNeXtBlock.from_spec(
                    block,
                    same_padding=self.same_padding,
                    training=self.training,
                    dtype=self.dtype,
                    parent=None,
                    name=f"blocks_{j}",
                )
                for j, block in enumerate(blocks)
            ],
            parent=None,
            name=f"stages_{index}",
        )

    def head(self, num_classes: int) -> Sequential:
        return Sequential(
            [
                GlobalAvgPool2D(parent=None, name="pool"),
                nn.Dense(num_classes, dtype=self.dtype, param_dtype=self.dtype, parent=None, name="fc"),
            ],
            parent=None,
            name="head",
        )

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.net(x)


class RegNetX32(AnyNet):
    """d2l's RegNetX32: stem 32; stages (depth 4, width 32) and (6, 80); group width 16; no bottleneck."""

    spec: specs.AnyNet = dataclasses.field(default_factory=specs.regnetx32)
