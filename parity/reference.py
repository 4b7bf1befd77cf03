"""An independent forward pass in plain numpy, written from the math, not from any framework.

It evaluates a spec's op graph (``spec.graph()``) on canonical weights directly (NCHW,
OIHW), with eval-mode BatchNorm on running statistics and a grouped convolution as a sum
over kernel taps, each tap one matrix product (``einsum`` hands it to BLAS). There is no
per-architecture code: a new spec is checked by its graph. Obvious on purpose: it is the
referee the four frameworks are checked against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from parity.specs import INPUT, Node, Spec


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int, padding: int, groups: int) -> np.ndarray:
    """Grouped 2-D cross-correlation; x (N, C, H, W), w (O, C/groups, kH, kW), zero padding on every side."""
    n, c, h, wd = x.shape
    o, c_per_group, kh, kw = w.shape
    if c != c_per_group * groups or o % groups:
        raise ValueError(f"conv2d: input channels {c} and kernel {w.shape} do not fit groups={groups}")
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (wd + 2 * padding - kw) // stride + 1
    o_per_group = o // groups
    y = np.zeros((n, o, out_h, out_w), dtype=np.result_type(x, w))
    for g in range(groups):
        xs = xp[:, g * c_per_group : (g + 1) * c_per_group]
        ws = w[g * o_per_group : (g + 1) * o_per_group]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
                y[:, g * o_per_group : (g + 1) * o_per_group] += np.einsum(
                    "nchw,oc->nohw", patch, ws[:, :, i, j], optimize=True
                )
    if b is not None:
        y += b[None, :, None, None]
    return y


def _windows(x: np.ndarray, kernel: int, stride: int, padding: int, fill: float) -> np.ndarray:
    """(N, C, out_h, out_w, kernel*kernel): every pooling window, the border padded with ``fill``."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    out_h = (x.shape[2] + 2 * padding - kernel) // stride + 1
    out_w = (x.shape[3] + 2 * padding - kernel) // stride + 1
    taps = [
        xp[:, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
        for i in range(kernel)
        for j in range(kernel)
    ]
    return np.stack(taps, axis=-1)


def max_pool(x: np.ndarray, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """Max pooling; padded cells are -inf, so they never win."""
    return _windows(x, kernel, stride, padding, -np.inf).max(axis=-1)


def avg_pool(x: np.ndarray, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """Average pooling that counts padded zeros (PyTorch's count_include_pad=True)."""
    return _windows(x, kernel, stride, padding, 0.0).mean(axis=-1)


def adaptive_avg_pool(x: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """PyTorch's adaptive average pool: output cell (i, j) averages rows floor(i*H/oh) to
    ceil((i+1)*H/oh) and the columns likewise (the bins overlap where o does not divide H)."""
    (h, w), (oh, ow) = x.shape[2:], output_size

    def bins(size: int, out: int) -> list[tuple[int, int]]:
        return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]

    rows = [
        np.stack([x[:, :, r0:r1, c0:c1].mean(axis=(2, 3)) for c0, c1 in bins(w, ow)], axis=-1) for r0, r1 in bins(h, oh)
    ]
    return np.stack(rows, axis=-2)


def batch_norm(x: np.ndarray, weights: Mapping[str, np.ndarray], path: str, eps: float) -> np.ndarray:
    """Eval-mode BatchNorm over axis 1 of an (N, C, H, W) or (N, C) array."""
    shape = (1, -1) + (1,) * (x.ndim - 2)

    def at(leaf: str) -> np.ndarray:
        return weights[f"{path}.{leaf}"].reshape(shape)

    return (x - at("running_mean")) / np.sqrt(at("running_var") + eps) * at("weight") + at("bias")


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    y = x @ weight.T
    return y if bias is None else y + bias


def apply(node: Node, xs: Sequence[np.ndarray], weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """One node's eval-mode output, exactly as the spec defines it, from its inputs' values."""
    layer, x = node.layer, xs[0]
    if node.op == "conv":
        bias = weights.get(f"{layer.path}.bias")
        return conv2d(x, weights[f"{layer.path}.weight"], bias, layer.stride, layer.padding, layer.groups)
    if node.op == "bn":
        return batch_norm(x, weights, layer.path, layer.eps)
    if node.op == "dense":
        return dense(x, weights[f"{layer.path}.weight"], weights.get(f"{layer.path}.bias"))
    if node.op == "relu":
        return relu(x)
    if node.op == "sigmoid":
        return sigmoid(x)
    if node.op == "max_pool":
        return max_pool(x, *node.window)
    if node.op == "avg_pool":
        return avg_pool(x, *node.window)
    if node.op == "global_avg_pool":
        return x.mean(axis=(2, 3))
    if node.op == "adaptive_avg_pool":
        return adaptive_avg_pool(x, node.output_size)
    if node.op == "flatten":
        return x.reshape(x.shape[0], -1)
    if node.op == "add":
        return sum(xs[1:], xs[0])
    if node.op == "concat":
        return np.concatenate(xs, axis=1)
    if node.op == "dropout":
        return x
    raise ValueError(f"no numpy reference for op {node.op!r} (node {node.name!r})")


def evaluate(spec: Spec, weights: Mapping[str, np.ndarray], known: Mapping[str, np.ndarray], target: str) -> np.ndarray:
    """The value of node ``target`` computed from ``known`` values ({node name or INPUT: array}):
    every node on the way that is not known is recomputed with ``apply``."""
    nodes = {node.name: node for node in spec.graph()}
    values = dict(known)

    def value(name: str) -> np.ndarray:
        if name not in values:
            if name not in nodes:
                raise KeyError(f"{spec.name}: {name!r} is neither known nor a node of the graph")
            node = nodes[name]
            values[name] = apply(node, [value(source) for source in node.inputs], weights)
        return values[name]

    return value(target)


def forward(spec: Spec, weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The output of ``spec`` with canonical ``weights`` for an NCHW input."""
    values = {INPUT: x}
    for node in spec.graph():
        values[node.name] = apply(node, [values[source] for source in node.inputs], weights)
    return values[spec.graph()[-1].name]
