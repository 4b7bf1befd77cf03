"""The PyTorch backend: the adapter between the models (``impl_torch.models``,
``impl_torch.inception``) and the parity harness.

PyTorch's layouts are the canonical ones, so every tensor maps by name alone, and
PyTorch flattens a feature map in the canonical (C, H, W) order.
``forward``, ``activations`` and ``layer_summary`` never change a model: they run it
with ``torch.func.functional_call`` on copies of its buffers (so train-mode
BatchNorm updates the copies' running statistics, never the model's), under
``torch.no_grad()``, and restore every module's train/eval flag afterwards.
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from impl_torch.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_torch.models import AnyNet, ResNeXtBlock
from parity import specs
from parity.backends import DTYPES, SummaryRow, check_input
from parity.hub import NameTable, check_native_shapes, from_native, to_native
from parity.weights import Weights

name = "torch"
layout = "NCHW"
extra = "torch"

# The reference backend builds every spec as it is written: it has no naive-port variants.
VARIANTS: dict[str, str] = {}

LEAVES = {
    "conv.weight": ("weight", "identity"),
    "conv.bias": ("bias", "identity"),
    "batchnorm.weight": ("weight", "identity"),
    "batchnorm.bias": ("bias", "identity"),
    "batchnorm.running_mean": ("running_mean", "identity"),
    "batchnorm.running_var": ("running_var", "identity"),
    "dense.weight": ("weight", "identity"),
    "dense.bias": ("bias", "identity"),
}

# d2l's AnyNet and ResNeXt block; the tutorials' InceptionNet and InceptionA, whose native
# names are the canonical ones, pass through it unchanged.
TABLE = NameTable(
    modules=(
        (r"^stem\b", "net.stem"),
        (r"^stages\.(\d+)\.blocks\.(\d+)", lambda m: f"net.stage{int(m[1]) + 1}.{m[2]}"),
        (r"^head\b", "net.head"),
    ),
    leaves=LEAVES,
)

# d2l's GoogLeNet and Inception block: the book's path names p1_1 .. p4_2, and the Linear
# layer is net.head itself, where AnyNet's is net.head.fc: hence a table of its own.
GOOGLENET_TABLE = NameTable(
    modules=(
        (r"(^|\.)b(\d)_(\d)$", r"\1p\2_\3"),
        (r"^(b\d)(?=\.|$)", r"net.\1"),
        (r"^head\.fc$", "net.head"),
    ),
    leaves=LEAVES,
)

_MODELS = {
    specs.AnyNet: AnyNet,
    specs.ResNeXtBlock: ResNeXtBlock.from_spec,
    specs.GoogLeNet: GoogLeNet,
    specs.Inception: Inception.from_spec,
    specs.InceptionNet: InceptionNet,
    specs.InceptionA: InceptionA.from_spec,
}
# Activation points computed by an unparameterised module, and the native name of that module.
_POINT_MODULES = ((r"(^|\.)branch_pool\.avg$", r"\1avg_pool"),)
# InceptionNet's top-level layers that belong to another group in the layer summary.
_INCEPTION_NET_GROUPS = {"pool1": "conv1", "pool2": "conv2", "flatten": "fc"}
_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_POOLED = "head.pool"


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> nn.Module:
    """The model for ``spec`` in ``dtype``, initialised from ``seed`` without touching the global RNG.

    ``variant`` must be None: the reference has no variants (``VARIANTS`` is empty).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if type(spec) not in _MODELS:
        raise TypeError(f"spec: expected one of {', '.join(t.__name__ for t in _MODELS)}, got {type(spec).__name__}")
    if variant is not None:
        raise ValueError(
            f"variant: the torch backend is the reference and has no variants (known variants: none), got {variant!r}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _MODELS[type(spec)](spec)
    model.variant = None
    return model.to(_TORCH_DTYPES[dtype]).eval()


def table(spec: specs.Spec) -> NameTable:
    """The name table of ``spec``'s family (GoogLeNet's and AnyNet's ``head.fc`` are different modules)."""
    return GOOGLENET_TABLE if isinstance(spec, (specs.GoogLeNet, specs.Inception)) else TABLE


def forward(model: nn.Module, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits (networks) or the NCHW feature map (blocks); ``train`` uses batch statistics."""
    x = check_input(model.spec, x_nchw, model_dtype(model))
    return _run(model, x, train).numpy()


def layer_summary(model: nn.Module, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's ``layer_summary``: a zero input through each top-level layer in turn, in eval mode."""
    x = torch.from_numpy(check_input(model.spec, np.zeros(input_shape, model_dtype(model)), model_dtype(model)))
    rows = []
    with _mode(model, train=False), torch.no_grad():
        for group, layer in _summary_layers(model):
            x = layer(x)
            params = sum(p.numel() for p in layer.parameters() if p.requires_grad)
            rows.append(SummaryRow(type(layer).__name__, tuple(x.shape), str(x.shape), params, group))
    return rows


def export_weights(model: nn.Module) -> Weights:
    """Canonical weights: fresh numpy copies of every parameter and running statistic."""
    return from_native(model.spec, {key: t.detach().numpy().copy() for key, t in _tensors(model).items()}, table(model.spec))


def load_weights(model: nn.Module, weights: Mapping[str, np.ndarray], allow_nonfinite: bool = False) -> None:
    """Validate everything first (WeightsError listing every problem), then copy every tensor in."""
    native = to_native(model.spec, weights, table(model.spec), dtype=model_dtype(model), allow_nonfinite=allow_nonfinite)
    tensors = _tensors(model)
    check_native_shapes({key: tuple(t.shape) for key, t in tensors.items()}, native)
    with torch.no_grad():
        for key, value in native.items():
            tensors[key].copy_(torch.tensor(value))


def activations(model: nn.Module, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode output of every ``spec.activation_points()`` module, recorded by forward hooks."""
    x = check_input(model.spec, x_nchw, model_dtype(model))
    points = model.spec.activation_points()
    outputs: dict[str, torch.Tensor] = {}

    def record(key: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            outputs[key] = output

        return hook

    handles = [model.get_submodule(_native_module(model.spec, key)).register_forward_hook(record(key)) for key in points]
    try:
        _run(model, x, train=False)
    finally:
        for handle in handles:
            handle.remove()
    if _POOLED in outputs:
        outputs[_POOLED] = outputs[_POOLED].flatten(1)
    return {key: outputs[key].numpy() for key in points}


def structure(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(trainable parameters, conv groups or 1) of every canonical layer of the spec, in execution
    order, counted on the model's own modules."""
    rule = table(model.spec)
    paths = [layer.path for layer in model.spec.layers()]
    return {path: _layer_structure(model.get_submodule(rule.native_module(path))) for path in paths}


def _layer_structure(module: nn.Module) -> tuple[int, int]:
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return params, module.groups if isinstance(module, nn.Conv2d) else 1


def model_dtype(model: nn.Module) -> str:
    """The model's dtype name, ``float32`` or ``float64``."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _run(model: nn.Module, x: np.ndarray, train: bool) -> torch.Tensor:
    """``model(x)`` on copies of its buffers, so that no running statistic or counter changes."""
    buffers = {key: b.clone() for key, b in model.named_buffers()}
    with _mode(model, train), torch.no_grad():
        return functional_call(model, buffers, (torch.tensor(x),))


@contextlib.contextmanager
def _mode(model: nn.Module, train: bool) -> Iterator[None]:
    """Put ``model`` in train or eval mode, then restore every module's own flag."""
    flags = [(module, module.training) for module in model.modules()]
    model.train(train)
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every canonical tensor by native name: parameters and running statistics, not ``num_batches_tracked``."""
    return {key: t for key, t in model.state_dict(keep_vars=True).items() if not key.endswith(".num_batches_tracked")}


def _native_module(spec: specs.Spec, point: str) -> str:
    """The native module path of an activation point (``output`` is the standalone block itself)."""
    if point == "output":
        return ""
    for pattern, replacement in _POINT_MODULES:
        point = re.sub(pattern, replacement, point)
    return table(spec).native_module(point)


def _summary_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(canonical group, layer) for each top-level layer, as d2l's ``layer_summary`` runs them."""
    if isinstance(model, AnyNet):
        return [(_anynet_group(child), layer) for child, layer in model.net.named_children()]
    if isinstance(model, GoogLeNet):
        return list(model.net.named_children())
    if isinstance(model, InceptionNet):
        return [(_INCEPTION_NET_GROUPS.get(child, child), layer) for child, layer in model.named_children()]
    return [("block", model)]


def _anynet_group(child: str) -> str:
    """The canonical group of a child of ``AnyNet.net``: ``stage2`` -> ``stages.1``."""
    stage = re.fullmatch(r"stage(\d+)", child)
    return f"stages.{int(stage[1]) - 1}" if stage else child
