"""The Keras 3 (TensorFlow) backend of the parity suite: the contract of ``parity.backends.Backend``.

Keras is imported after ``impl_tf/__init__.py`` has pinned it to TensorFlow.

Native tensor names are Keras variable paths relative to the model, e.g.
``net/stage0/block0/conv2/kernel`` for a model whose variable path is
``anynet/net/stage0/block0/conv2/kernel``. Two tables map canonical names to them:
``TABLE`` for AnyNet and the ResNeXt block, ``INCEPTION_TABLE`` for the Inception
family, because both AnyNet and GoogLeNet call their classifier ``head.fc`` while
d2l puts it in a ``head`` Sequential in one and directly in ``net`` in the other.

``VARIANTS`` are naive ports, one classic porting pitfall each, built with
``build(spec, variant=...)``: real, runnable models that differ from the spec's
function. Three change the layers (``impl_tf.models.LayerMaker``), two only the way
``load_weights`` and ``export_weights`` map canonical tensors (``table(spec, variant)``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

import keras
import tensorflow as tf
from impl_tf import inception, models
from parity import specs
from parity.backends import DTYPES, InputError, SummaryRow, check_input
from parity.hub import NameTable, check_native_shapes, from_native, to_native
from parity.layout import nchw_to_nhwc, nhwc_to_nchw
from parity.variants import check_variant, fits_untransposed, untransposed
from parity.weights import Param, Weights, schema

VARIANTS = {
    "same_padding": "d2l's TF code: padding='same' in every padded conv and pool; at stride 2 it pads bottom/right only",
    "keras_bn_epsilon": "BatchNormalization() with Keras' default epsilon 1e-3 instead of the spec's",
    "avgpool_excludes_padding": "InceptionA's pool as AveragePooling2D(padding='same'): padded zeros left out of the mean",
    "unpermuted_flatten": "the dense weight after a flatten copied without the NCHW->NHWC input-axis permutation",
    "untransposed_kernel": "OIHW kernels transposed (2, 3, 0, 1) to (kh, kw, O, I/g) wherever that shape equals HWIO's",
}

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


def table(spec: specs.Spec, variant: str | None = None) -> NameTable:
    """The name table of ``spec``'s architecture, or of the naive port ``variant`` (the same names
    and shapes, other transforms under ``unpermuted_flatten`` and ``untransposed_kernel``)."""
    faithful = _MODELS[type(spec)][1]
    if variant == "unpermuted_flatten":
        return dataclasses.replace(faithful, flatten_order="CHW")
    if variant == "untransposed_kernel":
        return UntransposedKernelTable(faithful.modules, faithful.leaves, faithful.separator, faithful.flatten_order)
    return faithful


@dataclasses.dataclass(frozen=True)
class UntransposedKernelTable(NameTable):
    """A ``NameTable`` that turns every conv kernel whose shape allows it into (kh, kw, O, I/g)
    with the classic wrong transpose (2, 3, 0, 1), and its inverse (the same transpose) on export.

    (kh, kw, O, I/g) equals the HWIO shape (kh, kw, I/g, O) when I/g == O, so the model's
    shape checks pass; every other kernel is transposed correctly.
    """

    def to_native_array(self, param: Param, value: np.ndarray) -> np.ndarray:
        if fits_untransposed(param):
            return untransposed(value)
        return super().to_native_array(param, value)

    def to_canonical_array(self, param: Param, value: np.ndarray) -> np.ndarray:
        if fits_untransposed(param):
            return untransposed(np.asarray(value))
        return super().to_canonical_array(param, value)

    def rows(self, spec: specs.Spec) -> list[tuple[str, str, tuple[int, ...], str]]:
        return [
            (name, native, shape, "OIHW->HWOI" if fits_untransposed(param) else transform)
            for (name, native, shape, transform), param in zip(super().rows(spec), schema(spec).values(), strict=True)
        ]


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> Model:
    """A Keras model of ``spec`` with every variable created, initialised from ``seed``; with
    ``variant``, the naive port of ``VARIANTS[variant]`` instead (``model.variant``)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if type(spec) not in _MODELS:
        known = ", ".join(kind.__name__ for kind in _MODELS)
        raise TypeError(f"spec must be one of parity.specs.{{{known}}}, got {type(spec).__name__}")
    check_variant(name, VARIANTS, spec, variant)
    model = _MODELS[type(spec)][0](spec, dtype=dtype, seed=seed, variant=variant)
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
    return from_native(model.spec, native, table(model.spec, model.variant))


def load_weights(model: Model, weights: Weights, allow_nonfinite: bool = False) -> None:
    """Validate everything, then assign every variable; on any error nothing is assigned."""
    native = to_native(
        model.spec, weights, table(model.spec, model.variant), dtype=model.dtype, allow_nonfinite=allow_nonfinite
    )
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


def structure(model: Model) -> dict[str, tuple[int, int]]:
    """(trainable parameters, convolution groups or 1) of every parameterised layer of the spec, by
    canonical path, read from the Keras layer that ``table(spec)`` maps the path to."""
    spec, names = model.spec, table(model.spec)
    out = {}
    for layer in spec.layers():
        native = _native_layer(model, names.native_module(layer.path))
        params = sum(int(np.prod(weight.shape)) for weight in native.trainable_weights)
        out[layer.path] = (params, native.groups if isinstance(native, keras.layers.Conv2D) else 1)
    return out


_FORWARD_GRAPHS: dict[tuple[specs.Spec, str, str | None, bool], tf.types.experimental.PolymorphicFunction] = {}


def _forward_graph(model: Model, train: bool) -> tf.types.experimental.PolymorphicFunction:
    """The forward pass as one TensorFlow graph per (spec, dtype, variant, train), shared by every
    model of that kind.

    Traced once (any batch size and image size), with the first such model as the
    template of ``_stateless_forward``.
    """
    key = (model.spec, model.dtype, model.variant, train)
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


def _native_layer(model: Model, path: str) -> keras.Layer:
    """The layer at a native module path (``net/stage0/block0/conv2``), found by layer names."""
    layer = model
    for name in path.split("/"):
        children = {child.name: child for child in getattr(layer, "layers", [])}
        if name not in children:
            raise KeyError(f"model {model.name!r} has no layer {path!r} (no {name!r} in {layer.name!r})")
        layer = children[name]
    return layer


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
