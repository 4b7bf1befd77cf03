"""Which layer of B takes which layer of A, and how each tensor's layout changes on the way.

Automatic matching walks A's tensor layers in execution order and pairs each with the next
unpaired layer of B when the two have the same kind and the same tensor shapes in canonical
(PyTorch) layout. Where B's order differs, a layer pairs with the one layer of B of its kind
and shapes that is left; where several are left, the match is ambiguous and refused, the
candidates listed (a ``name_map`` settles it). A user's ``name_map`` is (regex, replacement)
pairs that turn A's layer names into B's, applied in order with ``re.sub``, as the hub's tables
turn canonical module paths into native ones.

Every tensor goes A native -> canonical -> B native: conv kernels OIHW <-> HWIO, dense weights
(out, in) <-> (in, out), and the input axis of a dense layer fed by a flatten permuted between
(C, H, W) order (NCHW frameworks) and (H, W, C) order (NHWC frameworks, whose flatten reads an
NHWC map).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from parity.layout import flatten_permutation
from parity.port_check.native import Layer, PortCheckError
from parity.port_check.side import Side

NameMap = Sequence[tuple[str, str]]


def canonical_shape(layer: Layer, role: str, layout: str) -> tuple[int, ...]:
    shape = layer.tensors[role].array.shape
    if layout == "NHWC" and role == "weight" and layer.kind == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    if layout == "NHWC" and role == "weight" and layer.kind == "dense":
        return shape[::-1]
    return tuple(shape)


def signature(layer: Layer, layout: str) -> tuple:
    """What must agree for two layers to pair: kind and every tensor's canonical shape."""
    return layer.kind, tuple(sorted((role, canonical_shape(layer, role, layout)) for role in layer.tensors))


def describe(layer: Layer, layout: str) -> str:
    """``conv weight (64, 3, 7, 7)``: the kind and the canonical shape of its weight, or of its first tensor."""
    role = "weight" if "weight" in layer.tensors else next(iter(layer.tensors))
    return f"{layer.kind} {role} {canonical_shape(layer, role, layout)}"


def flatten_source(side: Side, layer: Layer) -> tuple[int, int, int] | None:
    """The (C, H, W) map a dense layer's input was flattened from (H * W > 1), or None."""
    index = next((k for k, call in enumerate(side.calls) if call.layer == layer.name), None)
    if index is None:
        return None
    features = side.calls[index].inputs[0]
    if features.ndim == 4:
        chw = features.shape[1:]
    else:
        size = features.shape[-1]
        chw = next(
            (
                array.shape[1:]
                for call in reversed(side.calls[:index])
                for array in (call.output, *call.inputs)
                if array.ndim == 4 and int(np.prod(array.shape[1:])) == size
            ),
            None,
        )
    return tuple(chw) if chw is not None and chw[1] * chw[2] > 1 else None


def flatten_order(side: Side, layer: Layer) -> str:
    """How ``side`` flattens a map into ``layer``: "CHW" in NCHW frameworks and where the dense layer
    flattens its own 4-D input, "HWC" where an NHWC framework flattened it."""
    call = next((c for c in side.calls if c.layer == layer.name), None)
    four_d = call is not None and call.inputs[0].ndim == 4
    return "HWC" if side.layout == "NHWC" and not four_d else "CHW"


@dataclass(frozen=True)
class Pair:
    """Layer ``a`` of A into layer ``b`` of B; ``how``: "order", "shape" (B's order differs) or "name_map"."""

    a: Layer
    b: Layer
    how: str
    flatten_from: tuple[int, int, int] | None = None
    order_a: str = "CHW"
    order_b: str = "CHW"


@dataclass(frozen=True)
class Mismatch:
    """A layer of A or of B (the other None) without a counterpart, or two that do not fit."""

    a: Layer | None
    b: Layer | None
    why: str


class AmbiguousMatch(PortCheckError):
    """Several layers of B could take one layer of A; the message lists them."""


def _pair(side_a: Side, side_b: Side, a: Layer, b: Layer, how: str) -> Pair:
    if a.kind != "dense":
        return Pair(a, b, how)
    source = flatten_source(side_a, a) or flatten_source(side_b, b)
    return Pair(a, b, how, source, flatten_order(side_a, a), flatten_order(side_b, b))


def automatic(side_a: Side, side_b: Side) -> tuple[list[Pair], list[Mismatch]]:
    """Pairs by execution order and shape; the layers left over, aligned, as mismatches."""
    sig_a = {id(layer): signature(layer, side_a.layout) for layer in side_a.layers}
    sig_b = {id(layer): signature(layer, side_b.layout) for layer in side_b.layers}
    free = list(side_b.layers)
    pairs, left_a = [], []
    for a in side_a.layers:
        if free and sig_b[id(free[0])] == sig_a[id(a)]:
            pairs.append(_pair(side_a, side_b, a, free.pop(0), "order"))
            continue
        candidates = [b for b in free if sig_b[id(b)] == sig_a[id(a)]]
        if len(candidates) > 1:
            names = ", ".join(b.name for b in candidates)
            raise AmbiguousMatch(
                f"ambiguous match: A's layer {a.name!r} ({describe(a, side_a.layout)}) could be any of B's {names} "
                "(B runs its layers in another order); give name_map=[(A's layer regex, B's layer name), ...]"
            )
        if candidates:
            free.remove(candidates[0])
            pairs.append(_pair(side_a, side_b, a, candidates[0], "shape"))
        else:
            left_a.append(a)
    return pairs, aligned_mismatches(side_a, side_b, left_a, free) if left_a or free else []


