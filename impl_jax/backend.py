"""The JAX/Flax backend: the adapter between the models (``impl_jax.anynet``,
``impl_jax.inception``, ``impl_jax.classic``, ``impl_jax.resnet``, ``impl_jax.densenet``) and the
parity harness.

A linen module holds no state, so the native model is a ``FlaxModel``: the spec,
the dtype, the pitfalls it is built with and the variables (``params``, and
``batch_stats`` where there is BatchNorm). Its native tensor names are
``module path/collection/leaf``, e.g. ``net/stem/bn/batch_stats/mean`` or
``net/b3/inception0/p2_2/params/kernel``.

Nothing here changes a model except ``load_weights``: eval-mode applies are
immutable (``mutable=False``), and a train-mode apply makes ``batch_stats`` mutable
only so that BatchNorm may use batch statistics, and discards the updated
statistics it returns. Jitted functions are cached per (spec, dtype, mode, network
pitfalls), so new weights at the same input shape never retrace. Activations are
Flax's captured intermediates of the modules that the spec's activation points name;
the layer summary's groups are read from the same mapping.

``VARIANTS`` are naive ports, each a real model with one classic porting pitfall; they compose
(``same_padding+untransposed_kernel``), and ``d2l_jax_tab`` is the book's JAX code of the spec
(``spec.book_tabs()``). The ``NETWORK_PITFALLS`` build other linen modules (Flax's ``'SAME'``
in every padded layer or in AnyNet's blocks only, and the book's DenseNet channels, BNLeNet
padding and NiN pool), each with its own compiled functions; ``unpermuted_flatten`` and
``untransposed_kernel`` are the faithful network loaded (and exported) through a naive weight
mapping, so they share the faithful model's compiled functions.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.traverse_util import flatten_dict, unflatten_dict

from impl_jax.anynet import AnyNet, ResNeXtBlock
from impl_jax.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, TorchvisionAlexNet, TorchvisionVGG
from impl_jax.densenet import DenseNet
from impl_jax.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_jax.resnet import Residual, ResidualBlock, ResidualNet, ResNet, TorchvisionResNet
from parity import specs
from parity.backends import Registry, SummaryRow, cache_dir, check_dtype, check_input
from parity.hub import NameTable, check_native_shapes, from_native, leaves, to_native
from parity.layout import nchw_to_nhwc, nhwc_shape_to_nchw, nhwc_to_nchw
from parity.specs import OUTPUT, spatial_size_problem
from parity.variants import check_variant, fits_untransposed, untransposed
from parity.weights import Weights, schema

name = "jax"
layout = "NHWC"
extra = "jax"

# XLA's compiled executables persist in the project's cache folder, shared by every process (each
# pytest-xdist worker, each CLI command): a function compiled once is read back, not recompiled,
# bit for bit the same code. A cache folder that the user gave JAX is kept.
if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", str(cache_dir("jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

LEAVES = leaves(
    conv_weight=("params/kernel", "OIHW->HWIO"),
    conv_bias=("params/bias", "identity"),
    batchnorm_weight=("params/scale", "identity"),
    batchnorm_bias=("params/bias", "identity"),
    batchnorm_running_mean=("batch_stats/mean", "identity"),
    batchnorm_running_var=("batch_stats/var", "identity"),
    dense_weight=("params/kernel", "(out,in)->(in,out)"),
    dense_bias=("params/bias", "identity"),
)


def flax_table(*modules: tuple[str, Any]) -> NameTable:
    """A table whose ``modules`` rules run on the canonical path before its dots become Flax's ``/``."""
    return NameTable(modules=(*modules, (r"\.", "/")), leaves=LEAVES, separator="/", flatten_order="HWC")


