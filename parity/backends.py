"""Backend registry and the contract every ``impl_*/backend.py`` fulfils.

No framework is imported here: ``get_backend("jax")`` imports ``impl_jax.backend``
on first use, and says which pip extra to install when it cannot.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from parity.hub import NameTable
from parity.specs import FullyConvolutional, Spec, spatial_size_problem
from parity.weights import Weights

FRAMEWORKS = ("torch", "jax", "tf", "mxnet")
DTYPES = ("float32", "float64")


class BackendUnavailable(ImportError):
    """A framework's backend cannot be imported; the message names the pip extra."""


class InputError(ValueError):
    """An input array that the model cannot take; the message says what was expected."""


@dataclass(frozen=True)
class SummaryRow:
    """One top-level layer of a d2l layer summary.

    ``layer`` is the native class name and ``shape`` the native output shape, as d2l
    prints them; ``shape_text`` is the framework's own repr of that shape (e.g.
    ``torch.Size([1, 32, 48, 48])``); ``params`` counts the layer's trainable
    parameters natively; ``group`` is the canonical part of the network the layer
    belongs to (``stem``, ``stages.0``, ``head``), which lines up frameworks whose
    top levels split differently (Gluon's head is two layers).
    """

    layer: str
    shape: tuple[int, ...]
    shape_text: str
    params: int
    group: str

    def d2l_line(self) -> str:
        return f"{self.layer} output shape:\t {self.shape_text}"


