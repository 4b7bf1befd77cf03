"""The JAX/Flax backend: the adapter between ``impl_jax.models`` and the parity harness.

A linen module holds no state, so the native model is a ``FlaxModel``: the spec,
the dtype and the variables (``params``, and ``batch_stats`` where there is
BatchNorm). Its native tensor names are ``module path/collection/leaf``, e.g.
``net/stem/bn/batch_stats/mean`` or ``net/b3/inception_0/b2_2/params/kernel``.

Nothing here changes a model except ``load_weights``: eval-mode applies are
immutable (``mutable=False``), and a train-mode apply makes ``batch_stats`` mutable
only so that BatchNorm may use batch statistics, and discards the updated
statistics it returns. Jitted functions are cached per (spec, dtype, mode,
``same_padding``), so new weights at the same input shape never retrace.

``VARIANTS`` are naive ports, each a real model with one classic porting pitfall:
``same_padding`` builds the linen modules with Flax's ``'SAME'`` (a different
network, so it has its own compiled forward and activations); ``unpermuted_flatten``
and ``untransposed_kernel`` are the faithful network loaded (and exported) through
a naive weight mapping, so they share the faithful model's compiled functions.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.traverse_util import flatten_dict, unflatten_dict

from impl_jax.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_jax.models import AnyNet, ResNeXtBlock
from parity import specs
from parity.backends import DTYPES, SummaryRow, check_input
from parity.hub import NameTable, check_native_shapes, from_native, to_native
from parity.layout import nchw_to_nhwc, nhwc_shape_to_nchw, nhwc_to_nchw
from parity.variants import check_variant, fits_untransposed, untransposed
from parity.weights import Weights, schema

name = "jax"
layout = "NHWC"
extra = "jax"

TABLE = NameTable(
    modules=(
        (r"^(b\d)\.(\d+)\b", r"\1.inception_\2"),
        (r"branch_pool\.avg$", "branch_pool_avg"),
        (r"\.(\d+)", r"_\1"),
        (r"\.", "/"),
        (r"^(stem|stages_\d+|head|b\d)\b", r"net/\1"),
    ),
    leaves={
        "conv.weight": ("params/kernel", "OIHW->HWIO"),
        "conv.bias": ("params/bias", "identity"),
        "batchnorm.weight": ("params/scale", "identity"),
        "batchnorm.bias": ("params/bias", "identity"),
        "batchnorm.running_mean": ("batch_stats/mean", "identity"),
        "batchnorm.running_var": ("batch_stats/var", "identity"),
        "dense.weight": ("params/kernel", "(out,in)->(in,out)"),
        "dense.bias": ("params/bias", "identity"),
    },
    separator="/",
    flatten_order="HWC",
)
# A naive port's mapping: the dense weight after a flatten keeps PyTorch's (C, H, W) input order.
UNPERMUTED_FLATTEN_TABLE = dataclasses.replace(TABLE, flatten_order="CHW")

VARIANTS = {
    "same_padding": "d2l's JAX code: Flax's padding='SAME' in every padded conv and pool instead of explicit "
    "symmetric padding; at stride 2 on an even size it pads bottom/right only",
    "unpermuted_flatten": "the dense weight after the flatten copied in NCHW (C, H, W) input order, not permuted "
    "to Flax's (H, W, C) flatten",
    "untransposed_kernel": "OIHW kernels turned into (kh, kw, O, I/groups) by transpose(2, 3, 0, 1) wherever that "
    "shape equals HWIO's (O == I/groups): input and output channels swapped",
}

_INIT_SIZE = 8
_BLOCK_OUTPUT = "output"


def table(spec: specs.Spec, variant: str | None = None) -> NameTable:
    """The name table for ``spec``: one set of rules serves every spec in Flax (``unpermuted_flatten``: its naive one)."""
    return UNPERMUTED_FLATTEN_TABLE if variant == "unpermuted_flatten" else TABLE


@dataclass
class FlaxModel:
    """A built model: what ``spec`` computes in ``dtype`` with ``variables`` (``params``, ``batch_stats``),
    faithfully or as the naive port ``variant``."""

    spec: specs.Spec
    dtype: str
    variables: dict[str, Any]
    variant: str | None = None

    @property
    def same_padding(self) -> bool:
        return self.variant == "same_padding"


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> FlaxModel:
    """The model for ``spec`` in ``dtype``, initialised from ``jax.random.PRNGKey(seed)``; ``variant``: a naive
    port from ``VARIANTS``.

    No variant changes a parameter's name, shape or initialiser (padding has no parameters), so every
    variant starts from the faithful model's variables for the seed, from one compiled ``init``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    check_variant(name, VARIANTS, spec, variant)
    return FlaxModel(spec, dtype, _init(spec, dtype)(jax.random.PRNGKey(seed), _init_input(spec, dtype)), variant)


