"""torchvision's checkpoints (RegNetX, ResNet, AlexNet, VGG) in and out of the canonical form.

torchvision names a model's tensors by its own module tree
(``trunk_output.block2.block2-0.f.b.0.weight``, ``features.3.weight``); the canonical form names them
by the spec (``stages.1.blocks.0.conv2.weight``, ``conv2.weight``). Both use PyTorch's layouts, so the
mapping is names only: one ``parity.hub.NameTable`` per torchvision family (``FAMILIES``), built from
the module names below and the canonical leaves (``parity.hub.CANONICAL_LEAVES``). ResNet's specs keep
torchvision's own module names; AlexNet's and VGG's map the papers' names to ``features.{k}`` and
``classifier.{k}``. The tables also name the modules whose outputs are activation points, so the
torch backend, whose torchvision nets are written as torchvision writes them, uses the same ones.
BatchNorm's ``num_batches_tracked`` is not part of the canonical form: it is checked
and dropped on import, and written as 0 on export. It only matters to a BatchNorm
with ``momentum=None`` (a cumulative average); torchvision's nets use 0.1.

Files: safetensors (preferred; read without torch by ``parity.weights.load_weights``, which
refuses pickles) or ``.pth``/``.pt``, which are read with ``torch.load(weights_only=True)``, so
no pickled code runs, memory-mapped where the file is torch.save's zip archive (a tensor's bytes
are read when used). torch is imported inside the functions that need it: ``import parity``
imports no framework.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.hub import CANONICAL_LEAVES, NameTable
from parity.specs import (
    AnyNet,
    Architecture,
    BatchNorm,
    TorchvisionAlexNet,
    TorchvisionResNet,
    TorchvisionVGG,
    get_spec,
)
from parity.specs.regnet_family import REGNETX, SIZES, spec_name
from parity.weights import Param, Weights, WeightsError, WeightsFileError, load_weights, schema, validate

# canonical module -> torchvision module; a block's layers in torchvision's order (shortcut first)
STEM = {"stem.conv": "stem.0", "stem.bn": "stem.1"}
BLOCK = {
    "conv4": "proj.0",
    "bn4": "proj.1",
    "conv1": "f.a.0",
    "bn1": "f.a.1",
    "conv2": "f.b.0",
    "bn2": "f.b.1",
    "conv3": "f.c.0",
    "bn3": "f.c.1",
}
HEAD = {"head.fc": "fc"}
BN_COUNTER = "num_batches_tracked"


def _stage_block(match: re.Match) -> str:
    stage = int(match[1]) + 1
    return f"trunk_output.block{stage}.block{stage}-{match[2]}"


TABLE = NameTable(
    modules=(
        *((rf"^{re.escape(canonical)}$", native) for canonical, native in {**STEM, **HEAD}.items()),
        *((rf"\.{canonical}$", f".{native}") for canonical, native in BLOCK.items()),
        (r"^stages\.(\d+)\.blocks\.(\d+)", _stage_block),
    ),
    leaves=CANONICAL_LEAVES,
)

# torchvision's ResNet keeps its module names: the canonical ones, the table the identity.
RESNET_TABLE = NameTable(modules=(), leaves=CANONICAL_LEAVES)


def exact(names: Mapping[str, str]) -> NameTable:
    """The table that maps each canonical module path of ``names`` to its torchvision module path."""
    return NameTable(
        modules=tuple((rf"^{re.escape(canonical)}$", native) for canonical, native in names.items()),
        leaves=CANONICAL_LEAVES,
    )


# torchvision's AlexNet: features = Sequential(conv, ReLU, [max-pool] ...), avgpool,
# classifier = Sequential(Dropout, fc6, ReLU, Dropout, fc7, ReLU, fc8).
ALEXNET_TABLE = exact(
    {"conv1": "features.0", "pool1": "features.2", "conv2": "features.3", "pool2": "features.5"}
    | {"conv3": "features.6", "conv4": "features.8", "conv5": "features.10", "pool5": "features.12"}
    | {"fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}
)


@functools.cache
def vgg_table(spec: TorchvisionVGG) -> NameTable:
    """torchvision's VGG: ``features`` holds each conv (then its BatchNorm, if any, then a ReLU) and each
    block's max-pool in one Sequential, so their indices follow ``spec.arch``; classifier = Sequential(fc6,
    ReLU, Dropout, fc7, ReLU, Dropout, fc8)."""
    names, index = {}, 0
    for i, (num_convs, _) in enumerate(spec.arch):
        for k in range(1, num_convs + 1):
            names[f"blocks.{i}.conv{k}"] = f"features.{index}"
            if spec.batch_norm:
                names[f"blocks.{i}.bn{k}"] = f"features.{index + 1}"
            index += 3 if spec.batch_norm else 2
        names[f"blocks.{i}"] = f"features.{index}"
        index += 1
    return exact(names | {"fc6": "classifier.0", "fc7": "classifier.3", "fc8": "classifier.6"})


@dataclass(frozen=True)
class Family:
    """How torchvision names one family's tensors: ``table`` (or a function of the spec, where the
    indices depend on it) and, where torchvision registers a block's shortcut first, ``block``: a
    block's layers in torchvision's order."""

    table: NameTable | Callable[[Architecture], NameTable]
    block: Mapping[str, str] | None = None

    def table_for(self, spec: Architecture) -> NameTable:
        return self.table if isinstance(self.table, NameTable) else self.table(spec)


FAMILIES: dict[type, Family] = {
    AnyNet: Family(TABLE, BLOCK),
    TorchvisionResNet: Family(RESNET_TABLE),
    TorchvisionAlexNet: Family(ALEXNET_TABLE),
    TorchvisionVGG: Family(vgg_table),
}

# torchvision's RegNetX model names -> size; it has a builder for every size but 200MF
MODELS = {f"regnet_x_{size}": size for size in SIZES}
# torchvision's classic nets -> their spec names
CLASSICS = {
    "resnet18": "tv_resnet18",
    "resnet50": "tv_resnet50",
    "alexnet": "tv_alexnet",
    "vgg11": "tv_vgg11",
    "vgg16": "tv_vgg16",
    "vgg16_bn": "tv_vgg16_bn",
}
# every torchvision model that converts -> its spec name
SPEC_NAMES = {**{model: spec_name(size) for model, size in MODELS.items()}, **CLASSICS}
FILE_SUFFIXES = (".safetensors", ".pth", ".pt")

Progress = Callable[[Iterable], Iterable]


def spec_for(model: str) -> Architecture:
    """The spec of torchvision model ``model`` (``regnet_x_400mf``, ``resnet50``)."""
    if model not in SPEC_NAMES:
        raise KeyError(f"unknown torchvision model {model!r}; known: {', '.join(SPEC_NAMES)}")
    return get_spec(SPEC_NAMES[model])


def model_for(spec: Architecture) -> str:
    """The torchvision name of a spec (``regnetx_400mf`` -> ``regnet_x_400mf``, ``tv_vgg16`` -> ``vgg16``)."""
    for model in SPEC_NAMES:
        if spec_for(model) == spec:
            return model
    raise KeyError(f"{spec.name} is not a torchvision RegNetX, ResNet, AlexNet or VGG; known: {', '.join(SPEC_NAMES)}")


def table_for(spec: Architecture) -> NameTable:
    """The table from ``spec``'s canonical module paths to torchvision's."""
    return FAMILIES[type(spec)].table_for(spec)


def build_torchvision(model: str, empty: bool = False) -> Any:
    """torchvision's own ``model`` with fresh random weights (never downloads), in eval mode; ``empty``:
    without values, its tensors on PyTorch's meta device (no random initialisation).

    torchvision has no ``regnet_x_200mf`` builder; that one, and every empty RegNet, is torchvision's
    ``RegNet`` class on the paper's parameters, the way its builders make the others (theirs compute
    the block parameters with torch operations, which the meta device cannot run).
    """
    import torch
    import torchvision
    from torchvision.models import regnet

    spec_for(model)  # a KeyError naming the known models
    if model not in MODELS or (hasattr(torchvision.models, model) and not empty):
        with torch.device("meta") if empty else contextlib.nullcontext():
            return getattr(torchvision.models, model)(weights=None).eval()
    p = REGNETX[MODELS[model]]
    params = regnet.BlockParams.from_init_params(depth=p.depth, w_0=p.w0, w_a=p.wa, w_m=p.wm, group_width=p.group_width)
    with torch.device("meta") if empty else contextlib.nullcontext():
        return regnet.RegNet(params).eval()


def torchvision_order(spec: Architecture) -> list[Param]:
    """The spec's tensors in the order of torchvision's state_dict: the spec's, but where a family's
    blocks register their shortcut first (RegNet's), each block's layers in that order."""
    params = list(schema(spec).values())
    block = FAMILIES[type(spec)].block
    if block is None:
        return params
    modules = {module: rank for rank, module in enumerate(dict.fromkeys(_module_of(p, block) for p in params))}
    layers = {layer: rank for rank, layer in enumerate(block)}
    return sorted(params, key=lambda p: (modules[_module_of(p, block)], layers.get(p.layer.path.rsplit(".", 1)[-1], 0)))


def _module_of(param: Param, block: Mapping[str, str]) -> str:
    """A block layer's block (``stages.0.blocks.0``), or the layer itself."""
    head, _, last = param.layer.path.rpartition(".")
    return head if last in block else param.layer.path


def expected_shapes(spec: Architecture) -> dict[str, tuple[int, ...]]:
    """Every key of a torchvision state_dict of ``spec`` with its shape, in torchvision's order,
    ``num_batches_tracked`` included."""
    shapes, table = {}, table_for(spec)
    for param in torchvision_order(spec):
        shapes[table.native_name(param)] = param.shape
        if isinstance(param.layer, BatchNorm) and param.leaf == "running_var":
            shapes[f"{table.native_module(param.layer.path)}.{BN_COUNTER}"] = ()
    return shapes


def state_dict_problems(state_dict: Mapping[str, Any], spec: Architecture) -> list[str]:
    """Every key of ``state_dict`` that is mis-shaped, missing or unexpected for ``spec`` (counters optional)."""
    expected = expected_shapes(spec)
    problems = [
        f"{key!r}: expected shape {expected[key]}, got {tuple(value.shape)}"
        for key, value in state_dict.items()
        if key in expected and tuple(value.shape) != expected[key]
    ]
    problems += [
        f"missing key {key!r} (expected shape {shape})"
        for key, shape in expected.items()
        if key not in state_dict and not key.endswith(BN_COUNTER)
    ]
    problems += [f"unexpected key {key!r}" for key in state_dict if key not in expected]
    return problems


def fitting_models(state_dict: Mapping[str, Any]) -> list[str]:
    """The torchvision models whose state_dict ``state_dict`` fits."""
    return [model for model in SPEC_NAMES if not state_dict_problems(state_dict, spec_for(model))]


def check_state_dict(state_dict: Mapping[str, Any], spec: Architecture) -> None:
    """Raise one WeightsError naming every offending key, and which model the state_dict does fit."""
    problems = state_dict_problems(state_dict, spec)
    if not problems:
        return
    fits = fitting_models(state_dict)
    hint = f"; it fits {', '.join(fits)}" if fits else ""
    raise WeightsError(
        f"state_dict does not fit {spec.name} ({len(problems)} problem{'s' if len(problems) > 1 else ''}{hint}):\n  "
        + "\n  ".join(problems)
    )


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array of a torch tensor or array-like, sharing its memory (CPU tensors)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def state_dict_to_canonical(state_dict: Mapping[str, Any], spec: Architecture, progress: Progress = iter) -> Weights:
    """Canonical weights of a torchvision state_dict (torch tensors or numpy arrays), sharing the
    state_dict's memory: a checkpoint's tensors are converted without a copy.

    Raises WeightsError naming every missing, unexpected, mis-shaped, mis-typed or
    non-finite key before converting anything.
    """
    check_state_dict(state_dict, spec)
    table = table_for(spec)
    weights = {param.name: to_numpy(state_dict[table.native_name(param)]) for param in progress(schema(spec).values())}
    validate(weights, spec)
    return weights


def canonical_to_state_dict(
    weights: Mapping[str, np.ndarray], spec: Architecture, progress: Progress = iter
) -> dict[str, Any]:
    """A torchvision state_dict (torch tensors, in torchvision's order) that ``load_state_dict(strict=True)``
    accepts, sharing the memory of ``weights`` where they are C-contiguous."""
    import torch

    validate(weights, spec)
    state_dict, table = {}, table_for(spec)
    for param in progress(torchvision_order(spec)):
        state_dict[table.native_name(param)] = torch.from_numpy(np.ascontiguousarray(weights[param.name]))
        if isinstance(param.layer, BatchNorm) and param.leaf == "running_var":
            state_dict[f"{table.native_module(param.layer.path)}.{BN_COUNTER}"] = torch.tensor(0, dtype=torch.int64)
    return state_dict


def check_suffix(path: str | os.PathLike, option: str) -> str:
    """The file's suffix, if it is one this module reads and writes."""
    suffix = Path(path).suffix
    if suffix not in FILE_SUFFIXES:
        raise ValueError(f"{option}: expected a {', '.join(FILE_SUFFIXES)} file, got {os.fspath(path)!r}")
    return suffix


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """A state_dict from safetensors (numpy arrays, no torch needed) or .pth/.pt (``weights_only=True``).

    A file that cannot be read raises WeightsFileError naming it; one that holds something
    other than a state_dict raises WeightsError.
    """
    if check_suffix(path, "path") == ".safetensors":
        return load_weights(path)
    import pickle

    import torch

    path = os.fspath(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except OSError as error:
        raise WeightsFileError(f"{path}: cannot read weights: {error.strerror}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        reason = str(error).splitlines()[0] if str(error) else f"{type(error).__name__} (the file ends early)"
        raise WeightsFileError(f"{path}: torch.load(weights_only=True) cannot read it: {reason}") from None
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        found = f"a mapping with keys {list(loaded)[:5]}" if isinstance(loaded, Mapping) else type(loaded).__name__
        raise WeightsError(f"expected a state_dict (a mapping of names to tensors), got {found}")
    return dict(loaded)


def write_state_dict(state_dict: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a torchvision state_dict as safetensors, or with ``torch.save`` for .pth/.pt."""
    if check_suffix(path, "path") == ".safetensors":
        from safetensors.torch import save_file

        save_file(dict(state_dict), os.fspath(path))
        return
    import torch

    torch.save(dict(state_dict), os.fspath(path))


class TorchvisionBackend:
    """torchvision's own models behind the core of the backend contract (build, forward,
    export_weights, load_weights) and ``build_empty``, as the torch backend's, so that a conversion
    treats torchvision like any framework. A built model carries its spec as ``model.spec``, as the
    torch backend's do."""

    name = "torchvision"
    layout = "NCHW"

    def build(self, spec: Architecture, seed: int = 0, dtype: str = "float32") -> Any:
        """torchvision's model of ``spec`` in ``dtype``, initialised from ``seed`` without touching the global RNG."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_torchvision(model_for(spec)).to(getattr(torch, dtype))
        model.spec = spec
        return model

    def build_empty(self, spec: Architecture, dtype: str = "float32") -> Any:
        """torchvision's model of ``spec`` in ``dtype`` without values (meta tensors), for ``load_weights``
        to give it the weights' own memory: no random initialisation to overwrite, no copy."""
        import torch

        model = build_torchvision(model_for(spec), empty=True).to(getattr(torch, dtype))
        model.spec = spec
        return model

    def forward(self, model: Any, x_nchw: np.ndarray) -> np.ndarray:
        """Eval-mode logits."""
        import torch

        with torch.no_grad():
            return model(torch.from_numpy(x_nchw)).numpy()

    def export_weights(self, model: Any) -> Weights:
        """Canonical weights: fresh copies of the model's tensors."""
        return {name: value.copy() for name, value in state_dict_to_canonical(model.state_dict(), model.spec).items()}

    def load_weights(self, model: Any, weights: Mapping[str, np.ndarray]) -> None:
        """Through a torchvision state_dict and ``load_state_dict(strict=True)``, which copies each tensor in.

        A model from ``build_empty`` takes the (C-contiguous) arrays themselves as its tensors instead
        (``assign=True``), as a conversion's reference model does with a checkpoint it only runs: the
        arrays must not change while the model is used.
        """
        empty = any(tensor.is_meta for tensor in model.state_dict().values())
        model.load_state_dict(canonical_to_state_dict(weights, model.spec), strict=True, assign=empty)


BACKEND = TorchvisionBackend()
