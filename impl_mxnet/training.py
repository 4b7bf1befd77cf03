"""Gluon's side of training parity: ``autograd.record()`` in train mode, ``backward``, and ``gluon.Trainer``.

Gluon writes BatchNorm's running statistics in the backward pass of a recorded graph, with momentum
``1 - m`` and the biased batch variance; ``train_forward`` and ``gradients`` put them back afterwards (the
model is unchanged), and a trainer step makes the variance PyTorch's unbiased one
(``parity.training.unbiased_running_var``). Gluon's idiom is kept: the per-example loss is backpropagated
(its gradient summed over the batch) and ``trainer.step(batch_size)`` rescales by 1 / batch_size. Gluon's SGD
keeps Keras' velocity ``v = m * v - lr * (g + wd * w)`` (decay as L2, like torch), scaled by new / old rate at
each change of rate to stay torch's step. Gluon's Adam decays as L2, so AdamW is ``TorchAdamW``, an
``mx.optimizer.Optimizer`` with torch's update in NDArray operations.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from impl_mxnet.backend import _STATISTICS, Model, _input, table, weights_changed
from parity.training import (
    OptimizerSpec,
    UnsupportedOption,
    canonical_gradients,
    canonical_statistics,
    statistics,
    unbiased_running_var,
)
from parity.training.optim import sgd_momentum_rescale
from parity.training.variants import check_train_variant
from parity.weights import Weights

name = "mxnet"

_LOSS = gluon.loss.SoftmaxCrossEntropyLoss()


def _parameters(model: Model) -> dict[str, gluon.Parameter]:
    """The parameters that train (not BatchNorm's running statistics), by native name."""
    return {key: p for key, p in model.collect_params().items() if not key.endswith(_STATISTICS)}


def _statistic_values(model: Model) -> dict[str, nd.NDArray]:
    return {key: p.data().copy() for key, p in model.collect_params().items() if key.endswith(_STATISTICS)}


def _canonical_statistics(model: Model, values: dict[str, nd.NDArray]) -> Weights:
    return canonical_statistics(model.spec, table(model.spec), {key: v.asnumpy() for key, v in values.items()})


def _record(model: Model, x_nchw: np.ndarray, labels: np.ndarray | None):
    """Forward and backward in train mode: (per-example loss or None, logits); the statistics are updated.
    Every training path writes parameters after this (statistics, a trainer step), and none runs the
    inference graph in between: dropping it here makes the next eval forward read them."""
    weights_changed(model)
    x = _input(model, x_nchw)
    with autograd.record(train_mode=True):
        logits = model(x)
        loss = _LOSS(logits, nd.array(labels, dtype=model.dtype)) if labels is not None else logits
    loss.backward()
    return (loss if labels is not None else None), logits


def train_forward(model: Model, x_nchw: np.ndarray) -> tuple[np.ndarray, Weights]:
    """(logits on batch statistics, the running statistics this batch updates them to, PyTorch's convention)."""
    before = _statistic_values(model)
    _, logits = _record(model, x_nchw, None)
    after = _statistic_values(model)
    _restore(model, before)
    stats = _torch_statistics(
        model, _canonical_statistics(model, before), _canonical_statistics(model, after), x_nchw.shape
    )
    return logits.asnumpy(), stats


def gradients(model: Model, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
    """(mean softmax cross-entropy in train mode, {canonical name: its gradient}); the model is unchanged."""
    before = _statistic_values(model)
    loss, _ = _record(model, x_nchw, labels)
    _restore(model, before)
    return float(loss.mean().asscalar()), _gradients(model, 1 / len(x_nchw))


def _gradients(model: Model, scale: float) -> Weights:
    native = {key: p.grad().asnumpy() * scale for key, p in _parameters(model).items()}
    return canonical_gradients(model.spec, table(model.spec), native)


def _torch_statistics(model: Model, before: Weights, after: Weights, x_shape, unbiased: bool = True) -> Weights:
    """PyTorch's update of the statistics from Gluon's, which weighs the old statistic by ``1 - m`` rounded to
    float32 (BatchNorm's momentum parameter is a C++ float) and keeps the biased variance."""
    return unbiased_running_var(
        model.spec, before, after, x_shape, kept=lambda m: float(np.float32(1 - m)), unbiased=unbiased
    )


def _restore(model: Model, values: dict[str, nd.NDArray]) -> None:
    params = model.collect_params()
    for key, value in values.items():
        params[key].set_data(value)


class TorchAdamW(mx.optimizer.Optimizer):
    """torch.optim.AdamW: ``w = w * (1 - lr * wd) - lr * m_hat / (sqrt(v_hat) + eps)``; Gluon's Adam adds
    ``wd * w`` to the gradient instead and puts epsilon before the bias correction."""

    def __init__(self, beta1: float, beta2: float, epsilon: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return nd.zeros_like(weight), nd.zeros_like(weight)

    def update(self, index, weight, grad, state):
        self._update_count(index)
        t, lr, wd = self._index_update_count[index], self._get_lr(index), self._get_wd(index)
        grad = grad * self.rescale_grad
        mean, var = state
        mean[:] = self.beta1 * mean + (1 - self.beta1) * grad
        var[:] = self.beta2 * var + (1 - self.beta2) * grad * grad
        step = (mean / (1 - self.beta1**t)) / (nd.sqrt(var / (1 - self.beta2**t)) + self.epsilon)
        weight[:] = weight * (1 - lr * wd) - lr * step


def optimizer_for(optimizer: OptimizerSpec) -> mx.optimizer.Optimizer:
    """The Gluon optimizer of ``optimizer``."""
    if optimizer.dampening:
        raise UnsupportedOption(name, f"dampening={optimizer.dampening:g}", "Gluon's SGD has no dampening")
    if optimizer.nesterov:
        raise UnsupportedOption(
            name, "nesterov=True", "Gluon's SGD has no Nesterov momentum (NAG is another optimizer)"
        )
    if optimizer.kind == "adamw":
        b1, b2 = optimizer.betas
        return TorchAdamW(b1, b2, optimizer.eps, learning_rate=optimizer.lr(0), wd=optimizer.weight_decay)
    return mx.optimizer.SGD(learning_rate=optimizer.lr(0), momentum=optimizer.momentum, wd=optimizer.weight_decay)


class Trainer:
    """Steps a Gluon model with ``gluon.Trainer``; ``variant``: a training pitfall of Gluon."""

    def __init__(self, model: Model, optimizer: OptimizerSpec, variant: str | None = None) -> None:
        check_train_variant(name, model.spec, optimizer, variant)
        self.model, self.spec, self.variant = model, optimizer, variant
        self.trainer = gluon.Trainer(_parameters(model), optimizer_for(optimizer), kvstore=None)
        self.steps = 0

    def step(self, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
        """One step on a batch: (its loss, the gradients of the loss it applied, canonical; weight decay aside)."""
        spec, t, model = self.spec, self.steps, self.model
        lr = spec.lr(t)
        if spec.kind == "sgd" and t and lr != spec.lr(t - 1) and self.variant != "velocity_momentum":
            # Gluon keeps the velocities in its updater, one per parameter index
            for velocity in self.trainer._updaters[0].states.values():
                velocity[:] = velocity * sgd_momentum_rescale(spec.lr(t - 1), lr)
        self.trainer.set_learning_rate(lr)
        before = _statistic_values(model)
        loss, _ = _record(model, x_nchw, labels)
        batch_size = 1 if self.variant == "no_rescale_grad" else len(x_nchw)
        self.trainer.step(batch_size)
        after = _canonical_statistics(model, _statistic_values(model))
        unbiased = self.variant != "biased_running_var"
        stats = _torch_statistics(model, _canonical_statistics(model, before), after, x_nchw.shape, unbiased)
        rule, params = table(model.spec), model.collect_params()
        for p in statistics(model.spec):
            params[rule.native_name(p)].set_data(nd.array(stats[p.name], dtype=model.dtype))
        self.steps += 1
        return float(loss.mean().asscalar()), _gradients(model, 1 / batch_size)
