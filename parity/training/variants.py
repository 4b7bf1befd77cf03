"""Naive ports of training, one per training pitfall: real trainers that differ from the spec's training.

A variant is named to a backend's ``trainer`` (and, for ``bn_momentum_as_torch``, to ``build`` through
``variant_spec``); ``parity explain --train`` finds where one diverges and names its cause.
"""

from __future__ import annotations

import dataclasses

from parity.specs import Spec
from parity.training.optim import OptimizerSpec

# name -> (the frameworks whose trainer builds it, what the naive port does)
TRAIN_VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "bn_momentum_as_torch": (
        ("jax", "tf", "mxnet"),
        "BatchNorm momentum passed as PyTorch's 0.1 to Flax/Keras/Gluon, whose momentum weighs the old statistic: "
        "running = 0.1 * running + 0.9 * batch instead of 0.9 * running + 0.1 * batch",
    ),
    "biased_running_var": (
        ("jax", "tf", "mxnet"),
        "the running variance left as Flax/Keras/Gluon keep it, with the biased batch variance, where PyTorch's "
        "takes the unbiased one (times n / (n - 1), n values per channel)",
    ),
    "decoupled_sgd_decay": (
        ("tf",),
        "keras.optimizers.SGD(weight_decay=wd): Keras 3 decays decoupled (w -= lr * wd * w), where torch.optim.SGD "
        "adds wd * w to the gradient, which then goes through the momentum",
    ),
    "velocity_momentum": (
        ("tf", "mxnet"),
        "Keras'/Gluon's SGD velocity v = m * v - lr * g kept through a change of learning rate, where torch's "
        "buffer b = m * b + g is scaled by the new rate (w -= lr * b)",
    ),
    "no_rescale_grad": (
        ("mxnet",),
        "trainer.step(1) after backward of the per-example loss: Gluon's rescaling by 1 / batch_size left out, "
        "the gradient of the summed loss applied",
    ),
}


def _has_batchnorm(spec: Spec) -> bool:
    return any(node.op == "bn" for node in spec.graph())


def variant_problem(spec: Spec, optimizer: OptimizerSpec, variant: str) -> str | None:
    """Why ``variant`` would train ``spec`` with ``optimizer`` exactly as the spec does, or None."""
    if variant in ("bn_momentum_as_torch", "biased_running_var") and not _has_batchnorm(spec):
        return f"{spec.name} has no BatchNorm"
    if variant == "bn_momentum_as_torch" and not hasattr(spec, "bn_momentum"):
        return f"{spec.name} has no bn_momentum to pass"
    if variant in ("decoupled_sgd_decay", "velocity_momentum") and optimizer.kind != "sgd":
        return f"it is an SGD pitfall, the optimizer is {optimizer.kind}"
    if variant == "decoupled_sgd_decay" and not (optimizer.weight_decay and optimizer.momentum):
        return "it needs SGD with momentum and weight decay"
    if variant == "velocity_momentum" and not (optimizer.momentum and len(optimizer.schedule) > 1):
        return "it needs SGD with momentum and a learning rate that changes"
    return None


def check_train_variant(framework: str, spec: Spec, optimizer: OptimizerSpec, variant: str | None) -> None:
    """ValueError unless ``variant`` is None or a training variant that ``framework`` builds and that changes
    how ``spec`` trains under ``optimizer``."""
    if variant is None:
        return
    if variant not in TRAIN_VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(TRAIN_VARIANTS)}, got {variant!r}")
    frameworks, _ = TRAIN_VARIANTS[variant]
    if framework not in frameworks:
        raise ValueError(f"variant: {variant} is a pitfall of {', '.join(frameworks)}, not of {framework}")
    problem = variant_problem(spec, optimizer, variant)
    if problem:
        raise ValueError(f"variant: {variant} does not apply: {problem}")


def variant_spec(spec: Spec, variant: str | None) -> Spec:
    """The spec a variant's model is built from: ``bn_momentum_as_torch`` passes PyTorch's momentum where
    the framework expects its own, which is the spec with ``1 - momentum``."""
    if variant == "bn_momentum_as_torch":
        return dataclasses.replace(spec, bn_momentum=1 - spec.bn_momentum)
    return spec
