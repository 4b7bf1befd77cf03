"""One side of a port check: a native model, its framework's capture module, and one captured forward."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from parity.layout import nchw_to_nhwc, nhwc_to_nchw
from parity.port_check import flax_capture, gluon_capture, keras_capture, torch_capture
from parity.port_check.native import Call, Layer, PortCheckError, fold_padding

CAPTURES = (torch_capture, flax_capture, keras_capture, gluon_capture)


def capture_for(model, argument: str) -> ModuleType:
    """The capture module of ``model``'s framework."""
    for capture in CAPTURES:
        if capture.owns(model):
            return capture
    raise PortCheckError(
        f"{argument}: expected a torch nn.Module, a Flax (module, variables) pair, a Keras model or a Gluon block, "
        f"got {type(model).__name__}"
    )


def to_nchw(array: np.ndarray, layout: str) -> np.ndarray:
    return nhwc_to_nchw(array) if layout == "NHWC" and array.ndim == 4 else array


@dataclass
class Side:
    """A model, what one forward on the check's input showed of it (arrays in NCHW order) and its
    tensor layers in the order of their first call."""

    label: str
    model: object
    capture: ModuleType
    calls: list[Call]
    layers: list[Layer]
    output: np.ndarray

    @property
    def framework(self) -> str:
        return self.capture.name

    @property
    def layout(self) -> str:
        return self.capture.layout


def observe(label: str, model, x_nchw: np.ndarray, argument: str) -> Side:
    """Run ``model`` once on ``x_nchw`` (NHWC where its framework wants it) and read its layers."""
    capture = capture_for(model, argument)
    x = nchw_to_nhwc(x_nchw) if capture.layout == "NHWC" else x_nchw
    try:
        native_calls, output = capture.run(model, x)
    except PortCheckError:
        raise
    except Exception as error:  # the user's model refused the input: say which model and why
        raise PortCheckError(
            f"{argument}: its forward on an input of shape {x.shape} failed: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    calls = fold_padding(
        [
            Call(
                c.layer,
                c.kind,
                c.config,
                tuple(to_nchw(a, capture.layout) for a in c.inputs),
                to_nchw(c.output, capture.layout),
            )
            for c in native_calls
        ]
    )
    first_call = {}
    for k, call in enumerate(calls):
        first_call.setdefault(call.layer, k)
    layers = sorted(capture.layers(model, native_calls), key=lambda layer: first_call.get(layer.name, len(calls)))
    return Side(label, model, capture, calls, layers, to_nchw(output, capture.layout))