# Each table maps canonical module paths (of weights and of activation points) to Flax module paths.
# d2l's AnyNet and ResNeXt block: net/stem, the book's stage{i+1}, its blocks block{j}, net/head.
ANYNET_TABLE = flax_table(
    (r"^stages\.(\d+)\.blocks\.(\d+)", lambda m: f"stage{int(m[1]) + 1}.block{m[2]}"),
    (r"^(stem|stage\d+|head)\b", r"net.\1"),
)
# d2l's GoogLeNet and Inception block: the book's paths p1_1 .. p4_2, stage blocks inception{k},
# and the Dense layer is net/head itself, where AnyNet's is net/head/fc.
GOOGLENET_TABLE = flax_table(
    (r"(^|\.)b(\d)_(\d)$", r"\1p\2_\3"),
    (r"^(b\d)\.(\d+)", r"\1.inception\2"),
    (r"^(b\d)(?=\.|$)", r"net.\1"),
    (r"^head\.fc$", "net.head"),
)
# The tutorials' InceptionNet and InceptionA keep the canonical names; the average pool that
# feeds branch_pool is the module branch_pool_avg.
INCEPTION_NET_TABLE = flax_table((r"(^|\.)branch_pool\.avg$", r"\1branch_pool_avg"))
# d2l's NiN: net/block{i}/conv{k}, max-pool i net/pool{i}, net/dropout, and the global average pool net/avg_pool.
NIN_TABLE = flax_table(
    (r"^blocks\.(\d+)", r"block\1"),
    (r"^pools\.(\d+)$", r"pool\1"),
    (r"^head\.pool$", "avg_pool"),
    (r"^", "net."),
)
# d2l's LeNet, BNLeNet, AlexNet and VGG: one net Sequential holding the spec's layers by name (net/conv1,
# net/pool1, net/fc6, net/drop6); VGG's block i is net/block{i}, its convs conv{k} and its max-pool pool.
CLASSIC_TABLE = flax_table((r"^blocks\.(\d+)", r"block\1"), (r"^", "net."))
# d2l's ResNet and Residual block: net/b1/conv, stage b{s}'s blocks net/b{s}/block{j}/conv1, net/last/fc.
RESNET_TABLE = flax_table((r"^(b\d+)\.(\d+)", r"\1.block\2"), (r"^(b\d+|last)\b", r"net.\1"))
# d2l's DenseNet: net/b1, conv block j of dense block i net/dense_blk{i}/block{j}/{bn,conv} (the block's
# output is the concatenation), net/tran_blk{i}/{bn,conv,pool}, net/last/{bn,pool,fc}.
DENSENET_TABLE = flax_table((r"^(dense_blk\d+)\.(\d+)", r"\1.block\2"), (r"^", "net."))
# The tutorials' ResidualNet and ResidualBlock keep the canonical names (conv1, pool1, rblock1/conv2, fc).
RESIDUAL_NET_TABLE = flax_table()

