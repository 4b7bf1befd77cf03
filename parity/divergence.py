"""Where and why two backends diverge: per-layer diffs, the first diverging layer, a cause hint.

``explain`` builds the spec in backend A (its own initialisation, BatchNorm tensors and
biases randomised as ``parity.harness.TransferRig`` does) and in backend B (optionally a
"naive port" ``variant``), moves A's canonical weights into B and compares every
activation point in execution order under ``parity.harness.TOLERANCE``.

The hint is derived, never read from a variant's name: the first diverging layer is
recomputed in numpy (``parity.reference``) from A's activations of its input, once as
the spec says and once under each known porting pitfall; the pitfall whose output
reproduces B's names the cause. A model that cannot take A's weights (its tensors have
other shapes) gets a structural audit instead: ``structure(model)`` of both sides,
layer by layer, with the known structural bug tested the same way (by rebuilding the
structure it would produce and comparing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from parity import reference
from parity.backends import get_backend
from parity.harness import TOLERANCE, TransferRig, logit_diff
from parity.layout import nchw_to_nhwc
from parity.specs import (
    AnyNet,
    BatchNorm,
    Conv,
    Dense,
    GoogLeNet,
    Inception,
    InceptionA,
    InceptionNet,
    Layer,
    ResNeXtBlock,
    Spec,
    block_path,
    d2l_stage_bug_block,
)
from parity.weights import WeightsError, layer_params

INPUT = "input"  # the network input, as an activation point


# --- how each activation point is computed -------------------------------------------------


@dataclass(frozen=True)
class Op:
    """How one activation point is computed from earlier points (or ``INPUT``).

    ``kind``: conv, bn, dense (``layer`` says which), relu, max_pool / avg_pool (``window``:
    kernel, stride, padding), add_relu (residual sum, then ReLU), concat (channel axis),
    mean (global average pool to (N, C)). With ``relu_first`` the inputs pass through a
    ReLU before the op.
    """

    kind: str
    inputs: tuple[str, ...]
    layer: Layer | None = None
    relu_first: bool = False
    window: tuple[int, int, int] | None = None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _layer_ops(layers: Sequence[Layer], inputs: Mapping[str, str], relu_first: Sequence[str] = ()) -> dict[str, Op]:
    """conv/bn/dense ops keyed by layer path, each reading ``inputs[path]``."""
    kinds = {Conv: "conv", BatchNorm: "bn", Dense: "dense"}
    return {
        layer.path: Op(kinds[type(layer)], (inputs[layer.path],), layer, relu_first=layer.path in relu_first)
        for layer in layers
        if layer.path in inputs
    }


def resnext_block_ops(block: ResNeXtBlock, prefix: str, source: str) -> dict[str, Op]:
    """conv1/conv4 <- block input, conv2 <- relu(bn1), conv3 <- relu(bn2), bn_k <- conv_k,
    block output <- relu(bn3 + shortcut)."""
    p = lambda name: _join(prefix, name)  # noqa: E731
    inputs = {p("conv1"): source, p("conv2"): p("bn1"), p("conv3"): p("bn2"), p("conv4"): source}
    inputs.update({p(f"bn{k}"): p(f"conv{k}") for k in range(1, 5)})
    ops = _layer_ops(block.layers(prefix), inputs, relu_first=(p("conv2"), p("conv3")))
    shortcut = p("bn4") if block.use_1x1conv else source
    ops[prefix or "output"] = Op("add_relu", (p("bn3"), shortcut))
    return ops


def inception_ops(block: Inception, prefix: str, source: str) -> dict[str, Op]:
    """d2l's Inception block: b2_2 <- relu(b2_1), b3_2 <- relu(b3_1), b4_1 = max-pool 3/1/1 of the
    input, output = concat of the four branches' ReLUs."""
    p = lambda name: _join(prefix, name)  # noqa: E731
    inputs = {p("b1_1"): source, p("b2_1"): source, p("b2_2"): p("b2_1"), p("b3_1"): source, p("b3_2"): p("b3_1"), p("b4_2"): p("b4_1")}
    ops = {p("b4_1"): Op("max_pool", (source,), window=(3, 1, 1))}
    ops.update(_layer_ops(block.layers(prefix), inputs, relu_first=(p("b2_2"), p("b3_2"))))
    ops[prefix or "output"] = Op("concat", tuple(p(n) for n in ("b1_1", "b2_2", "b3_2", "b4_2")), relu_first=True)
    return ops


