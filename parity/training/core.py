"""Framework-neutral pieces of training parity that every backend's ``training`` module shares.

- the parameters that train and the running statistics, by canonical name (``trainable``, ``statistics``),
  and native gradients turned canonical through the backend's own ``NameTable`` (``canonical_gradients``):
  the same names, layout transforms and dense-after-flatten permutation as the weights;
- PyTorch's running variance, the unbiased batch variance, made from the biased one that Flax, Keras and
  Gluon store (``unbiased_running_var``, with the per-channel counts of ``batch_counts``);
- the spec without dropout: training parity runs every net with dropout off (rate 0 at build time), since
  four frameworks cannot draw one mask;
- NaN/Inf checks that name the step and the tensor.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import numpy as np

from parity.hub import NameTable
from parity.specs import INPUT, BatchNorm, Spec, infer_shapes
from parity.weights import Param, Weights, schema


class NonFinite(ArithmeticError):
    """A gradient, weight, statistic or optimizer state with NaN or Inf: the message names step and tensor."""


def trainable(spec: Spec) -> list[Param]:
    """The tensors that gradients update, in execution order."""
    return [param for param in schema(spec).values() if param.trainable]


def statistics(spec: Spec) -> list[Param]:
    """BatchNorm's running statistics, in execution order."""
    return [param for param in schema(spec).values() if not param.trainable]


def canonical_gradients(spec: Spec, table: NameTable, native: Mapping[str, np.ndarray]) -> Weights:
    """{canonical name: gradient in PyTorch's layout} from a backend's {native name: gradient}."""
    return {p.name: table.to_canonical_array(p, native[table.native_name(p)]) for p in trainable(spec)}


def canonical_statistics(spec: Spec, table: NameTable, native: Mapping[str, np.ndarray]) -> Weights:
    """{canonical name: running statistic} from a backend's {native name: value}."""
    return {p.name: table.to_canonical_array(p, native[table.native_name(p)]) for p in statistics(spec)}


def without_dropout(spec: Spec) -> Spec:
    """``spec`` with its dropout rate set to 0 (the field ``dropout``); ValueError where a rate stays."""
    if isinstance(getattr(spec, "dropout", None), float) and spec.dropout:
        spec = dataclasses.replace(spec, dropout=0.0)
    rates = {node.name: node.rate for node in spec.graph() if node.op == "dropout" and node.rate}
    if rates:
        raise ValueError(f"spec: training parity needs dropout off, and {spec.name} keeps the rates {rates}")
    return spec


def batch_counts(spec: Spec, x_shape: tuple[int, ...]) -> dict[str, int]:
    """{BatchNorm layer path: values per channel in a batch} for an NCHW input of ``x_shape``: N * H * W
    after a conv, N after a dense layer."""
    nodes = spec.graph()
    shapes = infer_shapes(nodes, tuple(x_shape))
    shapes.setdefault(INPUT, tuple(x_shape))
    return {
        node.layer.path: math.prod(shapes[node.inputs[0]]) // shapes[node.inputs[0]][1]
        for node in nodes
        if node.op == "bn"
    }


def unbiased_running_var(
    spec: Spec,
    before: Mapping[str, np.ndarray],
    after: Mapping[str, np.ndarray],
    x_shape: tuple[int, ...],
    kept: Callable[[float], float] | None = None,
    unbiased: bool = True,
) -> Weights:
    """``after``'s running statistics as PyTorch updates them, ``(1 - m) * r0 + m * batch`` (``m``: the spec's
    momentum) with the unbiased batch variance, from a framework's update ``r1 = k * r0 + (1 - k) * batch`` with
    the biased one: ``batch = (r1 - k * r0) / (1 - k)``, the variance times ``n / (n - 1)`` (``n`` values per
    channel; not when ``unbiased`` is False). ``kept(m)`` is the weight ``k`` the framework really gives the
    old statistic, ``1 - m`` unless it rounds it (Gluon's BatchNorm takes its momentum as a float32)."""
    counts = batch_counts(spec, x_shape)
    out = dict(after)
    for param in statistics(spec):
        m = param.layer.momentum
        k = kept(m) if kept is not None else 1 - m
        r0, r1 = before[param.name], after[param.name]
        batch = (r1 - k * r0) / (1 - k)
        if unbiased and param.leaf == "running_var":
            n = counts[param.layer.path]
            batch = batch * (n / (n - 1))
        out[param.name] = ((1 - m) * r0 + m * batch).astype(r1.dtype)
    return out


def check_finite(tensors: Mapping[str, np.ndarray], what: str, framework: str, step: int | None = None) -> None:
    """NonFinite naming the first tensor of ``tensors`` with NaN or Inf."""
    for name, value in tensors.items():
        if not np.all(np.isfinite(value)):
            where = f" at step {step}" if step is not None else ""
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise NonFinite(f"{framework}: {what} {name}{where} has {bad} NaN/Inf values")


def synthetic_batches(
    spec: Spec, steps: int, batch: int, size: tuple[int, int], dtype: str, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fixed stream of (NCHW input, labels): standard normal inputs and uniform labels from ``seed``."""
    classes = infer_shapes(spec.graph(), (batch, spec.in_channels, *size))[spec.graph()[-1].name][1]
    rng = np.random.default_rng(seed)
    return [
        (
            rng.standard_normal((batch, spec.in_channels, *size)).astype(dtype),
            rng.integers(0, classes, batch).astype(np.int64),
        )
        for _ in range(steps)
    ]


def zero_gradient_biases(spec: Spec) -> dict[str, BatchNorm]:
    """{canonical name: the BatchNorm it feeds} for each conv or dense bias that feeds a BatchNorm alone, from
    the spec's graph. In train mode that BatchNorm subtracts the batch mean, so the bias's exact gradient is 0
    (frameworks compute rounding residue) and it moves only that BatchNorm's running mean."""
    names, nodes = schema(spec), spec.graph()
    consumers: dict[str, list] = {}
    for node in nodes:
        for source in node.inputs:
            consumers.setdefault(source, []).append(node)
    out = {}
    for node in nodes:
        after = consumers.get(node.name, [])
        bias = f"{node.layer.path}.bias" if node.op in ("conv", "dense") else None
        if bias in names and len(after) == 1 and after[0].op == "bn":
            out[bias] = after[0].layer
    return out


def gradient_scales(spec: Spec, grads: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{canonical name: the scale its gradient differences are measured against}: the tensor's largest
    gradient, except for a bias whose exact gradient is 0 (``zero_gradient_biases``): the largest gradient of
    its BatchNorm's shift, the sum its own gradient cancels from."""
    scales = {name: float(np.max(np.abs(g))) for name, g in grads.items()}
    for bias, bn in zero_gradient_biases(spec).items():
        scales[bias] = scales[f"{bn.path}.bias"]
    return scales


def relative_diffs(
    reference: Mapping[str, np.ndarray], other: Mapping[str, np.ndarray], scales: Mapping[str, float] | None = None
) -> dict[str, float]:
    """{name: max |reference - other| / scale}, the scale ``scales[name]`` or max |reference| of the tensor
    (the smallest positive float where that is 0, so that any difference from an all-zero tensor shows)."""
    out = {}
    for name, a in reference.items():
        scale = scales[name] if scales is not None else float(np.max(np.abs(a)))
        diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(other[name], np.float64))))
        out[name] = diff / max(scale, np.finfo(np.float64).tiny)
    return out
