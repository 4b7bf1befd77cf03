"""The classic porting pitfalls, and which of them turns one layer's input into what B computed.

The hint is derived, never read from a variant's name: the diverging node is recomputed in
numpy from A's activations of its input, once as the spec says (``parity.reference.apply``)
and once under each pitfall; the pitfall whose output reproduces B's names the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from parity import reference
from parity.harness import logit_diff
from parity.layout import nchw_to_nhwc
from parity.specs import NiN, Node
from parity.variants import keeps_size_unpadded

KERAS_BN_EPSILON = 1e-3


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
KERAS_BN = Pitfall(
    "keras_bn_epsilon",
    "BatchNorm epsilon 1e-3 (Keras' default)",
    "epsilon from the spec (bn_eps = 1e-5), never a framework default",
)
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
DROPPED_PADDING = Pitfall(
    "dropped_padding",
    "padding dropped where the output size stays",
    "every conv padded as the spec says, even where an unpadded one gives the same output size",
)
D2L_NIN_POOL = Pitfall(
    "d2l_nin_pool",
    "d2l's JAX NiN averages a fixed 5x5 window",
    "a global average pool over the whole map (its window the input's height and width), right at every input size",
)
D2L_STAGE_BUG = Pitfall(
    "d2l_stage_bug",
    "d2l's MXNet stage passes num_channels twice",
    "blocks after a stage's first are ResNeXtBlock(num_channels, groups, bot_mul) (spec.AnyNet.blocks); "
    "a structural audit compares per-layer parameters and groups",
)
D2L_DENSENET_CHANNELS = Pitfall(
    "d2l_densenet_channels",
    "d2l's JAX DenseNet counts each dense block's channels from num_channels",
    "each transition halves what the dense block before it outputs, carried from block to block "
    "(spec.DenseNet.transition_channels); a structural audit compares per-layer parameters",
)
D2L_BNLENET_PADDING = Pitfall(
    "d2l_bnlenet_padding",
    "d2l's JAX BNLeNet pads its convs 'SAME' (Flax's default)",
    "every conv padded as the spec says (padding=0 written out where Flax's nn.Conv defaults to 'SAME'); "
    "a structural audit compares per-layer parameters",
)


def _param(weights: Mapping[str, np.ndarray], node: Node, leaf: str) -> np.ndarray | None:
    return weights.get(f"{node.layer.path}.{leaf}")


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/Flax padding='same' along one axis: (before, after), the odd cell going after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def same_padding_output(node: Node, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    """A padded conv or max-pool with padding='same' instead of symmetric padding, where the two differ."""
    if node.op == "conv":
        kernel, stride, padding, fill = node.layer.kernel_size, node.layer.stride, node.layer.padding, 0.0
    elif node.op == "max_pool":
        (kernel, stride, padding), fill = node.window, -np.inf
    else:
        return None
    x = xs[0]
    pads = [same_pads(size, kernel, stride) for size in x.shape[2:]]
    if padding == 0 or all(pad == (padding, padding) for pad in pads):
        return None
    padded = np.pad(x, ((0, 0), (0, 0), *pads), constant_values=fill)
    if node.op == "conv":
        weight, bias = _param(weights, node, "weight"), _param(weights, node, "bias")
        y = reference.conv2d(padded, weight, bias, stride, 0, node.layer.groups)
    else:
        y = reference.max_pool(padded, kernel, stride)
    return y, (
        f"pads (top, bottom) {pads[0]} and (left, right) {pads[1]} instead of ({padding}, {padding}) at stride {stride}"
    )


def keras_bn_epsilon_output(node: Node, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    if node.op != "bn" or node.layer.eps == KERAS_BN_EPSILON:
        return None
    y = reference.batch_norm(xs[0], weights, node.layer.path, KERAS_BN_EPSILON)
    return y, f"epsilon {KERAS_BN_EPSILON:g} instead of the spec's {node.layer.eps:g}"


def avgpool_excludes_padding_output(node: Node, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    if node.op != "avg_pool" or node.window[2] == 0:
        return None
    x = xs[0]
    counted = reference.avg_pool(np.ones_like(x), *node.window)  # the fraction of each window inside the input
    y = reference.avg_pool(x, *node.window) / counted
    return y, "border averages divide by the cells inside the input, not by the full window"


def unpermuted_flatten_output(node: Node, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    """The (H, W, C)-ordered flatten meeting the weight in (C, H, W) order."""
    if node.op != "dense" or node.layer.flatten_from is None:
        return None
    c, h, w = node.layer.flatten_from
    x = xs[0].reshape(-1, c, h, w)
    y = reference.dense(
        nchw_to_nhwc(x).reshape(x.shape[0], -1), _param(weights, node, "weight"), _param(weights, node, "bias")
    )
    return y, f"features flattened in (H, W, C) = ({h}, {w}, {c}) order meet a weight in (C, H, W) order"


def untransposed_kernel_output(node: Node, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    """OIHW turned into (kH, kW, O, I/g) by transpose (2, 3, 0, 1), read as HWIO: input and output channels swapped."""
    if node.op != "conv":
        return None
    kernel = _param(weights, node, "weight")
    if kernel.shape[0] != kernel.shape[1]:
        return None
    layer = node.layer
    swapped = kernel.transpose(1, 0, 2, 3)
    y = reference.conv2d(xs[0], swapped, _param(weights, node, "bias"), layer.stride, layer.padding, layer.groups)
    return y, (
        f"transpose (2, 3, 0, 1) instead of (2, 3, 1, 0) swaps the kernel's {kernel.shape[0]} input and output "
        "channels; the shapes agree because I/groups == O"
    )


def dropped_padding_output(node: Node, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    """A padded conv computed unpadded, where that keeps its output size: each window starts ``padding``
    pixels further down and right."""
    if node.op != "conv" or node.layer.padding == 0 or not keeps_size_unpadded(node.layer, xs[0].shape[2:]):
        return None
    layer = node.layer
    weight, bias = _param(weights, node, "weight"), _param(weights, node, "bias")
    y = reference.conv2d(xs[0], weight, bias, layer.stride, 0, layer.groups)
    return y, (
        f"no padding instead of {layer.padding} on every side keeps the {y.shape[2]}x{y.shape[3]} output, each "
        f"window {layer.padding} pixel{'s' if layer.padding > 1 else ''} further down and right"
    )


def d2l_nin_pool_output(node: Node, xs: Sequence[np.ndarray], weights) -> tuple[np.ndarray, str] | None:
    """A global average pool computed as d2l's JAX NiN does: a fixed window at stride 1, its output flattened
    in (H, W, C) order; where the map is that window's size, it is the global pool."""
    window = NiN.D2L_JAX_POOL
    x = xs[0]
    if node.op != "global_avg_pool" or x.shape[2:] == (window, window) or min(x.shape[2:]) < window:
        return None
    pooled = reference.avg_pool(x, window, 1, 0)
    y = nchw_to_nhwc(pooled).reshape(x.shape[0], -1)
    return y, (
        f"a {window}x{window} window at stride 1 over the {x.shape[2]}x{x.shape[3]} map leaves "
        f"{pooled.shape[2]}x{pooled.shape[3]} averages per channel: {y.shape[1]} outputs, not {x.shape[1]}"
    )


