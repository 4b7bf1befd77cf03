"""Keras' side of training parity: ``stateless_call`` in train mode under a ``tf.GradientTape``, as one
``tf.function`` per (spec, dtype, pitfalls), and ``keras.optimizers``.

Keras' BatchNormalization keeps the biased batch variance in ``moving_variance`` with momentum ``1 - m``;
every update is turned into PyTorch's unbiased one (``parity.training.unbiased_running_var``). Two Keras
conventions differ from torch.optim and are aligned here:

- ``keras.optimizers.SGD``'s velocity ``v = m * v - lr * g`` equals ``-lr * b`` for torch's buffer
  ``b = m * b + g`` only while the rate is constant: at each change of rate the velocities are scaled by
  new / old rate. Its ``weight_decay`` is decoupled, so torch's L2 decay is added to the gradient instead.
- ``keras.optimizers.AdamW`` adds epsilon to sqrt(v) before the bias correction (``epsilon_hat``);
  torch adds it after. Epsilon ``eps * sqrt(1 - beta_2 ** t)`` at step t gives torch's step exactly.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from impl_tf.backend import Model, _table, check_input
from parity.layout import nchw_to_nhwc
from parity.training import (
    OptimizerSpec,
    UnsupportedOption,
    canonical_gradients,
    canonical_statistics,
    unbiased_running_var,
)
from parity.training.optim import sgd_momentum_rescale
from parity.training.variants import check_train_variant
from parity.weights import Weights

name = "tf"

_GRAPHS: dict[tuple, tf.types.experimental.PolymorphicFunction] = {}


def _graph(model: Model) -> tf.types.experimental.PolymorphicFunction:
    """(loss, logits, gradients, new non-trainable values) as one graph per (spec, dtype, pitfalls), traced
    with the first such model as template (``stateless_call`` reads no variable of it)."""
    key = (model.spec, model.dtype, model.pitfalls)
    if key not in _GRAPHS:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype=model.dtype)

        def run(trainable, non_trainable, x, labels):
            with tf.GradientTape() as tape:
                tape.watch(trainable)
                logits, new_non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
                loss = loss_fn(labels, logits)
            return loss, logits, tape.gradient(loss, trainable), new_non_trainable

        signature = [
            [tf.TensorSpec(v.shape, v.dtype) for v in model.trainable_variables],
            [tf.TensorSpec(v.shape, v.dtype) for v in model.non_trainable_variables],
            tf.TensorSpec((None, None, None, model.spec.in_channels), model.dtype),
            tf.TensorSpec((None,), tf.int64),
        ]
        _GRAPHS[key] = tf.function(run, input_signature=signature, jit_compile=_grouped(model.spec))
    return _GRAPHS[key]


def _grouped(spec) -> bool:
    """Whether ``spec`` has a grouped conv: TensorFlow has no CPU kernel for its gradient, XLA has. Only then is
    the graph compiled with XLA, which costs seconds per net (GoogLeNet's: 17 s, against 1 s as a graph)."""
    return any(node.op == "conv" and node.layer.groups > 1 for node in spec.graph())


def _native(model: Model, variables: list, values: list) -> dict[str, np.ndarray]:
    prefix = f"{model.name}/"
    return {v.path.removeprefix(prefix): np.asarray(value) for v, value in zip(variables, values, strict=True)}


def _run(model: Model, x_nchw: np.ndarray, labels: np.ndarray):
    x = nchw_to_nhwc(check_input(model.spec, x_nchw, model.dtype))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    return _graph(model)(trainable, non_trainable, x, labels.astype(np.int64))


def _statistics(model: Model, values: list) -> Weights:
    return canonical_statistics(
        model.spec, _table(model.spec, model.pitfalls), _native(model, model.non_trainable_variables, values)
    )


def _gradients(model: Model, grads: list) -> Weights:
    native = _native(model, model.trainable_variables, grads)
    return canonical_gradients(model.spec, _table(model.spec, model.pitfalls), native)


def train_forward(model: Model, x_nchw: np.ndarray) -> tuple[np.ndarray, Weights]:
    """(logits on batch statistics, the running statistics this batch updates them to, PyTorch's convention)."""
    _, logits, _, new = _run(model, x_nchw, np.zeros(len(x_nchw), np.int64))
    before = _statistics(model, [v.value for v in model.non_trainable_variables])
    return logits.numpy(), unbiased_running_var(model.spec, before, _statistics(model, new), x_nchw.shape)


def gradients(model: Model, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
    """(mean softmax cross-entropy in train mode, {canonical name: its gradient}); the model is unchanged."""
    loss, _, grads, _ = _run(model, x_nchw, labels)
    return float(loss), _gradients(model, grads)


def optimizer_for(optimizer: OptimizerSpec, variant: str | None = None) -> keras.optimizers.Optimizer:
    """The Keras optimizer of ``optimizer`` (the decay and rescaling that ``Trainer`` adds aside)."""
    if optimizer.dampening:
        raise UnsupportedOption(name, f"dampening={optimizer.dampening:g}", "keras.optimizers.SGD has no dampening")
    if optimizer.nesterov:
        raise UnsupportedOption(
            name,
            "nesterov=True",
            "keras.optimizers.SGD's Nesterov step is written for its velocity, not torch's buffer",
        )
    if optimizer.kind == "adamw":
        b1, b2 = optimizer.betas
        return keras.optimizers.AdamW(
            learning_rate=optimizer.lr(0),
            weight_decay=optimizer.weight_decay,
            beta_1=b1,
            beta_2=b2,
            epsilon=optimizer.eps,
        )
    decay = optimizer.weight_decay if variant == "decoupled_sgd_decay" else None
    return keras.optimizers.SGD(learning_rate=optimizer.lr(0), momentum=optimizer.momentum, weight_decay=decay)


class Trainer:
    """Steps a Keras model with ``keras.optimizers``; ``variant``: a training pitfall of Keras."""

    def __init__(self, model: Model, optimizer: OptimizerSpec, variant: str | None = None) -> None:
        check_train_variant(name, model.spec, optimizer, variant)
        self.model, self.spec, self.variant = model, optimizer, variant
        self.optimizer = optimizer_for(optimizer, variant)
        self.optimizer.build(model.trainable_variables)
        self.steps = 0

    def step(self, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
        """One step on a batch: (its loss, the gradients of the loss it applied, canonical; weight decay aside)."""
        model, spec, t = self.model, self.spec, self.steps
        loss, _, gradients, new = _run(model, x_nchw, labels)
        grads, lr = gradients, spec.lr(t)
        if spec.kind == "sgd":
            if t and lr != spec.lr(t - 1) and self.variant != "velocity_momentum":
                for velocity in self.optimizer.momentums:
                    velocity.assign(velocity * sgd_momentum_rescale(spec.lr(t - 1), lr))
            if self.variant != "decoupled_sgd_decay":
                grads = [g + spec.weight_decay * v.value for g, v in zip(grads, model.trainable_variables, strict=True)]
        else:
            self.optimizer.epsilon = spec.eps * (1 - spec.betas[1] ** (t + 1)) ** 0.5
        self.optimizer.learning_rate.assign(lr)
        before = _statistics(model, [v.value for v in model.non_trainable_variables])
        after = _statistics(model, new)
        stats = (
            after
            if self.variant == "biased_running_var"
            else unbiased_running_var(model.spec, before, after, x_nchw.shape)
        )
        self.optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        _assign_statistics(model, new, stats)
        self.steps += 1
        return float(loss), _gradients(model, gradients)


def _assign_statistics(model: Model, new: list, stats: Weights) -> None:
    """The non-trainable variables set to ``new``, the running statistics among them to ``stats``."""
    rule = _table(model.spec, model.pitfalls)
    native = {rule.native_name(p): rule.to_native_array(p, stats[p.name]) for p in _stat_params(model)}
    prefix = f"{model.name}/"
    for variable, value in zip(model.non_trainable_variables, new, strict=True):
        variable.assign(native.get(variable.path.removeprefix(prefix), value))


@functools.cache
def _stat_params_of(spec) -> tuple:
    from parity.training import statistics

    return tuple(statistics(spec))


def _stat_params(model: Model) -> tuple:
    return _stat_params_of(model.spec)