REGISTRY = Registry(name)
REGISTRY.register(specs.ResNeXtBlock, ResNeXtBlock.from_spec, ANYNET_TABLE)
REGISTRY.register(specs.AnyNet, AnyNet, ANYNET_TABLE)
REGISTRY.register(specs.Inception, Inception.from_spec, GOOGLENET_TABLE)
REGISTRY.register(specs.GoogLeNet, GoogLeNet, GOOGLENET_TABLE)
REGISTRY.register(specs.InceptionA, InceptionA.from_spec, INCEPTION_NET_TABLE)
REGISTRY.register(specs.InceptionNet, InceptionNet.from_spec, INCEPTION_NET_TABLE)
REGISTRY.register(specs.NiN, NiN, NIN_TABLE)
REGISTRY.register(specs.LeNet, LeNet, CLASSIC_TABLE)
REGISTRY.register(specs.BNLeNet, BNLeNet, CLASSIC_TABLE)
REGISTRY.register(specs.AlexNet, AlexNet, CLASSIC_TABLE)
REGISTRY.register(specs.VGG, VGG, CLASSIC_TABLE)
REGISTRY.register(specs.Residual, Residual.from_spec, RESNET_TABLE)
REGISTRY.register(specs.ResNet, ResNet, RESNET_TABLE)
REGISTRY.register(specs.ResidualBlock, ResidualBlock.from_spec, RESIDUAL_NET_TABLE)
REGISTRY.register(specs.ResidualNet, ResidualNet.from_spec, RESIDUAL_NET_TABLE)
REGISTRY.register(specs.DenseNet, DenseNet, DENSENET_TABLE)
# torchvision's ResNet: conv1, stage layer{s}'s blocks layer{s}/block{j}/conv1, downsample_conv and _bn, fc.
TORCHVISION_RESNET_TABLE = flax_table(
    (r"^(layer\d)\.(\d+)", r"\1.block\2"),
    (r"\.downsample\.0$", ".downsample_conv"),
    (r"\.downsample\.1$", ".downsample_bn"),
)
REGISTRY.register(specs.TorchvisionResNet, TorchvisionResNet, TORCHVISION_RESNET_TABLE)
# torchvision's AlexNet and VGG: as d2l's, one net Sequential (net/conv1, net/block{i}/bn{k}, net/avgpool, net/fc6).
REGISTRY.register(specs.TorchvisionAlexNet, TorchvisionAlexNet, CLASSIC_TABLE)
REGISTRY.register(specs.TorchvisionVGG, TorchvisionVGG, CLASSIC_TABLE)


REGISTRY.register_fully_convolutional(model_holds_spec=False)

VARIANTS = {
    "same_padding": "Flax's padding='SAME' in every padded conv and pool instead of explicit symmetric padding; "
    "at stride 2 on an even size it pads bottom/right only",
    "same_padding_in_blocks": "Flax's padding='SAME' in AnyNet's ResNeXt blocks' grouped 3x3 convs only, the stem "
    "padded symmetrically (d2l's JAX tab)",
    "unpermuted_flatten": "the dense weight after the flatten copied in NCHW (C, H, W) input order, not permuted "
    "to Flax's (H, W, C) flatten",
    "untransposed_kernel": "OIHW kernels turned into (kh, kw, O, I/groups) by transpose(2, 3, 0, 1) wherever that "
    "shape equals HWIO's (O == I/groups): input and output channels swapped",
    "d2l_densenet_channels": "DenseNet's dense blocks' channels counted from num_channels each time, as d2l's JAX "
    "create_net does: every transition outputs (64 + 4 * 32) // 2 = 96 channels (the spec: 96, 112, 120)",
    "d2l_bnlenet_padding": "BNLeNet's convs at Flax's default padding='SAME', as d2l's JAX tab has them: "
    "16 x 7 x 7 = 784 features into fc1, not 256",
    "d2l_nin_pool": "NiN's global average pool as d2l's JAX tab has it, a fixed 5x5 window at stride 1 then a "
    "flatten: the global pool at 224x224 only, (H - 4) * (W - 4) * num_classes outputs on a larger last map",
}
# The pitfalls that change the network, and so its compiled functions; the others change only the weight mapping.
NETWORK_PITFALLS = frozenset(
    {"same_padding", "same_padding_in_blocks", "d2l_densenet_channels", "d2l_bnlenet_padding", "d2l_nin_pool"}
)

_INIT_SIZE = 8
# Train mode's dropout stream: a fixed key keeps ``forward`` a function of the weights and the input.
_DROPOUT_KEY = jax.random.PRNGKey(0)


def table(spec: specs.Spec, variant: str | None = None) -> NameTable:
    """The name table of ``spec``'s kind (under ``unpermuted_flatten``: its naive, unpermuted one)."""
    pitfalls = check_variant(name, VARIANTS, spec, variant)
    rule = REGISTRY[spec].table_for(spec)
    return dataclasses.replace(rule, flatten_order="CHW") if "unpermuted_flatten" in pitfalls else rule


