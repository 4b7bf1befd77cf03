"""The Keras 3 (TensorFlow) backend of the parity suite: the contract of ``parity.backends.Backend``.

Keras is imported after ``impl_tf/__init__.py`` has pinned it to TensorFlow.

Native tensor names are Keras variable paths relative to the model, e.g.
``net/stage0/block0/conv2/kernel`` for a model whose variable path is
``anynet/net/stage0/block0/conv2/kernel``. Two tables map canonical names to them:
``TABLE`` for AnyNet and the ResNeXt block, ``INCEPTION_TABLE`` for the Inception
family, because both AnyNet and GoogLeNet call their classifier ``head.fc`` while
d2l puts it in a ``head`` Sequential in one and directly in ``net`` in the other.
"""

from __future__ import annotations

import functools

import numpy as np

import keras
import tensorflow as tf
from impl_tf import inception, models
from parity import spec as specs
from parity.backends import DTYPES, InputError, SummaryRow, check_input
from parity.hub import NameTable, check_native_shapes, from_native, to_native
from parity.layout import nchw_to_nhwc, nhwc_to_nchw
from parity.weights import Weights

name = "tf"
layout = "NHWC"
extra = "tf"

_LEAVES = {
    "conv.weight": ("kernel", "OIHW->HWIO"),
    "conv.bias": ("bias", "identity"),
    "batchnorm.weight": ("gamma", "identity"),
    "batchnorm.bias": ("beta", "identity"),
    "batchnorm.running_mean": ("moving_mean", "identity"),
    "batchnorm.running_var": ("moving_variance", "identity"),
    "dense.weight": ("kernel", "(out,in)->(in,out)"),
    "dense.bias": ("bias", "identity"),
}

TABLE = NameTable(
    modules=(
        (r"^stages\.(\d+)\.blocks\.(\d+)", r"net/stage\1/block\2"),
        (r"^(stem|head)\b", r"net/\1"),
        (r"\.", "/"),
    ),
    leaves=_LEAVES,
    separator="/",
    flatten_order="HWC",
)

INCEPTION_TABLE = NameTable(
    modules=(
        (r"^head\.fc$", "net/fc"),
        (r"^(b[1-5])\.(\d+)\b", r"net/\1/inception\2"),
        (r"^(b[1-5]|conv\d|incep\d|fc)\b", r"net/\1"),
        (r"\.", "/"),
    ),
    leaves=_LEAVES,
    separator="/",
    flatten_order="HWC",
)

_MODELS = {
    specs.AnyNet: (models.AnyNet, TABLE),
    specs.ResNeXtBlock: (models.ResNeXtBlock, TABLE),
    specs.Inception: (inception.Inception, INCEPTION_TABLE),
    specs.GoogLeNet: (inception.GoogLeNet, INCEPTION_TABLE),
    specs.InceptionA: (inception.InceptionA, INCEPTION_TABLE),
    specs.InceptionNet: (inception.InceptionNet, INCEPTION_TABLE),
}
_BLOCKS = (models.ResNeXtBlock, inception.Inception, inception.InceptionA)

Model = (
    models.AnyNet | models.ResNeXtBlock | inception.Inception | inception.GoogLeNet | inception.InceptionA | inception.InceptionNet
)


def table(spec: specs.Spec) -> NameTable:
    """The name table of ``spec``'s architecture."""
    return _MODELS[type(spec)][1]


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32") -> Model:
    """A Keras model of ``spec`` with every variable created, initialised from ``seed``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if type(spec) not in _MODELS:
        known = ", ".join(kind.__name__ for kind in _MODELS)
        raise TypeError(f"spec must be one of parity.spec.{{{known}}}, got {type(spec).__name__}")
    model = _MODELS[type(spec)][0](spec, dtype=dtype, seed=seed)
    # The dense layer after InceptionNet's flatten needs the image size; the other specs take any size.
    image_size = spec.input_size if isinstance(spec, specs.InceptionNet) else (None, None)
    model.build((None, *image_size, spec.in_channels))
    return model


def forward(model: Model, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits (networks) or an NCHW feature map (blocks); ``train`` normalises with batch
    statistics. The model is never changed: see ``_stateless_forward``."""
    x = check_input(model.spec, x_nchw, model.dtype)
    trainable = [variable.value for variable in model.trainable_variables]
    non_trainable = [variable.value for variable in model.non_trainable_variables]
    y = _forward_graph(model, train)(trainable, non_trainable, nchw_to_nhwc(x)).numpy()
    return _to_nchw(y)


