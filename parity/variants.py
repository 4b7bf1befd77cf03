"""The naive-port variants: when each pitfall applies to a spec, and the one check every backend runs.

A backend lists the variants it can build in ``VARIANTS``; whether a variant makes
sense for a spec (it would change what the spec computes, and fit it) depends only on
the spec, so the rules live here, once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from parity import specs
from parity.weights import Param, schema


def fits_untransposed(param: Param) -> bool:
    """A conv kernel (O, I/groups, kh, kw) with I/groups == O: the wrong transpose (2, 3, 0, 1)
    gives it exactly HWIO's shape, so a naive port passes every shape check."""
    return param.role == "conv.weight" and param.shape[0] == param.shape[1]


def untransposed(kernel: np.ndarray) -> np.ndarray:
    """The classic wrong transpose (2, 3, 0, 1) of an OIHW kernel: (kh, kw, O, I/groups). Its own inverse."""
    return np.array(np.transpose(kernel, (2, 3, 0, 1)), order="C")


def same_padding_size_problem(spec: specs.Spec) -> str | None:
    """Why a net with a fixed input size cannot run with 'same' padding (its strided layers' 'same'
    output sizes, ceil(n / stride), no longer fit the dense layer after its flatten), or None."""
    fixed = spec.fixed_input_size()
    if fixed is None:
        return None
    try:
        specs.infer_shapes(spec.graph(), (1, spec.in_channels, *fixed), same_padding=True)
    except specs.ShapeError as error:
        return f"with 'same' padding its fixed {fixed[0]}x{fixed[1]} input no longer fits: {error}"
    return None


def variant_problem(spec: specs.Spec, variant: str) -> str | None:
    """Why the naive port ``variant`` does not apply to ``spec`` (it would compute the spec's
    function, or not fit it), or None."""
    layers = spec.layers()
    if variant == "same_padding":
        strided = any(isinstance(layer, specs.Conv) and layer.padding and layer.stride > 1 for layer in layers)
        if not strided:
            return (
                "every padded conv and pool has stride 1, "
                "and 'same' pads a stride-1 layer symmetrically, as the spec does"
            )
        return same_padding_size_problem(spec)
    if variant == "keras_bn_epsilon":
        epsilons = {layer.eps for layer in layers if isinstance(layer, specs.BatchNorm)}
        if not epsilons:
            return "it has no BatchNorm"
        return "its BatchNorm epsilon already is Keras' default 1e-3" if epsilons == {1e-3} else None
    if variant == "avgpool_excludes_padding":
        padded = any(node.op == "avg_pool" and node.window[2] > 0 for node in spec.graph())
        return None if padded else "it has no padded average pool"
    if variant == "unpermuted_flatten":
        flattens = any(isinstance(layer, specs.Dense) and layer.flatten_from for layer in layers)
        return None if flattens else "no dense layer follows a flatten"
    if variant == "untransposed_kernel":
        fits = any(fits_untransposed(param) for param in schema(spec).values())
        return (
            None
            if fits
            else (
                "no conv has I/groups == O (out channels == in channels / groups), "
                "so a wrongly transposed kernel would fit none of them"
            )
        )
    if variant == "d2l_stage_bug":
        return specs.d2l_stage_bug_problem(spec)
    raise KeyError(f"no applicability rule for variant {variant!r}")


def check_variant(framework: str, variants: Mapping[str, str], spec: specs.Spec, variant: str | None) -> frozenset[str]:
    """The pitfalls a model built as ``variant`` has (none for None); ValueError naming ``variant``
    unless it is None, one of ``variants`` and applies to ``spec``.

    Model code asks ``"same_padding" in pitfalls``: the one way every backend switches a variant on.
    """
    if variant is None:
        return frozenset()
    known = ", ".join(variants) or "none"
    if variant not in variants:
        raise ValueError(f"variant: unknown variant {variant!r} of the {framework} backend; known variants: {known}")
    problem = variant_problem(spec, variant)
    if problem:
        raise ValueError(f"variant: {variant!r} does not apply to {spec.name}: {problem} (known variants: {known})")
    return frozenset({variant})