@dataclass
class FlaxModel:
    """A built model: what ``spec`` computes in ``dtype`` with ``variables`` (``params``, ``batch_stats``),
    faithfully or with the naive port ``variant``'s ``pitfalls``."""

    spec: specs.Spec
    dtype: str
    variables: dict[str, Any]
    variant: str | None = None
    pitfalls: frozenset[str] = frozenset()

    @property
    def network_pitfalls(self) -> frozenset[str]:
        """The pitfalls that its linen module is built with (the others live in its weight mapping)."""
        return self.pitfalls & NETWORK_PITFALLS


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> FlaxModel:
    """The model for ``spec`` in ``dtype``, its variables drawn from ``numpy.random.default_rng(seed)`` as
    Flax's default initialisers draw them; ``variant``: a naive port from ``VARIANTS``.

    Nothing is compiled: the variables' structure comes from ``jax.eval_shape`` of the module's
    ``init``. A variant's module has the faithful one's variables (padding has no parameters), but
    for ``d2l_densenet_channels`` and ``d2l_bnlenet_padding``, whose layers have other shapes: the
    models the book's code builds.
    """
    check_dtype(dtype)
    REGISTRY[spec]  # a spec of a kind this backend cannot build is refused before any other check
    pitfalls = check_variant(name, VARIANTS, spec, variant)
    rng = np.random.default_rng(seed)
    shapes = _shapes(spec, dtype, pitfalls & NETWORK_PITFALLS)
    variables = jax.tree_util.tree_map_with_path(lambda path, leaf: _initial(path, leaf, rng), shapes)
    return FlaxModel(spec, dtype, variables, variant, pitfalls)


def build_empty(spec: specs.Spec, dtype: str = "float32") -> FlaxModel:
    """The faithful model for ``spec`` in ``dtype`` to be filled by ``load_weights`` right away (``parity
    convert``): its variables are only their shapes and dtypes (``jax.ShapeDtypeStruct``), nothing drawn
    or allocated, so it runs only once loaded."""
    check_dtype(dtype)
    REGISTRY[spec]
    return FlaxModel(spec, dtype, _shapes(spec, dtype, frozenset()))


