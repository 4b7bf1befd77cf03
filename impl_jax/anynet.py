"""d2l's ResNeXt block, AnyNet and RegNetX32 in Flax linen (NHWC), built from parity specs,
and the layers that every model file of this package shares.

Read side by side with d2l-en ``chapter_convolutional-modern/resnet.md``
(``ResNeXtBlock``) and ``cnn-design.md`` (``AnyNet``, ``RegNetX32``). Unlike the
book, every numeric choice comes from the spec: symmetric explicit padding (Flax's
``'same'`` pads only bottom/right at stride 2; the ``same_padding`` pitfall puts it in every
padded conv, ``same_padding_in_blocks`` only in the blocks' grouped 3x3 as the book's JAX
tab does: naive ports), BatchNorm epsilon and momentum, the conv bias, and
``dtype`` for both computation and parameters. Stages are named as the book's
``f'stage{i+1}'`` and their blocks ``block{j}``, so parameters live at readable paths
such as ``params/net/stage1/block1/conv2/kernel``.

Every model takes ``pitfalls``, the naive-port variant it is built as (a frozenset of
pitfall names, empty for the faithful model), and asks ``"same_padding" in self.pitfalls``.
The faithful model's ``bn_momentum`` is the spec's; the book's JAX tab keeps Flax's 0.99
(PyTorch's 0.1 means 0.9), which only training would show.

Importing this module turns on JAX's 64-bit mode (``jax_enable_x64``) for the
whole process: float64 models need it, and JAX otherwise silently makes float32
arrays where float64 ones are asked for. Float32 models stay float32: every
layer gets ``dtype`` and ``param_dtype`` explicitly.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterable
from typing import Any

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
    ``'SAME'``, which at stride 2 on an even size pads only the bottom/right."""
    return "SAME" if same and amount else amount


def flax_padding(padding: Padding) -> str | tuple[tuple[int, int], tuple[int, int]]:
    """Flax's ``padding`` argument: an int pads that many zeros on every side, a string is Flax's own mode."""
    return padding if isinstance(padding, str) else ((padding, padding), (padding, padding))


