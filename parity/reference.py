"""An independent forward pass in plain numpy, written from the math, not from any framework.

It evaluates canonical weights directly (NCHW, OIHW), eval-mode BatchNorm with
running statistics, and a grouped convolution as a sum over kernel taps. Slow and
obvious on purpose: it is the referee the four frameworks are checked against.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from parity.spec import AnyNet, ResNeXtBlock, block_path


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
                y[:, g * o_per_group : (g + 1) * o_per_group] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        y += b[None, :, None, None]
    return y


def batch_norm(x: np.ndarray, weights: Mapping[str, np.ndarray], path: str, eps: float) -> np.ndarray:
    """Eval-mode BatchNorm over the channel axis of an NCHW array."""
    at = lambda leaf: weights[f"{path}.{leaf}"][None, :, None, None]  # noqa: E731
    return (x - at("running_mean")) / np.sqrt(at("running_var") + eps) * at("weight") + at("bias")


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def _conv(x, weights, path, stride, padding, groups=1):
    return conv2d(x, weights[f"{path}.weight"], weights.get(f"{path}.bias"), stride, padding, groups)


def resnext_block(spec: ResNeXtBlock, weights: Mapping[str, np.ndarray], x: np.ndarray, prefix: str = "") -> np.ndarray:
    p = lambda name: f"{prefix}.{name}" if prefix else name  # noqa: E731
    bn = lambda y, name: batch_norm(y, weights, p(name), spec.bn_eps)  # noqa: E731
    y = relu(bn(_conv(x, weights, p("conv1"), 1, 0), "bn1"))
    y = relu(bn(_conv(y, weights, p("conv2"), spec.stride, 1, spec.groups), "bn2"))
    y = bn(_conv(y, weights, p("conv3"), 1, 0), "bn3")
    if spec.use_1x1conv:
        x = bn(_conv(x, weights, p("conv4"), spec.stride, 0), "bn4")
    return relu(y + x)


def anynet(spec: AnyNet, weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits of an AnyNet for an NCHW input."""
    y = relu(batch_norm(_conv(x, weights, "stem.conv", 2, 1), weights, "stem.bn", spec.bn_eps))
    for i, j, block in spec.blocks():
        y = resnext_block(block, weights, y, block_path(i, j))
    pooled = y.mean(axis=(2, 3))
    return pooled @ weights["head.fc.weight"].T + weights["head.fc.bias"]


def forward(spec: AnyNet | ResNeXtBlock, weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    if isinstance(spec, AnyNet):
        return anynet(spec, weights, x)
    return resnext_block(spec, weights, x)
