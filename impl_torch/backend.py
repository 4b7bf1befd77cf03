"""The PyTorch backend: the adapter between the models (``impl_torch.anynet``,
``impl_torch.inception``, ``impl_torch.classic``, ``impl_torch.resnet``, ``impl_torch.densenet``)
and the parity harness.

PyTorch's layouts are the canonical ones, so every tensor maps by name alone, and
PyTorch flattens a feature map in the canonical (C, H, W) order.
``forward``, ``activations`` and ``layer_summary`` never change a model: they run it
with ``torch.func.functional_call`` on copies of its buffers (so train-mode
BatchNorm updates the copies' running statistics, never the model's), under
``torch.no_grad()``, and restore every module's train/eval flag afterwards.
Activations are recorded by forward hooks on the modules that the spec's activation
points name; a point that no module outputs (the concatenations inside d2l's DenseBlock) is
computed from its node's recorded inputs. The layer summary's groups are read from the same
mapping and the spec's graph.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from impl_torch.anynet import AnyNet, ResNeXtBlock
from impl_torch.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, TorchvisionAlexNet, TorchvisionVGG
from impl_torch.densenet import DenseNet
from impl_torch.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_torch.resnet import Residual, ResidualBlock, ResidualNet, ResNet, TorchvisionResNet
from parity import reference, specs, torchvision_io
from parity.backends import Registry, SummaryRow, check_dtype, check_input
from parity.devices import torch_device
from parity.hub import CANONICAL_LEAVES, NameTable, from_native, stream_to_native
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


def sequential_table(indices: Mapping[str, int]) -> NameTable:
    """The table of a net whose canonical layers and points are entries of d2l's one unnamed
    Sequential: canonical ``name`` is ``net.{indices[name]}``."""
    return NameTable(modules=((r"^\w+$", lambda m: f"net.{indices[m[0]]}"),), leaves=CANONICAL_LEAVES)


# d2l's LeNet, BNLeNet and AlexNet: the index of each layer and point in the book's Sequential
# (a sigmoid or ReLU follows every conv, BatchNorm and hidden dense layer; fc6 follows a Flatten).
LENET_TABLE = sequential_table({"conv1": 0, "pool1": 2, "conv2": 3, "pool2": 5, "fc1": 7, "fc2": 9, "fc3": 11})
BNLENET_TABLE = sequential_table(
    {"conv1": 0, "bn1": 1, "pool1": 3, "conv2": 4, "bn2": 5, "pool2": 7}
    | {"fc1": 9, "bn3": 10, "fc2": 12, "bn4": 13, "fc3": 15}
)
ALEXNET_TABLE = sequential_table(
    {"conv1": 0, "pool1": 2, "conv2": 3, "pool2": 5, "conv3": 6, "conv4": 8, "conv5": 10, "pool5": 12}
    | {"fc6": 14, "drop6": 16, "fc7": 17, "drop7": 19, "fc8": 20}
)


@functools.cache
def vgg_table(spec: specs.VGG) -> NameTable:
    """d2l's VGG: block i at ``net.{i}``, its conv k at index 2 * (k - 1) (each conv is followed by
    its ReLU; the block's output is its max-pool's); the Flatten follows the blocks, so the head's
    indices depend on ``len(spec.arch)`` (fc6 is ``net.6`` in the book's VGG-11)."""
    head = {"fc6": 1, "drop6": 3, "fc7": 4, "drop7": 6, "fc8": 7}  # after the Flatten
    return NameTable(
        modules=(
            (r"^blocks\.(\d+)", r"net.\1"),
            (r"\.conv(\d+)$", lambda m: f".{2 * (int(m[1]) - 1)}"),
            (r"^(fc|drop)\d$", lambda m: f"net.{len(spec.arch) + head[m[0]]}"),
        ),
        leaves=CANONICAL_LEAVES,
    )


# d2l's ResNet and Residual block: b1 is the Sequential's first entry, net.0 (conv, BN, ReLU,
# max-pool); stages net.b2 ... hold the blocks by index; last = (pool, flatten, Linear).
# A standalone Residual block keeps the canonical names (conv1, bn1, conv2, bn2, conv3).
RESNET_TABLE = NameTable(
    modules=(
        (r"^b1\.conv$", "net.0.0"),
        (r"^b1\.bn$", "net.0.1"),
        (r"^b1$", "net.0"),
        (r"^(b\d+\.\d+)", r"net.\1"),
        (r"^last\.pool$", "net.last.0"),
        (r"^last\.fc$", "net.last.2"),
    ),
    leaves=CANONICAL_LEAVES,
)

# The tutorials' residual MNIST net and ResidualBlock keep the canonical names.
RESIDUAL_NET_TABLE = NameTable(modules=(), leaves=CANONICAL_LEAVES)

# d2l's DenseNet: b1 as ResNet's; conv block j of dense_blk{i} is net.dense_blk{i}.net.{j} with its
# BN at .0 and conv at .2; a transition block's BN at .0, conv at .2, its output the pool's;
# last = (BN, ReLU, pool, flatten, Linear). The concatenation after conv block j (point
# ``dense_blk{i}.{j}``, native ``net.dense_blk{i}.{j}``) is no module's output: ``activations``
# computes it from the recorded points it concatenates.
DENSENET_TABLE = NameTable(
    modules=(
        (r"^b1\.conv$", "0.0"),
        (r"^b1\.bn$", "0.1"),
        (r"^b1$", "0"),
        (r"^(dense_blk\d+)\.(\d+)\.bn$", r"\1.net.\2.0"),
        (r"^(dense_blk\d+)\.(\d+)\.conv$", r"\1.net.\2.2"),
        (r"^(tran_blk\d+)\.bn$", r"\1.0"),
        (r"^(tran_blk\d+)\.conv$", r"\1.2"),
        (r"^last\.bn$", "last.0"),
        (r"^last\.pool$", "last.2"),
        (r"^last\.fc$", "last.4"),
        (r"^", "net."),
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
REGISTRY.register(specs.LeNet, LeNet, LENET_TABLE)
REGISTRY.register(specs.BNLeNet, BNLeNet, BNLENET_TABLE)
REGISTRY.register(specs.AlexNet, AlexNet, ALEXNET_TABLE)
REGISTRY.register(specs.VGG, VGG, vgg_table)
REGISTRY.register(specs.Residual, Residual.from_spec, RESNET_TABLE)
REGISTRY.register(specs.ResNet, ResNet, RESNET_TABLE)
REGISTRY.register(specs.ResidualBlock, ResidualBlock.from_spec, RESIDUAL_NET_TABLE)
REGISTRY.register(specs.ResidualNet, ResidualNet, RESIDUAL_NET_TABLE)
REGISTRY.register(specs.DenseNet, DenseNet, DENSENET_TABLE)
# torchvision's nets are written as torchvision writes them: torchvision's own names
REGISTRY.register(specs.TorchvisionResNet, TorchvisionResNet, torchvision_io.table_for)
REGISTRY.register(specs.TorchvisionAlexNet, TorchvisionAlexNet, torchvision_io.table_for)
REGISTRY.register(specs.TorchvisionVGG, TorchvisionVGG, torchvision_io.table_for)


REGISTRY.register_fully_convolutional()

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
    return model.to(device=torch_device(), dtype=_TORCH_DTYPES[dtype]).eval()


def build_empty(spec: specs.Spec, dtype: str = "float32") -> nn.Module:
    """The model for ``spec`` in ``dtype`` without values: its tensors on PyTorch's meta device until
    ``load_weights`` allocates and fills them, so a model that is loaded right away (``parity convert``)
    skips the random initialisation that the load would overwrite. It cannot run before that load."""
    check_dtype(dtype)
    builder = REGISTRY[spec].builder
    with torch.device("meta"):
        model = builder(spec)
    return model.to(_TORCH_DTYPES[dtype]).eval()


def table(spec: specs.Spec, variant: str | None = None) -> NameTable:
    """The name table of ``spec``'s kind; ``variant`` must be None (the reference has no variants).

    A kind whose Sequential indices depend on the spec (VGG's head follows its blocks) registers
    a function of the spec instead of a table.
    """
    check_variant(name, VARIANTS, spec, variant)
    return REGISTRY[spec].table_for(spec)


def forward(model: nn.Module, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits (networks) or the NCHW feature map (blocks); ``train`` uses batch statistics.

    ``train`` also makes the dropout layers (NiN's, AlexNet's, VGG's) drop, with torch's global
    RNG: no parity check runs those nets in train mode with dropout active, so their masks need
    not match another framework's.
    """
    X = check_input(model.spec, x_nchw, model_dtype(model))
    return _run(model, X, train).cpu().numpy()


def layer_summary(model: nn.Module, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's ``layer_summary``: a zero input through each top-level layer in turn, in eval mode."""
    X = _tensor(model, check_input(model.spec, np.zeros(input_shape, model_dtype(model)), model_dtype(model)))
    rows = []
    with _mode(model, train=False), torch.no_grad():
        for group, layer in _summary_layers(model):
            X = layer(X)
            params = sum(p.numel() for p in layer.parameters() if p.requires_grad)
            rows.append(SummaryRow(type(layer).__name__, tuple(X.shape), str(X.shape), params, group))
    return rows


def export_weights(model: nn.Module) -> Weights:
    """Canonical weights: fresh numpy copies of every parameter and running statistic (the layout
    transforms copy the tensors' numpy views)."""
    native = {key: t.detach().cpu().numpy() for key, t in _tensors(model).items()}
    return from_native(model.spec, native, table(model.spec))


def load_weights(model: nn.Module, weights: Mapping[str, np.ndarray], allow_nonfinite: bool = False) -> None:
    """Validate everything first (WeightsError listing every problem), then copy every tensor in, one at a
    time. A model from ``build_empty`` takes the fresh arrays of the layout transforms as its tensors
    instead (``assign=True``: one copy of the weights, not two), and its BatchNorm counters start at 0."""
    tensors = _tensors(model)
    native = stream_to_native(
        model.spec,
        weights,
        table(model.spec),
        {key: tuple(t.shape) for key, t in tensors.items()},
        dtype=model_dtype(model),
        allow_nonfinite=allow_nonfinite,
    )
    if next(model.parameters()).is_meta:
        counters = {key: torch.tensor(0) for key in model.state_dict() if key.endswith(".num_batches_tracked")}
        model.load_state_dict({**{key: torch.from_numpy(value) for key, value in native}, **counters}, assign=True)
        model.to(torch_device())
    else:
        with torch.no_grad():
            for key, value in native:
                tensors[key].copy_(torch.from_numpy(value))


def activations(model: nn.Module, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode output of every ``spec.activation_points()`` module, recorded by forward hooks;
    a global average pool's (N, C, 1, 1) output is flattened to the spec's (N, C).

    A point whose native path names no module (d2l's DenseBlock concatenates inside its forward)
    is computed from its node's inputs, which must be recorded points; only ops that move values
    without arithmetic (``MOVE_OPS``) may be computed so, and the result is bit for bit what the
    model computes from the same inputs.
    """
    X = check_input(model.spec, x_nchw, model_dtype(model))
    spec = model.spec
    points = spec.activation_points()
    modules = {key: _point_module(model, key) for key in points}
    outputs: dict[str, torch.Tensor] = {}

    def record(key: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            outputs[key] = output.clone()  # a later in-place ReLU must not change what was recorded

        return hook

    handles = [module.register_forward_hook(record(key)) for key, module in modules.items() if module is not None]
    try:
        _run(model, X, train=False)
    finally:
        for handle in handles:
            handle.remove()
    values: dict[str, np.ndarray] = {}
    for node in spec.graph():
        if node.name in outputs:
            output = outputs[node.name]
            values[node.name] = (output.flatten(1) if node.op == "global_avg_pool" else output).cpu().numpy()
        elif node.point:
            values[node.name] = _computed_point(spec, node, values)
    return {key: values[key] for key in points}


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
    """``model(x)`` without changing any running statistic or counter: in eval mode, which writes no
    buffer, the model itself under ``inference_mode`` on ``x``'s own memory (no module writes its
    input); in train mode on copies of its buffers."""
    if not train:
        with _mode(model, False), torch.inference_mode():
            return model(_tensor(model, x))
    buffers = {key: b.clone() for key, b in model.named_buffers()}
    with _mode(model, True), torch.no_grad():
        return functional_call(model, buffers, (_tensor(model, x).clone(),))


def _tensor(model: nn.Module, x: np.ndarray) -> torch.Tensor:
    """``x`` on the model's device (``parity.devices``): its own memory on the CPU, a copy elsewhere."""
    return torch.from_numpy(x).to(next(model.parameters()).device)


@contextlib.contextmanager
def _mode(model: nn.Module, train: bool) -> Iterator[None]:
    """Put ``model`` in train or eval mode, then restore every module's own flag. Only the modules in the
    other mode are switched: ``model.train()`` on every module costs 0.3 ms of RegNetX-400MF's 11 ms forward."""
    switched = [module for module in model.modules() if module.training != train]
    for module in switched:
        module.training = train
    try:
        yield
    finally:
        for module in switched:
            module.training = not train


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every canonical tensor by native name: parameters and running statistics, not ``num_batches_tracked``."""
    return {key: t for key, t in model.state_dict(keep_vars=True).items() if not key.endswith(".num_batches_tracked")}


def _native_module(spec: specs.Spec, point: str) -> str:
    """The native module path of an activation point (``output`` is the standalone block itself)."""
    return "" if point == OUTPUT else table(spec).native_module(point)


def _point_module(model: nn.Module, point: str) -> nn.Module | None:
    """The module whose output is activation point ``point``, or None where no module has its path."""
    try:
        return model.get_submodule(_native_module(model.spec, point))
    except AttributeError:
        return None


# Ops that only move values: computed from recorded inputs, they are the model's own bits.
MOVE_OPS = frozenset({"concat", "flatten"})


def _computed_point(spec: specs.Spec, node: specs.Node, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The value of a point that no module outputs, from its node's recorded inputs."""
    missing = [source for source in node.inputs if source not in values]
    if node.op not in MOVE_OPS or missing:
        raise ValueError(
            f"{spec.name}: activation point {node.name!r} (op {node.op}) names no module of the model "
            f"({_native_module(spec, node.name)!r}) and cannot be computed from recorded points"
            + (f" (missing {', '.join(missing)})" if missing else "")
        )
    return reference.apply(node, [values[source] for source in node.inputs], {})


def _summary_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(canonical group, layer) for each top-level layer, as d2l's ``layer_summary`` runs them.

    The top-level layers are the children of ``model.net`` (of the model, if it is itself a
    Sequential); a standalone block is one layer, in group ``block``. A layer that computes
    activation points is in the ``spec.summary_groups()`` group of the first of them. The layers
    that compute none (a Sigmoid, a ReLU, a Flatten) compute, in order, the graph nodes between
    their neighbours' points, and take those nodes' groups; one left without a node (NiN's last
    Flatten) joins the layer before it.
    """
    net = getattr(model, "net", model)
    if not isinstance(net, nn.Sequential):
        return [("block", model)]
    prefix = "net." if net is not model else ""
    spec = model.spec
    nodes = spec.graph()
    owners = [(i, _native_module(spec, node.name)) for i, node in enumerate(nodes) if node.point]
    spans = []  # (first, last) index in ``nodes`` of the points each layer computes, or None
    for child, _ in net.named_children():
        found = [i for i, native in owners if f"{native}.".startswith(f"{prefix}{child}.")]
        spans.append((found[0], found[-1]) if found else None)
    groups: list[str] = []
    rank = 0  # point-less layers since the last layer with points
    for k, span in enumerate(spans):
        if span is not None:
            groups.append(nodes[span[0]].group)
            rank = 0
            continue
        before = next((s[1] for s in reversed(spans[:k]) if s is not None), -1)
        after = next((s[0] for s in spans[k + 1 :] if s is not None), len(nodes))
        gap = nodes[before + 1 : after]
        groups.append(gap[rank].group if rank < len(gap) else groups[-1] if groups else spec.summary_groups()[0])
        rank += 1
    return list(zip(groups, net.children(), strict=True))
