"""Keras 3: every leaf layer's ``call`` wrapped for one eager forward (Sequential, functional and
subclassed models alike), tensors from each layer's variables."""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from parity.port_check.native import Call, Layer, Tensor, explicit_padding, pair

name = "tf"
layout = "NHWC"

# Keras' variable names for the canonical roles
ROLES = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def owns(model) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.layers.Layer)


def describe(layer) -> tuple[str, dict]:
    from keras import layers

    if isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.Conv2DTranspose):
        return "conv", {
            "kernel": pair(layer.kernel_size),
            "stride": pair(layer.strides),
            "padding": explicit_padding(layer.padding),
            "dilation": pair(layer.dilation_rate),
            "groups": layer.groups,
            "data_format": layer.data_format,
        }
    if isinstance(layer, layers.BatchNormalization):
        return "bn", {"eps": float(layer.epsilon)}
    if isinstance(layer, layers.Dense):
        return "dense", {}
    if isinstance(layer, layers.MaxPooling2D | layers.AveragePooling2D):
        config = {
            "kernel": pair(layer.pool_size),
            "stride": pair(layer.strides or layer.pool_size),
            "padding": explicit_padding(layer.padding),
        }
        if isinstance(layer, layers.AveragePooling2D):
            # Keras' 'same' average divides by the cells inside the input
            return "avg_pool", {**config, "count_include_pad": config["padding"] != "same"}
        return "max_pool", config
    if isinstance(layer, layers.GlobalAveragePooling2D):
        return "global_avg_pool", {}
    if isinstance(layer, layers.Flatten):
        return "flatten", {}
    if isinstance(layer, layers.ZeroPadding2D):
        return "pad", {"padding": explicit_padding(layer.padding)}
    if isinstance(layer, layers.ReLU) or (
        isinstance(layer, layers.Activation) and getattr(layer.activation, "__name__", "") == "relu"
    ):
        return "relu", {}
    return "other", {"class": type(layer).__name__}


def leaves(model) -> list:
    """The layers without sub-layers, in the order they were created (the model itself if it has none)."""
    found = [
        layer for layer in model._flatten_layers(include_self=False) if not layer._flatten_layers(include_self=False)
    ]
    return found or [model]


def numpy(value) -> np.ndarray:
    return np.asarray(value)


@contextlib.contextmanager
def wrapped_calls(layers: list, calls: list[Call]):
    """Each layer's ``call`` records its inputs and output while the context is open."""

    def wrap(layer):
        kind, config = describe(layer)
        call = layer.call

        def recording_call(*args, **kwargs):
            output = call(*args, **kwargs)
            inputs = args[0] if isinstance(args[0], list | tuple) else args[:1]
            calls.append(Call(layer.path or layer.name, kind, config, tuple(numpy(a) for a in inputs), numpy(output)))
            return output

        return recording_call

    for layer in layers:
        object.__setattr__(layer, "call", wrap(layer))
    try:
        yield
    finally:
        for layer in layers:
            object.__delattr__(layer, "call")


def run(model, x: np.ndarray) -> tuple[list[Call], np.ndarray]:
    """Every leaf layer call of one inference-mode forward on ``x`` (NHWC), and the output."""
    calls: list[Call] = []
    with wrapped_calls(leaves(model), calls):
        output = model(x, training=False)
    return calls, numpy(output)


def layers(model, calls: list[Call]) -> list[Layer]:
    found = []
    for layer in leaves(model):
        kind, config = describe(layer)
        tensors = {}
        for variable in layer.weights:
            role = ROLES.get(variable.name)
            if role is not None:
                tensors[role] = Tensor(role, variable.path, numpy(variable))
        if tensors:
            found.append(Layer(layer.path, kind, config, tensors))
    return found


def load(model, arrays: dict[str, np.ndarray]):
    variables = {variable.path: variable for variable in model.weights}
    for native, value in arrays.items():
        variables[native].assign(value)
    return model
