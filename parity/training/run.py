"""The K-step driver behind ``parity train-check``: the same start weights, the same synthetic batches and
one ``OptimizerSpec`` in every framework, each framework's weights and running statistics compared to
PyTorch's after every step (``judge``; ``parity explain --train`` and the tests judge by the same bounds).

Bounds (``TOLERANCE``), relative to each tensor's largest value: float64 1e-9, where a port that computes
the spec's formulas differs from torch by rounding alone (measured up to 7e-11 after 6 steps) and any
convention left unaligned differs by 1e-4 or more; float32 1e-3: one gradient already differs by up to ~1e-5 of its
largest entry (summation order), and AdamW divides each gradient by its own running RMS, so an entry whose
gradient is near 0 may move by a different fraction of ``lr`` (1e-3 here) of a weight of scale ~1.
AdamW on a bias whose exact gradient is 0 (before a BatchNorm, as RegNetX32's) turns each framework's rounding
residue r (~1e-14) into a step ``lr * r / eps``, ~1e-8 of the bias after 6 steps, beyond 1e-9 though no port
differs: those biases and the running means they shift get ``ResidueBound`` on top of ``TOLERANCE``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from parity.backends import get_backend
from parity.specs import Spec
from parity.training.core import check_finite, synthetic_batches, without_dropout, zero_gradient_biases
from parity.training.optim import OptimizerSpec
from parity.training.variants import variant_spec
from parity.weights import Weights, randomize_batchnorm, randomize_biases

TOLERANCE = {"float64": 1e-9, "float32": 1e-3}
DEFAULT_SIZE = (32, 32)


def training_module(framework: str):
    """``impl_{framework}.training`` (its backend imported first, with its environment fixes)."""
    get_backend(framework)
    return importlib.import_module(f"impl_{framework}.training")


class ResidueBound:
    """AdamW's bound on the tensors that a zero exact gradient leaves to rounding, B against A, step by step.

    A conv or dense bias that feeds a BatchNorm alone (``zero_gradient_biases``) has an exact gradient of 0, and
    each framework returns rounding residue r instead. AdamW, ``w = w * (1 - lr * wd) - lr * m_hat /
    (sqrt(v_hat) + eps)``, moves it by at most ``lr_t * R / eps`` per step, R the largest |r| so far (``m_hat`` is a
    convex combination of the gradients so far, ``sqrt(v_hat) >= 0``); the decay scales both frameworks' bias by
    the same ``1 - lr_t * wd < 1``. So after step t the biases differ by at most ``D_t = sum_{s <= t} lr_s *
    (R_A + R_B) / eps``, and the BatchNorm's running mean, which takes m of a batch mean holding the bias of the
    step's start, by ``E_t = (1 - m) * E_{t-1} + m * D_{t-1}`` (``E_{-1} = D_{-1} = 0``: the same start weights).
    SGD moves such a bias by ``lr * r`` (~1e-17): no bound beyond ``TOLERANCE``.
    """

    def __init__(self, spec: Spec, optimizer: OptimizerSpec) -> None:
        self.biases = zero_gradient_biases(spec) if optimizer.kind == "adamw" else {}
        self.optimizer = optimizer
        self.largest = dict.fromkeys(self.biases, np.zeros(2))  # A's and B's largest |residue| so far
        self.bounds = {name: 0.0 for bias, bn in self.biases.items() for name in (bias, f"{bn.path}.running_mean")}

    def step(self, step: int, grads_a: Weights, grads_b: Weights) -> dict[str, float]:
        """{tensor: the absolute difference allowed beyond rounding after ``step``}, from the gradients A and B
        applied in it."""
        for bias, bn in self.biases.items():
            mean = f"{bn.path}.running_mean"
            self.bounds[mean] = (1 - bn.momentum) * self.bounds[mean] + bn.momentum * self.bounds[bias]
            # a residue counts only up to the gradient bound (TOLERANCE of the BatchNorm shift's largest gradient):
            # a wrong gradient must not widen the bound that would then excuse it
            cap = TOLERANCE[str(grads_a[bias].dtype)] * np.max(np.abs(grads_a[f"{bn.path}.bias"]))
            residues = np.minimum([np.max(np.abs(grads_a[bias])), np.max(np.abs(grads_b[bias]))], cap)
            self.largest[bias] = np.maximum(self.largest[bias], residues)
            self.bounds[bias] += self.optimizer.lr(step) * self.largest[bias].sum() / self.optimizer.eps
        return dict(self.bounds)


@dataclass(frozen=True)
class Verdict:
    """The tensor of B furthest beyond (or nearest to) its bound: ``diff`` = max |B - A| / max |A|, ``bound``
    relative to the same scale; ``derived``: judged by ``ResidueBound`` on top of ``TOLERANCE``."""

    diff: float
    tensor: str
    bound: float
    derived: bool = False

    @property
    def over(self) -> bool:
        return self.diff > self.bound


def judge(
    reference: Mapping[str, np.ndarray],
    other: Mapping[str, np.ndarray],
    dtype: str,
    derived: Mapping[str, float] | None = None,
) -> Verdict:
    """Each tensor of ``reference`` against ``other``: within ``TOLERANCE[dtype]`` of its largest value, plus
    ``derived[name]`` (absolute, ``ResidueBound.step``) where given; the verdict of the tensor with the largest
    difference to bound ratio."""
    derived = derived or {}
    worst = None
    for name, a in reference.items():
        a = np.asarray(a, np.float64)
        scale = max(float(np.max(np.abs(a))), np.finfo(np.float64).tiny)
        diff = float(np.max(np.abs(a - np.asarray(other[name], np.float64)))) / scale
        one = Verdict(diff, name, TOLERANCE[dtype] + derived.get(name, 0.0) / scale, name in derived)
        if worst is None or one.diff / one.bound > worst.diff / worst.bound:
            worst = one
    return worst


@dataclass
class StepResult:
    """One step: its learning rate, each framework's loss, and each framework's largest difference to torch
    (weights and running statistics) against its bound: ``judge``'s verdict."""

    step: int
    lr: float
    losses: dict[str, float] = field(default_factory=dict)
    diffs: dict[str, Verdict] = field(default_factory=dict)


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
    residues = {fw: ResidueBound(spec, optimizer) for fw in frameworks}
    results = []
    for step, _, trained in run:
        if step < 0:
            continue
        result = StepResult(step, optimizer.lr(step))
        reference = trained["torch"]
        for fw, one in trained.items():
            result.losses[fw] = one.loss
            derived = residues[fw].step(step, reference.grads, one.grads)
            result.diffs[fw] = judge(reference.after, one.after, dtype, derived)
        results.append(result)
    return results


def diverged(results: Sequence[StepResult]) -> bool:
    """Whether some framework's tensor left its bound at some step."""
    return any(verdict.over for result in results for verdict in result.diffs.values())
