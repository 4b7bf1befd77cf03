"""The hub: one canonical form, and per-backend tables that say how to reach it.

A backend declares a ``NameTable`` (data, not code): how a canonical module path
becomes its native module path, and for each tensor role (``conv.weight``,
``bn.running_var``, ...) the native leaf name and the named layout transform
from ``parity.layout.TRANSFORMS``. ``to_native`` (or ``stream_to_native``, one tensor at
a time) and ``from_native`` do the rest for every backend, so the four exporters and four
importers share one code path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from parity.layout import TRANSFORMS, flatten_permutation
from parity.specs import Dense, Spec
from parity.weights import Param, Weights, WeightsError, schema, validate

Replacement = str | Callable[[re.Match], str]

# PyTorch's leaf names and layouts: the canonical form, every transform the identity.
CANONICAL_LEAVES: Mapping[str, tuple[str, str]] = {
    "conv.weight": ("weight", "identity"),
    "conv.bias": ("bias", "identity"),
    "batchnorm.weight": ("weight", "identity"),
    "batchnorm.bias": ("bias", "identity"),
    "batchnorm.running_mean": ("running_mean", "identity"),
    "batchnorm.running_var": ("running_var", "identity"),
    "dense.weight": ("weight", "identity"),
    "dense.bias": ("bias", "identity"),
}


def leaves(**native: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """A leaves table: the canonical one with each role given as a keyword (``conv_weight`` for
    ``conv.weight``) replaced by its (native leaf name, transform)."""
    roles = {role.replace(".", "_"): role for role in CANONICAL_LEAVES}
    unknown = set(native) - set(roles)
    if unknown:
        raise ValueError(f"unknown tensor roles {sorted(unknown)}; known: {sorted(roles)}")
    return {**CANONICAL_LEAVES, **{roles[key]: value for key, value in native.items()}}


@dataclass(frozen=True)
class NameTable:
    """How one backend names and lays out every canonical tensor.

    ``modules``: (regex on the canonical module path, replacement) pairs, applied in
    order with ``re.sub``; ``leaves``: role -> (native leaf name, transform name);
    ``separator`` joins the native module path and leaf; ``flatten_order`` is the order in
    which the framework flattens a feature map: "CHW" (NCHW frameworks, the canonical
    order) or "HWC" (NHWC frameworks), whose dense weights after a flatten are permuted.
    """

    modules: tuple[tuple[str, Replacement], ...]
    leaves: Mapping[str, tuple[str, str]]
    separator: str = "."
    flatten_order: str = "CHW"

    def __post_init__(self) -> None:
        unknown = {t for _, t in self.leaves.values()} - set(TRANSFORMS)
        if unknown:
            raise ValueError(f"unknown layout transforms {sorted(unknown)}; known: {sorted(TRANSFORMS)}")
        if self.flatten_order not in ("CHW", "HWC"):
            raise ValueError(f"flatten_order: expected 'CHW' or 'HWC', got {self.flatten_order!r}")

    def native_module(self, canonical_module: str) -> str:
        path = canonical_module
        for pattern, replacement in self.modules:
            path = re.sub(pattern, replacement, path)
        return path

    def native_name(self, param: Param) -> str:
        leaf, _ = self.leaves[param.role]
        return f"{self.native_module(param.layer.path)}{self.separator}{leaf}"

    def native_shape(self, param: Param) -> tuple[int, ...]:
        """The shape ``to_native_array`` gives the tensor (found on a one-byte-per-value stand-in)."""
        return self.to_native_array(param, np.empty(param.shape, dtype=np.uint8)).shape

    def to_native_array(self, param: Param, value: np.ndarray) -> np.ndarray:
        """One canonical tensor in this framework's layout."""
        permutation = self._flatten_permutation(param)
        if permutation is not None:
            value = value[:, permutation]
        return TRANSFORMS[self.leaves[param.role][1]][0](value)

    def to_canonical_array(self, param: Param, value: np.ndarray) -> np.ndarray:
        """One native tensor in the canonical layout (a fresh array)."""
        value = TRANSFORMS[self.leaves[param.role][1]][1](np.asarray(value))
        permutation = self._flatten_permutation(param)
        return value if permutation is None else value[:, np.argsort(permutation)]

    def _flatten_permutation(self, param: Param) -> np.ndarray | None:
        """For a dense weight fed by a flatten in an HWC-flattening framework: the input-axis permutation."""
        layer = param.layer
        if (
            self.flatten_order == "CHW"
            or not isinstance(layer, Dense)
            or layer.flatten_from is None
            or param.leaf != "weight"
        ):
            return None
        return flatten_permutation(*layer.flatten_from)

    def rows(self, spec: Spec) -> list[tuple[str, str, tuple[int, ...], str]]:
        """(canonical name, native name, native shape, transform) for every tensor: the mapping as a table."""
        return [
            (p.name, self.native_name(p), self.native_shape(p), self.leaves[p.role][1]) for p in schema(spec).values()
        ]