# (node, inputs, canonical weights) -> (the node's output under the pitfall, what differs),
# or None where it does not apply
Hypothesis = Callable[[Node, Sequence[np.ndarray], Mapping[str, np.ndarray]], tuple[np.ndarray, str] | None]

# Each numeric pitfall and the numpy recomputation of a layer under it.
LAYER_PITFALLS: tuple[tuple[Pitfall, Hypothesis], ...] = (
    (SAME_PADDING, same_padding_output),
    (KERAS_BN, keras_bn_epsilon_output),
    (AVGPOOL_EXCLUDES_PADDING, avgpool_excludes_padding_output),
    (UNPERMUTED_FLATTEN, unpermuted_flatten_output),
    (UNTRANSPOSED_KERNEL, untransposed_kernel_output),
    (DROPPED_PADDING, dropped_padding_output),
    (D2L_NIN_POOL, d2l_nin_pool_output),
)


@dataclass(frozen=True)
class Hint:
    """The likely cause of a divergence: ``pitfall`` is None when no known pitfall explains it."""

    pitfall: Pitfall | None
    text: str


def reproduces(candidate: np.ndarray, observed: np.ndarray, dtype: str) -> bool:
    """``candidate`` equals ``observed`` within TOLERANCE[dtype], relative to ``observed``."""
    return candidate.shape == observed.shape and logit_diff(observed, candidate, dtype)[2]


def diagnose_layer(
    node: Node, inputs: Sequence[np.ndarray], observed: np.ndarray, weights: Mapping[str, np.ndarray], dtype: str
) -> Hint:
    """Which computation of ``node`` turns ``inputs`` (from A's activations) into ``observed`` (B's output)?

    Everything is recomputed in float64; a hypothesis matches when it reproduces ``observed``
    within the tolerance of ``dtype``.
    """
    xs = [np.asarray(x, np.float64) for x in inputs]
    weights64 = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    tried = []
    for pitfall, hypothesis in LAYER_PITFALLS:
        outcome = hypothesis(node, xs, weights64)
        if outcome is None:
            continue
        tried.append(pitfall.name)
        if reproduces(outcome[0], observed, dtype):
            return Hint(pitfall, f"{pitfall.title}: {outcome[1]}")
    if reproduces(reference.apply(node, xs, weights64), observed, dtype):
        return Hint(
            None,
            "the spec's own computation from A's input reproduces B here: A is the side that differs from the spec",
        )
    checked = f" (checked: {', '.join(tried)})" if tried else f" (no known pitfall applies to a {node.op})"
    return Hint(None, f"no known pitfall reproduces B's output from A's input{checked}")
