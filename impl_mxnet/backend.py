"""The MXNet Gluon backend of the parity suite.

Gluon is NCHW with PyTorch's kernel layouts, and its Dense flattens a feature map in
PyTorch's (C, H, W) order, so every tensor maps to the canonical form unchanged; only
the names differ. Native names are the ``collect_params()`` keys, which the explicit
prefixes in the model files make predictable: ``stages.1.blocks.0.conv2.weight`` is
``stage2_block0_conv2_weight``, ``b3.0.b2_2.weight`` is ``b3_inception0_p2_2_weight``,
``blocks.0.conv1.weight`` is ``block0_conv1_weight``, ``b2.0.conv1.weight`` is
``b2_block0_conv1_weight``, ``dense_blk1.0.conv.weight`` is ``dense_blk1_block0_conv_weight``.
The same tables name the Gluon blocks whose outputs are the activation points (a block's name
is its prefix without the trailing ``_``).

``forward`` and ``activations`` run the model as one compiled graph (``_compiled``), Gluon's
``hybridize`` path, with the same bits as the model's imperative call, except float32 eval-mode
``forward``, which runs oneDNN's fused convolutions; the model itself stays imperative, the way the
book and ``layer_summary`` call it layer by layer.

The ``d2l_stage_bug`` variant is the book's AnyNet as its MXNet code really builds it.
Its later blocks have other tensors than the spec says, so its weights are checked and
exported against the layers the model really has (``AsBuilt``), not the spec's: canonical
weights of the spec do not load into it, and its own weights round-trip.
"""

from __future__ import annotations

import dataclasses
import re
import weakref
from collections.abc import Iterator, Mapping

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from impl_mxnet.anynet import AnyNet, ResNeXtBlock
from impl_mxnet.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, TorchvisionAlexNet, TorchvisionVGG
from impl_mxnet.densenet import DenseNet
from impl_mxnet.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from impl_mxnet.resnet import Residual, ResidualBlock, ResidualNet, ResNet, TorchvisionResNet
from parity import hub, specs
from parity.backends import Registry, SummaryRow, check_dtype, check_input
from parity.variants import check_variant
from parity.weights import Weights

name = "mxnet"
layout = "NCHW"
extra = "mxnet"

VARIANTS = {
    "d2l_stage_bug": "d2l's MXNet AnyNet.stage calls ResNeXtBlock(num_channels, num_channels, groups, bot_mul): "
    "every block after a stage's first gets a `groups` times wider bottleneck and a projection shortcut, "
    "with the same output shapes",
    "dropped_padding": "a padded conv built unpadded where its output keeps its size at the fixed input size "
    "(AlexNet's conv1, as d2l's MXNet tab has it): every window shifted by the padding",
}

# Gluon calls BatchNorm's scale and shift gamma and beta; every other leaf is PyTorch's.
LEAVES = hub.leaves(batchnorm_weight=("gamma", "identity"), batchnorm_bias=("beta", "identity"))


def _stage_block(match: re.Match) -> str:
    """``stages.{i}.blocks.{j}`` -> ``stage{i+1}.block{j}``: stages count from 1, as the book's ``f'stage{i+1}'``."""
    return f"stage{int(match[1]) + 1}.block{match[2]}"


# Each table maps canonical module paths (of weights and of activation points) to Gluon block names.
# d2l's AnyNet and ResNeXt block: stage1_block0_conv1.
ANYNET_TABLE = hub.NameTable(
    modules=((r"^stages\.(\d+)\.blocks\.(\d+)", _stage_block), (r"\.", "_")), leaves=LEAVES, separator="_"
)
# d2l's GoogLeNet and Inception block: the book's branch names p1_1 .. p4_2, block k of a stage
# inception{k} (b3_inception0_p2_2); the tutorials' InceptionNet and InceptionA keep the canonical names.
INCEPTION_TABLE = hub.NameTable(
    modules=((r"^(b\d)\.(\d+)", r"\1.inception\2"), (r"(^|\.)b(\d_\d)$", r"\1p\2"), (r"\.", "_")),
    leaves=LEAVES,
    separator="_",
)
# d2l's classic nets: NiN's and VGG's block{i}_conv{k}, NiN's pool{i}; LeNet's, BNLeNet's and AlexNet's
# layers keep the spec's names (conv1, bn3, pool5, fc6, drop6).
CLASSIC_TABLE = hub.NameTable(
    modules=((r"^blocks\.(\d+)", r"block\1"), (r"^pools\.(\d+)", r"pool\1"), (r"\.", "_")), leaves=LEAVES, separator="_"
)
# d2l's ResNet and Residual block: b1_conv, stage b{i}'s block j b{i}_block{j}, last_pool, last_fc;
# the tutorials' ResidualNet and ResidualBlock keep the canonical names (rblock1_conv2).
RESNET_TABLE = hub.NameTable(modules=((r"^(b\d+)\.(\d+)", r"\1.block\2"), (r"\.", "_")), leaves=LEAVES, separator="_")
# d2l's DenseNet: b1_conv, dense block i's conv block j dense_blk{i}_block{j} (bn, conv), tran_blk{i}_conv, last_fc.
DENSENET_TABLE = hub.NameTable(
    modules=((r"^(dense_blk\d+)\.(\d+)", r"\1.block\2"), (r"\.", "_")), leaves=LEAVES, separator="_"
)

