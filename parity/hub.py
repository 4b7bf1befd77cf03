"""The hub: one canonical form, and per-backend tables that say how to reach it.

A backend declares a ``NameTable`` (data, not code): how a canonical module path
becomes its native module path, and for each tensor role (``conv.weight``,
``bn.running_var``, ...) the native leaf name and the named layout transform
from ``parity.layout.TRANSFORMS``. ``to_native`` and ``from_native`` do the rest
for every backend, so the four exporters and four importers share one code path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Union

import numpy as np

from parity.layout import TRANSFORMS
from parity.spec import Spec
from parity.weights import Param, Weights, WeightsError, schema, validate

Replacement = Union[str, Callable[[re.Match], str]]


@dataclass(frozen=True)
class NameTable:
    """How one backend names and lays out every canonical tensor.

    ``modules``: (regex on the canonical module path, replacement) pairs, applied in
    order with ``re.sub``; ``leaves``: role -> (native leaf name, transform name);
    ``separator`` joins the native module path and leaf.
    """

    modules: tuple[tuple[str, Replacement], ...]
    leaves: Mapping[str, tuple[str, str]]
    separator: str = "."

    def __post_init__(self) -> None:
        unknown = {t for _, t in self.leaves.values()} - set(TRANSFORMS)
        if unknown:
            raise ValueError(f"unknown layout transforms {sorted(unknown)}; known: {sorted(TRANSFORMS)}")

    def native_module(self, canonical_module: str) -> str:
        path = canonical_module
        for pattern, replacement in self.modules:
            path = re.sub(pattern, replacement, path)
        return path

    def native_name(self, param: Param) -> str:
        leaf, _ = self.leaves[param.role]
        return f"{self.native_module(param.layer.path)}{self.separator}{leaf}"

    def native_shape(self, param: Param) -> tuple[int, ...]:
        _, transform = self.leaves[param.role]
        return TRANSFORMS[transform][0](np.empty(param.shape, dtype=np.uint8)).shape

    def rows(self, spec: Spec) -> list[tuple[str, str, tuple[int, ...], str]]:
        """(canonical name, native name, native shape, transform) for every tensor: the mapping as a table."""
        return [(p.name, self.native_name(p), self.native_shape(p), self.leaves[p.role][1]) for p in schema(spec).values()]


def to_native(
    spec: Spec, weights: Mapping[str, np.ndarray], table: NameTable, dtype, allow_nonfinite: bool = False
) -> dict[str, np.ndarray]:
    """Validate canonical ``weights`` against ``spec`` and return them under native names and layouts.

    Raises WeightsError (every offending key at once) before converting anything.
    """
    validate(weights, spec, dtype=dtype, allow_nonfinite=allow_nonfinite)
    native = {}
    for name, param in schema(spec).items():
        _, transform = table.leaves[param.role]
        native[table.native_name(param)] = TRANSFORMS[transform][0](weights[name])
    return native


def from_native(spec: Spec, native: Mapping[str, np.ndarray], table: NameTable) -> Weights:
    """Canonical weights from a backend's ``{native name: array}``; every tensor of the spec must be there."""
    params = schema(spec).values()
    missing = [table.native_name(p) for p in params if table.native_name(p) not in native]
    if missing:
        raise WeightsError(f"the model lacks tensors that {spec.name} needs: {', '.join(missing)}")
    weights: Weights = {}
    for param in params:
        _, transform = table.leaves[param.role]
        weights[param.name] = TRANSFORMS[transform][1](np.asarray(native[table.native_name(param)]))
    return weights


def check_native_shapes(expected: Mapping[str, tuple[int, ...]], native: Mapping[str, np.ndarray]) -> None:
    """Raise WeightsError unless ``native`` has exactly the model's tensors with the model's shapes.

    Backends call this with their model's own shapes before assigning anything, so a
    table that disagrees with the model can never leave it half-loaded.
    """
    problems = [f"model has no tensor {k!r}" for k in native if k not in expected]
    problems += [f"model tensor {k!r} not provided" for k in expected if k not in native]
    problems += [
        f"{k!r}: model expects shape {tuple(expected[k])}, got {tuple(v.shape)}"
        for k, v in native.items()
        if k in expected and tuple(expected[k]) != tuple(v.shape)
    ]
    if problems:
        raise WeightsError("weights do not fit the model:\n  " + "\n  ".join(problems))
