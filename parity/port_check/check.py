"""The comparison itself: A's tensors into B, every matched layer's output compared in A's execution
order, and at the first that differs, the cause (``parity.divergence``'s pitfalls, as ``parity explain``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from parity.divergence import Divergence, ParamMapping, PointDiff, diagnose_layer, group_causes
from parity.divergence.audit import LayerDifference
from parity.divergence.pitfalls import Hint
from parity.harness import logit_diff
from parity.layout import flatten_permutation
from parity.port_check.match import Mismatch, NameMap, Pair, from_canonical, match, to_canonical
from parity.port_check.native import POOL_KINDS, Call, Layer, PortCheckError
from parity.port_check.side import Side, observe
from parity.specs import BatchNorm, Conv, Dense, Node


@dataclass(frozen=True)
class Ports:
    """The two models of a port check, by class: what ``parity explain``'s screen calls the model."""

    name: str


@dataclass
class PortCheck:
    """What ``port_check`` found. ``divergence`` is what ``parity explain``'s screen shows (its ``first``
    is A's name of the first layer that differs); ``pairs`` says which layer of B took which of A's
    tensors and how; ``mismatches`` what does not line up (then nothing was loaded)."""

    a: Side
    b: Side
    pairs: list[Pair]
    mismatches: list[Mismatch]
    divergence: Divergence
    model_b: object = None
    points: list[tuple[Call, Call]] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return not self.divergence.diverged


def canonical_weights(side: Side, pairs: list[Pair]) -> dict[str, np.ndarray]:
    """A's tensors in canonical layout, named ``{A's layer name}.{role}``."""
    return {
        f"{p.a.name}.{role}": to_canonical(t.array, p.a, role, side.layout, p, p.order_a)
        for p in pairs
        for role, t in p.a.tensors.items()
    }


