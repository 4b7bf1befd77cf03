"""The MXNet Gluon backend of the parity suite.

Gluon is NCHW with PyTorch's kernel layouts, and its Dense flattens a feature map in
PyTorch's (C, H, W) order, so every tensor maps to the canonical form unchanged; only
the names differ. Native names are the ``collect_params()`` keys, which the explicit
prefixes in ``impl_mxnet.models`` and ``impl_mxnet.googlenet`` make predictable:
``stages.1.blocks.0.conv2.weight`` is ``stage1_block0_conv2_weight``,
``b3.0.b2_2.weight`` is ``b3_0_b2_2_weight``.

The ``d2l_stage_bug`` variant is the book's AnyNet as its MXNet code really builds it.
Its later blocks have other tensors than the spec says, so its weights are checked and
exported against the layers the model really has (``AsBuilt``), not the spec's: canonical
weights of the spec do not load into it, and its own weights round-trip.
"""

from __future__ import annotations

import dataclasses

import mxnet as mx
import numpy as np
from mxnet import autograd, nd

from impl_mxnet.googlenet import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_mxnet.models import AnyNet, ResNeXtBlock
from parity import hub, specs
from parity.backends import DTYPES, SummaryRow, check_input
from parity.variants import check_variant
from parity.weights import Weights

name = "mxnet"
layout = "NCHW"
extra = "mxnet"

VARIANTS = {
    "d2l_stage_bug": "d2l's MXNet AnyNet.stage calls ResNeXtBlock(num_channels, num_channels, groups, bot_mul): "
    "every block after a stage's first gets a `groups` times wider bottleneck and a projection shortcut, "
    "with the same output shapes",
}

TABLE = hub.NameTable(
    modules=((r"^stages\.(\d+)\.blocks\.(\d+)", r"stage\1_block\2"), (r"\.", "_")),
    leaves={
        "conv.weight": ("weight", "identity"),
        "conv.bias": ("bias", "identity"),
        "batchnorm.weight": ("gamma", "identity"),
        "batchnorm.bias": ("beta", "identity"),
        "batchnorm.running_mean": ("running_mean", "identity"),
        "batchnorm.running_var": ("running_var", "identity"),
        "dense.weight": ("weight", "identity"),
        "dense.bias": ("bias", "identity"),
    },
    separator="_",
    flatten_order="CHW",
)


def table(spec: specs.Spec) -> hub.NameTable:
    """The name table for ``spec``: Gluon's prefixes give every spec the same rules."""
    return TABLE


Model = AnyNet | ResNeXtBlock | GoogLeNet | Inception | InceptionNet | InceptionA
BLOCKS = (ResNeXtBlock, Inception, InceptionA)
MODELS = {
    specs.AnyNet: AnyNet,
    specs.ResNeXtBlock: ResNeXtBlock.from_spec,
    specs.GoogLeNet: GoogLeNet,
    specs.Inception: Inception.from_spec,
    specs.InceptionNet: InceptionNet,
    specs.InceptionA: InceptionA.from_spec,
}
# Activation points that parity.specs defines as (N, C): Gluon's global pools keep (N, C, 1, 1).
POOLED_POINTS = ("head.pool", "b5")


@dataclasses.dataclass(frozen=True)
class AsBuilt:
    """The canonical layers a variant model really has, in the form ``parity.weights.schema`` reads."""

    name: str
    built_layers: tuple[specs.Layer, ...]

    def layers(self) -> list[specs.Layer]:
        return list(self.built_layers)


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> Model:
    """A Gluon model for ``spec``, Xavier-initialised from ``seed`` (biases 0, BatchNorm 1/0/0/1), in ``dtype``;
    ``variant`` is one of ``VARIANTS`` or None."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if type(spec) not in MODELS:
        known = ", ".join(cls.__name__ for cls in MODELS)
        raise TypeError(f"spec: expected one of parity.specs.{{{known}}}, got {type(spec).__name__}")
    check_variant(name, VARIANTS, spec, variant)
    if variant == "d2l_stage_bug":
        model = AnyNet(spec, d2l_stage_bug=True, prefix="")
    else:
        model = MODELS[type(spec)](spec, prefix="")
    mx.random.seed(seed)
    model.initialize(mx.init.Xavier())
    model.cast(dtype)
    model.dtype = dtype
    model.variant = variant
    return model


def _as_built(model: Model) -> specs.Spec | AsBuilt:
    """What the model's canonical weights are checked against: its spec, or a variant's layers as built."""
    if model.variant is None:
        return model.spec
    return AsBuilt(f"{model.spec.name} (variant {model.variant})", tuple(model.layers()))


def _input(model: Model, x_nchw: np.ndarray) -> nd.NDArray:
    return nd.array(check_input(model.spec, x_nchw, model.dtype), dtype=model.dtype)


def forward(model: Model, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits, or the block's NCHW output; ``train`` normalises with batch statistics.

    Gluon writes BatchNorm running statistics only in the backward pass of a graph
    recorded under ``autograd.record()``; ``autograd.pause`` records nothing, even
    inside a caller's ``record()``, so no mode changes the model.
    """
    x = _input(model, x_nchw)
    with autograd.pause(train_mode=train):
        return model(x).asnumpy()