def forward(model: FlaxModel, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits (nets) or the NCHW feature map (blocks); ``train`` makes BatchNorm use batch statistics
    and dropout drop."""
    X = check_input(model.spec, x_nchw, model.dtype)
    train = train and _trains_differently(model.spec)
    return _to_nchw(_forward(model.spec, model.dtype, train, model.network_pitfalls)(model.variables, nchw_to_nhwc(X)))


def layer_summary(model: FlaxModel, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's ``layer_summary``: an NHWC input through each top-level layer in turn, in eval mode.

    Each layer runs under ``jax.eval_shape``: its output shape without compiling and
    running every operation one by one.
    """
    zeros = np.zeros(nhwc_shape_to_nchw(tuple(input_shape)), model.dtype)
    X = jax.ShapeDtypeStruct(nchw_to_nhwc(check_input(model.spec, zeros, model.dtype)).shape, model.dtype)
    rows = []
    for group, layer in _summary_layers(model.spec, _bound(model)):
        X = jax.eval_shape(layer, X)
        rows.append(SummaryRow(_layer_name(layer), tuple(X.shape), str(X.shape), _params(layer), group))
    return rows


def _summary_layers(spec: specs.Spec, bound: nn.Module) -> list[tuple[str, Callable[..., Any]]]:
    """(canonical group, layer) for each top-level layer, as d2l's ``layer_summary`` runs them.

    The top-level layers are those of the model's ``net`` (the tutorials' net: its ``layers()``);
    a standalone block, whose spec has one group, is one layer. A layer's group is the
    ``spec.summary_groups()`` group of the first activation point it computes. The layers that
    compute none (a sigmoid, a Flatten) between two that do take, in order, the groups of the graph's
    nodes between those two layers' points where there are as many (LeNet's ``conv1 -> sigmoid ->
    pool1``, ``pool2 -> Flatten -> fc1``); otherwise they join the next layer's group, or the last
    group at the end.
    """
    if len(spec.summary_groups()) == 1:
        return [(spec.summary_groups()[0], bound)]
    net = getattr(bound, "net", None)
    prefix, layers = ("net/", net.layers) if net is not None else ("", bound.layers())
    graph = spec.graph()
    owners = [(_native_module(spec, node.name), i) for i, node in enumerate(graph) if node.point]
    computed = []  # the graph indices of the points each layer computes
    for layer in layers:
        path = prefix + getattr(layer, "name", "")
        computed.append([i for native, i in owners if native == path or native.startswith(path + "/")])
    found: list[str | None] = [graph[points[0]].group if points else None for points in computed]
    start = 0
    while start < len(layers):
        if computed[start]:
            start += 1
            continue
        end = next((j for j in range(start, len(layers)) if computed[j]), len(layers))
        after = computed[start - 1][-1] + 1 if start else 0
        before = computed[end][0] if end < len(layers) else len(graph)
        between = graph[after:before]
        if len(between) == end - start:
            found[start:end] = [node.group for node in between]
        start = end
    for i in reversed(range(len(found))):
        if found[i] is None:
            found[i] = found[i + 1] if i + 1 < len(found) else spec.summary_groups()[-1]
    return list(zip(found, layers, strict=True))


def export_weights(model: FlaxModel) -> Weights:
    """Canonical weights: fresh numpy copies (the layout transforms copy) of every parameter and running statistic.

    A variant exports through its own naive mapping, so that its export and load are inverses.
    """
    native = {key: np.asarray(value) for key, value in _tensors(model.variables).items()}
    rule = table(model.spec, model.variant)
    weights = from_native(model.spec, native, rule)
    if "untransposed_kernel" in model.pitfalls:
        params = schema(model.spec).values()
        weights.update({p.name: untransposed(native[rule.native_name(p)]) for p in params if fits_untransposed(p)})
    return weights


def load_weights(model: FlaxModel, weights: Mapping[str, np.ndarray], allow_nonfinite: bool = False) -> None:
    """Validate everything first (WeightsError listing every problem), then replace all variables at once."""
    rule = table(model.spec, model.variant)
    native = to_native(model.spec, weights, rule, dtype=model.dtype, allow_nonfinite=allow_nonfinite)
    if "untransposed_kernel" in model.pitfalls:
        params = schema(model.spec).values()
        native.update({rule.native_name(p): untransposed(weights[p.name]) for p in params if fits_untransposed(p)})
    check_native_shapes({key: value.shape for key, value in _tensors(model.variables).items()}, native)
    model.variables = _variables({key: jnp.asarray(value) for key, value in native.items()})


def activations(model: FlaxModel, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode outputs of every ``spec.activation_points()`` module, from Flax's captured intermediates;
    a global average pool's (N, 1, 1, C) output is flattened to the spec's (N, C)."""
    X = check_input(model.spec, x_nchw, model.dtype)
    outputs = _activations(model.spec, model.dtype, model.network_pitfalls)(model.variables, nchw_to_nhwc(X))
    return {key: _to_nchw(outputs[key]) for key in model.spec.activation_points()}


def structure(model: FlaxModel) -> dict[str, tuple[int, int]]:
    """(trainable parameters, conv groups; 1 for BatchNorm and dense) of every parameterised layer of the spec,
    read from the bound linen module at the layer's native path and from its variables."""
    bound = _bound(model)
    rule = table(model.spec, model.variant)
    result = {}
    for layer in model.spec.layers():
        module = _submodule(bound, rule.native_module(layer.path))
        result[layer.path] = (_params(module), getattr(module, "feature_group_count", 1))
    return result


def _layer_name(layer: Callable[..., Any]) -> str:
    """A summary row's layer: a module's class name, or a plain activation function's own name (``sigmoid``),
    where its class would say only how JAX wraps it (``PjitFunction``, ``custom_jvp``)."""
    return type(layer).__name__ if isinstance(layer, nn.Module) else layer.__name__


def _params(layer: Callable[..., Any]) -> int:
    """The trainable parameters of a bound module (none for a plain function)."""
    if not isinstance(layer, nn.Module):
        return 0
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(layer.variables.get("params", {}))))


