"""``parity explain``: A's weights into B, then every activation point compared in execution order.

``explain`` builds the spec in backend A (its own initialisation, BatchNorm tensors and
biases randomised as ``parity.harness.TransferRig`` does) and in backend B (optionally a
"naive port" ``variant``), moves A's canonical weights into B and compares every
activation point under ``parity.harness.TOLERANCE``. At the first diverging point the
layer is diagnosed (``parity.divergence.pitfalls``); a model that cannot take A's weights
gets the structural audit (``parity.divergence.audit``) instead.

A naive port often has several pitfalls at once, and after the first divergence every later
point differs. So from the first divergence on, each layer is also checked on its own: its node
fed B's own activations of its inputs, as the spec computes it, against B's output. The layers
whose own computation differs are grouped into causes by the pitfall that reproduces each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from parity import reference
from parity.backends import get_backend
from parity.divergence.audit import LayerDifference, audit, diagnose_structure
from parity.divergence.graph import each_point_inputs, point_inputs, point_nodes
from parity.divergence.pitfalls import Hint, Pitfall, diagnose_layer, reproduces
from parity.harness import TOLERANCE, TransferRig, logit_diff
from parity.specs import Node, Spec
from parity.weights import WeightsError


@dataclass(frozen=True)
class PointDiff:
    """One activation point of A and B: ``scale`` is max |A|, ``max_rel`` = ``max_abs`` / ``scale``."""

    point: str
    kind: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    max_abs: float
    max_rel: float
    scale: float
    exceeds: bool


def point_diffs(
    spec: Spec, acts_a: Mapping[str, np.ndarray], acts_b: Mapping[str, np.ndarray], dtype: str
) -> list[PointDiff]:
    """Per activation point in execution order: diffs under TOLERANCE[dtype] (shapes that differ exceed it)."""
    nodes = point_nodes(spec)
    diffs = []
    for point in spec.activation_points():
        a, b = acts_a[point], acts_b[point]
        scale = float(np.max(np.abs(a)))
        max_abs, max_rel, within = logit_diff(a, b, dtype) if a.shape == b.shape else (np.inf, np.inf, False)
        diffs.append(PointDiff(point, nodes[point].op, a.shape, b.shape, max_abs, max_rel, scale, not within))
    return diffs


@dataclass(frozen=True)
class Cause:
    """Layers of B whose own computation differs from the spec's, explained alike: by ``pitfall`` (None
    when no known pitfall reproduces them), as ``hint`` says for the first of ``points``."""

    pitfall: Pitfall | None
    points: tuple[str, ...]
    hint: Hint


def local_causes(
    spec: Spec,
    acts_b: Mapping[str, np.ndarray],
    x: np.ndarray,
    weights: Mapping[str, np.ndarray],
    dtype: str,
    start: str,
) -> list[Cause]:
    """The activation points from ``start`` on whose node, fed B's own activations of its inputs, does not
    give B's output as the spec computes it, grouped by the pitfall that reproduces B's output there."""
    nodes = point_nodes(spec)
    points = spec.activation_points()
    weights64 = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    layers = (
        (point, nodes[point], inputs, acts_b[point])
        for point, inputs in each_point_inputs(spec, points[points.index(start) :], acts_b, x, weights64)
    )
    return group_causes(layers, weights64, dtype)


def group_causes(
    layers: Iterable[tuple[str, Node, Sequence[np.ndarray], np.ndarray]], weights: Mapping[str, np.ndarray], dtype: str
) -> list[Cause]:
    """Of ``(point, node, B's own inputs of the node, B's output)``, the layers whose output is not the
    node's on those inputs, grouped by the pitfall that reproduces it (``local_causes``, and any caller
    whose activations do not come from a spec)."""
    weights64 = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    found: dict[str | None, list[tuple[str, Hint]]] = {}
    for point, node, inputs, observed in layers:
        if reproduces(reference.apply(node, inputs, weights64), observed, dtype):
            continue
        hint = diagnose_layer(node, inputs, observed, weights64, dtype)
        found.setdefault(hint.pitfall.name if hint.pitfall else None, []).append((point, hint))
    return [Cause(hints[0][1].pitfall, tuple(point for point, _ in hints), hints[0][1]) for hints in found.values()]


@dataclass(frozen=True)
class ParamMapping:
    """One canonical tensor of a layer: its native name and shape in A and in B."""

    canonical: str
    name_a: str
    shape_a: tuple[int, ...]
    name_b: str
    shape_b: tuple[int, ...]


def layer_mapping(spec: Spec, backend_a, backend_b, layer: str) -> list[ParamMapping]:
    """The canonical tensors of ``layer`` with each side's native name and shape (the backends' tables)."""
    rows_a = {row[0]: row for row in backend_a.table(spec).rows(spec)}
    rows_b = {row[0]: row for row in backend_b.table(spec).rows(spec)}
    return [
        ParamMapping(name, rows_a[name][1], rows_a[name][2], rows_b[name][1], rows_b[name][2])
        for name in rows_a
        if name.rsplit(".", 1)[0] == layer
    ]


@dataclass
class Divergence:
    """Everything ``parity explain`` shows. ``first`` is the first diverging activation point, or, when
    there are no activations to compare (B could not take A's weights), the first layer the
    structural audit flags."""

    spec: Spec
    src: str
    dst: str
    variant: str | None
    dtype: str
    input_shape: tuple[int, ...]
    points: list[PointDiff]
    structure: list[LayerDifference]
    parameters_a: int
    parameters_b: int
    load_error: str | None = None
    first: str | None = None
    mapping: list[ParamMapping] | None = None
    hint: Hint | None = None
    causes: list[Cause] = field(default_factory=list)

    @property
    def diverged(self) -> bool:
        return self.first is not None or self.load_error is not None


class VariantUnavailable(ValueError):
    """B's backend refused the variant for this spec; the message says why."""


def prepared_source(spec: Spec, fw: str, dtype: str, seed: int, x: np.ndarray):
    """(backend, model, canonical weights) of A: its own initialisation, BatchNorm tensors and biases
    randomised exactly as ``TransferRig`` does for a source."""
    rig = TransferRig(spec, [fw], dtype, seed)
    weights, _ = rig.source(fw, x)
    return rig.backends[fw], rig.models[fw], weights


def build_destination(backend, spec: Spec, dtype: str, seed: int, variant: str | None):
    try:
        return backend.build(spec, seed=seed, dtype=dtype, variant=variant)
    except ValueError as error:
        if variant is None:
            raise
        raise VariantUnavailable(str(error).splitlines()[0]) from None


def explain(
    spec: Spec,
    src: str,
    dst: str,
    x: np.ndarray,
    variant: str | None = None,
    dtype: str = "float32",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Divergence:
    """A's weights into B (optionally a variant), then every activation point compared; see the module docstring."""
    step = progress or (lambda message: None)
    backend_b = get_backend(dst)
    step(f"building {dst}" + (f" ({variant})" if variant else ""))
    model_b = build_destination(backend_b, spec, dtype, seed, variant)
    step(f"building {src}")
    backend_a, model_a, weights = prepared_source(spec, src, dtype, seed, x)
    structure_a, structure_b = backend_a.structure(model_a), backend_b.structure(model_b)
    result = Divergence(
        spec,
        src,
        dst,
        variant,
        dtype,
        tuple(x.shape),
        points=[],
        structure=audit(structure_a, structure_b),
        parameters_a=sum(v[0] for v in structure_a.values()),
        parameters_b=sum(v[0] for v in structure_b.values()),
    )
    try:
        step(f"loading {src}'s weights into {dst}")
        backend_b.load_weights(model_b, weights)
    except WeightsError as error:
        result.load_error = str(error)
    if result.load_error is None:
        step("activations")
        acts_a, acts_b = backend_a.activations(model_a, x), backend_b.activations(model_b, x)
        result.points = point_diffs(spec, acts_a, acts_b, dtype)
        first = next((p for p in result.points if p.exceeds), None)
        if first is not None:
            step(f"diagnosing {first.point}")
            inputs = point_inputs(spec, first.point, acts_a, x, weights)
            node = point_nodes(spec)[first.point]
            result.first, result.hint = first.point, diagnose_layer(node, inputs, acts_b[first.point], weights, dtype)
            step("checking every later layer on its own")
            result.causes = local_causes(spec, acts_b, x, weights, dtype, first.point)
    if result.first is None and result.structure:
        result.first, result.hint = result.structure[0].layer, diagnose_structure(spec, structure_a, structure_b)
    if result.first is not None:
        result.mapping = layer_mapping(spec, backend_a, backend_b, result.first)
    return result


def tolerance_bound(dtype: str, scale: float) -> float:
    """The largest max |diff| TOLERANCE[dtype] allows at a point whose max |A| is ``scale``."""
    kind, bound = TOLERANCE[dtype]
    return bound if kind == "abs" else bound * scale
