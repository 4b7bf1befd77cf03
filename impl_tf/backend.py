"""The Keras 3 (TensorFlow) backend of the parity suite: the contract of ``parity.backends.Backend``.

Keras is imported after ``impl_tf/__init__.py`` has pinned it to TensorFlow.

Native names are Keras layer paths relative to the model, e.g. ``net/stage1/block0/conv2/kernel``
for a model whose variable path is ``anynet/net/stage1/block0/conv2/kernel``. Each table maps
canonical module paths, of weights and of activation points, to native ones: AnyNet names its
stages from 1 as d2l does (``f'stage{i+1}'``), d2l's Inception block its paths ``p1_1`` ...
``p4_2``, and GoogLeNet's classifier is ``net/fc`` where AnyNet's is ``net/head/fc``; the blocks
inside a stage or a Sequential are ``block{j}`` (NiN's and VGG's ``net/block{i}``, ResNet's
``net/b2/block0``, DenseNet's ``net/dense_blk1/block0``).

Activations are recorded while the model runs eagerly: every layer's ``call`` is shadowed for
that run by one that keeps its output under the layer's native path (``_recording``).

``VARIANTS`` are naive ports, one classic porting pitfall each, built with
``build(spec, variant=...)``: real, runnable models that differ from the spec's function.
Pitfalls compose (``same_padding+keras_bn_epsilon``), and ``d2l_tf_tab`` is the book's
TensorFlow code of the spec (``spec.book_tabs()``; RegNetX32's and ResNet-18's are those two
pitfalls). ``check_variant`` turns a variant into the model's ``pitfalls``; four change the layers
(``impl_tf.anynet.LayerMaker``, ``impl_tf.inception``, ``impl_tf.classic``), two only the way
``load_weights`` and ``export_weights`` map canonical tensors (``table(spec, variant)``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import weakref
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf

from impl_tf.anynet import AnyNet, ResNeXtBlock
from impl_tf.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, TorchvisionAlexNet, TorchvisionVGG
from impl_tf.densenet import DenseNet
from impl_tf.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_tf.resnet import Residual, ResidualBlock, ResidualNet, ResNet, TorchvisionResNet
from parity import specs
from parity.backends import InputError, Registry, SummaryRow, check_dtype, check_input
from parity.hub import NameTable, from_native, leaves, stream_to_native
from parity.layout import nchw_to_nhwc, nhwc_to_nchw
from parity.variants import check_variant, fits_untransposed, untransposed
from parity.weights import Param, Weights, schema

VARIANTS = {
    "same_padding": (
        "Keras' padding='same' in every padded conv and pool instead of explicit symmetric padding; at stride 2 "
        "on an even size it pads bottom/right only"
    ),
    "keras_bn_epsilon": "BatchNormalization() with Keras' default epsilon 1e-3 instead of the spec's",
    "avgpool_excludes_padding": (
        "InceptionA's pool as AveragePooling2D(padding='same'): padded zeros left out of the mean"
    ),
    "unpermuted_flatten": "the dense weight after a flatten copied without the NCHW->NHWC input-axis permutation",
    "untransposed_kernel": "OIHW kernels transposed (2, 3, 0, 1) to (kh, kw, O, I/g) wherever that shape equals HWIO's",
    "dropped_padding": "a padded conv built unpadded where its output keeps its size at the fixed input size "
    "(AlexNet's conv1, as d2l's TF tab has it): every window shifted by the padding",
}

name = "tf"
layout = "NHWC"
extra = "tf"

LEAVES = leaves(
    conv_weight=("kernel", "OIHW->HWIO"),
    batchnorm_weight=("gamma", "identity"),
    batchnorm_bias=("beta", "identity"),
    batchnorm_running_mean=("moving_mean", "identity"),
    batchnorm_running_var=("moving_variance", "identity"),
    dense_weight=("kernel", "(out,in)->(in,out)"),
)
_KERAS = {"leaves": LEAVES, "separator": "/", "flatten_order": "HWC"}


def _stage(match: re.Match) -> str:
    """``stages.{i}.blocks.{j}`` -> ``net/stage{i+1}/block{j}``: stages from 1, as d2l names them."""
    return f"net/stage{int(match[1]) + 1}/block{match[2]}"


# d2l's AnyNet and ResNeXt block.
ANYNET_TABLE = NameTable(
    modules=((r"^stages\.(\d+)\.blocks\.(\d+)", _stage), (r"^(stem|head)\b", r"net/\1"), (r"\.", "/")),
    **_KERAS,
)

# d2l's GoogLeNet and Inception block (paths p1_1 .. p4_2, blocks inception{k} in a stage, the
# classifier net/fc), and the tutorials' InceptionNet and InceptionA (the average pool that feeds
# branch_pool is branch_pool_avg; the tutorial pools, then applies ReLU, so the point pool{i},
# after both, is the output of relu{i}).
INCEPTION_TABLE = NameTable(
    modules=(
        (r"^head\.fc$", "net/fc"),
        (r"^(b[1-5])\.(\d+)\b", r"net/\1/inception\2"),
        (r"^(b[1-5]|conv\d|incep\d|fc)\b", r"net/\1"),
        (r"^pool(\d)$", r"net/relu\1"),
        (r"\bb(\d)_(\d)$", r"p\1_\2"),
        (r"\bbranch_pool\.avg$", "branch_pool_avg"),
        (r"\.", "/"),
    ),
    **_KERAS,
)

# d2l's NiN: one flat Sequential, net/block{i}/conv{k}, net/pool{i}, net/dropout, net/avg_pool.
NIN_TABLE = NameTable(
    modules=(
        (r"^blocks\.(\d+)", r"net/block\1"),
        (r"^pools\.(\d+)$", r"net/pool\1"),
        (r"^dropout$", "net/dropout"),
        (r"^head\.pool$", "net/avg_pool"),
        (r"\.", "/"),
    ),
    **_KERAS,
)

# d2l's LeNet, BNLeNet, AlexNet and VGG: one flat Sequential, net/conv1, net/pool1, net/fc6, net/drop6;
# VGG's blocks net/block{i}/conv{k}, each block's output (after its max-pool) net/block{i}.
CLASSIC_TABLE = NameTable(modules=((r"^blocks\.(\d+)", r"block\1"), (r"^", "net/"), (r"\.", "/")), **_KERAS)

# d2l's ResNet and Residual block (a standalone block's paths are its own: conv1, bn1, ...), and
# the tutorials' ResidualBlock: net/b1/conv, stages net/b{s}/block{j}/conv1, net/last/fc.
RESNET_TABLE = NameTable(
    modules=((r"^(b\d+)\.(\d+)\b", r"net/\1/block\2"), (r"^(b1|last)\b", r"net/\1"), (r"\.", "/")),
    **_KERAS,
)

# The tutorials' residual MNIST net: one flat Sequential; it pools, then applies ReLU, so the point
# pool{i}, after both, is the output of relu{i} (as in InceptionNet).
RESIDUAL_NET_TABLE = NameTable(
    modules=((r"^pool(\d)$", r"relu\1"), (r"^", "net/"), (r"\.", "/")),
    **_KERAS,
)

# d2l's DenseNet: net/b1, conv block j of dense block i net/dense_blk{i}/block{j}/{bn,conv} (the
# block's output is the concatenation), net/tran_blk{i}/{bn,conv,pool}, net/last/{bn,pool,fc}.
DENSENET_TABLE = NameTable(modules=((r"^(dense_blk\d+)\.(\d+)", r"\1/block\2"), (r"^", "net/"), (r"\.", "/")), **_KERAS)

REGISTRY = Registry(name)
REGISTRY.register(specs.ResNeXtBlock, ResNeXtBlock, ANYNET_TABLE)
REGISTRY.register(specs.AnyNet, AnyNet, ANYNET_TABLE)
REGISTRY.register(specs.Inception, Inception, INCEPTION_TABLE)
REGISTRY.register(specs.GoogLeNet, GoogLeNet, INCEPTION_TABLE)
REGISTRY.register(specs.InceptionA, InceptionA, INCEPTION_TABLE)
REGISTRY.register(specs.InceptionNet, InceptionNet, INCEPTION_TABLE)
REGISTRY.register(specs.NiN, NiN, NIN_TABLE)
REGISTRY.register(specs.LeNet, LeNet, CLASSIC_TABLE)
REGISTRY.register(specs.BNLeNet, BNLeNet, CLASSIC_TABLE)
REGISTRY.register(specs.AlexNet, AlexNet, CLASSIC_TABLE)
REGISTRY.register(specs.VGG, VGG, CLASSIC_TABLE)
REGISTRY.register(specs.Residual, Residual, RESNET_TABLE)
REGISTRY.register(specs.ResNet, ResNet, RESNET_TABLE)
REGISTRY.register(specs.ResidualBlock, ResidualBlock, RESNET_TABLE)
REGISTRY.register(specs.ResidualNet, ResidualNet, RESIDUAL_NET_TABLE)
REGISTRY.register(specs.DenseNet, DenseNet, DENSENET_TABLE)
# torchvision's ResNet: net/conv1, stage layer{s}'s blocks net/layer{s}/block{j}/conv1, downsample_conv and _bn, net/fc.
TORCHVISION_RESNET_TABLE = NameTable(
    modules=(
        (r"^(layer\d)\.(\d+)", r"\1/block\2"),
        (r"\.downsample\.0$", "/downsample_conv"),
        (r"\.downsample\.1$", "/downsample_bn"),
        (r"^", "net/"),
        (r"\.", "/"),
    ),
    **_KERAS,
)
REGISTRY.register(specs.TorchvisionResNet, TorchvisionResNet, TORCHVISION_RESNET_TABLE)
# torchvision's AlexNet and VGG: as d2l's, one flat Sequential (net/conv1, net/block{i}/bn{k}, net/avgpool, net/fc6).
REGISTRY.register(specs.TorchvisionAlexNet, TorchvisionAlexNet, CLASSIC_TABLE)
REGISTRY.register(specs.TorchvisionVGG, TorchvisionVGG, CLASSIC_TABLE)


REGISTRY.register_fully_convolutional()

Model = (
    AnyNet
    | ResNeXtBlock
    | Inception
    | GoogLeNet
    | InceptionA
    | InceptionNet
    | NiN
    | LeNet
    | BNLeNet
    | AlexNet
    | VGG
    | Residual
    | ResNet
    | ResidualBlock
    | ResidualNet
    | DenseNet
)


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


def table(spec: specs.Spec, variant: str | None = None) -> NameTable:
    """The name table of ``spec``'s architecture, or of the naive port ``variant`` (the same names
    and shapes, other transforms under ``unpermuted_flatten`` and ``untransposed_kernel``)."""
    return _table(spec, check_variant(name, VARIANTS, spec, variant))


def _table(spec: specs.Spec, pitfalls: frozenset[str]) -> NameTable:
    faithful = REGISTRY[spec].table_for(spec)
    if "unpermuted_flatten" in pitfalls:
        return dataclasses.replace(faithful, flatten_order="CHW")
    if "untransposed_kernel" in pitfalls:
        return UntransposedKernelTable(faithful.modules, faithful.leaves, faithful.separator, faithful.flatten_order)
    return faithful


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> Model:
    """A Keras model of ``spec`` with every variable created, initialised from ``seed``; with
    ``variant``, the naive port of ``VARIANTS[variant]`` instead (``model.pitfalls``)."""
    check_dtype(dtype)
    builder = REGISTRY[spec].builder
    pitfalls = check_variant(name, VARIANTS, spec, variant)
    model = builder(spec, dtype=dtype, seed=seed, pitfalls=pitfalls)
    # A flatten before a dense layer needs the image size; the other specs take any size.
    image_size = spec.fixed_input_size() or (None, None)
    model.build((None, *image_size, spec.in_channels))
    return model


def forward(model: Model, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits (networks) or an NCHW feature map (blocks); ``train`` normalises with batch
    statistics (and makes NiN's dropout drop). The model is never changed: see ``_forward_graph``."""
    x = check_input(model.spec, x_nchw, model.dtype)
    return _to_nchw(_forward_graph(model, train)(nchw_to_nhwc(x)).numpy())