def _bound(model: FlaxModel) -> nn.Module:
    """The model's eval-mode linen module bound to its variables."""
    return _module(model.spec, model.dtype, False, model.network_pitfalls).bind(model.variables)


def _submodule(module: nn.Module, native_path: str) -> nn.Module:
    """The bound submodule at ``native_path`` (``net/stage1/block1/conv2``): a Sequential's layers by name,
    other modules' submodules by attribute, or by name in a list that ``setup`` assigned (DenseNet's blocks)."""
    for part in native_path.split("/"):
        if isinstance(module, nn.Sequential):
            module = {getattr(layer, "name", None): layer for layer in module.layers}[part]
        elif hasattr(module, part):
            module = getattr(module, part)
        else:
            lists = [value for value in vars(module).values() if isinstance(value, (list, tuple))]
            module = next(child for value in lists for child in value if getattr(child, "name", None) == part)
    return module


def _tensors(variables: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Every variable by native name, ``module path/collection/leaf``."""
    flat = flatten_dict(variables)
    return {"/".join((*path, collection, leaf)): value for (collection, *path, leaf), value in flat.items()}


def _variables(tensors: Mapping[str, jax.Array]) -> dict[str, Any]:
    """The inverse of ``_tensors``: Flax's ``{collection: {module: ... {leaf: array}}}``."""
    flat = {}
    for key, value in tensors.items():
        *path, collection, leaf = key.split("/")
        flat[(collection, *path, leaf)] = value
    return unflatten_dict(flat)


def _to_nchw(y: jax.Array) -> np.ndarray:
    y = np.array(y)
    return nhwc_to_nchw(y) if y.ndim == 4 else y


def _native_module(spec: specs.Spec, point: str) -> str:
    """The native module path of an activation point (``output`` is the standalone block itself)."""
    return "" if point == OUTPUT else REGISTRY[spec].table_for(spec).native_module(point)


def _trains_differently(spec: specs.Spec) -> bool:
    """Whether train mode changes what ``spec`` computes: it has BatchNorm or dropout."""
    return any(node.op in ("bn", "dropout") for node in spec.graph())


# Compiled executables hold memory mappings: a process that builds thousands of specs (the deep
# fuzz profile) must release old ones, or it runs out of mappings and XLA crashes. 32 specs stay warm.
_CACHED_SPECS = 32


@functools.lru_cache(maxsize=_CACHED_SPECS)
def _module(spec: specs.Spec, dtype: str, training: bool, pitfalls: frozenset[str]) -> nn.Module:
    """The linen module for ``spec`` from its registered builder. ``training`` goes to the models that
    train differently (BatchNorm, dropout), ``pitfalls`` (the network pitfalls) to those that
    ``parity.variants.check_variant`` lets one apply to; the other models take neither."""
    options: dict[str, Any] = {"dtype": jnp.dtype(dtype)}
    if _trains_differently(spec):
        options["training"] = training
    if pitfalls:
        options["pitfalls"] = pitfalls
    return REGISTRY[spec].builder(spec, **options)


def _init_input(spec: specs.Spec, dtype: str) -> jax.ShapeDtypeStruct:
    """The NHWC input shape to trace ``init`` with: the spec's fixed size (a flatten feeds a dense layer),
    else the smallest square one from 8 up that it takes (NiN: 67)."""
    size = spec.fixed_input_size()
    if size is None:
        side = next(side for side in itertools.count(_INIT_SIZE) if spatial_size_problem(spec, side, side) is None)
        size = (side, side)
    return jax.ShapeDtypeStruct((1, *size, spec.in_channels), jnp.dtype(dtype))


@functools.lru_cache(maxsize=2 * _CACHED_SPECS)
def _shapes(spec: specs.Spec, dtype: str, pitfalls: frozenset[str]) -> Any:
    """The variables' pytree of ``jax.ShapeDtypeStruct``: ``init`` traced, not compiled or run."""
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)  # a raw PRNG key's shape: nothing random is drawn
    return jax.eval_shape(_module(spec, dtype, False, pitfalls).init, key, _init_input(spec, dtype))


