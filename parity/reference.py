"""An independent forward pass in plain numpy, written from the math, not from any framework.

It evaluates canonical weights directly (NCHW, OIHW), eval-mode BatchNorm with
running statistics, and a grouped convolution as a sum over kernel taps. Slow and
obvious on purpose: it is the referee the four frameworks are checked against.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from parity.specs import AnyNet, GoogLeNet, Inception, InceptionA, InceptionNet, ResNeXtBlock, Spec, block_path


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


def _windows(x: np.ndarray, kernel: int, stride: int, padding: int, fill: float) -> np.ndarray:
    """(N, C, out_h, out_w, kernel*kernel): every pooling window, the border padded with ``fill``."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    out_h = (x.shape[2] + 2 * padding - kernel) // stride + 1
    out_w = (x.shape[3] + 2 * padding - kernel) // stride + 1
    taps = [xp[:, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride] for i in range(kernel) for j in range(kernel)]
    return np.stack(taps, axis=-1)


def max_pool(x: np.ndarray, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """Max pooling; padded cells are -inf, so they never win."""
    return _windows(x, kernel, stride, padding, -np.inf).max(axis=-1)


def avg_pool(x: np.ndarray, kernel: int, stride: int, padding: int = 0) -> np.ndarray:
    """Average pooling that counts padded zeros (PyTorch's count_include_pad=True)."""
    return _windows(x, kernel, stride, padding, 0.0).mean(axis=-1)


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


def inception(weights: Mapping[str, np.ndarray], x: np.ndarray, prefix: str = "") -> np.ndarray:
    """d2l's Inception block: four conv + ReLU branches concatenated on channels."""
    conv = lambda y, name, padding=0: relu(_conv(y, weights, f"{prefix}.{name}" if prefix else name, 1, padding))  # noqa: E731
    b1 = conv(x, "b1_1")
    b2 = conv(conv(x, "b2_1"), "b2_2", 1)
    b3 = conv(conv(x, "b3_1"), "b3_2", 2)
    b4 = conv(max_pool(x, 3, 1, 1), "b4_2")
    return np.concatenate([b1, b2, b3, b4], axis=1)


def googlenet(spec: GoogLeNet, weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    y = max_pool(relu(_conv(x, weights, "b1.conv", 2, 3)), 3, 2, 1)
    y = relu(_conv(y, weights, "b2.conv1", 1, 0))
    y = max_pool(relu(_conv(y, weights, "b2.conv2", 1, 1)), 3, 2, 1)
    for path, _ in spec.inceptions():
        y = inception(weights, y, path)
        if path in ("b3.1", "b4.4"):
            y = max_pool(y, 3, 2, 1)
    pooled = y.mean(axis=(2, 3))
    return pooled @ weights["head.fc.weight"].T + weights["head.fc.bias"]


def inception_a(weights: Mapping[str, np.ndarray], x: np.ndarray, prefix: str = "") -> np.ndarray:
    """The tutorials' InceptionA: no ReLUs; concat order 1x1, 5x5, 3x3, pool."""
    conv = lambda y, name, padding=0: _conv(y, weights, f"{prefix}.{name}" if prefix else name, 1, padding)  # noqa: E731
    b1 = conv(x, "branch1x1")
    b5 = conv(conv(x, "branch5x5_1"), "branch5x5_2", 2)
    b3 = conv(conv(conv(x, "branch3x3_1"), "branch3x3_2", 1), "branch3x3_3", 1)
    bp = conv(avg_pool(x, 3, 1, 1), "branch_pool")
    return np.concatenate([b1, b5, b3, bp], axis=1)


def inception_net(weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    y = relu(max_pool(_conv(x, weights, "conv1", 1, 0), 2, 2))
    y = inception_a(weights, y, "incep1")
    y = relu(max_pool(_conv(y, weights, "conv2", 1, 0), 2, 2))
    y = inception_a(weights, y, "incep2")
    return y.reshape(y.shape[0], -1) @ weights["fc.weight"].T + weights["fc.bias"]


def forward(spec: Spec, weights: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The output of ``spec`` with canonical ``weights`` for an NCHW input."""
    if isinstance(spec, AnyNet):
        return anynet(spec, weights, x)
    if isinstance(spec, ResNeXtBlock):
        return resnext_block(spec, weights, x)
    if isinstance(spec, GoogLeNet):
        return googlenet(spec, weights, x)
    if isinstance(spec, Inception):
        return inception(weights, x)
    if isinstance(spec, InceptionNet):
        return inception_net(weights, x)
    if isinstance(spec, InceptionA):
        return inception_a(weights, x)
    raise TypeError(f"no numpy reference for {type(spec).__name__}")
