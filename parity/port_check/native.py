"""What a port check reads from a native model, in one framework-neutral form.

Each framework's capture module (``torch_capture``, ``flax_capture``, ``keras_capture``,
``gluon_capture``) runs the model once on an input with its own mechanism and returns
``Call``s, one per leaf layer call in execution order, and ``Layer``s, the layers with
tensors, each tensor under its native name and in its native layout. Roles and kinds use
the canonical (PyTorch) vocabulary: a BatchNorm's ``gamma`` is its ``weight``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

# The kinds of leaf layer a port check understands; anything else is "other" and only passed through.
PARAM_KINDS = ("conv", "bn", "dense")
POOL_KINDS = ("max_pool", "avg_pool", "global_avg_pool")


class PortCheckError(ValueError):
    """A model or argument a port check cannot take; the message names it and says what was expected."""


@dataclass(frozen=True)
class Tensor:
    """One tensor of a layer: its canonical ``role`` (weight, bias, running_mean, running_var), its
    native name and its value in the native layout."""

    role: str
    name: str
    array: np.ndarray


@dataclass
class Layer:
    """A layer with tensors (``kind`` in PARAM_KINDS) and its configuration (``config``: kernel,
    stride, padding, groups, dilation as (h, w) pairs; eps)."""

    name: str
    kind: str
    config: Mapping[str, object]
    tensors: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Call:
    """One call of a leaf layer: its inputs and output as the framework holds them, in numpy."""

    layer: str
    kind: str
    config: Mapping[str, object]
    inputs: tuple[np.ndarray, ...]
    output: np.ndarray


def pair(value, name: str = "") -> tuple[int, int]:
    """An int or a 2-sequence as (h, w)."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    values = tuple(int(v) for v in value)
    if len(values) != 2:
        raise PortCheckError(f"{name}: expected one int or two, got {value!r}")
    return values


def explicit_padding(padding) -> tuple[tuple[int, int], tuple[int, int]] | str:
    """Padding as ((top, bottom), (left, right)), or 'same' / 'valid' where the framework says so."""
    if isinstance(padding, str):
        return ((0, 0), (0, 0)) if padding.lower() == "valid" else padding.lower()
    if isinstance(padding, int | np.integer):
        return (int(padding),) * 2, (int(padding),) * 2
    values = list(padding)
    if len(values) == 2 and all(isinstance(v, int | np.integer) for v in values):
        return (int(values[0]),) * 2, (int(values[1]),) * 2
    (top, bottom), (left, right) = values
    return (int(top), int(bottom)), (int(left), int(right))


def fold_padding(calls: list[Call]) -> list[Call]:
    """Each zero-padding layer (``kind == "pad"``) folded into the conv or average pool that reads its
    output (a Keras ``ZeroPadding2D`` before a 'valid' conv): that call gets the unpadded input and
    the padding in its config, as one PyTorch layer with ``padding`` would have (an average pool's
    padded zeros count). A max pool keeps its padding layer: zeros are not PyTorch's -inf."""
    folded: list[Call] = []
    for call in calls:
        previous = folded[-1] if folded else None
        if (
            previous is not None
            and previous.kind == "pad"
            and call.kind in ("conv", "avg_pool")
            and call.config.get("padding") == ((0, 0), (0, 0))
            and call.inputs[0].shape == previous.output.shape
            and np.array_equal(call.inputs[0], previous.output)
        ):
            folded[-1] = Call(
                call.layer,
                call.kind,
                {**call.config, "padding": previous.config["padding"], "count_include_pad": True},
                previous.inputs,
                call.output,
            )
        else:
            folded.append(call)
    return folded