def _initial(path: tuple[Any, ...], leaf: jax.ShapeDtypeStruct, rng: np.random.Generator) -> jax.Array:
    """A variable's initial value as Flax's defaults give it, drawn from ``rng``: conv and dense kernels
    ``lecun_normal`` (truncated normal, variance 1 / fan_in, fan_in the product of all but the output
    axis), biases 0, BatchNorm scale 1 and running mean 0, variance 1."""
    collection, leaf_name = path[0].key, path[-1].key
    if (collection, leaf_name) == ("params", "kernel"):
        fan_in = int(np.prod(leaf.shape[:-1]))
        values = _truncated_normal(rng, leaf.shape, leaf.dtype)
        values *= fan_in**-0.5 / _TRUNCATED_NORMAL_STD
        return jnp.asarray(values)
    # numpy's constants, then one transfer: ``jnp.ones`` would compile a kernel per shape
    if (collection, leaf_name) in (("params", "scale"), ("batch_stats", "var")):
        return jnp.asarray(np.ones(leaf.shape, leaf.dtype))
    if (collection, leaf_name) in (("params", "bias"), ("batch_stats", "mean")):
        return jnp.asarray(np.zeros(leaf.shape, leaf.dtype))
    raise ValueError(f"no initialiser for the variable {'/'.join(str(key.key) for key in path)}")


# The standard deviation of a standard normal truncated to [-2, 2]; Flax divides by it so that
# ``lecun_normal``'s truncated draws keep the variance 1 / fan_in.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Standard normal draws truncated to [-2, 2]: those outside are redrawn until inside."""
    values = rng.standard_normal(int(np.prod(shape)), dtype)
    outside = np.flatnonzero(np.abs(values) > 2)
    while outside.size:
        values[outside] = rng.standard_normal(outside.size, dtype)
        outside = outside[np.abs(values[outside]) > 2]
    return values.reshape(shape)


@functools.lru_cache(maxsize=2 * _CACHED_SPECS)
def _forward(
    spec: specs.Spec, dtype: str, train: bool, pitfalls: frozenset[str]
) -> Callable[[Any, np.ndarray], jax.Array]:
    module = _module(spec, dtype, train, pitfalls)

    def apply(variables: Any, X: jax.Array) -> jax.Array:
        if not train:
            return module.apply(variables, X, mutable=False)
        # Dropout (NiN's) drops with a fixed key: no parity check runs NiN in train mode with dropout
        # active, so its masks need not match another framework's.
        Y, _updated_batch_stats = module.apply(variables, X, mutable=["batch_stats"], rngs={"dropout": _DROPOUT_KEY})
        return Y

    return jax.jit(apply)


@functools.lru_cache(maxsize=2 * _CACHED_SPECS)
def _activations(
    spec: specs.Spec, dtype: str, pitfalls: frozenset[str]
) -> Callable[[Any, np.ndarray], dict[str, jax.Array]]:
    module = _module(spec, dtype, False, pitfalls)
    native = {key: _native_module(spec, key) for key in spec.activation_points()}
    pooled = [node.name for node in spec.graph() if node.op == "global_avg_pool" and node.point]

    def capture(variables: Any, X: jax.Array) -> dict[str, jax.Array]:
        _, state = module.apply(variables, X, capture_intermediates=True, mutable=["intermediates"])
        outputs = flatten_dict(state["intermediates"], sep="/")
        found = {key: outputs[f"{path}/__call__" if path else "__call__"][0] for key, path in native.items()}
        return {**found, **{key: found[key].reshape((found[key].shape[0], -1)) for key in pooled}}

    return jax.jit(capture)