def b_arrays(
    side_b: Side, pairs: list[Pair], weights: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """{B's native name: A's tensor in B's layout}, and every tensor whose shape B refuses."""
    arrays, problems = {}, []
    for p in pairs:
        for role, t in p.b.tensors.items():
            value = from_canonical(weights[f"{p.a.name}.{role}"], p.b, role, side_b.layout, p, p.order_b)
            if value.shape != t.array.shape:
                problems.append(f"{t.name!r}: expected shape {t.array.shape}, got {value.shape} from {p.a.name}.{role}")
            arrays[t.name] = value.astype(t.array.dtype)
    return arrays, problems


def node_of(call: Call, weights: dict[str, np.ndarray], flatten_from) -> Node | None:
    """A's call as a spec node (symmetric padding, square windows), or None where it is not one."""
    kind, config, path = call.kind, call.config, call.layer
    if kind == "bn":
        channels = weights[f"{path}.running_mean"].shape[0]
        return Node(path, "bn", ("input",), layer=BatchNorm(path, channels, config["eps"], 0.1))
    if kind == "dense":
        out_features, in_features = weights[f"{path}.weight"].shape
        return Node(path, "dense", ("input",), layer=Dense(path, in_features, out_features, flatten_from))
    if kind == "global_avg_pool":
        return Node(path, kind, ("input",))
    kernel, stride, padding = config["kernel"], config["stride"], config["padding"]
    if padding == "same" and stride == (1, 1) and kernel[0] % 2 and kernel[1] % 2:
        padding = ((kernel[0] // 2,) * 2, (kernel[1] // 2,) * 2)
    pads = set(padding[0] + padding[1]) if padding != "same" else set()
    square = kernel[0] == kernel[1] and stride[0] == stride[1] and len(pads) == 1
    if not square or config.get("dilation", (1, 1)) != (1, 1) or config.get("ceil_mode"):
        return None
    if kind == "conv":
        weight = weights[f"{path}.weight"]
        layer = Conv(
            path,
            weight.shape[1] * config["groups"],
            weight.shape[0],
            kernel[0],
            stride[0],
            pads.pop(),
            config["groups"],
            f"{path}.bias" in weights,
        )
        return Node(path, "conv", ("input",), layer=layer)
    pad = pads.pop()
    if kind == "avg_pool" and pad and not config.get("count_include_pad", True):
        return None
    return Node(path, kind, ("input",), window=(kernel[0], stride[0], pad))


def canonical_input(call: Call, pair: Pair | None, order: str) -> np.ndarray:
    """A call's first input as the canonical node reads it: a dense layer's features flattened in (C, H, W) order."""
    x = call.inputs[0]
    if call.kind != "dense":
        return x
    x = x.reshape(x.shape[0], -1)
    if pair is not None and pair.flatten_from and order == "HWC":
        x = x[:, np.argsort(flatten_permutation(*pair.flatten_from))]
    return x


def like(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """B's output in A's shape where only unit axes differ (a global pool's (N, C) against (N, C, 1, 1))."""
    return b.reshape(a.shape) if b.shape != a.shape and b.size == a.size and b.shape[:2] == a.shape[:2] else b


def matched_calls(side_a: Side, side_b: Side, pairs: list[Pair]) -> list[tuple[Call, Call, Pair | None]]:
    """(A's call, B's call, pair) of every paired layer's first call and of every pool kind both run
    equally often, in A's execution order."""
    first_b = {}
    for call in side_b.calls:
        first_b.setdefault(call.layer, call)
    by_a = {p.a.name: p for p in pairs}
    found, seen = [], set()
    pools_b = {kind: [c for c in side_b.calls if c.kind == kind] for kind in POOL_KINDS}
    pools_a = {kind: [c for c in side_a.calls if c.kind == kind] for kind in POOL_KINDS}
    for call in side_a.calls:
        pair = by_a.get(call.layer)
        if pair is not None and call.layer not in seen and pair.b.name in first_b:
            seen.add(call.layer)
            found.append((call, first_b[pair.b.name], pair))
        elif call.kind in POOL_KINDS and len(pools_a[call.kind]) == len(pools_b[call.kind]):
            found.append((call, pools_b[call.kind][pools_a[call.kind].index(call)], None))
    return found


def structure_rows(mismatches: list[Mismatch]) -> list[LayerDifference]:
    """The mismatches as the structural audit's rows: (tensor elements, conv groups) on each side."""

    def size(layer: Layer | None) -> tuple[int, int] | None:
        if layer is None:
            return None
        return sum(t.array.size for t in layer.tensors.values()), int(layer.config.get("groups", 1))

    def name(m: Mismatch) -> str:
        return " / ".join(layer.name for layer in (m.a, m.b) if layer is not None)

    return [LayerDifference(name(m), size(m.a), size(m.b)) for m in mismatches]


def model_name(side: Side) -> str:
    model = side.model[0] if side.framework == "jax" else side.model
    return type(model).__name__


def port_check(
    model_a,
    model_b,
    x_nchw: np.ndarray,
    name_map: NameMap | None = None,
    *,
    load: bool = True,
    progress: Callable[[str], None] | None = None,
) -> PortCheck:
    """Compare two native models layer by layer, A the reference; see ``parity.port_check``."""
    step = progress or (lambda message: None)
    x = np.asarray(x_nchw)
    if x.ndim != 4 or x.dtype not in (np.float32, np.float64):
        raise PortCheckError(f"x_nchw: expected a float32 or float64 (N, C, H, W) array, got {x.dtype} {x.shape}")
    dtype = str(x.dtype)
    step("running A")
    side_a = observe("A", model_a, x, "model_a")
    step("running B")
    side_b = observe("B", model_b, x, "model_b")
    step("matching layers")
    pairs, mismatches = match(side_a, side_b, name_map)
    weights = canonical_weights(side_a, pairs)
    title = Ports(f"{model_name(side_a)} -> {model_name(side_b)}")
    result = Divergence(
        title,
        side_a.framework,
        side_b.framework,
        None,
        dtype,
        tuple(x.shape),
        points=[],
        structure=structure_rows(mismatches),
        parameters_a=sum(t.array.size for layer in side_a.layers for t in layer.tensors.values()),
        parameters_b=sum(t.array.size for layer in side_b.layers for t in layer.tensors.values()),
    )
    check = PortCheck(side_a, side_b, pairs, mismatches, result, model_b)
    problems = [] if not load else b_arrays(side_b, pairs, weights)[1]
    if mismatches or problems:
        lines = [m.why for m in mismatches] + problems
        result.load_error = f"{len(lines)} problems, nothing loaded:\n" + "\n".join(lines)
        result.first = result.structure[0].layer if result.structure else None
        result.hint = Hint(None, lines[0])
        return check
    if load:
        step("loading A's tensors into B")
        check.model_b = side_b.capture.load(model_b, b_arrays(side_b, pairs, weights)[0])
        step("running B with A's tensors")
        side_b = check.b = observe("B", check.model_b, x, "model_b")
    compare(check, weights, dtype, step)
    return check


def compare(check: PortCheck, weights: dict[str, np.ndarray], dtype: str, step) -> None:
    """Every matched output, then the models' outputs; the first difference diagnosed, every later cause grouped."""
    result = check.divergence
    calls = matched_calls(check.a, check.b, check.pairs)
    for call_a, call_b, _ in calls:
        a, b = call_a.output, like(call_b.output, call_a.output)
        result.points.append(point_diff(call_a.layer, call_a.kind, a, b, dtype))
    result.points.append(point_diff("output", "output", check.a.output, like(check.b.output, check.a.output), dtype))
    first = next((k for k, p in enumerate(result.points) if p.exceeds), None)
    if first is None:
        return
    result.first = result.points[first].point
    if first == len(calls):
        result.hint = Hint(None, "every matched layer agrees: an op between layers differs (an activation, a sum)")
        return
    step(f"diagnosing {result.first}")
    call_a, call_b, pair = calls[first]
    node = node_of(call_a, weights, pair.flatten_from if pair else None)
    observed = like(call_b.output, call_a.output)
    if node is None:
        result.hint = Hint(None, f"A's {call_a.kind} {dict(call_a.config)} is not one the diagnosis recomputes")
    else:
        inputs = [canonical_input(call_a, pair, pair.order_a if pair else "CHW")]
        result.hint = diagnose_layer(node, inputs, observed, weights, dtype)
    if pair is not None:
        result.mapping = [
            ParamMapping(
                f"{pair.a.name}.{role}",
                t.name,
                t.array.shape,
                pair.b.tensors[role].name,
                pair.b.tensors[role].array.shape,
            )
            for role, t in pair.a.tensors.items()
        ]
    step("checking every later layer on its own")
    later = []
    for call_a, call_b, pair in calls[first:]:
        node = node_of(call_a, weights, pair.flatten_from if pair else None)
        if node is not None:
            inputs = [canonical_input(call_b, pair, pair.order_b if pair else "CHW")]
            later.append((call_a.layer, node, inputs, like(call_b.output, call_a.output)))
    result.causes = group_causes(later, weights, dtype)


def point_diff(point: str, kind: str, a: np.ndarray, b: np.ndarray, dtype: str) -> PointDiff:
    scale = float(np.max(np.abs(a)))
    max_abs, max_rel, within = logit_diff(a, b, dtype) if a.shape == b.shape else (np.inf, np.inf, False)
    return PointDiff(point, kind, a.shape, b.shape, max_abs, max_rel, scale, not within)
