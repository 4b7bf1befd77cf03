"""One framework-neutral optimizer spec, in PyTorch's conventions, and its numpy reference step.

``OptimizerSpec`` says what ``torch.optim.SGD`` / ``torch.optim.AdamW`` would be given; each
backend's ``trainer`` turns it into its own optimizer and aligns every convention that differs
(README, "Training parity"). ``reference_step`` applies one step in numpy with the spec's formulas,
or with one of a naive port's (``formula``): ``parity explain --train`` replays a framework's own
gradients through each of them to name the one that reproduces its weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

OPTIMIZERS = ("sgd", "adamw")


class UnsupportedOption(ValueError):
    """An optimizer option that one framework's optimizer cannot express; the message names both."""

    def __init__(self, framework: str, option: str, why: str) -> None:
        super().__init__(f"{framework}: cannot express the optimizer option {option}: {why}")
        self.framework, self.option = framework, option


@dataclass(frozen=True)
class OptimizerSpec:
    """SGD (momentum, L2 weight decay added to the gradient, as torch.optim.SGD) or AdamW (decoupled decay
    ``w -= lr * weight_decay * w``, epsilon added to sqrt of the bias-corrected second moment, as
    torch.optim.AdamW). ``schedule`` is piecewise constant: ((first step, learning rate), ...), from step 0.

    The defaults (``default``) are exact in float32: Keras keeps the learning rate in a float32 variable and
    Gluon's operators take learning rate, momentum and decay as float32 parameters (Keras casts AdamW's betas to
    float32 too), so a rate of 0.05 is
    0.05000000075 there and float64 runs would differ by ~1e-8 for that alone.
    """

    kind: str = "sgd"
    schedule: tuple[tuple[int, float], ...] = ((0, 2**-4), (3, 2**-6))
    momentum: float = 0.5
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 2**-11
    betas: tuple[float, float] = (1 - 2**-3, 1 - 2**-10)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in OPTIMIZERS:
            raise ValueError(f"kind: expected one of {', '.join(OPTIMIZERS)}, got {self.kind!r}")
        starts = [start for start, _ in self.schedule]
        if not starts or starts[0] != 0 or starts != sorted(set(starts)):
            raise ValueError(f"schedule: expected ((0, lr), (step, lr), ...) with rising steps, got {self.schedule}")
        if min(lr for _, lr in self.schedule) <= 0:
            raise ValueError(f"schedule: learning rates must be positive, got {self.schedule}")

    @classmethod
    def default(cls, kind: str) -> OptimizerSpec:
        """The suite's SGD (lr 1/16 then 1/64 from step 3, momentum 0.5, decay 2^-11) or AdamW (lr 2^-10 then
        2^-12 from step 3, decay 2^-11)."""
        return cls(kind) if kind != "adamw" else cls(kind, schedule=((0, 2**-10), (3, 2**-12)))

    def lr(self, step: int) -> float:
        """The learning rate of step ``step`` (from 0)."""
        return next(lr for start, lr in reversed(self.schedule) if start <= step)

    def describe(self) -> str:
        rates = ", ".join(f"{lr:g} from step {start}" for start, lr in self.schedule)
        if self.kind == "sgd":
            return f"SGD(momentum={self.momentum:g}, weight_decay={self.weight_decay:g} as L2), lr {rates}"
        b1, b2 = self.betas
        return f"AdamW(betas=({b1:g}, {b2:g}), eps={self.eps:g}, weight_decay={self.weight_decay:g}), lr {rates}"


def sgd_momentum_rescale(previous_lr: float, lr: float) -> float:
    """The factor by which a velocity ``v = m * v - lr * g`` (Keras' and Gluon's SGD) is multiplied when the rate
    changes, so that it stays ``-lr * b`` for PyTorch's buffer ``b = m * b + g``: the two then take the same steps."""
    return lr / previous_lr


# Naive ports' optimizer formulas that ``reference_step`` can replay (``parity.training.variants``).
FORMULAS = ("faithful", "decoupled_sgd_decay", "velocity_momentum", "sum_gradient")


@dataclass
class ReferenceState:
    """The numpy optimizer's state: the step count and one buffer set per tensor name."""

    step: int = 0
    lr: float | None = None
    buffers: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def reference_step(
    spec: OptimizerSpec,
    weights: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    state: ReferenceState,
    formula: str = "faithful",
    batch_size: int = 1,
) -> dict[str, np.ndarray]:
    """New values of the tensors in ``grads`` after one step of ``spec`` at ``state.step`` (state updated).

    ``formula``: ``faithful`` is torch.optim's; ``decoupled_sgd_decay`` SGD with Keras' decoupled decay
    (``w -= lr * wd * w``, the gradient without it); ``velocity_momentum`` SGD's velocity ``v = m * v - lr * g``
    kept through a change of rate; ``sum_gradient`` the gradient of the summed (not mean) loss.
    """
    if formula not in FORMULAS:
        raise ValueError(f"formula: expected one of {', '.join(FORMULAS)}, got {formula!r}")
    lr, t = spec.lr(state.step), state.step + 1
    out = {}
    for name, g in grads.items():
        w, slots = weights[name], state.buffers.setdefault(name, {})
        g = g * batch_size if formula == "sum_gradient" else g
        if spec.kind == "sgd":
            if formula != "decoupled_sgd_decay":
                g = g + spec.weight_decay * w
            if formula == "velocity_momentum":
                v = spec.momentum * slots.get("v", np.zeros_like(w)) - lr * g
                slots["v"], new = v, w + v
            else:
                b = g if "b" not in slots else spec.momentum * slots["b"] + (1 - spec.dampening) * g
                slots["b"] = b
                new = w - lr * (g + spec.momentum * b if spec.nesterov else b)
            if formula == "decoupled_sgd_decay":
                new = new - lr * spec.weight_decay * w
        else:
            b1, b2 = spec.betas
            m = b1 * slots.get("m", np.zeros_like(w)) + (1 - b1) * g
            v = b2 * slots.get("v", np.zeros_like(w)) + (1 - b2) * g * g
            slots["m"], slots["v"] = m, v
            step = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + spec.eps)
            new = w * (1 - lr * spec.weight_decay) - lr * step
        out[name] = new
    state.step, state.lr = t, lr
    return out