REGISTRY = Registry(name)
REGISTRY.register(specs.ResNeXtBlock, ResNeXtBlock.from_spec, ANYNET_TABLE)
REGISTRY.register(specs.AnyNet, AnyNet, ANYNET_TABLE)
REGISTRY.register(specs.Inception, Inception.from_spec, INCEPTION_TABLE)
REGISTRY.register(specs.GoogLeNet, GoogLeNet, INCEPTION_TABLE)
REGISTRY.register(specs.InceptionA, InceptionA.from_spec, INCEPTION_TABLE)
REGISTRY.register(specs.InceptionNet, InceptionNet, INCEPTION_TABLE)
REGISTRY.register(specs.NiN, NiN, CLASSIC_TABLE)
REGISTRY.register(specs.LeNet, LeNet, CLASSIC_TABLE)
REGISTRY.register(specs.BNLeNet, BNLeNet, CLASSIC_TABLE)
REGISTRY.register(specs.AlexNet, AlexNet, CLASSIC_TABLE)
REGISTRY.register(specs.VGG, VGG, CLASSIC_TABLE)
REGISTRY.register(specs.Residual, Residual.from_spec, RESNET_TABLE)
REGISTRY.register(specs.ResNet, ResNet, RESNET_TABLE)
REGISTRY.register(specs.ResidualBlock, ResidualBlock.from_spec, RESNET_TABLE)
REGISTRY.register(specs.ResidualNet, ResidualNet, RESNET_TABLE)
REGISTRY.register(specs.DenseNet, DenseNet, DENSENET_TABLE)
# torchvision's ResNet: conv1_weight, stage layer{s}'s blocks layer{s}_block{j}_conv1, _downsample_conv, fc_weight.
TORCHVISION_RESNET_TABLE = hub.NameTable(
    modules=(
        (r"^(layer\d)\.(\d+)", r"\1.block\2"),
        (r"\.downsample\.0$", ".downsample_conv"),
        (r"\.downsample\.1$", ".downsample_bn"),
        (r"\.", "_"),
    ),
    leaves=LEAVES,
    separator="_",
)
REGISTRY.register(specs.TorchvisionResNet, TorchvisionResNet, TORCHVISION_RESNET_TABLE)
# torchvision's AlexNet and VGG: as d2l's (conv1, block{i}_bn{k}, avgpool, fc6).
REGISTRY.register(specs.TorchvisionAlexNet, TorchvisionAlexNet, CLASSIC_TABLE)
REGISTRY.register(specs.TorchvisionVGG, TorchvisionVGG, CLASSIC_TABLE)


REGISTRY.register_fully_convolutional()

