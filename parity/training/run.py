"""The K-step driver behind ``parity train-check``: the same start weights, the same synthetic batches and
one ``OptimizerSpec`` in every framework, each framework's weights and running statistics compared to
PyTorch's after every step.

Bounds (``TOLERANCE``), relative to each tensor's largest value: float64 1e-9, where a port that computes
the spec's formulas differs from torch by rounding alone (measured up to 7e-11 after 6 steps) and any
convention left unaligned differs by 1e-4 or more; float32 1e-3: one gradient already differs by up to ~1e-5 of its
largest entry (summation order), and AdamW divides each gradient by its own running RMS, so an entry whose
gradient is near 0 may move by a different fraction of ``lr`` (1e-3 here) of a weight of scale ~1.
AdamW in float64 exceeds the bound on a bias whose exact gradient is 0 (before a BatchNorm, as RegNetX32's):
its step ``lr * residue / eps`` turns rounding residue of ~1e-14 into ~1e-8 of the bias after 6 steps.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from parity.backends import get_backend
from parity.specs import Spec
from parity.training.core import check_finite, relative_diffs, synthetic_batches, without_dropout
from parity.training.optim import OptimizerSpec
from parity.training.variants import variant_spec
from parity.weights import Weights, randomize_batchnorm, randomize_biases

TOLERANCE = {"float64": 1e-9, "float32": 1e-3}
DEFAULT_SIZE = (32, 32)


def training_module(framework: str):
    """``impl_{framework}.training`` (its backend imported first, with its environment fixes)."""
    get_backend(framework)
    return importlib.import_module(f"impl_{framework}.training")


@dataclass
class StepResult:
    """One step: its learning rate, each framework's loss, and each framework's largest difference to torch
    (weights and running statistics, relative to each tensor's largest value) with the tensor it is in."""

    step: int
    lr: float
    losses: dict[str, float] = field(default_factory=dict)
    diffs: dict[str, tuple[float, str]] = field(default_factory=dict)


def start_weights(spec: Spec, dtype: str, seed: int) -> Weights:
    """torch's initialisation with BatchNorm tensors and biases drawn away from 0 and 1."""
    backend = get_backend("torch")
    weights = backend.export_weights(backend.build(spec, seed=seed, dtype=dtype))
    return randomize_biases(randomize_batchnorm(weights, seed + 1), seed + 1)


@dataclass
class Trained:
    """One framework's step: the train-mode logits at the step's start (when asked for), the loss, the
    gradients it applied and its canonical tensors after the step (weights and running statistics)."""

    loss: float
    grads: Weights
    after: Weights
    logits: np.ndarray | None = None


def training_steps(
    spec: Spec,
    optimizer: OptimizerSpec,
    steps: int,
    dtype: str = "float64",
    frameworks: Sequence[str] = ("torch", "jax", "tf", "mxnet"),
    batch: int = 4,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    variants: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    logits: bool = False,
) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray], dict[str, Trained]]]:
    """Train ``spec`` (dropout off) in each framework from torch's start weights on one synthetic stream:
    yields (step, (x, labels), {framework: Trained}) after every step, first the start as step -1 (``after``:
    the start weights, no gradients). ``logits``: also run ``train_forward`` before each step.

    Raises NonFinite where a loss, gradient, weight or statistic is NaN/Inf, naming step and tensor.
    """
    report = progress or (lambda message: None)
    spec = without_dropout(spec)
    variants = dict(variants or {})
    size = size or spec.fixed_input_size() or DEFAULT_SIZE
    batches = synthetic_batches(spec, steps, batch, size, dtype, seed)
    weights = start_weights(spec, dtype, seed)
    trainers = {}
    for fw in frameworks:
        report(f"building {fw}")
        backend, variant = get_backend(fw), variants.get(fw)
        model = backend.build(variant_spec(spec, variant), seed=seed, dtype=dtype)
        backend.load_weights(model, weights)
        trainers[fw] = (backend, model, training_module(fw), training_module(fw).Trainer(model, optimizer, variant))
    yield -1, batches[0], {fw: Trained(0.0, {}, weights) for fw in trainers}
    for step, (x, labels) in enumerate(batches):
        out = {}
        for fw, (backend, model, training, trainer) in trainers.items():
            report(f"step {step + 1}/{steps}: {fw}")
            forward = training.train_forward(model, x)[0] if logits else None
            loss, grads = trainer.step(x, labels)
            check_finite({"loss": np.asarray(loss)}, "the", fw, step)
            check_finite(grads, "gradient", fw, step)
            after = backend.export_weights(model)
            check_finite(after, "tensor", fw, step)
            out[fw] = Trained(loss, grads, after, forward)
        yield step, (x, labels), out


def train_check(
    spec: Spec,
    optimizer: OptimizerSpec,
    steps: int,
    dtype: str = "float64",
    frameworks: Sequence[str] = ("torch", "jax", "tf", "mxnet"),
    batch: int = 4,
    size: tuple[int, int] | None = None,
    seed: int = 0,
    variants: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[StepResult]:
    """Train ``spec`` (dropout off) for ``steps`` steps in each framework; torch first, the reference.

    Raises NonFinite where a loss, gradient, weight or statistic is NaN/Inf, naming step and tensor.
    """
    frameworks = ["torch", *(fw for fw in frameworks if fw != "torch")]
    run = training_steps(spec, optimizer, steps, dtype, frameworks, batch, size, seed, variants, progress)
    results = []
    for step, _, trained in run:
        if step < 0:
            continue
        result = StepResult(step, optimizer.lr(step))
        reference = trained["torch"].after
        for fw, one in trained.items():
            result.losses[fw] = one.loss
            diffs = relative_diffs(reference, one.after)
            worst = max(diffs, key=diffs.get)
            result.diffs[fw] = (diffs[worst], worst)
        results.append(result)
    return results


def diverged(results: Sequence[StepResult], dtype: str) -> bool:
    return any(diff > TOLERANCE[dtype] for result in results for diff, _ in result.diffs.values())