def layer_summary(model: Model, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's layer summary: a random NHWC input through the top-level layers one by one, in eval mode.

    The top-level layers are those of ``model.net`` (d2l's Sequential); a standalone block is one
    layer. A layer's group is the ``spec.summary_groups()`` group of the first activation point it
    computes; a layer that computes none takes the group of the spec op it computes (a ReLU after
    a conv point, a flatten before a dense one), found in the graph between the points around it;
    a layer that computes no op of the graph (a padding step) joins the next layer's group, or the
    last group at the end.
    """
    spec = model.spec
    if len(input_shape) != 4 or input_shape[-1] != spec.in_channels:
        raise InputError(f"input_shape: expected (N, H, W, {spec.in_channels}), got {tuple(input_shape)}")
    problem = specs.spatial_size_problem(spec, *input_shape[1:3])
    if problem:
        raise InputError(f"input_shape: {problem}, got {tuple(input_shape)}")
    X = keras.random.normal(input_shape, dtype=model.dtype, seed=0)
    net = getattr(model, "net", None)
    if net is None:
        (group,) = spec.summary_groups()
        return [_summary_row(model, model(X, training=False), group)]
    rows = []
    for layer, group in zip(net.layers, _summary_groups(model), strict=True):
        X = layer(X, training=False)
        rows.append(_summary_row(layer, X, group))
    return rows


def export_weights(model: Model) -> Weights:
    """Canonical weights: fresh numpy copies in PyTorch layouts and the model's dtype (the layout
    transforms copy each variable's value, read without a copy through ``memoryview``)."""
    native = {name: np.asarray(memoryview(variable.value.read_value())) for name, variable in _variables(model).items()}
    return from_native(model.spec, native, _table(model.spec, model.pitfalls))


def load_weights(model: Model, weights: Weights, allow_nonfinite: bool = False) -> None:
    """Validate everything, then assign the variables one at a time; on any error nothing is assigned."""
    variables = _variables(model)
    native = stream_to_native(
        model.spec,
        weights,
        _table(model.spec, model.pitfalls),
        {name: tuple(variable.shape) for name, variable in variables.items()},
        dtype=model.dtype,
        allow_nonfinite=allow_nonfinite,
    )
    for name, value in native:
        variables[name].assign(value)


def activations(model: Model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode outputs at ``spec.activation_points()``, NCHW (flat vectors (N, C)), in that order."""
    spec = model.spec
    X = nchw_to_nhwc(check_input(spec, x_nchw, model.dtype))
    outputs = {}
    with _recording(model, outputs):
        outputs[""] = model(X, training=False)
    return {point: _to_nchw(outputs[_native_module(spec, point)].numpy()) for point in spec.activation_points()}


def structure(model: Model) -> dict[str, tuple[int, int]]:
    """(trainable parameters, convolution groups or 1) of every parameterised layer of the spec, by
    canonical path, read from the Keras layer that ``table(spec)`` maps the path to."""
    spec, names = model.spec, REGISTRY[model.spec].table_for(model.spec)
    out = {}
    for layer in spec.layers():
        native = _native_layer(model, names.native_module(layer.path))
        params = sum(int(np.prod(weight.shape)) for weight in native.trainable_weights)
        out[layer.path] = (params, native.groups if isinstance(native, keras.layers.Conv2D) else 1)
    return out


_FORWARD_GRAPHS: weakref.WeakKeyDictionary[Model, dict[bool, tf.types.experimental.PolymorphicFunction]] = (
    weakref.WeakKeyDictionary()
)


def _forward_graph(model: Model, train: bool) -> tf.types.experimental.PolymorphicFunction:
    """The model's forward pass as one TensorFlow graph per (model, train), traced once for any batch and
    image size, that reads the model's variables inside the graph.

    The variables are not arguments: a graph shared by every model of a spec would take them as inputs, and
    binding RegNetX-400MF's 357 inputs to the signature costs more than its forward at batch 1 (17 ms against
    15 ms here). The model is never changed: the graph runs Keras' ``stateless_call`` on the values it read,
    so that in train mode the BatchNorm moving-statistic updates (and the dropout seed's) come back as new
    values, and are dropped. The graph holds the model weakly, and dies with it.
    """
    graphs = _FORWARD_GRAPHS.setdefault(model, {})
    if train not in graphs:
        template = weakref.ref(model)

        def stateless_forward(X):
            model = template()
            trainable = [variable.value for variable in model.trainable_variables]
            non_trainable = [variable.value for variable in model.non_trainable_variables]
            outputs, _ = model.stateless_call(trainable, non_trainable, X, training=train)
            return outputs

        signature = [tf.TensorSpec((None, None, None, model.spec.in_channels), model.dtype)]
        graphs[train] = tf.function(stateless_forward, input_signature=signature)
    return graphs[train]


# --- activations: every layer's output recorded under its native path while the model runs ---


@contextlib.contextmanager
def _recording(model: Model, outputs: dict) -> Iterator[None]:
    """Keras has no forward hooks: while inside, every layer of ``model`` (at any depth) records the
    output of its ``call`` in ``outputs`` under its native path, through an instance attribute that
    shadows the class's ``call`` and is removed on the way out."""
    patched = []

    def hook(layer: keras.Layer, path: str) -> None:
        for child in getattr(layer, "layers", []):
            child_path = _join(path, child.name)

            def call(*args, _call=child.call, _path=child_path, **kwargs):
                outputs[_path] = _call(*args, **kwargs)
                return outputs[_path]

            object.__setattr__(child, "call", call)  # past Keras' attribute tracking
            patched.append(child)
            hook(child, child_path)

    hook(model, "")
    try:
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


def _native_module(spec: specs.Spec, point: str) -> str:
    """The native path of an activation point (``output`` is the standalone block itself: "")."""
    return "" if point == specs.OUTPUT else REGISTRY[spec].table_for(spec).native_module(point)


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


# --- variables, layers, summaries ---


def _variables(model: Model) -> dict[str, keras.Variable]:
    """The model's weights by path relative to the model (not the dropout's seed state)."""
    prefix = f"{model.name}/"
    variables = {variable.path.removeprefix(prefix): variable for variable in model.weights}
    if len(variables) != len(model.weights) or any(not v.path.startswith(prefix) for v in model.weights):
        raise RuntimeError(f"model {model.name!r} has variables outside its scope or with duplicate paths")
    return variables


def _native_layer(model: Model, path: str) -> keras.Layer:
    """The layer at a native module path (``net/stage1/block0/conv2``), found by layer names."""
    layer = model
    for name in path.split("/"):
        children = {child.name: child for child in getattr(layer, "layers", [])}
        if name not in children:
            raise KeyError(f"model {model.name!r} has no layer {path!r} (no {name!r} in {layer.name!r})")
        layer = children[name]
    return layer


# The spec op of each kind of Keras layer that may stand between activation points (a padding
# step computes none of its own: it belongs to the conv after it).
_LAYER_OPS = {
    keras.layers.Flatten: "flatten",
    keras.layers.Dropout: "dropout",
    keras.layers.MaxPooling2D: "max_pool",
    keras.layers.AveragePooling2D: "avg_pool",
    keras.layers.GlobalAveragePooling2D: "global_avg_pool",
}


def _layer_op(layer: keras.Layer) -> str | None:
    if isinstance(layer, keras.layers.Activation):
        return layer.activation.__name__  # "relu", "sigmoid"
    return next((op for kind, op in _LAYER_OPS.items() if isinstance(layer, kind)), None)


def _summary_groups(model: Model) -> list[str]:
    """The canonical group of each of ``model.net``'s top-level layers (see ``layer_summary``)."""
    spec = model.spec
    nodes = spec.graph()
    native = {node.name: _native_module(spec, node.name) for node in nodes if node.point}

    def points(layer: keras.Layer) -> list[int]:
        path = f"net/{layer.name}"
        return [i for i, node in enumerate(nodes) if node.point and (native[node.name] + "/").startswith(path + "/")]

    computed = [points(layer) for layer in model.net.layers]
    found = [nodes[indices[0]].group if indices else None for indices in computed]
    # A layer that computes no point: the first op of its kind among the graph's nodes after the
    # last one placed and before the next layer's first point.
    placed = -1
    for k, layer in enumerate(model.net.layers):
        if computed[k]:
            placed = computed[k][-1]
            continue
        until = next((indices[0] for indices in computed[k + 1 :] if indices), len(nodes))
        op = _layer_op(layer)
        match = next((i for i in range(placed + 1, until) if not nodes[i].point and nodes[i].op == op), None)
        if match is not None:
            found[k], placed = nodes[match].group, match
    for i in reversed(range(len(found))):
        if found[i] is None:
            found[i] = found[i + 1] if i + 1 < len(found) else spec.summary_groups()[-1]
    return found


def _summary_row(layer: keras.Layer, output, group: str) -> SummaryRow:
    params = sum(int(np.prod(weight.shape)) for weight in layer.trainable_weights)
    return SummaryRow(type(layer).__name__, tuple(output.shape), str(output.shape), params, group)


def _to_nchw(y: np.ndarray) -> np.ndarray:
    return nhwc_to_nchw(y) if y.ndim == 4 else y
