"""The PyTorch backend: the adapter between the models (``impl_torch.anynet``,
``impl_torch.inception``, ``impl_torch.classic``) and the parity harness.

PyTorch's layouts are the canonical ones, so every tensor maps by name alone, and
PyTorch flattens a feature map in the canonical (C, H, W) order.
``forward``, ``activations`` and ``layer_summary`` never change a model: they run it
with ``torch.func.functional_call`` on copies of its buffers (so train-mode
BatchNorm updates the copies' running statistics, never the model's), under
``torch.no_grad()``, and restore every module's train/eval flag afterwards.
Activations are recorded by forward hooks on the modules that the spec's activation
points name; the layer summary's groups are read from the same mapping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from impl_torch.anynet import AnyNet, ResNeXtBlock
from impl_torch.classic import NiN
from impl_torch.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from parity import specs
from parity.backends import Registry, SummaryRow, check_dtype, check_input
from parity.hub import CANONICAL_LEAVES, NameTable, check_native_shapes, from_native, to_native
from parity.specs import OUTPUT
from parity.variants import check_variant
from parity.weights import Weights

name = "torch"
layout = "NCHW"
extra = "torch"

# The reference builds every spec as it is written: it has no naive-port variants.
VARIANTS: dict[str, str] = {}

# Each table maps canonical module paths (of weights and of activation points) to native ones.
# d2l's AnyNet and ResNeXt block: the book's net.stem, net.stage{i+1}.{j}, net.head.
ANYNET_TABLE = NameTable(
    modules=(
        (r"^stem\b", "net.stem"),
        (r"^stages\.(\d+)\.blocks\.(\d+)", lambda m: f"net.stage{int(m[1]) + 1}.{m[2]}"),
        (r"^head\b", "net.head"),
    ),
    leaves=CANONICAL_LEAVES,
)

# d2l's GoogLeNet and Inception block: the book's path names p1_1 .. p4_2, and the Linear
# layer is net.head itself, where AnyNet's is net.head.fc.
GOOGLENET_TABLE = NameTable(
    modules=(
        (r"(^|\.)b(\d)_(\d)$", r"\1p\2_\3"),
        (r"^(b\d)(?=\.|$)", r"net.\1"),
        (r"^head\.fc$", "net.head"),
    ),
    leaves=CANONICAL_LEAVES,
)

# The tutorials' InceptionNet and InceptionA keep the canonical names; the average pool that
# feeds branch_pool is the module avg_pool.
INCEPTION_NET_TABLE = NameTable(modules=((r"(^|\.)branch_pool\.avg$", r"\1avg_pool"),), leaves=CANONICAL_LEAVES)

# d2l's NiN is one Sequential: block i at net.{0, 2, 4, 7}, its conv k at index 2 * (k - 1)
# (each conv is followed by its ReLU), max-pool i at net.{1, 3, 5}, dropout at net.6 and
# the global average pool at net.8.
NIN_TABLE = NameTable(
    modules=(
        (r"^blocks\.(\d+)", lambda m: f"net.{(0, 2, 4, 7)[int(m[1])]}"),
        (r"\.conv(\d)$", lambda m: f".{2 * (int(m[1]) - 1)}"),
        (r"^pools\.(\d+)$", lambda m: f"net.{2 * int(m[1]) + 1}"),
        (r"^dropout$", "net.6"),
        (r"^head\.pool$", "net.8"),
    ),
    leaves=CANONICAL_LEAVES,
)

REGISTRY = Registry(name)
REGISTRY.register(specs.ResNeXtBlock, ResNeXtBlock.from_spec, ANYNET_TABLE)
REGISTRY.register(specs.AnyNet, AnyNet, ANYNET_TABLE)
REGISTRY.register(specs.Inception, Inception.from_spec, GOOGLENET_TABLE)
REGISTRY.register(specs.GoogLeNet, GoogLeNet, GOOGLENET_TABLE)
REGISTRY.register(specs.InceptionA, InceptionA.from_spec, INCEPTION_NET_TABLE)
REGISTRY.register(specs.InceptionNet, InceptionNet, INCEPTION_NET_TABLE)
REGISTRY.register(specs.NiN, NiN, NIN_TABLE)

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> nn.Module:
    """The model for ``spec`` in ``dtype``, initialised from ``seed`` without touching the global RNG.

    ``variant`` must be None: the reference has no variants (``VARIANTS`` is empty), so the
    shared check refuses every other value and the models take no ``pitfalls``.
    """
    check_dtype(dtype)
    builder = REGISTRY[spec].builder
    check_variant(name, VARIANTS, spec, variant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(spec)
    return model.to(_TORCH_DTYPES[dtype]).eval()


def table(spec: specs.Spec, variant: str | None = None) -> NameTable:
    """The name table of ``spec``'s kind; ``variant`` must be None (the reference has no variants)."""
    check_variant(name, VARIANTS, spec, variant)
    return REGISTRY[spec].table