def _summary_groups(spec: specs.AnyNet | specs.GoogLeNet | specs.InceptionNet) -> list[str]:
    """The canonical group of each layer of ``model.net``."""
    if isinstance(spec, specs.AnyNet):  # Gluon's head is two layers
        return ["stem"] + [f"stages.{i}" for i in range(len(spec.stages))] + ["head", "head"]
    if isinstance(spec, specs.GoogLeNet):
        return ["b1", "b2", "b3", "b4", "b5", "head"]
    return ["conv1", "incep1", "conv2", "incep2", "fc"]


def _trainable_parameters(layer: mx.gluon.Block) -> int:
    return sum(p.data().size for p in layer.collect_params().values() if p.grad_req != "null")


def _summary_row(layer: mx.gluon.Block, output: nd.NDArray, group: str) -> SummaryRow:
    return SummaryRow(type(layer).__name__, output.shape, str(output.shape), _trainable_parameters(layer), group)


def layer_summary(model: Model, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's layer summary: a zero input through each layer of ``model.net`` in turn, in eval mode."""
    X = _input(model, np.zeros(input_shape, dtype=model.dtype))
    with autograd.pause(train_mode=False):
        if isinstance(model, BLOCKS):
            return [_summary_row(model, model(X), "block")]
        rows = []
        for layer, group in zip(model.net, _summary_groups(model.spec), strict=True):
            X = layer(X)
            rows.append(_summary_row(layer, X, group))
    return rows


def export_weights(model: Model) -> Weights:
    native = {key: param.data().asnumpy() for key, param in model.collect_params().items()}
    return hub.from_native(_as_built(model), native, table(model.spec))


def load_weights(model: Model, weights: Weights, allow_nonfinite: bool = False) -> None:
    """Validate every tensor against the spec (a variant's layers as built) and the model, then assign them all."""
    native = hub.to_native(
        _as_built(model), weights, table(model.spec), dtype=model.dtype, allow_nonfinite=allow_nonfinite
    )
    params = model.collect_params()
    hub.check_native_shapes({key: param.shape for key, param in params.items()}, native)
    for key, value in native.items():
        params[key].set_data(nd.array(value, dtype=model.dtype))


def structure(model: Model) -> dict[str, tuple[int, int]]:
    """(trainable parameters, conv groups or 1) of every canonical layer the model has, in execution
    order, counted on its Gluon layers: the spec's layers and any that a variant adds."""
    blocks = _blocks_by_name(model)
    rule = table(model.spec)
    return {layer.path: _layer_structure(blocks[rule.native_module(layer.path)]) for layer in _as_built(model).layers()}


def _layer_structure(layer: mx.gluon.Block) -> tuple[int, int]:
    groups = layer._kwargs["num_group"] if isinstance(layer, mx.gluon.nn.Conv2D) else 1  # Gluon keeps it nowhere else
    return _trainable_parameters(layer), groups


def _blocks_by_name(model: Model) -> dict[str, mx.gluon.Block]:
    by_name = {}
    model.apply(lambda block: by_name.setdefault(block.name, block))
    return by_name


def _activation_blocks(model: Model) -> dict[str, mx.gluon.Block]:
    """The block whose output each activation point is, found by its native name."""
    by_name = _blocks_by_name(model)
    return {
        point: model if point == "output" else by_name[table(model.spec).native_module(point)]
        for point in model.spec.activation_points()
    }


def activations(model: Model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode outputs of ``spec.activation_points()``, recorded by hooks that are removed afterwards.

    d2l's Gluon convs fuse their ReLU (``activation="relu"``); the spec's point of such a
    conv is its output before the ReLU, i.e. the input of the conv's ``act`` block.
    """
    x = _input(model, x_nchw)
    outputs = {}

    def record_output(point):
        return lambda block, inputs, output: outputs.__setitem__(point, output.asnumpy())

    def record_input(point):
        return lambda block, inputs: outputs.__setitem__(point, inputs[0].asnumpy())

    handles = []
    for point, block in _activation_blocks(model).items():
        if isinstance(block, mx.gluon.nn.Conv2D) and block.act is not None:
            handles.append(block.act.register_forward_pre_hook(record_input(point)))
        else:
            handles.append(block.register_forward_hook(record_output(point)))
    try:
        with autograd.pause(train_mode=False):
            model(x)
    finally:
        for handle in handles:
            handle.detach()
    for point in POOLED_POINTS:
        if point in outputs:
            outputs[point] = outputs[point].reshape(x.shape[0], -1)
    return {point: outputs[point] for point in model.spec.activation_points()}
