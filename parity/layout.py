"""The few pure-numpy layout transforms between the canonical form and the frameworks.

Canonical layouts are PyTorch's: conv kernels OIHW (grouped: O, I/groups, kH, kW),
dense weights (out, in), activations NCHW. TensorFlow/Keras and Flax use HWIO
kernels (grouped: kH, kW, I/groups, O), (in, out) dense kernels and NHWC.
Every transform returns a new C-contiguous array (a copy, never a view of its
argument) and never changes values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.array(np.transpose(w, (2, 3, 1, 0)), order="C")


def hwio_to_oihw(w: np.ndarray) -> np.ndarray:
    return np.array(np.transpose(w, (3, 2, 0, 1)), order="C")


def transpose_2d(w: np.ndarray) -> np.ndarray:
    """(out, in) <-> (in, out)."""
    return np.array(w.T, order="C")


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    return np.array(np.transpose(x, (0, 2, 3, 1)), order="C")


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    return np.array(np.transpose(x, (0, 3, 1, 2)), order="C")


def nhwc_shape_to_nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A native NHWC shape in NCHW order; shapes of other ranks are unchanged."""
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


def nchw_shape_to_nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape)


def flatten_permutation(channels: int, height: int, width: int) -> np.ndarray:
    """Index p with ``flat_nhwc == flat_nchw[..., p]`` for one (C, H, W) feature map.

    A dense layer after a flatten sees features in C-H-W order under NCHW and in
    H-W-C order under NHWC; permuting the dense weight's input axis by p makes the
    two compute the same function.
    """
    return np.arange(channels * height * width).reshape(channels, height, width).transpose(1, 2, 0).reshape(-1)


def identity(w: np.ndarray) -> np.ndarray:
    return np.array(w, order="C")


# Named transform pairs (canonical -> native, native -> canonical), for the backends' tables.
TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "identity": (identity, identity),
    "OIHW->HWIO": (oihw_to_hwio, hwio_to_oihw),
    "(out,in)->(in,out)": (transpose_2d, transpose_2d),
}
