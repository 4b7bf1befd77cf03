"""Flax linen: a model is ``(module, variables)``, or ``(module, variables, apply_kwargs)``.

Calls are captured with ``nn.intercept_methods``, which sees every module's ``__call__`` with its
inputs as well as its output (``capture_intermediates`` keeps outputs only, and a layer is
diagnosed from its input); the functional pools ``nn.max_pool`` and ``nn.avg_pool`` are wrapped
for the one forward. Tensors are read from, and loaded into, the variables' ``params`` and
``batch_stats`` collections.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from parity.port_check.native import Call, Layer, PortCheckError, Tensor, explicit_padding, pair

name = "jax"
layout = "NHWC"

# (collection, Flax leaf) -> canonical role, per kind
ROLES = {
    "conv": {("params", "kernel"): "weight", ("params", "bias"): "bias"},
    "dense": {("params", "kernel"): "weight", ("params", "bias"): "bias"},
    "bn": {
        ("params", "scale"): "weight",
        ("params", "bias"): "bias",
        ("batch_stats", "mean"): "running_mean",
        ("batch_stats", "var"): "running_var",
    },
}


def owns(model) -> bool:
    nn = sys.modules.get("flax.linen")
    return (
        nn is not None
        and isinstance(model, tuple | list)
        and len(model) in (2, 3)
        and isinstance(model[0], nn.Module)
        and hasattr(model[1], "keys")
    )


def describe(module) -> tuple[str, dict] | None:
    from flax import linen as nn

    if isinstance(module, nn.Conv):
        return "conv", {
            "kernel": pair(module.kernel_size),
            "stride": pair(module.strides or 1),
            "padding": explicit_padding(module.padding),
            "dilation": pair(module.kernel_dilation or 1),
            "groups": module.feature_group_count,
        }
    if isinstance(module, nn.BatchNorm):
        return "bn", {"eps": float(module.epsilon)}
    if isinstance(module, nn.Dense):
        return "dense", {}
    return None


def numpy(value) -> np.ndarray:
    return np.asarray(value)


def pool_config(window, strides, padding) -> dict:
    return {"kernel": pair(window), "stride": pair(strides or window), "padding": explicit_padding(padding)}


@contextlib.contextmanager
def recorded_pools(calls: list[Call]):
    """``nn.max_pool`` and ``nn.avg_pool`` record their calls while the context is open."""
    from flax import linen as nn

    originals = {"max_pool": nn.max_pool, "avg_pool": nn.avg_pool}
    counts = dict.fromkeys(originals, 0)

    def wrap(kind, pool):
        def recording_pool(inputs, window_shape, strides=None, padding="VALID", **kwargs):
            output = pool(inputs, window_shape, strides, padding, **kwargs)
            config = pool_config(window_shape, strides, padding)
            if kind == "avg_pool":
                config["count_include_pad"] = kwargs.get("count_include_pad", True)
            calls.append(Call(f"nn.{kind}#{counts[kind]}", kind, config, (numpy(inputs),), numpy(output)))
            counts[kind] += 1
            return output

        return recording_pool

    try:
        for kind, pool in originals.items():
            setattr(nn, kind, wrap(kind, pool))
        yield
    finally:
        for kind, pool in originals.items():
            setattr(nn, kind, pool)


def module_path(module) -> str:
    return "/".join(module.scope.path)


def run(model, x: np.ndarray) -> tuple[list[Call], np.ndarray]:
    """Every Conv, Dense, BatchNorm and functional pool call of one forward on ``x`` (NHWC), and the output."""
    from flax import linen as nn

    module, variables, kwargs = (*model, {})[:3]
    calls: list[Call] = []

    def interceptor(next_fun, args, call_kwargs, context):
        output = next_fun(*args, **call_kwargs)
        described = describe(context.module) if context.method_name == "__call__" else None
        if described is not None:
            kind, config = described
            calls.append(Call(module_path(context.module), kind, config, (numpy(args[0]),), numpy(output)))
        return output

    try:
        with nn.intercept_methods(interceptor), recorded_pools(calls):
            output = module.apply(variables, x, **kwargs)
    except Exception as error:  # a Flax model that needs mutable collections: BatchNorm on batch statistics
        if "mutable" in str(error).lower():
            raise PortCheckError(
                f"Flax model {type(module).__name__}: its forward updates a collection ({str(error).splitlines()[0]}); "
                "build it in inference mode (nn.BatchNorm(use_running_average=True)) or pass apply kwargs "
                "as (module, variables, {'train': False})"
            ) from None
        raise
    return calls, numpy(output)


def _at(tree, path: tuple[str, ...]):
    for key in path:
        if not hasattr(tree, "keys") or key not in tree:
            return None
        tree = tree[key]
    return tree


def layers(model, calls: list[Call]) -> list[Layer]:
    """The Conv, Dense and BatchNorm layers in the order of their first call."""
    variables = model[1]
    found: dict[str, Layer] = {}
    for call in calls:
        if call.kind not in ROLES or call.layer in found:
            continue
        path = tuple(call.layer.split("/")) if call.layer else ()
        tensors = {}
        for (collection, leaf), role in ROLES[call.kind].items():
            value = _at(variables, (collection, *path, leaf))
            if value is not None:
                tensors[role] = Tensor(role, "/".join((collection, *path, leaf)), numpy(value))
        found[call.layer] = Layer(call.layer, call.kind, call.config, tensors)
    return list(found.values())


def load(model, arrays: dict[str, np.ndarray]):
    """The model with ``arrays`` in its variables: a plain dict of variables is updated in place, a
    frozen one replaced in the returned ``(module, variables, ...)``."""
    import jax.numpy as jnp
    from flax.core import unfreeze

    variables = model[1]
    if not isinstance(variables, dict):
        variables = unfreeze(variables)
    for native, value in arrays.items():
        *path, leaf = native.split("/")
        _at(variables, tuple(path))[leaf] = jnp.asarray(value)
    return (model[0], variables, *model[2:])