def forward(model: FlaxModel, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits (nets) or the NCHW feature map (blocks); ``train`` makes BatchNorm use batch statistics."""
    x = check_input(model.spec, x_nchw, model.dtype)
    return _to_nchw(_forward(model.spec, model.dtype, train, model.same_padding)(model.variables, nchw_to_nhwc(x)))


def layer_summary(model: FlaxModel, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's ``layer_summary``: an NHWC input through each top-level layer in turn, in eval mode.

    Each layer runs under ``jax.eval_shape``: its output shape without compiling and
    running every operation one by one.
    """
    zeros = np.zeros(nhwc_shape_to_nchw(tuple(input_shape)), model.dtype)
    x = jax.ShapeDtypeStruct(nchw_to_nhwc(check_input(model.spec, zeros, model.dtype)).shape, model.dtype)
    bound = _bound(model)
    rows = []
    for group, layer in _top_level_layers(model.spec, bound):
        x = jax.eval_shape(layer, x)
        params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(layer.variables.get("params", {})))
        rows.append(SummaryRow(type(layer).__name__, tuple(x.shape), str(x.shape), params, group))
    return rows


def _top_level_layers(spec: specs.Spec, bound: nn.Module) -> list[tuple[str, nn.Module]]:
    """(canonical group, layer) for each layer that d2l's ``net`` holds at its top level, in order."""
    if isinstance(spec, specs.AnyNet):
        groups = ["stem", *(f"stages.{i}" for i in range(len(spec.stages))), "head"]
        return list(zip(groups, bound.net.layers, strict=True))
    if isinstance(spec, specs.GoogLeNet):
        *blocks, head = bound.net.layers
        (dense,) = head.layers  # the book's net holds this Dense itself
        return [*zip(("b1", "b2", "b3", "b4", "b5"), blocks, strict=True), ("head", dense)]
    if isinstance(spec, specs.InceptionNet):
        groups = ["conv1", "conv1", "incep1", "conv2", "conv2", "incep2", "fc", "fc"]
        return list(zip(groups, bound.layers(), strict=True))
    return [("block", bound)]


def export_weights(model: FlaxModel) -> Weights:
    """Canonical weights: fresh numpy copies (the layout transforms copy) of every parameter and running statistic.

    A variant exports through its own naive mapping, so that its export and load are inverses.
    """
    native = {key: np.asarray(value) for key, value in _tensors(model.variables).items()}
    model_table = table(model.spec, model.variant)
    weights = from_native(model.spec, native, model_table)
    if model.variant == "untransposed_kernel":
        weights.update({p.name: untransposed(native[model_table.native_name(p)]) for p in schema(model.spec).values() if fits_untransposed(p)})
    return weights


def load_weights(model: FlaxModel, weights: Mapping[str, np.ndarray], allow_nonfinite: bool = False) -> None:
    """Validate everything first (WeightsError listing every problem), then replace all variables at once."""
    model_table = table(model.spec, model.variant)
    native = to_native(model.spec, weights, model_table, dtype=model.dtype, allow_nonfinite=allow_nonfinite)
    if model.variant == "untransposed_kernel":
        native.update({model_table.native_name(p): untransposed(weights[p.name]) for p in schema(model.spec).values() if fits_untransposed(p)})
    check_native_shapes({key: value.shape for key, value in _tensors(model.variables).items()}, native)
    model.variables = _variables({key: jnp.asarray(value) for key, value in native.items()})


def activations(model: FlaxModel, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode outputs of every ``spec.activation_points()`` module, from Flax's captured intermediates."""
    x = check_input(model.spec, x_nchw, model.dtype)
    outputs = _activations(model.spec, model.dtype, model.same_padding)(model.variables, nchw_to_nhwc(x))
    return {key: _to_nchw(outputs[key]) for key in model.spec.activation_points()}


def structure(model: FlaxModel) -> dict[str, tuple[int, int]]:
    """(trainable parameters, conv groups; 1 for BatchNorm and dense) of every parameterised layer of the spec,
    read from the bound linen module at the layer's native path and from its variables."""
    bound = _bound(model)
    model_table = table(model.spec, model.variant)
    result = {}
    for layer in model.spec.layers():
        module = _submodule(bound, model_table.native_module(layer.path))
        params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(module.variables.get("params", {})))
        result[layer.path] = (int(params), getattr(module, "feature_group_count", 1))
    return result