def inception_a_ops(block: InceptionA, prefix: str, source: str) -> dict[str, Op]:
    """The tutorials' InceptionA (no ReLUs): branch_pool.avg = avg-pool 3/1/1 of the input."""
    p = lambda name: _join(prefix, name)  # noqa: E731
    chains = {"branch1x1": INPUT, "branch5x5_1": INPUT, "branch5x5_2": "branch5x5_1", "branch3x3_1": INPUT}
    chains.update({"branch3x3_2": "branch3x3_1", "branch3x3_3": "branch3x3_2", "branch_pool": "branch_pool.avg"})
    inputs = {p(name): source if src == INPUT else p(src) for name, src in chains.items()}
    ops = _layer_ops(block.layers(prefix), inputs)
    ops[p("branch_pool.avg")] = Op("avg_pool", (source,), window=(3, 1, 1))
    ops[prefix or "output"] = Op("concat", tuple(p(n) for n in ("branch1x1", "branch5x5_2", "branch3x3_3", "branch_pool")))
    return ops


def anynet_ops(spec: AnyNet) -> dict[str, Op]:
    layers = {layer.path: layer for layer in spec.layers()}
    ops = {
        "stem.conv": Op("conv", (INPUT,), layers["stem.conv"]),
        "stem.bn": Op("bn", ("stem.conv",), layers["stem.bn"]),
        "stem": Op("relu", ("stem.bn",)),
    }
    previous = "stem"
    for i, j, block in spec.blocks():
        ops.update(resnext_block_ops(block, block_path(i, j), previous))
        previous = block_path(i, j)
    ops["head.pool"] = Op("mean", (previous,))
    ops["head.fc"] = Op("dense", ("head.pool",), layers["head.fc"])
    return ops


def googlenet_ops(spec: GoogLeNet) -> dict[str, Op]:
    """b1/b2 stems with 3/2/1 max-pools after ReLUs, Inception blocks, pools after b3.1 and b4.4,
    global average (b5), dense head."""
    layers = {layer.path: layer for layer in spec.layers()}
    pool = (3, 2, 1)
    ops = {
        "b1.conv": Op("conv", (INPUT,), layers["b1.conv"]),
        "b1": Op("max_pool", ("b1.conv",), relu_first=True, window=pool),
        "b2.conv1": Op("conv", ("b1",), layers["b2.conv1"]),
        "b2.conv2": Op("conv", ("b2.conv1",), layers["b2.conv2"], relu_first=True),
        "b2": Op("max_pool", ("b2.conv2",), relu_first=True, window=pool),
    }
    previous = "b2"
    for path, block in spec.inceptions():
        ops.update(inception_ops(block, path, previous))
        previous = path
        if path in ("b3.1", "b4.4"):
            stage = path.split(".")[0]
            ops[stage] = Op("max_pool", (path,), window=pool)
            previous = stage
    ops["b5"] = Op("mean", (previous,))
    ops["head.fc"] = Op("dense", ("b5",), layers["head.fc"])
    return ops


def inception_net_ops(spec: InceptionNet) -> dict[str, Op]:
    """conv1 <- input, pool1 = max-pool 2 of relu(conv1), incep1 <- pool1, conv2 <- incep1, ...,
    fc <- flatten(incep2)."""
    layers = {layer.path: layer for layer in spec.layers()}
    ops = {
        "conv1": Op("conv", (INPUT,), layers["conv1"]),
        "pool1": Op("max_pool", ("conv1",), relu_first=True, window=(2, 2, 0)),
        **inception_a_ops(InceptionA(10), "incep1", "pool1"),
        "conv2": Op("conv", ("incep1",), layers["conv2"]),
        "pool2": Op("max_pool", ("conv2",), relu_first=True, window=(2, 2, 0)),
        **inception_a_ops(InceptionA(20), "incep2", "pool2"),
    }
    ops["fc"] = Op("dense", ("incep2",), layers["fc"])
    return ops


def point_ops(spec: Spec) -> dict[str, Op]:
    """{activation point: how it is computed}, for every point of ``spec.activation_points()``."""
    if isinstance(spec, AnyNet):
        return anynet_ops(spec)
    if isinstance(spec, GoogLeNet):
        return googlenet_ops(spec)
    if isinstance(spec, InceptionNet):
        return inception_net_ops(spec)
    if isinstance(spec, ResNeXtBlock):
        return resnext_block_ops(spec, "", INPUT)
    if isinstance(spec, Inception):
        return inception_ops(spec, "", INPUT)
    if isinstance(spec, InceptionA):
        return inception_a_ops(spec, "", INPUT)
    raise TypeError(f"no activation-point table for {type(spec).__name__}")