def forward(model: nn.Module, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits (networks) or the NCHW feature map (blocks); ``train`` uses batch statistics.

    ``train`` also makes NiN's dropout drop, with torch's global RNG: no parity check runs
    NiN in train mode with dropout active, so its masks need not match another framework's.
    """
    X = check_input(model.spec, x_nchw, model_dtype(model))
    return _run(model, X, train).numpy()


def layer_summary(model: nn.Module, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's ``layer_summary``: a zero input through each top-level layer in turn, in eval mode."""
    X = torch.from_numpy(check_input(model.spec, np.zeros(input_shape, model_dtype(model)), model_dtype(model)))
    rows = []
    with _mode(model, train=False), torch.no_grad():
        for group, layer in _summary_layers(model):
            X = layer(X)
            params = sum(p.numel() for p in layer.parameters() if p.requires_grad)
            rows.append(SummaryRow(type(layer).__name__, tuple(X.shape), str(X.shape), params, group))
    return rows


def export_weights(model: nn.Module) -> Weights:
    """Canonical weights: fresh numpy copies of every parameter and running statistic."""
    return from_native(
        model.spec, {key: t.detach().numpy().copy() for key, t in _tensors(model).items()}, table(model.spec)
    )


def load_weights(model: nn.Module, weights: Mapping[str, np.ndarray], allow_nonfinite: bool = False) -> None:
    """Validate everything first (WeightsError listing every problem), then copy every tensor in."""
    native = to_native(
        model.spec, weights, table(model.spec), dtype=model_dtype(model), allow_nonfinite=allow_nonfinite
    )
    tensors = _tensors(model)
    check_native_shapes({key: tuple(t.shape) for key, t in tensors.items()}, native)
    with torch.no_grad():
        for key, value in native.items():
            tensors[key].copy_(torch.tensor(value))


def activations(model: nn.Module, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode output of every ``spec.activation_points()`` module, recorded by forward hooks;
    a global average pool's (N, C, 1, 1) output is flattened to the spec's (N, C)."""
    X = check_input(model.spec, x_nchw, model_dtype(model))
    points = model.spec.activation_points()
    outputs: dict[str, torch.Tensor] = {}

    def record(key: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            outputs[key] = output

        return hook

    handles = [
        model.get_submodule(_native_module(model.spec, key)).register_forward_hook(record(key)) for key in points
    ]
    try:
        _run(model, X, train=False)
    finally:
        for handle in handles:
            handle.remove()
    for node in model.spec.graph():
        if node.op == "global_avg_pool" and node.point:
            outputs[node.name] = outputs[node.name].flatten(1)
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
    return "" if point == OUTPUT else table(spec).native_module(point)


def _summary_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(canonical group, layer) for each top-level layer, as d2l's ``layer_summary`` runs them.

    The top-level layers are the children of ``model.net`` (of the model, if it is itself a
    Sequential); a standalone block is one layer, in group ``block``. A layer's group is the
    ``spec.summary_groups()`` group of the first activation point it computes; a layer that
    computes none (a Flatten) joins the next layer's group, or the last group at the end.
    """
    net = getattr(model, "net", model)
    if not isinstance(net, nn.Sequential):
        return [("block", model)]
    prefix = "net." if net is not model else ""
    spec = model.spec
    owners = [(_native_module(spec, node.name), node.group) for node in spec.graph() if node.point]
    groups = []
    for child, _ in net.named_children():
        path = prefix + child
        groups.append(next((group for native, group in owners if f"{native}.".startswith(f"{path}.")), None))
    for i in reversed(range(len(groups))):
        if groups[i] is None:
            groups[i] = groups[i + 1] if i + 1 < len(groups) else spec.summary_groups()[-1]
    return list(zip(groups, net.children(), strict=True))
