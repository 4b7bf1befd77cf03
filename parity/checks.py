"""What the per-architecture parity test files check, written once.

A ``Case`` is one spec at one NCHW input in one dtype. For each case, every framework's weights go
through the hub into every other framework (``transfer_params`` gives the 12 directed pairs as test
parameters, ``check_transfer`` checks one); ``check_numpy_reference`` holds torch's output to the
numpy referee. ``check_d2l_summary``, ``check_summaries_agree`` and ``check_parameter_counts``
compare the layer summaries and parameter counts with d2l's printed ones and across frameworks, on
models that ``Models`` builds once per spec.
Tolerances are ``parity.harness.TOLERANCE``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from parity import reference
from parity.backends import FRAMEWORKS, SummaryRow, get_backend, installed_frameworks
from parity.harness import TransferRig, logit_diff, native_input_shape, tolerance_text
from parity.report import d2l_lines, group_view
from parity.specs import Spec
from parity.weights import Weights, count_parameters

PAIRS = [(src, dst) for src in FRAMEWORKS for dst in FRAMEWORKS if src != dst]


@dataclass(frozen=True)
class Case:
    """One spec, one NCHW input shape, one dtype; ``slow`` cases run only with ``pytest -m slow``."""

    spec: Spec
    dtype: str
    input_shape: tuple[int, int, int, int]
    slow: bool = False

    @property
    def size(self) -> str:
        return "x".join(map(str, self.input_shape[2:]))

    def input(self) -> np.ndarray:
        return random_input(self.input_shape, self.dtype)


class Latest:
    """``Latest(make)(*key)``: ``make(*key)``, built once and kept until another key is asked for, for test files
    whose cases are too big to keep several alive and which run case by case."""

    def __init__(self, make: Callable[..., Any]) -> None:
        self.make, self.key, self.value = make, None, None

    def __call__(self, *key: Any) -> Any:
        if key != self.key:
            self.value = None  # free the old case before building the new one
            self.value, self.key = self.make(*key), key
        return self.value


def random_input(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)


def transfer_params(cases: Sequence[Case]) -> list:
    """``(case, src, dst)`` for every directed pair of every case, one case after another and by
    source within a case, so that ``Transfers`` builds each case's models and each source's weights
    once. Test ids name the model: ``alexnet-torch->jax-float64-67x75``."""
    return [
        pytest.param(
            case,
            src,
            dst,
            id=f"{case.spec.name}-{src}->{dst}-{case.dtype}-{case.size}",
            marks=[pytest.mark.slow] if case.slow else [],
        )
        for case in cases
        for src, dst in PAIRS
    ]


class Transfers:
    """The four frameworks' models of one (spec, dtype) at a time, and one source's weights and output.

    Asking for another (spec, dtype) or source drops the previous one: VGG's models take 0.5 GB
    per framework in float32, so a test file must not keep every case's alive. Tests in
    ``transfer_params`` order build each model once.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._rig_key: tuple | None = None
        self._rig: TransferRig | None = None
        self._source_key: tuple | None = None
        self._source: tuple[Weights, np.ndarray, np.ndarray] | None = None

    def rig(self, spec: Spec, dtype: str) -> TransferRig:
        if self._rig_key != (spec, dtype):
            self.clear()  # free the old models before building the new ones
            self._rig = TransferRig(spec, installed_frameworks(), dtype)
            self._rig_key = (spec, dtype)
        return self._rig

    def source(self, case: Case, src: str) -> tuple[Weights, np.ndarray, np.ndarray]:
        """(``src``'s exported weights, its output, the input) for ``case``."""
        rig = self.rig(case.spec, case.dtype)
        if self._source_key != (case, src):
            self._source = None
            x = case.input()
            self._source = (*rig.source(src, x), x)
            self._source_key = (case, src)
        return self._source


def check_transfer(transfers: Transfers, case: Case, src: str, dst: str) -> None:
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s output."""
    weights, expected, x = transfers.source(case, src)
    got = transfers.rig(case.spec, case.dtype).destination(dst, weights, x)
    assert got.dtype == np.dtype(case.dtype) and got.shape == case.spec.output_shape(x.shape)
    max_abs, max_rel, ok = logit_diff(expected, got, case.dtype)
    need = tolerance_text(case.dtype)
    assert ok, f"{src}->{dst} {case.dtype}: max |diff| {max_abs:.3e}, relative {max_rel:.3e}; need {need}"


def check_numpy_reference(case: Case, framework: str = "torch") -> None:
    """An independent numpy forward of ``framework``'s canonical weights gives its output (float64)."""
    assert case.dtype == "float64", "the numpy referee is compared in float64"
    x = case.input()
    weights, got = TransferRig(case.spec, (framework,), case.dtype).source(framework, x)
    max_abs, _, ok = logit_diff(reference.forward(case.spec, weights, x), got, case.dtype)
    assert ok, f"{framework}: max |diff| to numpy {max_abs:.3e}; need {tolerance_text(case.dtype)}"


class Models:
    """Each framework's model of one spec (seed 0, float32), for the tests that only read a model's
    summary or structure; asking for another spec drops the previous spec's models."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._spec: Spec | None = None
        self._models: dict[str, Any] = {}

    def get(self, framework: str, spec: Spec) -> Any:
        if self._spec != spec:
            self.clear()
            self._spec = spec
        if framework not in self._models:
            self._models[framework] = get_backend(framework).build(spec, seed=0)
        return self._models[framework]

    def summary(self, framework: str, spec: Spec, input_shape: tuple[int, ...]) -> list[SummaryRow]:
        """``framework``'s d2l layer summary of ``spec`` for an NCHW ``input_shape``."""
        model = self.get(framework, spec)
        return get_backend(framework).layer_summary(model, native_input_shape(framework, input_shape))


def check_d2l_summary(models: Models, spec: Spec, input_shape: tuple[int, ...], lines: Sequence[str]) -> None:
    """torch's summary prints exactly d2l's lines (``SummaryRow.d2l_line``)."""
    assert d2l_lines(models.summary("torch", spec, input_shape)) == list(lines)


def check_summaries_agree(models: Models, spec: Spec, input_shape: tuple[int, ...]) -> None:
    """Every framework's summary has the spec's groups, each with the same NCHW shape and parameters;
    the last group's shape is the output's, and the parameters add up to the spec's."""
    views = {fw: group_view(fw, models.summary(fw, spec, input_shape)) for fw in FRAMEWORKS}
    assert list(views["torch"]) == spec.summary_groups()
    for fw in FRAMEWORKS:
        assert views[fw] == views["torch"], fw
    assert list(views["torch"].values())[-1][0] == spec.output_shape(input_shape)
    assert sum(count for _, count in views["torch"].values()) == count_parameters(spec)[0]


def check_parameter_counts(models: Models, spec: Spec, params: int, bn_stats: int) -> None:
    """The spec holds ``params`` trainable numbers and ``bn_stats`` BatchNorm running statistics, and
    each framework's native layers (``structure``) hold the spec's layers with exactly those
    parameters, and its exported running statistics number ``bn_stats``."""
    assert count_parameters(spec) == (params, bn_stats)
    paths = [layer.path for layer in spec.layers()]
    for fw in FRAMEWORKS:
        backend, model = get_backend(fw), models.get(fw, spec)
        structure = backend.structure(model)
        assert list(structure) == paths, fw
        assert sum(count for count, _ in structure.values()) == params, fw
        if bn_stats:
            exported = backend.export_weights(model)
            stats = sum(v.size for k, v in exported.items() if k.endswith(("running_mean", "running_var")))
            assert stats == bn_stats, fw