Model = (
    AnyNet
    | ResNeXtBlock
    | GoogLeNet
    | Inception
    | InceptionNet
    | InceptionA
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


def table(spec: specs.Spec, variant: str | None = None) -> hub.NameTable:
    """The name table of ``spec``'s kind; the variant (checked) changes which tensors there are, not their names."""
    entry = REGISTRY[spec]
    check_variant(name, VARIANTS, spec, variant)
    return entry.table_for(spec)


@dataclasses.dataclass(frozen=True)
class AsBuilt:
    """The canonical layers a variant model really has, in the form ``parity.weights.schema`` reads."""

    name: str
    built_layers: tuple[specs.Layer, ...]

    def layers(self) -> list[specs.Layer]:
        return list(self.built_layers)


def build(spec: specs.Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> Model:
    """A Gluon model for ``spec``, Xavier-initialised from ``seed`` as d2l's ``init.Xavier()`` (uniform
    weights; biases 0, BatchNorm 1/0/0/1), in ``dtype``; ``variant`` is one of ``VARIANTS`` or None."""
    check_dtype(dtype)
    builder = REGISTRY[spec].builder
    pitfalls = check_variant(name, VARIANTS, spec, variant)
    # Only the nets that a pitfall applies to (check_variant refuses the others) take ``pitfalls``:
    # AnyNet (d2l_stage_bug) and AlexNet (dropped_padding).
    model = builder(spec, prefix="", **({"pitfalls": pitfalls} if pitfalls else {}))
    mx.random.seed(seed)
    model.initialize(mx.init.Xavier())
    model.cast(dtype)
    model.dtype = dtype
    model.variant, model.pitfalls = variant, pitfalls
    return model


def build_empty(spec: specs.Spec, dtype: str = "float32") -> Model:
    """The model for ``spec`` in ``dtype`` to be filled by ``load_weights`` right away (``parity convert``):
    its parameters are made in ``dtype`` with constant values (``init.Zero()``, BatchNorm's ones) instead of
    a random initialisation, and without gradient buffers (``grad_req="null"``), which only training uses;
    ``build`` makes a model to train."""
    check_dtype(dtype)
    model = REGISTRY[spec].builder(spec, prefix="")
    model.collect_params().setattr("grad_req", "null")
    model.cast(dtype)
    model.initialize(mx.init.Zero())
    model.dtype = dtype
    model.variant, model.pitfalls = None, frozenset()
    return model


def _block_layers(block: ResNeXtBlock, path: str) -> list[specs.Layer]:
    """The canonical layers of a block as it was built, under ``path``."""
    g = specs.GraphBuilder()
    block.spec.add_to(g, g.input, path)
    return [node.layer for node in g.nodes if node.layer is not None]


def _as_built(model: Model) -> specs.Spec | AsBuilt:
    """What the model's canonical weights are checked against: its spec, or a variant's layers as built.

    The one variant whose layers differ is AnyNet's ``d2l_stage_bug``: the spec's stem and head, and
    each stage's blocks' layers as the blocks themselves were built.
    """
    if "d2l_stage_bug" not in model.pitfalls:
        return model.spec
    spec = model.spec
    stages = list(model.net)[1 : 1 + len(spec.stages)]  # net: stem, the stages, pool, dense
    blocks = [
        layer
        for i, stage in enumerate(stages)
        for j, block in enumerate(stage)
        for layer in _block_layers(block, specs.block_path(i, j))
    ]
    stem = [layer for layer in spec.layers() if layer.path.startswith("stem.")]
    head = [layer for layer in spec.layers() if layer.path.startswith("head.")]
    return AsBuilt(f"{spec.name} (variant {model.variant})", (*stem, *blocks, *head))


def _input(model: Model, x_nchw: np.ndarray) -> nd.NDArray:
    return nd.array(check_input(model.spec, x_nchw, model.dtype), dtype=model.dtype)


def forward(model: Model, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
    """Logits, or the block's NCHW output, from the model's compiled graph (``_compiled``); ``train``
    normalises with batch statistics.

    Gluon writes BatchNorm running statistics only in the backward pass of a graph
    recorded under ``autograd.record()``; ``autograd.pause`` records nothing, even
    inside a caller's ``record()``, so no mode changes the model. ``train`` also makes
    the dropout of NiN, AlexNet and VGG drop, with MXNet's global RNG: no parity check runs
    these nets in train mode with dropout active, so their masks need not match another
    framework's.
    """
    x = _input(model, x_nchw)
    fused = not train and model.dtype == "float32" and _ONEDNN
    with autograd.pause(train_mode=train):
        return _compiled(model, "inference" if fused else "output")(x).asnumpy()


# {model: {kind: its compiled graph}}, each made on first use and dropped with the model.
_GRAPHS: weakref.WeakKeyDictionary[Model, dict[str, gluon.SymbolBlock]] = weakref.WeakKeyDictionary()
_ONEDNN = mx.runtime.Features().is_enabled("MKLDNN")


def _compiled(model: Model, kind: str = "output") -> gluon.SymbolBlock:
    """The whole model as one compiled Gluon graph of ``kind``: ``output``, its output; ``points``, its
    activation points in order; ``inference``, its float32 eval-mode output through MXNet's oneDNN
    subgraph backend.

    The model, called on a symbol, writes its whole computation, Blocks and HybridBlocks alike, into
    one graph; a ``SymbolBlock`` over that graph and the model's own Parameters runs it as one cached
    operator with its memory planned once per input shape (``static_alloc``, ``static_shape``).

    ``output`` and ``points`` run the operators that the model's imperative call runs, so their results
    are the same bits, and they read the Parameters at each call. ``inference`` is what a Gluon user
    deploys on a CPU (``hybridize(backend="MKLDNN")``): each convolution fused with its BatchNorm (folded
    into the kernel and bias), ReLU and residual sum, 1.7x faster on RegNetX-400MF, its logits within
    float32 rounding of the others (2e-7 of the largest). It reads the Parameters when it first runs and
    keeps them, folded: whatever writes a parameter drops it (``weights_changed``).
    """
    graphs = _GRAPHS.setdefault(model, {})
    if kind not in graphs:
        data = mx.sym.var("data", dtype=model.dtype)
        outputs = _point_symbols(model, data) if kind == "points" else model(data)
        graphs[kind] = gluon.SymbolBlock(outputs, data, params=model.collect_params())
        backend = {"backend": "MKLDNN"} if kind == "inference" else {}
        graphs[kind].hybridize(static_alloc=True, static_shape=True, **backend)
    return graphs[kind]


def drop_compiled(model: Model) -> None:
    """Drop the model's compiled graphs, made again on the next call: ``parity convert`` drops them once its
    logit check has run, before it writes, as the ``inference`` graph holds a folded copy of the weights."""
    _GRAPHS.pop(model, None)


def weights_changed(model: Model) -> None:
    """Drop the ``inference`` graph, which holds the parameters as they were when it first ran: every write
    of a parameter calls this (``load_weights``, the training steps)."""
    _GRAPHS.get(model, {}).pop("inference", None)


# The native leaf names of BatchNorm's running statistics, the parameters that no gradient updates.
_STATISTICS = tuple(LEAVES[f"batchnorm.{leaf}"][0] for leaf in ("running_mean", "running_var"))


def _trainable_parameters(layer: mx.gluon.Block) -> int:
    """The number of values that training updates in ``layer``: every parameter but BatchNorm's running statistics,
    told apart by their names (not by ``grad_req``, which is "null" for all the parameters of ``build_empty``)."""
    return sum(p.data().size for key, p in layer.collect_params().items() if not key.endswith(_STATISTICS))


def _summary_row(layer: mx.gluon.Block, output: nd.NDArray, group: str) -> SummaryRow:
    return SummaryRow(type(layer).__name__, output.shape, str(output.shape), _trainable_parameters(layer), group)


def layer_summary(model: Model, input_shape: tuple[int, ...]) -> list[SummaryRow]:
    """d2l's layer summary: a zero input through each layer of ``model.net`` in turn (a block is one row),
    in eval mode, each row in the summary group of the spec's graph its layer belongs to.

    Gluon's Sequentials are flatter than the spec's groups where the book's are (LeNet's conv and
    pool, a global pool and its Dense): a layer belongs to the group of the first activation point
    it computes, and a layer that computes none (an ``Activation``, a ``Flatten``) to its
    predecessor's group.
    """
    X = _input(model, np.zeros(input_shape, dtype=model.dtype))
    layers = list(model.net) if hasattr(model, "net") else [model]  # d2l's nets keep their layers in ``net``
    groups = _point_groups(model)
    group = model.spec.summary_groups()[0]
    rows = []
    with autograd.pause(train_mode=False):
        for layer in layers:
            X = layer(X)
            inside = []
            layer.apply(inside.append)
            group = next((groups[block] for block in inside if block in groups), group)
            rows.append(_summary_row(layer, X, group))
    return rows


def _point_groups(model: Model) -> dict[mx.gluon.Block, str]:
    """{Gluon block: summary group} of the blocks whose outputs are activation points."""
    groups = {node.name: node.group for node in model.spec.graph()}
    return {block: groups[point] for point, block in _activation_blocks(model).items()}


def _settle() -> None:
    """Wait for every pending MXNet operation. An eval-mode conv on MXNet's oneDNN (MKL-DNN) CPU build
    reorders its weight into oneDNN's layout in place, asynchronously, after the conv itself has run;
    a raw read or write of that weight meanwhile sees, or is overwritten by, the reordered bytes."""
    nd.waitall()


class _Values(Mapping):
    """{native name: value} of a model's parameters, each value a fresh numpy array (``asnumpy``) made when it is
    looked up, so that a reader converting one tensor at a time holds one of them at a time."""

    def __init__(self, params: gluon.ParameterDict) -> None:
        self._params = dict(params.items())

    def __getitem__(self, key: str) -> np.ndarray:
        return self._params[key].data().asnumpy()

    def __contains__(self, key: object) -> bool:
        return key in self._params

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)


def export_weights(model: Model) -> Weights:
    """Canonical weights: fresh numpy copies, each parameter read when ``hub.from_native`` converts it, so that
    an export holds one copy of the weights besides the model's."""
    _settle()
    return hub.from_native(_as_built(model), _Values(model.collect_params()), table(model.spec))


def load_weights(model: Model, weights: Weights, allow_nonfinite: bool = False) -> None:
    """Validate every tensor against the spec (a variant's layers as built) and the model, then copy them in one
    at a time: MXNet's engine copies each native array, taken without a copy (``nd.from_numpy``), into its
    parameter (in oneDNN's layout where a forward pass left it in that) and is waited for, so that the arrays
    of ``hub.stream_to_native`` never queue up."""
    params = model.collect_params()
    native = hub.stream_to_native(
        _as_built(model),
        weights,
        table(model.spec),
        {key: param.shape for key, param in params.items()},
        dtype=model.dtype,
        allow_nonfinite=allow_nonfinite,
    )
    _settle()
    weights_changed(model)
    for key, value in native:
        param = params[key]
        param.set_data(nd.from_numpy(value))
        param.data().wait_to_read()


def structure(model: Model) -> dict[str, tuple[int, int]]:
    """(trainable parameters, conv groups or 1) of every canonical layer the model has, in execution
    order, counted on its Gluon layers: the spec's layers and any that a variant adds."""
    blocks = _blocks_by_name(model)
    rule = table(model.spec)
    return {layer.path: _layer_structure(blocks[rule.native_module(layer.path)]) for layer in _as_built(model).layers()}


def _layer_structure(layer: mx.gluon.Block) -> tuple[int, int]:
    groups = layer._kwargs["num_group"] if isinstance(layer, mx.gluon.nn.Conv2D) else 1  # Gluon keeps it nowhere else
    return _trainable_parameters(layer), groups


def _blocks_by_name(model: Model) -> dict[str, mx.gluon.Block]:
    """{name: block}. A container given the prefix ``""`` has its parent's name; the name means the
    outer block, whose output is the whole (``apply`` visits a block after its children)."""
    by_name = {}
    model.apply(lambda block: by_name.__setitem__(block.name, block))
    return by_name


def _activation_blocks(model: Model) -> dict[str, mx.gluon.Block]:
    """The block whose output each activation point is, found by its native name."""
    by_name = _blocks_by_name(model)
    return {
        point: model if point == "output" else by_name[table(model.spec).native_module(point)]
        for point in model.spec.activation_points()
    }


def _point_symbols(model: Model, data: mx.sym.Symbol) -> list[mx.sym.Symbol]:
    """The symbols of ``spec.activation_points()``, in order, recorded by hooks, removed afterwards, while
    the model is called on ``data``.

    d2l's Gluon convs and dense layers fuse their activation (``activation="relu"``); the spec's
    point of such a layer is its output before the activation, i.e. the input of its ``act`` block.
    """
    symbols = {}

    def record_output(point):
        return lambda block, inputs, output: symbols.__setitem__(point, output)

    def record_input(point):
        return lambda block, inputs: symbols.__setitem__(point, inputs[0])

    handles = []
    for point, block in _activation_blocks(model).items():
        if getattr(block, "act", None) is not None:  # a Conv2D or Dense with a fused activation
            handles.append(block.act.register_forward_pre_hook(record_input(point)))
        else:
            handles.append(block.register_forward_hook(record_output(point)))
    try:
        model(data)
    finally:
        for handle in handles:
            handle.detach()
    return [symbols[point] for point in model.spec.activation_points()]


def activations(model: Model, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
    """Eval-mode outputs of ``spec.activation_points()``, from the model's compiled graph of them."""
    x = _input(model, x_nchw)
    with autograd.pause(train_mode=False):
        values = _compiled(model, "points")(x)
    outputs = {point: value.asnumpy() for point, value in zip(model.spec.activation_points(), values, strict=True)}
    # The spec's global average pools give (N, C); Gluon's GlobalAvgPool2D keeps (N, C, 1, 1).
    for node in model.spec.graph():
        if node.op == "global_avg_pool" and node.point:
            outputs[node.name] = outputs[node.name].reshape(x.shape[0], -1)
    return outputs