class Backend(Protocol):
    name: str
    layout: str  # "NCHW" or "NHWC"
    extra: str  # the pip extra that installs the framework
    VARIANTS: dict[str, str]  # naive-port variants this backend can build: name -> the pitfall it shows

    def table(self, spec: Spec, variant: str | None = None) -> NameTable:
        """How this framework names and lays out ``spec``'s canonical tensors (under ``variant``:
        a naive port's mapping, where the variant changes the mapping)."""

    def build(self, spec: Spec, seed: int = 0, dtype: str = "float32", variant: str | None = None) -> Any:
        """A native model, initialised from ``seed`` and ready to run, holding ``spec``; ``variant``
        names one of ``VARIANTS``, a runnable naive port that shows a classic pitfall."""

    def forward(self, model: Any, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
        """The model's output for an NCHW input of the model's dtype (logits, or an NCHW feature map)."""

    def layer_summary(self, model: Any, input_shape: tuple[int, ...]) -> list[SummaryRow]:
        """d2l's layer summary for an input of ``input_shape`` in the backend's native layout."""

    def export_weights(self, model: Any) -> Weights:
        """Canonical weights (names from the spec, PyTorch layouts, the model's dtype)."""

    def load_weights(self, model: Any, weights: Weights, allow_nonfinite: bool = False) -> None:
        """Load canonical weights; validates every name, shape, dtype and value first (NaN/Inf only
        with ``allow_nonfinite``) and changes nothing on error."""

    def structure(self, model: Any) -> dict[str, tuple[int, int]]:
        """{canonical layer path: (trainable parameters, conv groups or 1)}, read from the native
        layers, so a model built differently from its spec shows where."""

    def activations(self, model: Any, x_nchw: np.ndarray) -> dict[str, np.ndarray]:
        """Eval-mode outputs of every point in ``spec.activation_points()``, NCHW, in execution order."""

    # Optional: ``build_empty(spec, dtype) -> model``, a model with ``spec``'s tensors allocated but not
    # initialised, to be filled by ``load_weights`` right away; ``parity convert`` uses it where a
    # backend has it, so that a large checkpoint is not preceded by a random initialisation.
    # Optional: ``drop_compiled(model)``, where ``forward`` keeps a compiled graph holding its own copy of the
    # weights (MXNet's oneDNN graph, its BatchNorms folded into the convolutions): ``parity convert`` drops it
    # after its logit check, so that the write does not hold a third copy.

    # Training, in the sibling module ``impl_X/training.py`` (``parity.training.run.training_module``), so that
    # eval-only use never imports an optimizer; every net runs with dropout off:
    # - ``train_forward(model, x_nchw) -> (logits, {canonical name: running statistic})``: a train-mode forward
    #   on batch statistics, returning the statistics PyTorch would hold after it (unbiased running variance,
    #   the spec's momentum); the model is unchanged.
    # - ``gradients(model, x_nchw, labels) -> (loss, {canonical name: gradient})``: the mean softmax
    #   cross-entropy in train mode and its gradients in canonical layouts, through ``table``; model unchanged.
    # - ``Trainer(model, optimizer_spec, variant=None).step(x_nchw, labels) -> (loss, gradients)``: one step of
    #   a ``parity.training.OptimizerSpec`` in the framework's own optimizer, aligned to torch.optim's formulas,
    #   statistics updated as PyTorch's; ``variant`` one of ``parity.training.variants.TRAIN_VARIANTS``.


@dataclass(frozen=True)
class Entry:
    """How one backend builds one kind of spec: ``builder`` makes the native model (its
    signature is the backend's own), ``table`` names and lays out its canonical tensors: a
    ``NameTable``, or a function of the spec for a kind whose native names depend on the spec
    (d2l's VGG: the head's Sequential indices follow the number of blocks)."""

    builder: Callable[..., Any]
    table: NameTable | Callable[[Spec], NameTable]

    def table_for(self, spec: Spec) -> NameTable:
        return self.table if isinstance(self.table, NameTable) else self.table(spec)


class Registry:
    """One backend's {spec type: Entry}. A new architecture is one ``register`` line per backend."""

    def __init__(self, framework: str) -> None:
        self.framework = framework
        self._entries: dict[type, Entry] = {}

    def register(
        self, spec_type: type, builder: Callable[..., Any], table: NameTable | Callable[[Spec], NameTable]
    ) -> None:
        if spec_type in self._entries:
            raise ValueError(f"the {self.framework} backend registers {spec_type.__name__} twice")
        self._entries[spec_type] = Entry(builder, table)

    def register_fully_convolutional(self, model_holds_spec: bool = True) -> None:
        """``FullyConvolutional`` specs: the base net's builder with ``convolutional=True`` (the same modules, the
        dense head's as convolutions) and the base's name table. ``model_holds_spec``: the built model's ``spec``
        becomes the fully convolutional one (a Flax module is frozen: its backend's wrapper holds the spec)."""

        def build(spec: FullyConvolutional, **options: Any) -> Any:
            model = self[spec.base].builder(spec.base, convolutional=True, **options)
            if model_holds_spec:
                model.spec = spec
            return model

        self.register(FullyConvolutional, build, lambda spec: self[spec.base].table_for(spec.base))

    def __getitem__(self, spec: Spec) -> Entry:
        """The entry for ``spec``; TypeError naming what this backend can build otherwise."""
        entry = self._entries.get(type(spec))
        if entry is None:
            known = ", ".join(kind.__name__ for kind in self._entries)
            raise TypeError(
                f"spec: the {self.framework} backend cannot build a {type(spec).__name__} spec; it builds {known}"
            )
        return entry

    def __contains__(self, spec_type: type) -> bool:
        return spec_type in self._entries

    def __iter__(self):
        return iter(self._entries)


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of DTYPES, else ValueError naming it."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def cache_dir(name: str) -> Path:
    """The project's cache folder ``name`` (compiled code a later process may reuse; safe to delete):
    under ``$PARITY_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnn-parity``, else ``~/.cache/cnn-parity``."""
    root = os.environ.get("PARITY_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "cnn-parity"
    )
    return Path(root, name)


# Runtimes reached by name only, not among FRAMEWORKS: ONNX runs the torch model's export (parity.onnx_runtime).
RUNTIMES = {"onnx": "parity.onnx_runtime"}


def get_backend(name: str) -> Backend:
    if name not in FRAMEWORKS and name not in RUNTIMES:
        raise KeyError(f"unknown framework {name!r}; known frameworks: {', '.join((*FRAMEWORKS, *RUNTIMES))}")
    try:
        return importlib.import_module(RUNTIMES.get(name, f"impl_{name}.backend"))
    except ImportError as error:
        raise BackendUnavailable(
            f"the {name} backend needs its framework: pip install -e '.[{name}]' ({error})"
        ) from error


# The module whose presence says that a framework's pip extra is installed.
EXTRA_MODULES = {"torch": "torch", "jax": "flax", "tf": "tensorflow", "mxnet": "mxnet"}


def installed_frameworks() -> list[str]:
    """The frameworks whose pip extra is installed, found without importing them (``available_backends``
    imports each)."""
    return [name for name in FRAMEWORKS if _findable(EXTRA_MODULES[name])]


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook that refuses the module
        return False


def available_backends() -> list[str]:
    """The frameworks whose backends import in this environment."""
    found = []
    for name in FRAMEWORKS:
        try:
            get_backend(name)
        except BackendUnavailable:
            continue
        found.append(name)
    return found


def check_input(spec: Spec, x_nchw: Any, dtype: str) -> np.ndarray:
    """Return ``x_nchw`` as an ndarray, or raise InputError before any framework sees it."""
    if not isinstance(x_nchw, np.ndarray):
        raise InputError(f"x_nchw: expected a numpy.ndarray, got {type(x_nchw).__name__}")
    if x_nchw.ndim != 4:
        raise InputError(f"x_nchw: expected rank 4 (N, C, H, W), got shape {x_nchw.shape}")
    if x_nchw.shape[1] != spec.in_channels:
        raise InputError(
            f"x_nchw: expected {spec.in_channels} input channels (N, {spec.in_channels}, H, W), "
            f"got shape {x_nchw.shape}"
        )
    if x_nchw.dtype != np.dtype(dtype):
        raise InputError(f"x_nchw: the model is {dtype}, got an input of dtype {x_nchw.dtype}")
    if min(x_nchw.shape) < 1:
        raise InputError(f"x_nchw: expected a non-empty (N, C, H, W) array, got shape {x_nchw.shape}")
    problem = spatial_size_problem(spec, *x_nchw.shape[2:])
    if problem:
        raise InputError(f"x_nchw: {problem}, got shape {x_nchw.shape}")
    return x_nchw