def layer_summary(model: Model, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's layer summary: a random NHWC input through the top-level layers one by one, in eval mode."""
    spec = model.spec
    if len(input_shape) != 4 or input_shape[-1] != spec.in_channels:
        raise InputError(f"input_shape: expected (N, H, W, {spec.in_channels}), got {tuple(input_shape)}")
    problem = specs.spatial_size_problem(spec, *input_shape[1:3])
    if problem:
        raise InputError(f"input_shape: {problem}, got {tuple(input_shape)}")
    X = keras.random.normal(input_shape, dtype=model.dtype, seed=0)
    if isinstance(model, _BLOCKS):
        return [_summary_row(model, model(X, training=False), "block")]
    rows = []
    for layer, group in zip(model.net.layers, _summary_groups(model), strict=True):
        X = layer(X, training=False)
        rows.append(_summary_row(layer, X, group))
    return rows


def export_weights(model: Model) -> Weights:
    """Canonical weights: fresh numpy copies in PyTorch layouts and the model's dtype."""
    native = {name: np.array(variable.numpy()) for name, variable in _variables(model).items()}
    return from_native(model.spec, native, table(model.spec))


def load_weights(model: Model, weights: Weights, allow_nonfinite: bool = False) -> None:
    """Validate everything, then assign every variable; on any error nothing is assigned."""
    native = to_native(model.spec, weights, table(model.spec), dtype=model.dtype, allow_nonfinite=allow_nonfinite)
    variables = _variables(model)
    check_native_shapes({name: tuple(variable.shape) for name, variable in variables.items()}, native)
    for name, value in native.items():
        variables[name].assign(value)


def activations(model: Model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode outputs at ``spec.activation_points()``, NCHW (flat vectors (N, C)), in that order."""
    spec = model.spec
    X = nchw_to_nhwc(check_input(spec, x_nchw, model.dtype))
    if isinstance(model, _BLOCKS):
        points = model(X, training=False, return_points=True)
    else:
        points = model.points(X)
    return {key: _to_nchw(points[key].numpy()) for key in spec.activation_points()}


_FORWARD_GRAPHS: dict[tuple[specs.Spec, str, bool], tf.types.experimental.PolymorphicFunction] = {}


def _forward_graph(model: Model, train: bool) -> tf.types.experimental.PolymorphicFunction:
    """The forward pass as one TensorFlow graph per (spec, dtype, train), shared by every model of that kind.

    Traced once (any batch size and image size), with the first such model as the
    template of ``_stateless_forward``.
    """
    key = (model.spec, model.dtype, train)
    if key not in _FORWARD_GRAPHS:
        signature = [
            [tf.TensorSpec(variable.shape, variable.dtype) for variable in model.trainable_variables],
            [tf.TensorSpec(variable.shape, variable.dtype) for variable in model.non_trainable_variables],
            tf.TensorSpec((None, None, None, model.spec.in_channels), model.dtype),
        ]
        stateless_forward = functools.partial(_stateless_forward, model, train)
        _FORWARD_GRAPHS[key] = tf.function(stateless_forward, input_signature=signature)
    return _FORWARD_GRAPHS[key]


def _stateless_forward(template: Model, train: bool, trainable: list, non_trainable: list, X):
    """``template``'s output with the given variable values, through Keras' ``stateless_call``.

    No variable is read from or written to any model: with ``train``, the BatchNorm
    moving-statistic updates come back as new values, and are dropped.
    """
    outputs, _ = template.stateless_call(trainable, non_trainable, X, training=train)
    return outputs


def _variables(model: Model) -> dict[str, keras.Variable]:
    """The model's variables by path relative to the model."""
    prefix = f"{model.name}/"
    variables = {variable.path.removeprefix(prefix): variable for variable in model.variables}
    if len(variables) != len(model.variables) or any(not v.path.startswith(prefix) for v in model.variables):
        raise RuntimeError(f"model {model.name!r} has variables outside its scope or with duplicate paths")
    return variables


def _summary_groups(model: Model) -> list[str]:
    """The canonical group of each of ``model.net``'s top-level layers."""
    spec = model.spec
    if isinstance(spec, specs.AnyNet):
        return ["stem", *(f"stages.{i}" for i in range(len(spec.stages))), "head"]
    if isinstance(spec, specs.GoogLeNet):
        return ["b1", "b2", "b3", "b4", "b5", "head"]
    return [inception.InceptionNet.GROUPS[layer.name] for layer in model.net.layers]


def _summary_row(layer: keras.Layer, output, group: str) -> SummaryRow:
    params = sum(int(np.prod(weight.shape)) for weight in layer.trainable_weights)
    return SummaryRow(type(layer).__name__, tuple(output.shape), str(output.shape), params, group)


def _to_nchw(y: np.ndarray) -> np.ndarray:
    return nhwc_to_nchw(y) if y.ndim == 4 else y
