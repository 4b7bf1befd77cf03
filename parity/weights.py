"""Canonical weights: an ordered ``{name: np.ndarray}`` in one layout, PyTorch's.

Names come from the spec (``stages.0.blocks.0.conv2.weight``); every backend
exports to and loads from this form, so 4 exporters and 4 importers give all 12
directed transfers. Files are safetensors: no pickle, no code executed on load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from parity.specs import BatchNorm, Conv, Dense, Layer, Spec

Weights = dict[str, np.ndarray]

FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


class WeightsError(ValueError):
    """Weights that do not fit a spec; the message lists every offending key."""


class WeightsFileError(ValueError):
    """A file that cannot be read as safetensors; the message names the file and why."""


# torch.save writes a zip container and pickles start with the PROTO opcode (protocol 2 to 5); both run code
# when loaded. Checked only for a file that is not laid out as safetensors (an 8-byte header size, then "{").
PICKLE_SIGNATURES = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class Param:
    """One canonical tensor: the layer it belongs to, its leaf name and canonical shape."""

    layer: Layer
    leaf: str
    shape: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.layer.path}.{self.leaf}"

    @property
    def role(self) -> str:
        """``kind.leaf``, the key of the backends' layout tables, e.g. ``conv.weight``."""
        return f"{type(self.layer).__name__.lower()}.{self.leaf}"

    @property
    def trainable(self) -> bool:
        return self.leaf not in ("running_mean", "running_var")


def layer_params(layer: Layer) -> list[Param]:
    if isinstance(layer, Conv):
        params = [Param(layer, "weight", (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_hw))]
        if layer.bias:
            params.append(Param(layer, "bias", (layer.out_channels,)))
        return params
    if isinstance(layer, BatchNorm):
        return [Param(layer, leaf, (layer.channels,)) for leaf in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, Dense):
        return [
            Param(layer, "weight", (layer.out_features, layer.in_features)),
            Param(layer, "bias", (layer.out_features,)),
        ]
    raise TypeError(f"not a layer: {layer!r}")


def schema(spec: Spec) -> dict[str, Param]:
    """Every canonical tensor of ``spec``, by name, in execution order."""
    return {p.name: p for layer in spec.layers() for p in layer_params(layer)}


def count_parameters(spec: Spec) -> tuple[int, int]:
    """(trainable parameters, BatchNorm running statistics)."""
    params = schema(spec).values()
    trainable = sum(int(np.prod(p.shape)) for p in params if p.trainable)
    stats = sum(int(np.prod(p.shape)) for p in params if not p.trainable)
    return trainable, stats


def validate(weights: Mapping[str, np.ndarray], spec: Spec, dtype=None, allow_nonfinite: bool = False) -> None:
    """Raise one WeightsError naming every missing, unexpected, mis-shaped, mis-typed or non-finite key."""
    expected = schema(spec)
    problems = [
        f"missing key {name!r} (expected shape {p.shape})" for name, p in expected.items() if name not in weights
    ]
    problems += [f"unexpected key {name!r}" for name in weights if name not in expected]
    want_dtype = np.dtype(dtype) if dtype is not None else None
    for name, p in expected.items():
        if name not in weights:
            continue
        value = weights[name]
        if not isinstance(value, np.ndarray):
            problems.append(f"{name!r}: expected a numpy.ndarray, got {type(value).__name__}")
            continue
        if value.shape != p.shape:
            problems.append(f"{name!r}: expected shape {p.shape}, got {value.shape}")
        if want_dtype is not None and value.dtype != want_dtype:
            problems.append(f"{name!r}: expected dtype {want_dtype}, got {value.dtype}")
        elif value.dtype not in FLOAT_DTYPES:
            problems.append(f"{name!r}: expected dtype float32 or float64, got {value.dtype}")
        elif not allow_nonfinite and not np.isfinite(value).all():
            problems.append(f"{name!r}: contains NaN or Inf")
    if problems:
        raise WeightsError(f"weights do not fit {spec.name}:\n  " + "\n  ".join(problems))


def cast(weights: Mapping[str, np.ndarray], dtype) -> Weights:
    """A copy of ``weights`` in ``dtype`` (loading never casts on its own)."""
    return {name: np.asarray(value, dtype=dtype) for name, value in weights.items()}


def randomize_batchnorm(weights: Mapping[str, np.ndarray], seed: int) -> Weights:
    """A copy with BatchNorm scale, shift and running statistics drawn away from 0 and 1.

    Fresh models have scale 1, shift 0, mean 0 and variance 1: a transfer that drops
    or swaps any of these would still agree. Running variances stay positive.
    """
    rng = np.random.default_rng(seed)
    draw = {
        "weight": lambda n: rng.uniform(0.5, 1.5, n),
        "bias": lambda n: rng.normal(0.0, 0.2, n),
        "running_mean": lambda n: rng.normal(0.0, 0.2, n),
        "running_var": lambda n: rng.uniform(0.5, 2.0, n),
    }
    out: Weights = {}
    for name, value in weights.items():
        module, leaf = name.rsplit(".", 1)
        is_bn = f"{module}.running_var" in weights
        out[name] = draw[leaf](value.shape).astype(value.dtype) if is_bn else value.copy()
    return out


def randomize_biases(weights: Mapping[str, np.ndarray], seed: int) -> Weights:
    """A copy with every conv and dense bias drawn from N(0, 0.1): Keras and Flax start them at 0,
    and a transfer that dropped a zero bias would still agree."""
    rng = np.random.default_rng(seed)
    out: Weights = {}
    for name, value in weights.items():
        module, leaf = name.rsplit(".", 1)
        is_bias = leaf == "bias" and f"{module}.running_var" not in weights
        out[name] = rng.normal(0.0, 0.1, value.shape).astype(value.dtype) if is_bias else value.copy()
    return out


def save_weights(weights: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write canonical weights as safetensors."""
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in weights.items()}, os.fspath(path))


def load_weights(path: str | os.PathLike) -> Weights:
    """Every tensor of a safetensors file as numpy; nothing in the file is ever executed.

    The one safetensors reader: canonical weights here, torchvision state_dicts in
    ``parity.torchvision_io`` and ``parity convert --weights`` all read through it.

    Raises WeightsFileError for a missing, truncated or corrupted file, a file of
    another format, and pickle-based files (PyTorch ``.pth``), which are refused
    without being opened as pickles.
    """
    from safetensors.numpy import load_file

    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            head = file.read(9)
    except OSError as error:
        raise WeightsFileError(f"{path}: cannot read weights: {error.strerror}") from None
    if head[8:9] != b"{" and head.startswith(PICKLE_SIGNATURES):
        raise WeightsFileError(
            f"{path}: a pickle-based file (PyTorch .pth/.pt or pickle), not safetensors; pickles can run code "
            "when loaded, so only safetensors files are read here"
        )
    try:
        return dict(load_file(path))
    except Exception as error:  # safetensors' own SafetensorError, or TypeError for dtypes numpy lacks
        raise WeightsFileError(f"{path}: not a valid safetensors file ({error})") from None
