"""``parity explain --train MODEL --from A --to B [--variant V]``: A and B trained side by side from the same
weights on the same batches; the first step and tensor where B leaves A, and the cause, found by replay.

Each step is compared in the order it computes: the train-mode logits at its start (activation), the gradients
it applies, the weights after it, the running statistics after it; a tensor diverges beyond
``parity.training.run.TOLERANCE`` (weights and statistics: ``parity.training.run.judge``, AdamW's biases whose exact
gradient is 0 and their running means within ``ResidueBound`` on top). The cause is derived, never read from the
variant's name: the diverging tensor is recomputed in numpy under the faithful formula and under each naive port's,
and the one that reproduces B's tensor names it. Weights and gradients replay ``parity.training.optim.reference_step``
from the start weights with A's gradients, once per formula; running statistics replay PyTorch's update of the
statistics before the step with the batch statistic recovered from A's update.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from parity.specs import Spec
from parity.training.core import batch_counts, gradient_scales, relative_diffs, statistics, trainable
from parity.training.optim import FORMULAS, OptimizerSpec, ReferenceState, reference_step
from parity.training.run import DEFAULT_SIZE, TOLERANCE, ResidueBound, Trained, Verdict, judge, training_steps
from parity.weights import Weights

KINDS = ("activation", "gradient", "weight", "running statistic")

# The naive port each replayed formula stands for (``TRAIN_VARIANTS``), and how the suite avoids it.
OPTIMIZER_CAUSES = {
    "decoupled_sgd_decay": "decoupled_sgd_decay",
    "velocity_momentum": "velocity_momentum",
    "sum_gradient": "no_rescale_grad",
}
FIXES = {
    "bn_momentum_as_torch": "each framework's BatchNorm gets 1 - m for the spec's PyTorch momentum m (0.9 for 0.1)",
    "biased_running_var": "after each update the batch variance is recovered from the framework's running "
    "variance and multiplied by n / (n - 1) (parity.training.unbiased_running_var)",
    "decoupled_sgd_decay": "Keras' SGD gets no weight_decay; the trainer adds wd * w to the gradient, as "
    "torch.optim.SGD's L2 decay",
    "velocity_momentum": "at each change of rate the velocities are scaled by new / old rate "
    "(parity.training.optim.sgd_momentum_rescale)",
    "no_rescale_grad": "trainer.step(batch_size) after backward of the per-example loss: Gluon rescales the summed "
    "gradient by 1 / batch_size",
}


def running_update(r0: np.ndarray, batch: np.ndarray, m: float, formula: str, n: int, variance: bool) -> np.ndarray:
    """A running statistic after one update from ``r0`` with the batch statistic ``batch`` (PyTorch's: the
    unbiased variance), momentum ``m`` in PyTorch's sense, under ``formula``: ``faithful``
    (``(1 - m) * r0 + m * batch``), ``bn_momentum_as_torch`` (``m`` weighs the old statistic) or
    ``biased_running_var`` (the batch variance times (n - 1) / n)."""
    if formula == "bn_momentum_as_torch":
        return m * r0 + (1 - m) * batch
    if formula == "biased_running_var" and variance:
        return (1 - m) * r0 + m * batch * ((n - 1) / n)
    return (1 - m) * r0 + m * batch


RUNNING_FORMULAS = ("faithful", "bn_momentum_as_torch", "biased_running_var")


@dataclass(frozen=True)
class Replay:
    """One formula replayed: its largest difference to B's tensors of the diverging kind, relative to each
    tensor's largest value; ``cause`` the naive port it stands for (None: the faithful formula)."""

    formula: str
    cause: str | None
    max_rel: float
    tensor: str


@dataclass
class StepDiff:
    """One step: its rate, the losses of A and B, and per kind of tensor (``KINDS``) the verdict on B's tensor
    furthest beyond (or nearest to) its bound."""

    step: int
    lr: float
    losses: tuple[float, float]
    worst: dict[str, Verdict] = field(default_factory=dict)


@dataclass
class TrainDivergence:
    """Everything ``parity explain --train`` shows; ``first`` is (step, kind, tensor) or None."""

    spec: Spec
    src: str
    dst: str
    variant: str | None
    dtype: str
    optimizer: OptimizerSpec
    input_shape: tuple[int, ...]
    steps: list[StepDiff] = field(default_factory=list)
    first: tuple[int, str, str] | None = None
    replays: list[Replay] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.first is not None

    @property
    def cause(self) -> str | None:
        """The naive port whose formula reproduces B's diverging tensor (the best such), or None."""
        found = [r for r in self.replays if r.cause and r.max_rel <= TOLERANCE[self.dtype]]
        return min(found, key=lambda r: r.max_rel).cause if found else None


