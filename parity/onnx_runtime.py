"""ONNX as a fifth runtime: the canonical PyTorch model (``impl_torch``) exported with ``torch.onnx.export``
and run by onnxruntime on the CPU.

A backend in the sense of ``parity.backends`` for what a transfer needs (``build``, ``load_weights``,
``export_weights``, ``forward``, ``layer_summary``), reached as ``get_backend("onnx")`` but not one of
``FRAMEWORKS``: ``parity compare MODEL --frameworks torch,...,onnx`` adds its column. Weights live in
the torch model; ``forward`` exports it for the input's shape (once per shape and set of weights) and
runs the exported graph, so the logits are onnxruntime's, not torch's. onnxruntime's CPU convolutions
are float32 only: a float64 model is refused when it is built.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import onnxruntime
import torch

import impl_torch.backend as torch_backend
from parity.backends import check_input
from parity.specs import Spec
from parity.weights import Weights

name = "onnx"
layout = "NCHW"
extra = "onnx"
VARIANTS: dict[str, str] = {}
DTYPES = ("float32",)
table = torch_backend.table


@dataclass
class OnnxModel:
    """The torch model holding the weights, and its exported graphs and their sessions by input shape."""

    torch_model: torch.nn.Module
    graphs: dict[tuple[int, ...], bytes] = field(default_factory=dict)
    sessions: dict[tuple[int, ...], onnxruntime.InferenceSession] = field(default_factory=dict)

    @property
    def spec(self) -> Spec:
        return self.torch_model.spec


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype: onnxruntime's CPU convolutions run float32 only, got {dtype!r}")


def build(spec: Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> OnnxModel:
    _check_dtype(dtype)
    return OnnxModel(torch_backend.build(spec, seed, dtype, variant))


def build_empty(spec: Spec, dtype: str = "float32") -> OnnxModel:
    _check_dtype(dtype)
    return OnnxModel(torch_backend.build_empty(spec, dtype))


def load_weights(model: OnnxModel, weights: Mapping[str, np.ndarray], allow_nonfinite: bool = False) -> None:
    torch_backend.load_weights(model.torch_model, weights, allow_nonfinite)
    model.graphs.clear()
    model.sessions.clear()


def export_weights(model: OnnxModel) -> Weights:
    return torch_backend.export_weights(model.torch_model)


def layer_summary(model: OnnxModel, input_shape: tuple[int, ...]):
    """The exported model's layers are torch's: its layer summary."""
    return torch_backend.layer_summary(model.torch_model, input_shape)


def structure(model: OnnxModel) -> dict[str, tuple[int, int]]:
    return torch_backend.structure(model.torch_model)


def to_onnx(model: OnnxModel, input_shape: tuple[int, ...]) -> bytes:
    """The ONNX graph of the model in eval mode for inputs of ``input_shape`` (torch's exporter, quietly)."""
    if input_shape not in model.graphs:
        module = model.torch_model
        example = torch.zeros(input_shape, dtype=next(module.parameters()).dtype)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module.eval(), (example,), dynamo=True, verbose=False)
        model.graphs[input_shape] = program.model_proto.SerializeToString()
    return model.graphs[input_shape]


def save(model: OnnxModel, path: str | os.PathLike) -> None:
    """Write the ONNX graph that ``forward`` last ran (the one a conversion checked), or, if none ran, the
    graph for batch 1 at the spec's input size; whole or not at all."""
    from parity.native import written_whole

    spec = model.spec
    shape = next(reversed(model.graphs)) if model.graphs else (1, spec.in_channels, *spec.input_size)
    with written_whole(os.fspath(path)) as partial, open(partial, "wb") as file:
        file.write(to_onnx(model, shape))


def session(model: OnnxModel, input_shape: tuple[int, ...]) -> onnxruntime.InferenceSession:
    if input_shape not in model.sessions:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: no notices on stderr
        model.sessions[input_shape] = onnxruntime.InferenceSession(
            to_onnx(model, input_shape), options, providers=["CPUExecutionProvider"]
        )
    return model.sessions[input_shape]


def forward(model: OnnxModel, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """onnxruntime's eval-mode logits; the exported graph has no training mode."""
    if train:
        raise ValueError("train: the ONNX export runs in eval mode only")
    x = check_input(model.spec, x_nchw, "float32")
    run = session(model, x.shape)
    return run.run(None, {run.get_inputs()[0].name: x})[0]