def aligned_mismatches(side_a: Side, side_b: Side, left_a: list[Layer], left_b: list[Layer]) -> list[Mismatch]:
    """A's and B's layers aligned in execution order (difflib on their signatures): what does not line up."""
    sig_a = [signature(layer, side_a.layout) for layer in side_a.layers]
    sig_b = [signature(layer, side_b.layout) for layer in side_b.layers]
    rows = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, sig_a, sig_b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        a_run, b_run = side_a.layers[i1:i2], side_b.layers[j1:j2]
        for k in range(max(len(a_run), len(b_run))):
            a = a_run[k] if k < len(a_run) else None
            b = b_run[k] if k < len(b_run) else None
            if a is None:
                why = f"only in B: {describe(b, side_b.layout)}"
            elif b is None:
                why = f"only in A: {describe(a, side_a.layout)}"
            else:
                why = f"A has {describe(a, side_a.layout)}, B {describe(b, side_b.layout)}"
            rows.append(Mismatch(a, b, why))
    return rows or [Mismatch(a, None, "A's layer has no counterpart in B") for a in left_a] + [
        Mismatch(None, b, "B's layer has no counterpart in A") for b in left_b
    ]


def by_name_map(side_a: Side, side_b: Side, name_map: NameMap) -> tuple[list[Pair], list[Mismatch]]:
    """Pairs from (regex, replacement) rules on A's layer names; unmapped or misfitting layers as mismatches."""
    try:
        rules = [(re.compile(pattern), replacement) for pattern, replacement in name_map]
    except (TypeError, ValueError, re.error) as error:
        raise PortCheckError(f"name_map: expected (regex, replacement) pairs, got {name_map!r} ({error})") from None
    layers_b = {layer.name: layer for layer in side_b.layers}
    pairs, mismatches, taken = [], [], set()
    for a in side_a.layers:
        name = a.name
        for pattern, replacement in rules:
            name = pattern.sub(replacement, name)
        b = layers_b.get(name)
        if b is None:
            mismatches.append(Mismatch(a, None, f"name_map gives {name!r}, not a layer of B"))
        elif signature(a, side_a.layout) != signature(b, side_b.layout):
            why = f"A has {describe(a, side_a.layout)}, B {describe(b, side_b.layout)}"
            mismatches.append(Mismatch(a, b, why))
        else:
            pairs.append(_pair(side_a, side_b, a, b, "name_map"))
        taken.add(name)
    mismatches += [Mismatch(None, b, "no layer of A maps to it") for b in side_b.layers if b.name not in taken]
    return pairs, mismatches


def match(side_a: Side, side_b: Side, name_map: NameMap | None) -> tuple[list[Pair], list[Mismatch]]:
    return by_name_map(side_a, side_b, name_map) if name_map is not None else automatic(side_a, side_b)


# ---- tensors: A native -> canonical -> B native


def to_canonical(array: np.ndarray, layer: Layer, role: str, layout: str, pair: Pair, order: str) -> np.ndarray:
    value = np.asarray(array)
    if layout == "NHWC" and role == "weight" and layer.kind == "conv":
        value = value.transpose(3, 2, 0, 1)
    elif layout == "NHWC" and role == "weight" and layer.kind == "dense":
        value = value.T
    if role == "weight" and layer.kind == "dense" and order == "HWC" and pair.flatten_from:
        value = value[:, np.argsort(flatten_permutation(*pair.flatten_from))]
    return np.ascontiguousarray(value)


def from_canonical(value: np.ndarray, layer: Layer, role: str, layout: str, pair: Pair, order: str) -> np.ndarray:
    if role == "weight" and layer.kind == "dense" and order == "HWC" and pair.flatten_from:
        value = value[:, flatten_permutation(*pair.flatten_from)]
    if layout == "NHWC" and role == "weight" and layer.kind == "conv":
        value = value.transpose(2, 3, 1, 0)
    elif layout == "NHWC" and role == "weight" and layer.kind == "dense":
        value = value.T
    return np.ascontiguousarray(value)


def transform_text(pair: Pair, role: str, layout_a: str, layout_b: str) -> str:
    """The layout change of one tensor from A to B, in words."""
    steps = []
    if role == "weight" and pair.a.kind == "conv" and layout_a != layout_b:
        steps.append("OIHW->HWIO" if layout_b == "NHWC" else "HWIO->OIHW")
    if role == "weight" and pair.a.kind == "dense" and layout_a != layout_b:
        steps.append("(out,in)->(in,out)" if layout_b == "NHWC" else "(in,out)->(out,in)")
    if role == "weight" and pair.flatten_from and pair.order_a != pair.order_b:
        c, h, w = pair.flatten_from
        order = {"CHW": f"(C,H,W)=({c},{h},{w})", "HWC": f"(H,W,C)=({h},{w},{c})"}
        steps.append(f"inputs {order[pair.order_a]}->{order[pair.order_b]}")
    return ", ".join(steps) or "identity"