def _bound(model: FlaxModel) -> nn.Module:
    """The model's eval-mode linen module bound to its variables."""
    return _module(model.spec, model.dtype, training=False, same_padding=model.same_padding).bind(model.variables)


def _submodule(module: nn.Module, native_path: str) -> nn.Module:
    """The bound submodule at ``native_path`` (``net/stages_0/blocks_1/conv2``): a Sequential's layers by name,
    other modules' submodules by attribute."""
    for name in native_path.split("/"):
        if isinstance(module, nn.Sequential):
            module = {getattr(layer, "name", None): layer for layer in module.layers}[name]
        else:
            module = getattr(module, name)
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


# Compiled executables hold memory mappings: a process that builds thousands of specs (the deep
# fuzz profile) must release old ones, or it runs out of mappings and XLA crashes. 32 specs stay warm.
_CACHED_SPECS = 32


@functools.lru_cache(maxsize=_CACHED_SPECS)
def _module(spec: specs.Spec, dtype: str, training: bool, same_padding: bool) -> nn.Module:
    """The linen module for ``spec``; ``training`` only matters to BatchNorm (AnyNet, ResNeXtBlock), and
    ``same_padding`` to the specs ``parity.variants.check_variant`` lets it apply to."""
    dtype = jnp.dtype(dtype)
    if isinstance(spec, specs.AnyNet):
        return AnyNet(spec, same_padding=same_padding, training=training, dtype=dtype)
    if isinstance(spec, specs.ResNeXtBlock):
        return ResNeXtBlock.from_spec(spec, same_padding=same_padding, training=training, dtype=dtype)
    if isinstance(spec, specs.GoogLeNet):
        return GoogLeNet(spec, same_padding=same_padding, dtype=dtype)
    if isinstance(spec, specs.Inception):
        return Inception.from_spec(spec, same_padding=same_padding, dtype=dtype)
    if isinstance(spec, specs.InceptionNet):
        return InceptionNet(spec.num_classes, dtype=dtype)
    if isinstance(spec, specs.InceptionA):
        return InceptionA(dtype=dtype)
    raise TypeError(f"the jax backend cannot build {type(spec).__name__} specs")


def _init_input(spec: specs.Spec, dtype: str) -> jax.Array:
    """A small zero NHWC input to initialise with; InceptionNet's dense layer fixes its input size."""
    height, width = spec.input_size if isinstance(spec, specs.InceptionNet) else (_INIT_SIZE, _INIT_SIZE)
    return jnp.zeros((1, height, width, spec.in_channels), dtype)


@functools.lru_cache(maxsize=2 * _CACHED_SPECS)
def _init(spec: specs.Spec, dtype: str) -> Callable[..., Any]:
    """``init`` compiled without LLVM optimisation: one random-number kernel per parameter makes the
    optimised compile slow (GoogLeNet: ~2x longer), and init runs once per build on a tiny input."""
    lowered = jax.jit(_module(spec, dtype, training=False, same_padding=False).init).lower(
        jax.random.PRNGKey(0), _init_input(spec, dtype)
    )
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})


@functools.lru_cache(maxsize=2 * _CACHED_SPECS)
def _forward(spec: specs.Spec, dtype: str, train: bool, same_padding: bool) -> Callable[[Any, np.ndarray], jax.Array]:
    module = _module(spec, dtype, training=train, same_padding=same_padding)

    def apply(variables: Any, x: jax.Array) -> jax.Array:
        if not train:
            return module.apply(variables, x, mutable=False)
        y, _updated_batch_stats = module.apply(variables, x, mutable=["batch_stats"])
        return y

    return jax.jit(apply)


@functools.lru_cache(maxsize=2 * _CACHED_SPECS)
def _activations(spec: specs.Spec, dtype: str, same_padding: bool) -> Callable[[Any, np.ndarray], dict[str, jax.Array]]:
    module = _module(spec, dtype, training=False, same_padding=same_padding)
    native = {key: _native_module(key) for key in spec.activation_points()}

    def capture(variables: Any, x: jax.Array) -> dict[str, jax.Array]:
        _, state = module.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
        outputs = flatten_dict(state["intermediates"], sep="/")
        return {key: outputs[f"{path}/__call__" if path else "__call__"][0] for key, path in native.items()}

    return jax.jit(capture)


def _native_module(point: str) -> str:
    """The native module path of an activation point (``output`` is the standalone block itself)."""
    return "" if point == _BLOCK_OUTPUT else TABLE.native_module(point)