def _worst(diffs: Mapping[str, float]) -> tuple[float, str]:
    name = max(diffs, key=diffs.get)
    return diffs[name], name


def _compare(spec: Spec, a: Trained, b: Trained, dtype: str, derived: Mapping[str, float]) -> dict[str, Verdict]:
    params, stats = [p.name for p in trainable(spec)], [p.name for p in statistics(spec)]
    scale = float(np.max(np.abs(a.logits)))
    logits = float(np.max(np.abs(a.logits - b.logits))) / max(scale, np.finfo(float).tiny)
    out = {"activation": Verdict(logits, "logits", TOLERANCE[dtype])}
    gradient = _worst(relative_diffs(a.grads, b.grads, gradient_scales(spec, a.grads)))
    out["gradient"] = Verdict(*gradient, TOLERANCE[dtype])
    out["weight"] = judge({k: a.after[k] for k in params}, b.after, dtype, derived)
    if stats:
        out["running statistic"] = judge({k: a.after[k] for k in stats}, b.after, dtype, derived)
    return out


def optimizer_replays(
    optimizer: OptimizerSpec, start: Weights, grads: list[Weights], observed: Weights, batch: int
) -> list[Replay]:
    """Each of ``FORMULAS`` stepped from ``start`` through ``grads`` (A's, one per step), against B's weights
    ``observed`` after the last of them."""
    out = []
    for formula in FORMULAS:
        state, weights = ReferenceState(), {name: start[name] for name in grads[0]}
        for step_grads in grads:
            weights = reference_step(optimizer, weights, step_grads, state, formula, batch)
        rel, name = _worst(relative_diffs(weights, observed))
        out.append(Replay(formula, OPTIMIZER_CAUSES.get(formula), rel, name))
    return out


def statistic_replays(spec: Spec, before: Weights, after_a: Weights, observed: Weights, x_shape) -> list[Replay]:
    """Each of ``RUNNING_FORMULAS`` applied to the statistics ``before`` the step, with the batch statistic that
    A's update (PyTorch's) implies, against B's statistics ``observed`` after it."""
    counts = batch_counts(spec, x_shape)
    out = []
    for formula in RUNNING_FORMULAS:
        replayed = {}
        for p in statistics(spec):
            m, r0 = p.layer.momentum, before[p.name]
            batch = (after_a[p.name] - (1 - m) * r0) / m
            variance = p.leaf == "running_var"
            replayed[p.name] = running_update(r0, batch, m, formula, counts[p.layer.path], variance)
        rel, name = _worst(relative_diffs(replayed, observed))
        out.append(Replay(formula, None if formula == "faithful" else formula, rel, name))
    return out


def explain_train(
    spec: Spec,
    src: str,
    dst: str,
    variant: str | None = None,
    dtype: str = "float64",
    optimizer: OptimizerSpec | None = None,
    steps: int = 6,
    batch: int = 4,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> TrainDivergence:
    """A and B (B as ``variant``) trained until the first step where a tensor of B diverges; see the module
    docstring. ValueError for a variant that ``dst`` does not build or that changes nothing here."""
    optimizer = optimizer or OptimizerSpec.default("sgd")
    size = size or spec.fixed_input_size() or DEFAULT_SIZE
    result = TrainDivergence(spec, src, dst, variant, dtype, optimizer, (batch, spec.in_channels, *size))
    if src == dst:
        raise ValueError(f"to: B must be another framework than A, got {src} for both")
    variants, frameworks = ({dst: variant} if variant else {}), [src, dst]
    start, before, grads, residue = {}, {}, [], ResidueBound(spec, optimizer)
    for step, (x, _), trained in training_steps(
        spec, optimizer, steps, dtype, frameworks, batch, size, seed, variants, progress, logits=True
    ):
        a, b = trained[src], trained[dst]
        if step < 0:
            start = before = a.after
            continue
        grads.append(a.grads)
        worst = _compare(spec, a, b, dtype, residue.step(step, a.grads, b.grads))
        result.steps.append(StepDiff(step, optimizer.lr(step), (a.loss, b.loss), worst))
        kind = next((k for k in KINDS if k in worst and worst[k].over), None)
        if kind is not None:
            result.first = (step, kind, worst[kind].tensor)
            if kind in ("gradient", "weight"):
                result.replays = optimizer_replays(optimizer, start, grads, b.after, batch)
            elif kind == "running statistic":
                result.replays = statistic_replays(spec, before, a.after, b.after, x.shape)
            break
        before = a.after
    return result