def to_native(
    spec: Spec, weights: Mapping[str, np.ndarray], table: NameTable, dtype, allow_nonfinite: bool = False
) -> dict[str, np.ndarray]:
    """Validate canonical ``weights`` against ``spec`` and return them under native names and layouts.

    Raises WeightsError (every offending key at once) before converting anything.
    """
    validate(weights, spec, dtype=dtype, allow_nonfinite=allow_nonfinite)
    return {
        table.native_name(param): table.to_native_array(param, weights[name]) for name, param in schema(spec).items()
    }


def stream_to_native(
    spec: Spec,
    weights: Mapping[str, np.ndarray],
    table: NameTable,
    model_shapes: Mapping[str, tuple[int, ...]],
    dtype,
    allow_nonfinite: bool = False,
) -> Iterator[tuple[str, np.ndarray]]:
    """``to_native`` for a loader that assigns each tensor as it comes: (native name, native array) pairs.

    Everything is checked before the first tensor is converted: ``weights`` against ``spec`` and the
    native shapes against the model's (``model_shapes``), one WeightsError listing every problem. Then
    each tensor is converted only when the iteration reaches it, so no second full copy of the weights
    is ever held.
    """
    validate(weights, spec, dtype=dtype, allow_nonfinite=allow_nonfinite)
    params = schema(spec).values()
    _check_shapes(model_shapes, {table.native_name(p): table.native_shape(p) for p in params})
    return ((table.native_name(p), table.to_native_array(p, weights[p.name])) for p in params)


def from_native(spec: Spec, native: Mapping[str, np.ndarray], table: NameTable) -> Weights:
    """Canonical weights from a backend's ``{native name: array}``; every tensor of the spec must be there."""
    params = schema(spec).values()
    missing = [table.native_name(p) for p in params if table.native_name(p) not in native]
    if missing:
        raise WeightsError(f"the model lacks tensors that {spec.name} needs: {', '.join(missing)}")
    return {param.name: table.to_canonical_array(param, native[table.native_name(param)]) for param in params}


def check_native_shapes(expected: Mapping[str, tuple[int, ...]], native: Mapping[str, np.ndarray]) -> None:
    """Raise WeightsError unless ``native`` has exactly the model's tensors with the model's shapes.

    Backends call this with their model's own shapes before assigning anything, so a
    table that disagrees with the model can never leave it half-loaded.
    """
    _check_shapes(expected, {k: v.shape for k, v in native.items()})


def _check_shapes(expected: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]]) -> None:
    problems = [f"model has no tensor {k!r}" for k in given if k not in expected]
    problems += [f"model tensor {k!r} not provided" for k in expected if k not in given]
    problems += [
        f"{k!r}: model expects shape {tuple(expected[k])}, got {tuple(shape)}"
        for k, shape in given.items()
        if k in expected and tuple(expected[k]) != tuple(shape)
    ]
    if problems:
        raise WeightsError("weights do not fit the model:\n  " + "\n  ".join(problems))