def conv2d(
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


def dense(features: int, *, dtype: Dtype, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, param_dtype=dtype, parent=None, name=name)


class MaxPool2D(nn.Module):
    """A square max-pool, padded with ``padding`` cells on every side (or Flax's ``'SAME'``).

    Flax pads a max-pool with -inf, so a padded cell never wins a max, as in PyTorch.
    """

    window: int
    strides: int
    padding: Padding = 0

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        window, strides = (self.window, self.window), (self.strides, self.strides)
        return nn.max_pool(x, window, strides=strides, padding=flax_padding(self.padding))


class AvgPool2D(nn.Module):
    """A square average pool, padded with ``padding`` zeros on every side that count in the mean
    (PyTorch's ``count_include_pad=True``): a corner of a 3x3 pool with padding 1 averages 4 cells over 9."""

    window: int
    strides: int
    padding: int = 0

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        p = self.padding
        window, strides = (self.window, self.window), (self.strides, self.strides)
        return nn.avg_pool(x, window, strides=strides, padding=((p, p), (p, p)), count_include_pad=True)


class GlobalAvgPool2D(nn.Module):
    """d2l's head pooling: the mean over the whole spatial extent, flattened to (N, C)
    (``keepdims``: kept as (N, 1, 1, C), like PyTorch's ``AdaptiveAvgPool2d((1, 1))``)."""

    keepdims: bool = False

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = nn.avg_pool(x, window_shape=x.shape[1:3], strides=x.shape[1:3], padding="VALID")
        return x if self.keepdims else x.reshape((x.shape[0], -1))


class AdaptiveAvgPool2D(nn.Module):
    """PyTorch's ``AdaptiveAvgPool2d``: output cell i averages rows floor(i*H/o) to ceil((i+1)*H/o) (the
    bins overlap where o does not divide H), and the columns likewise; the mean of a bin's row means is
    the bin's mean, each row holding the same columns."""

    output_size: tuple[int, int]

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        (h, w), (oh, ow) = x.shape[1:3], self.output_size
        x = jnp.stack([x[:, i * h // oh : -(-(i + 1) * h // oh)].mean(axis=1) for i in range(oh)], axis=1)
        return jnp.stack([x[:, :, j * w // ow : -(-(j + 1) * w // ow)].mean(axis=2) for j in range(ow)], axis=2)


class Flatten(nn.Module):
    """(N, H, W, C) -> (N, H * W * C): NHWC flattens in H-W-C order (the hub permutes the next dense weight)."""

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return x.reshape((x.shape[0], -1))


class ResNeXtBlock(nn.Module, kw_only=True):
    """The ResNeXt block: 1x1 -> grouped 3x3 (strides) -> 1x1, plus an identity or 1x1 shortcut.

    ``group_width`` is the number of channels per group (d2l calls it ``groups``);
    the 3x3 convolution has ``bot_channels // group_width`` groups. The ``same_padding`` and
    ``same_padding_in_blocks`` pitfalls pad it with Flax's ``'SAME'``, as d2l's JAX ResNeXtBlock does
    (``padding='same'`` in its conv2).
    """

    num_channels: int
    group_width: int
    bot_mul: float
    use_1x1conv: bool = False
    strides: int = 1
    conv_bias: bool = True
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    pitfalls: frozenset[str] = frozenset()
    training: bool = False
    dtype: Dtype = jnp.float32

    @classmethod
    def from_spec(cls, block: specs.ResNeXtBlock, **kwargs: Any) -> ResNeXtBlock:
        """The block ``block`` describes; ``kwargs``: pitfalls, training, dtype, name, parent.

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
        conv = functools.partial(conv2d, use_bias=self.conv_bias, dtype=self.dtype)
        norm = functools.partial(
            batch_norm, training=self.training, momentum=self.bn_momentum, epsilon=self.bn_eps, dtype=self.dtype
        )
        bot_channels = int(round(self.num_channels * self.bot_mul))
        self.conv1 = conv(bot_channels, 1)
        self.conv2 = conv(
            bot_channels,
            3,
            strides=self.strides,
            # d2l's JAX tab: conv2 nn.Conv(..., padding='same', ...) (d2l-en resnet.md l. 640-641)
            padding=padding(1, bool({"same_padding", "same_padding_in_blocks"} & self.pitfalls)),
            groups=bot_channels // self.group_width,
        )
        self.conv3 = conv(self.num_channels, 1)
        self.bn1, self.bn2, self.bn3 = norm(), norm(), norm()
        if self.use_1x1conv:
            self.conv4 = conv(self.num_channels, 1, strides=self.strides)
            self.bn4 = norm()
        else:
            self.conv4 = None

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        Y = nn.relu(self.bn1(self.conv1(X)))
        Y = nn.relu(self.bn2(self.conv2(Y)))
        Y = self.bn3(self.conv3(Y))
        if self.conv4 is not None:
            X = self.bn4(self.conv4(X))
        return nn.relu(Y + X)


class AnyNet(nn.Module):
    """d2l's AnyNet: ``net`` = Sequential(stem, stage1, stage2, ..., head); stage i's blocks ``block0``, ...

    ``pitfalls``: ``same_padding`` puts Flax's ``'SAME'`` in every padded conv; ``same_padding_in_blocks``
    in the blocks' only, the stem padded symmetrically, as d2l's JAX tab has it (``padding=(1, 1)``).
    """

    spec: specs.AnyNet
    pitfalls: frozenset[str] = frozenset()
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
        same = "same_padding" in self.pitfalls  # not the book's JAX stem: padding=(1, 1) (cnn-design.md l. 129-130)
        conv = conv2d(
            num_channels,
            3,
            strides=2,
            padding=padding(1, same),
            use_bias=self.spec.conv_bias,
            dtype=self.dtype,
            name="conv",
        )
        norm = batch_norm(
            training=self.training,
            momentum=self.spec.bn_momentum,
            epsilon=self.spec.bn_eps,
            dtype=self.dtype,
            name="bn",
        )
        return Sequential([conv, norm, nn.relu], parent=None, name="stem")

    def stage(self, index: int, blocks: Iterable[specs.ResNeXtBlock]) -> Sequential:
        """The book's ``f'stage{i+1}'`` from its blocks' specs (the first one projects and strides)."""
        block = functools.partial(
            ResNeXtBlock.from_spec, pitfalls=self.pitfalls, training=self.training, dtype=self.dtype, parent=None
        )
        return Sequential(
            [block(spec, name=f"block{j}") for j, spec in enumerate(blocks)], parent=None, name=f"stage{index + 1}"
        )

    def head(self, num_classes: int) -> Sequential:
        pool = GlobalAvgPool2D(parent=None, name="pool")
        return Sequential([pool, dense(num_classes, dtype=self.dtype, name="fc")], parent=None, name="head")

    def __call__(self, X: jnp.ndarray) -> jnp.ndarray:
        return self.net(X)


class RegNetX32(AnyNet):
    """d2l's RegNetX32: stem 32; stages (depth 4, width 32) and (6, 80); group width 16; no bottleneck."""

    spec: specs.AnyNet | None = None  # d2l's RegNetX32 with ``num_classes``, set from it
    num_classes: int = 10

    def __post_init__(self) -> None:
        self.spec = dataclasses.replace(specs.regnetx32(), num_classes=self.num_classes)
        super().__post_init__()
