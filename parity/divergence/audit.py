"""The structural audit: a model that cannot take the other's weights, compared layer by layer.

``structure(model)`` of both sides gives (trainable parameters, conv groups) per canonical
layer. A structural pitfall is tested the way layer pitfalls are: the layers the naive port
would build (a function of the spec, kept in the architecture's own spec module) are
counted, and compared with B's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from parity.divergence.pitfalls import D2L_BNLENET_PADDING, D2L_DENSENET_CHANNELS, D2L_STAGE_BUG, Hint, Pitfall
from parity.specs import Layer, Spec, d2l_stage_bug_blocks, d2l_stage_bug_layers
from parity.specs.classic import d2l_bnlenet_padding_layers
from parity.specs.densenet import d2l_densenet_channels_layers
from parity.weights import layer_params

Structure = Mapping[str, tuple[int, int]]


@dataclass(frozen=True)
class LayerDifference:
    """One layer whose (trainable parameters, groups) differ; None where a side lacks it."""

    layer: str
    a: tuple[int, int] | None
    b: tuple[int, int] | None


def audit(a: Structure, b: Structure) -> list[LayerDifference]:
    """Every layer whose native structure differs, in A's order, then B's extra layers."""
    paths = list(dict.fromkeys([*a, *b]))
    return [LayerDifference(path, a.get(path), b.get(path)) for path in paths if a.get(path) != b.get(path)]


def spec_structure(layers: Sequence[Layer]) -> dict[str, tuple[int, int]]:
    """(trainable parameters, groups) of each layer as a spec defines it."""
    return {
        layer.path: (
            sum(int(np.prod(p.shape)) for p in layer_params(layer) if p.trainable),
            getattr(layer, "groups", 1),
        )
        for layer in layers
    }


def _millions(structure: Structure) -> float:
    return sum(params for params, _ in structure.values()) / 1e6


def describe_stage_bug(spec: Spec, a: Structure, b: Structure) -> str:
    buggy = d2l_stage_bug_blocks(spec)
    prefix, block = next(iter(buggy.items()))
    faithful = next(blk for i, j, blk in spec.blocks() if f"stages.{i}.blocks.{j}" == prefix)
    widening = block.bot_channels // faithful.bot_channels
    projection = ", extra projection" if block.use_1x1conv else ""
    return (
        f"{widening}x wider bottleneck{projection} in every block after a stage's first "
        f"({prefix}: {faithful.bot_channels} -> {block.bot_channels} bottleneck channels, "
        f"conv2 groups {faithful.groups} -> {block.groups}); "
        f"{_millions(b):.2f} M parameters instead of {_millions(a):.2f} M"
    )


def describe_densenet_channels(spec: Spec, a: Structure, b: Structure) -> str:
    def listed(channels: tuple[int, ...]) -> str:
        return "/".join(map(str, channels))

    return (
        f"transitions output {listed(spec.d2l_jax_transition_channels())} channels, "
        f"not {listed(spec.transition_channels())}; {_millions(b):.2f} M parameters instead of {_millions(a):.2f} M"
    )


def describe_bnlenet_padding(spec: Spec, a: Structure, b: Structure) -> str:
    (fc1,) = (layer for layer in d2l_bnlenet_padding_layers(spec) if layer.path == "fc1")
    (faithful,) = (layer for layer in spec.layers() if layer.path == "fc1")
    c, h, w = fc1.flatten_from
    return (
        f"the flatten holds {c} x {h} x {w} = {fc1.in_features} features, not {faithful.in_features}; "
        f"{_millions(b):.3f} M parameters instead of {_millions(a):.3f} M"
    )


# Each structural pitfall: the layers the naive port builds from a spec (or [] where it cannot
# occur), and the words that describe what it changed.
STRUCTURAL_PITFALLS: tuple[tuple[Pitfall, Callable[[Spec], list[Layer]], Callable[..., str]], ...] = (
    (D2L_STAGE_BUG, d2l_stage_bug_layers, describe_stage_bug),
    (D2L_DENSENET_CHANNELS, d2l_densenet_channels_layers, describe_densenet_channels),
    (D2L_BNLENET_PADDING, d2l_bnlenet_padding_layers, describe_bnlenet_padding),
)


def diagnose_structure(spec: Spec, a: Structure, b: Structure) -> Hint:
    """Does B's structure equal what a known structural pitfall builds from the spec?"""
    applicable = False
    for pitfall, naive_layers, describe in STRUCTURAL_PITFALLS:
        layers = naive_layers(spec)
        if not layers:
            continue
        applicable = True
        naive = spec_structure(layers)
        if all(naive.get(path) == value for path, value in b.items()):
            return Hint(pitfall, f"{pitfall.title}: {describe(spec, a, b)}")
    if not applicable:
        return Hint(None, "no known structural pitfall applies to this model")
    return Hint(None, "no known structural pitfall reproduces B's per-layer parameters and groups")
