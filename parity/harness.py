"""Build a spec in several frameworks, move weights between them through the hub, compare.

``compare`` is what ``parity compare`` and the parity tests run: every framework
builds the spec with its own initialisation, BatchNorm parameters and running
statistics and conv/dense biases are randomised away from 0/1 (otherwise a dropped
or swapped tensor that starts as a constant hides), and each framework's weights go through the
canonical form into every other framework, which must then reproduce the source's logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from parity.backends import DTYPES, SummaryRow, get_backend
from parity.devices import placed
from parity.layout import nchw_shape_to_nhwc, nhwc_shape_to_nchw
from parity.specs import Spec
from parity.weights import Weights, randomize_batchnorm, randomize_biases

# float64: every framework rounds to ~1e-16 per operation and RegNetX32 has ~35
# layers of sums over at most 720 terms, so honest rounding stays below ~1e-12; 1e-9
# absolute leaves three orders of margin and still catches any structural bug, which
# moves logits by O(0.1).
# float32: the same rounding at eps = 1.2e-7 gives ~1e-6 relative to the logits'
# scale; 2e-5 relative is ~20x that and 4 orders below a structural bug.
TOLERANCE = {"float64": ("abs", 1e-9), "float32": ("rel", 2e-5)}


def logit_diff(reference: np.ndarray, other: np.ndarray, dtype: str) -> tuple[float, float, bool]:
    """(max |a - b|, that relative to max |a|, within TOLERANCE[dtype])."""
    max_abs = float(np.max(np.abs(reference.astype(np.float64) - other.astype(np.float64))))
    max_rel = max_abs / max(float(np.max(np.abs(reference))), np.finfo(np.float64).tiny)
    kind, bound = TOLERANCE[dtype]
    return max_abs, max_rel, (max_abs if kind == "abs" else max_rel) <= bound


def tolerance_text(dtype: str) -> str:
    kind, bound = TOLERANCE[dtype]
    return f"max |diff| <= {bound:g}" if kind == "abs" else f"max |diff| / max |logit| <= {bound:g}"


@dataclass(frozen=True)
class Transfer:
    """One directed weight transfer: ``src``'s weights through the hub into ``dst``."""

    src: str
    dst: str
    max_abs: float
    max_rel: float
    passed: bool


@dataclass
class Report:
    spec: Spec
    dtype: str
    input_shape: tuple[int, ...]
    train: bool
    frameworks: list[str]
    device: str = "cpu"
    placements: dict[str, str] = field(default_factory=dict)  # {framework: its device, as it names it}
    summaries: dict[str, list[SummaryRow]] = field(default_factory=dict)
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.transfers)

    def transfer(self, src: str, dst: str) -> Transfer:
        return next(t for t in self.transfers if t.src == src and t.dst == dst)

    def to_json(self) -> dict:
        return {
            "model": self.spec.name,
            "dtype": self.dtype,
            "input_shape": list(self.input_shape),
            "train": self.train,
            "device": self.device,
            "placements": self.placements,
            "tolerance": tolerance_text(self.dtype),
            "passed": self.passed,
            "summaries": {
                fw: [
                    {
                        "layer": r.layer,
                        "shape": list(r.shape),
                        "shape_nchw": list(normalised_shape(fw, r)),
                        "params": r.params,
                        "group": r.group,
                    }
                    for r in rows
                ]
                for fw, rows in self.summaries.items()
            },
            "transfers": [
                {"src": t.src, "dst": t.dst, "max_abs": t.max_abs, "max_rel": t.max_rel, "passed": t.passed}
                for t in self.transfers
            ],
        }


def normalised_shape(framework: str, row: SummaryRow) -> tuple[int, ...]:
    """A summary row's output shape in NCHW order, whatever the framework's layout; a globally
    pooled (N, C, 1, 1) map is (N, C), the same numbers as the flattened vector other frameworks print."""
    shape = nhwc_shape_to_nchw(row.shape) if get_backend(framework).layout == "NHWC" else tuple(row.shape)
    return shape[:2] if len(shape) == 4 and shape[2:] == (1, 1) else shape


def native_input_shape(framework: str, shape_nchw: tuple[int, ...]) -> tuple[int, ...]:
    return nchw_shape_to_nhwc(shape_nchw) if get_backend(framework).layout == "NHWC" else tuple(shape_nchw)


def summarize(
    spec: Spec, frameworks: Sequence[str], input_shape_nchw: tuple[int, ...], dtype: str = "float32"
) -> dict[str, list[SummaryRow]]:
    """Each framework's d2l layer summary for the same (NCHW) input shape."""
    out = {}
    for fw in frameworks:
        backend = get_backend(fw)
        out[fw] = backend.layer_summary(
            backend.build(spec, seed=0, dtype=dtype), native_input_shape(fw, input_shape_nchw)
        )
    return out


class TransferRig:
    """One model per framework, reused as source and destination, so a full matrix builds each model once.

    Each framework's own initial weights are kept, with BatchNorm tensors and biases randomised
    away from the constants frameworks start them at, so a source
    always transfers what its framework initialised, whatever it received before.
    """

    def __init__(self, spec: Spec, frameworks: Sequence[str], dtype: str, seed: int = 0):
        if dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
        self.spec, self.dtype = spec, dtype
        self.backends = {fw: get_backend(fw) for fw in frameworks}
        self.models = {fw: be.build(spec, seed=seed, dtype=dtype) for fw, be in self.backends.items()}
        self.own_weights: dict[str, Weights] = {
            fw: randomize_biases(
                randomize_batchnorm(be.export_weights(self.models[fw]), seed=seed + k + 1), seed=seed + k + 1
            )
            for k, (fw, be) in enumerate(self.backends.items())
        }

    def source(self, fw: str, x_nchw: np.ndarray, train: bool = False) -> tuple[Weights, np.ndarray]:
        """Load ``fw``'s own weights into its model; return (weights as it exports them, its output)."""
        backend, model = self.backends[fw], self.models[fw]
        backend.load_weights(model, self.own_weights[fw])
        return backend.export_weights(model), backend.forward(model, x_nchw, train=train)

    def destination(self, fw: str, weights: Weights, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
        backend, model = self.backends[fw], self.models[fw]
        backend.load_weights(model, weights)
        return backend.forward(model, x_nchw, train=train)


def compare(
    spec: Spec,
    frameworks: Sequence[str],
    x_nchw: np.ndarray,
    dtype: str = "float32",
    train: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> Report:
    """All directed transfers between ``frameworks`` for one input, every framework on ``device``
    (``parity.devices.placed``); see the module docstring."""
    step = progress or (lambda message: None)
    report = Report(spec, dtype, tuple(x_nchw.shape), train, list(frameworks), device)
    with placed(frameworks, device) as report.placements:
        step("layer summaries")
        report.summaries = summarize(spec, frameworks, tuple(x_nchw.shape), dtype)
        step("building models")
        rig = TransferRig(spec, frameworks, dtype, seed)
        for src in frameworks:
            step(f"{src} -> others")
            weights, reference = rig.source(src, x_nchw, train)
            report.logits[src] = reference
            for dst in frameworks:
                if dst != src:
                    logits = rig.destination(dst, weights, x_nchw, train)
                    report.transfers.append(Transfer(src, dst, *logit_diff(reference, logits, dtype)))
    return report