# --- recomputing one op in numpy, as specified and under each pitfall ------------------------


def _param(weights: Mapping[str, np.ndarray], layer: Layer, leaf: str) -> np.ndarray | None:
    return weights.get(f"{layer.path}.{leaf}")


def as_specified(op: Op, xs: Sequence[np.ndarray], weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """The op exactly as the spec defines it (inputs already through ``relu_first``)."""
    layer, x = op.layer, xs[0]
    if op.kind == "conv":
        return reference.conv2d(x, _param(weights, layer, "weight"), _param(weights, layer, "bias"), layer.stride, layer.padding, layer.groups)
    if op.kind == "bn":
        return reference.batch_norm(x, weights, layer.path, layer.eps)
    if op.kind == "dense":
        return x.reshape(x.shape[0], -1) @ _param(weights, layer, "weight").T + _param(weights, layer, "bias")
    if op.kind == "relu":
        return reference.relu(x)
    if op.kind == "max_pool":
        return reference.max_pool(x, *op.window)
    if op.kind == "avg_pool":
        return reference.avg_pool(x, *op.window)
    if op.kind == "add_relu":
        return reference.relu(xs[0] + xs[1])
    if op.kind == "concat":
        return np.concatenate(xs, axis=1)
    if op.kind == "mean":
        return x.mean(axis=(2, 3))
    raise ValueError(f"unknown op kind {op.kind!r}")


KERAS_BN_EPSILON = 1e-3


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/Flax padding='same' along one axis: (before, after), the odd cell going after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_padding_output(op: Op, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    """A padded conv or max-pool with padding='same' instead of symmetric padding, where the two differ."""
    if op.kind == "conv":
        kernel, stride, padding, fill = op.layer.kernel_size, op.layer.stride, op.layer.padding, 0.0
    elif op.kind == "max_pool":
        (kernel, stride, padding), fill = op.window, -np.inf
    else:
        return None
    x = xs[0]
    pads = [same_pads(size, kernel, stride) for size in x.shape[2:]]
    if padding == 0 or all(pad == (padding, padding) for pad in pads):
        return None
    padded = np.pad(x, ((0, 0), (0, 0), *pads), constant_values=fill)
    if op.kind == "conv":
        layer = op.layer
        y = reference.conv2d(padded, _param(weights, layer, "weight"), _param(weights, layer, "bias"), stride, 0, layer.groups)
    else:
        y = reference.max_pool(padded, kernel, stride)
    return y, f"pads (top, bottom) {pads[0]} and (left, right) {pads[1]} instead of ({padding}, {padding}) at stride {stride}"


def keras_bn_epsilon_output(op: Op, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    if op.kind != "bn" or op.layer.eps == KERAS_BN_EPSILON:
        return None
    y = reference.batch_norm(xs[0], weights, op.layer.path, KERAS_BN_EPSILON)
    return y, f"epsilon {KERAS_BN_EPSILON:g} instead of the spec's {op.layer.eps:g}"


def avgpool_excludes_padding_output(op: Op, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    if op.kind != "avg_pool" or op.window[2] == 0:
        return None
    x = xs[0]
    counted = reference.avg_pool(np.ones_like(x), *op.window)  # the fraction of each window inside the input
    return reference.avg_pool(x, *op.window) / counted, "border averages divide by the cells inside the input, not by the full window"


def unpermuted_flatten_output(op: Op, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    if op.kind != "dense" or op.layer.flatten_from is None:
        return None
    x = xs[0]
    y = nchw_to_nhwc(x).reshape(x.shape[0], -1) @ _param(weights, op.layer, "weight").T + _param(weights, op.layer, "bias")
    c, h, w = op.layer.flatten_from
    return y, f"features flattened in (H, W, C) = ({h}, {w}, {c}) order meet a weight in (C, H, W) order"


def untransposed_kernel_output(op: Op, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    """OIHW turned into (kH, kW, O, I/g) by transpose (2, 3, 0, 1), read as HWIO: input and output channels swapped."""
    if op.kind != "conv":
        return None
    kernel = _param(weights, op.layer, "weight")
    if kernel.shape[0] != kernel.shape[1]:
        return None
    layer = op.layer
    y = reference.conv2d(xs[0], kernel.transpose(1, 0, 2, 3), _param(weights, layer, "bias"), layer.stride, layer.padding, layer.groups)
    return y, f"transpose (2, 3, 0, 1) instead of (2, 3, 1, 0) swaps the kernel's {kernel.shape[0]} input and output channels; the shapes agree because I/groups == O"


@dataclass(frozen=True)
class Pitfall:
    """A classic porting pitfall: ``title`` heads the hint, ``fix`` says how the suite avoids it."""

    name: str
    title: str
    fix: str


SAME_PADDING = Pitfall(
    "same_padding",
    "'same' padding at stride 2",
    "explicit symmetric padding (Keras: ZeroPadding2D + 'valid'; Flax: padding=((p, p), (p, p)))",
)
KERAS_BN = Pitfall("keras_bn_epsilon", "BatchNorm epsilon 1e-3 (Keras' default)", "epsilon from the spec (bn_eps = 1e-5), never a framework default")
AVGPOOL_EXCLUDES_PADDING = Pitfall(
    "avgpool_excludes_padding",
    "average pooling excludes the padding",
    "pad with zeros explicitly, then pool 'valid', so the zeros count (PyTorch's count_include_pad=True)",
)
UNPERMUTED_FLATTEN = Pitfall(
    "unpermuted_flatten",
    "flatten order not permuted (NCHW vs NHWC)",
    "the hub permutes the dense weight's input axis from (C, H, W) to (H, W, C) order (flatten_order='HWC')",
)
UNTRANSPOSED_KERNEL = Pitfall(
    "untransposed_kernel",
    "kernel OIHW copied with the wrong transpose",
    "one named transform OIHW->HWIO, transpose (2, 3, 1, 0), for every conv; parity is checked by value, not by shape",
)
D2L_STAGE_BUG = Pitfall(
    "d2l_stage_bug",
    "d2l's MXNet stage passes num_channels twice",
    "blocks after a stage's first are ResNeXtBlock(num_channels, groups, bot_mul) (spec.AnyNet.blocks); a structural audit compares per-layer parameters and groups",
)

# (op, inputs, canonical weights) -> (the op's output under the pitfall, what differs), or None where it does not apply
Hypothesis = Callable[[Op, Sequence[np.ndarray], Mapping[str, np.ndarray]], tuple[np.ndarray, str] | None]

# Each numeric pitfall and the numpy recomputation of a layer under it (None: it does not apply to that op).
LAYER_PITFALLS: tuple[tuple[Pitfall, Hypothesis], ...] = (
    (SAME_PADDING, same_padding_output),
    (KERAS_BN, keras_bn_epsilon_output),
    (AVGPOOL_EXCLUDES_PADDING, avgpool_excludes_padding_output),
    (UNPERMUTED_FLATTEN, unpermuted_flatten_output),
    (UNTRANSPOSED_KERNEL, untransposed_kernel_output),
)


@dataclass(frozen=True)
class Hint:
    """The likely cause of a divergence: ``pitfall`` is None when no known pitfall explains it."""

    pitfall: Pitfall | None
    text: str


def reproduces(candidate: np.ndarray, observed: np.ndarray, dtype: str) -> bool:
    """``candidate`` equals ``observed`` within TOLERANCE[dtype], relative to ``observed``."""
    return candidate.shape == observed.shape and logit_diff(observed, candidate, dtype)[2]


def diagnose_layer(op: Op, inputs: Sequence[np.ndarray], observed: np.ndarray, weights: Mapping[str, np.ndarray], dtype: str) -> Hint:
    """Which computation of ``op`` turns ``inputs`` (A's activations) into ``observed`` (B's output)?

    Everything is recomputed in float64; a hypothesis matches when it reproduces ``observed``
    within the tolerance of ``dtype``.
    """
    xs = [np.asarray(x, np.float64) for x in inputs]
    xs = [reference.relu(x) for x in xs] if op.relu_first else xs
    weights64 = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    tried = []
    for pitfall, hypothesis in LAYER_PITFALLS:
        outcome = hypothesis(op, xs, weights64)
        if outcome is None:
            continue
        tried.append(pitfall.name)
        if reproduces(outcome[0], observed, dtype):
            return Hint(pitfall, f"{pitfall.title}: {outcome[1]}")
    if reproduces(as_specified(op, xs, weights64), observed, dtype):
        return Hint(None, "the spec's own computation from A's input reproduces B here: A is the side that differs from the spec")
    checked = f" (checked: {', '.join(tried)})" if tried else f" (no known pitfall applies to a {op.kind})"
    return Hint(None, f"no known pitfall reproduces B's output from A's input{checked}")


# --- the structural audit ----------------------------------------------------------------------


Structure = Mapping[str, tuple[int, int]]


@dataclass(frozen=True)
class LayerDifference:
    """One layer whose (trainable parameters, groups) differ; None where a side lacks it."""

    layer: str
    a: tuple[int, int] | None
    b: tuple[int, int] | None


def audit(a: Structure, b: Structure) -> list[LayerDifference]:
    """Every layer whose native structure differs, in A's order, then B's extra layers."""
    paths = list(dict.fromkeys([*a, *b]))
    return [LayerDifference(path, a.get(path), b.get(path)) for path in paths if a.get(path) != b.get(path)]


def spec_structure(layers: Sequence[Layer]) -> dict[str, tuple[int, int]]:
    """(trainable parameters, groups) of each layer as a spec defines it."""
    return {
        layer.path: (sum(int(np.prod(p.shape)) for p in layer_params(layer) if p.trainable), getattr(layer, "groups", 1))
        for layer in layers
    }


def stage_bug_blocks(spec: AnyNet) -> dict[str, ResNeXtBlock]:
    """The blocks d2l's MXNet ``stage`` builds after each stage's first one (``spec.d2l_stage_bug_block``)."""
    return {block_path(i, j): d2l_stage_bug_block(block) for i, j, block in spec.blocks() if j > 0}


def diagnose_structure(spec: Spec, a: Structure, b: Structure) -> Hint:
    """Does B's structure equal what d2l's MXNet stage bug builds? (The only structural pitfall known.)"""
    if not isinstance(spec, AnyNet) or not stage_bug_blocks(spec):
        return Hint(None, "no known structural pitfall applies to this model")
    buggy = stage_bug_blocks(spec)
    expected = dict(a) | {path: value for prefix, block in buggy.items() for path, value in spec_structure(block.layers(prefix)).items()}
    if any(expected.get(path) != value for path, value in b.items()):
        return Hint(None, "no known structural pitfall reproduces B's per-layer parameters and groups")
    prefix, block = next(iter(buggy.items()))
    faithful = next(blk for i, j, blk in spec.blocks() if block_path(i, j) == prefix)
    widening = block.bot_channels // faithful.bot_channels
    projection = ", extra projection" if block.use_1x1conv else ""
    total = lambda structure: sum(params for params, _ in structure.values()) / 1e6  # noqa: E731
    return Hint(
        D2L_STAGE_BUG,
        f"{D2L_STAGE_BUG.title}: {widening}x wider bottleneck{projection} in every block after a stage's first "
        f"({prefix}: {faithful.bot_channels} -> {block.bot_channels} bottleneck channels, conv2 groups {faithful.groups} -> {block.groups}); "
        f"{total(b):.2f} M parameters instead of {total(a):.2f} M",
    )


# --- the comparison ----------------------------------------------------------------------------


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


def point_diffs(spec: Spec, acts_a: Mapping[str, np.ndarray], acts_b: Mapping[str, np.ndarray], dtype: str) -> list[PointDiff]:
    """Per activation point in execution order: diffs under TOLERANCE[dtype] (shapes that differ exceed it)."""
    ops = point_ops(spec)
    diffs = []
    for point in spec.activation_points():
        a, b = acts_a[point], acts_b[point]
        scale = float(np.max(np.abs(a)))
        max_abs, max_rel, within = logit_diff(a, b, dtype) if a.shape == b.shape else (np.inf, np.inf, False)
        diffs.append(PointDiff(point, ops[point].kind, a.shape, b.shape, max_abs, max_rel, scale, not within))
    return diffs


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
        spec, src, dst, variant, dtype, tuple(x.shape), points=[], structure=audit(structure_a, structure_b),
        parameters_a=sum(v[0] for v in structure_a.values()), parameters_b=sum(v[0] for v in structure_b.values()),
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
            op = point_ops(spec)[first.point]
            inputs = [x if name == INPUT else acts_a[name] for name in op.inputs]
            result.first, result.hint = first.point, diagnose_layer(op, inputs, acts_b[first.point], weights, dtype)
    if result.first is None and result.structure:
        result.first, result.hint = result.structure[0].layer, diagnose_structure(spec, structure_a, structure_b)
    if result.first is not None:
        result.mapping = layer_mapping(spec, backend_a, backend_b, result.first)
    return result


def tolerance_bound(dtype: str, scale: float) -> float:
    """The largest max |diff| TOLERANCE[dtype] allows at a point whose max |A| is ``scale``."""
    kind, bound = TOLERANCE[dtype]
    return bound if kind == "abs" else bound * scale
