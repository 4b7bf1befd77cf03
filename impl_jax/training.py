"""Flax's side of training parity: train-mode applies with ``batch_stats`` mutable, ``jax.value_and_grad``
of the mean cross-entropy, and optax.

Flax's BatchNorm keeps the biased batch variance in ``batch_stats/var`` with momentum ``1 - m`` (the
models pass the spec's PyTorch momentum converted); every update of the statistics is turned into
PyTorch's unbiased one by ``parity.training.unbiased_running_var`` (not under ``biased_running_var``).
The optimizer is ``optax.chain(optax.add_decayed_weights(wd), optax.sgd(...))``, decay before the momentum
trace as torch.optim.SGD's L2, or ``optax.adamw``, whose decoupled decay and epsilon placement are
torch's; the learning rate is an ``optax.join_schedules`` of constants. The loss and its gradient are
jitted once per (spec, dtype, pitfalls), and a whole optimizer step once per optimizer spec too.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from impl_jax.backend import FlaxModel, _module, _tensors, _variables, check_input, table
from parity.layout import nchw_to_nhwc
from parity.training import (
    OptimizerSpec,
    UnsupportedOption,
    canonical_gradients,
    canonical_statistics,
    statistics,
    unbiased_running_var,
)
from parity.training.variants import check_train_variant
from parity.weights import Weights

name = "jax"


def _loss(module, params: Any, batch_stats: Any, x: jax.Array, labels: jax.Array):
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    logits, updates = module.apply(variables, x, mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits, updates.get("batch_stats", {}))


@functools.lru_cache(maxsize=32)
def _value_and_grad(spec, dtype: str, pitfalls: frozenset[str]):
    """(loss, (logits, new batch_stats)), grads: one compiled function per (spec, dtype, network pitfalls)."""
    module = _module(spec, dtype, True, pitfalls)
    return jax.jit(jax.value_and_grad(functools.partial(_loss, module), has_aux=True))


def _run(model: FlaxModel, x_nchw: np.ndarray, labels: np.ndarray):
    x = nchw_to_nhwc(check_input(model.spec, x_nchw, model.dtype))
    fn = _value_and_grad(model.spec, model.dtype, model.network_pitfalls)
    (loss, (logits, stats)), grads = fn(
        model.variables["params"], model.variables.get("batch_stats", {}), x, labels.astype(np.int32)
    )
    return loss, logits, stats, grads


def _statistics(model: FlaxModel, batch_stats: Any) -> Weights:
    """Canonical running statistics from a ``batch_stats`` collection."""
    native = {key: np.asarray(value) for key, value in _tensors({"batch_stats": batch_stats}).items()}
    return canonical_statistics(model.spec, table(model.spec, model.variant), native)


def _unbiased(model: FlaxModel, new_stats: Any, x_shape: tuple[int, ...]) -> Weights:
    before = _statistics(model, model.variables.get("batch_stats", {}))
    return unbiased_running_var(model.spec, before, _statistics(model, new_stats), x_shape)


def train_forward(model: FlaxModel, x_nchw: np.ndarray) -> tuple[np.ndarray, Weights]:
    """(logits on batch statistics, the running statistics this batch updates them to, PyTorch's convention)."""
    labels = np.zeros(len(x_nchw), np.int64)
    _, logits, stats, _ = _run(model, x_nchw, labels)
    return np.asarray(logits), _unbiased(model, stats, x_nchw.shape)


def gradients(model: FlaxModel, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
    """(mean softmax cross-entropy in train mode, {canonical name: its gradient}); the model is unchanged."""
    loss, _, _, grads = _run(model, x_nchw, labels)
    native = {key: np.asarray(value) for key, value in _tensors({"params": grads}).items()}
    return float(loss), canonical_gradients(model.spec, table(model.spec, model.variant), native)


def transformation(optimizer: OptimizerSpec) -> optax.GradientTransformation:
    """``optimizer`` in optax, with torch.optim's conventions."""
    if optimizer.dampening:
        raise UnsupportedOption(name, f"dampening={optimizer.dampening:g}", "optax.sgd's trace has no dampening")
    boundaries = [start for start, _ in optimizer.schedule[1:]]
    schedule = optax.join_schedules([optax.constant_schedule(lr) for _, lr in optimizer.schedule], boundaries)
    if optimizer.kind == "adamw":
        b1, b2 = optimizer.betas
        return optax.adamw(schedule, b1=b1, b2=b2, eps=optimizer.eps, weight_decay=optimizer.weight_decay)
    return optax.chain(
        optax.add_decayed_weights(optimizer.weight_decay),
        optax.sgd(schedule, momentum=optimizer.momentum or None, nesterov=optimizer.nesterov),
    )


@functools.lru_cache(maxsize=32)
def _update(optimizer: OptimizerSpec):
    tx = transformation(optimizer)

    def update(grads: Any, state: Any, params: Any):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return tx, jax.jit(update)


class Trainer:
    """Steps a ``FlaxModel``'s variables with optax; ``variant``: a training pitfall of Flax."""

    def __init__(self, model: FlaxModel, optimizer: OptimizerSpec, variant: str | None = None) -> None:
        check_train_variant(name, model.spec, optimizer, variant)
        self.model, self.variant = model, variant
        tx, self._update = _update(optimizer)
        self.state = tx.init(model.variables["params"])
        self.steps = 0

    def step(self, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
        """One step on a batch: (its loss, the gradients of the loss it applied, canonical; weight decay aside)."""
        model = self.model
        loss, _, stats, grads = _run(model, x_nchw, labels)
        params, self.state = self._update(grads, self.state, model.variables["params"])
        variables = {**model.variables, "params": params}
        if stats:
            new = (
                _statistics(model, stats)
                if self.variant == "biased_running_var"
                else _unbiased(model, stats, x_nchw.shape)
            )
            rule = table(model.spec, model.variant)
            native = {
                rule.native_name(p): jnp.asarray(rule.to_native_array(p, new[p.name])) for p in statistics(model.spec)
            }
            variables["batch_stats"] = _variables(native)["batch_stats"]
        model.variables = variables
        self.steps += 1
        native_grads = {key: np.asarray(value) for key, value in _tensors({"params": grads}).items()}
        return float(loss), canonical_gradients(model.spec, table(model.spec, model.variant), native_grads)
