"""The naive-port variants: when each pitfall applies to a spec, and the one check every backend runs.

A backend lists the pitfalls it can build in ``VARIANTS``; whether a pitfall makes sense
for a spec (it would change what the spec computes, and fit it) depends only on the
spec, so the rules live here, once.

A variant is a set of pitfalls: one name (``same_padding``), several joined by ``+``
(``same_padding+keras_bn_epsilon``), or one of d2l's tabs of the spec in the backend's
framework (``d2l_tf_tab``: the pitfalls that ``spec.book_tabs()`` records for that tab).
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


def keeps_size_unpadded(conv: specs.Conv, sizes: tuple[int, ...]) -> bool:
    """Whether ``conv``, fed a map of ``sizes`` (H, W), gives an output of the same size unpadded."""
    k, s = conv.kernel_size, conv.stride
    return all(specs.conv_output_size(n, k, s, 0) == specs.conv_output_size(n, k, s, conv.padding) for n in sizes)


def droppable_padding(spec: specs.Spec) -> frozenset[str]:
    """The padded convs of ``spec`` that keep their output size unpadded at its fixed input size
    (AlexNet's 11x11 stride-4 conv1: 54x54 from 224x224 with padding 1 or 0), by canonical path; none
    where the input size is not fixed."""
    fixed = spec.fixed_input_size()
    if fixed is None:
        return frozenset()
    shapes = specs.infer_shapes(spec.graph(), (1, spec.in_channels, *fixed))
    return frozenset(
        node.layer.path
        for node in spec.graph()
        if node.op == "conv" and node.layer.padding and keeps_size_unpadded(node.layer, shapes[node.inputs[0]][2:])
    )


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
    if variant == "same_padding_in_blocks":
        return specs.same_padding_in_blocks_problem(spec)
    if variant == "d2l_stage_bug":
        return specs.d2l_stage_bug_problem(spec)
    if variant == "d2l_densenet_channels":
        return specs.d2l_densenet_channels_problem(spec)
    if variant == "d2l_bnlenet_padding":
        return specs.d2l_bnlenet_padding_problem(spec)
    if variant == "d2l_nin_pool":
        return specs.d2l_nin_pool_problem(spec)
    if variant == "dropped_padding":
        if not any(isinstance(layer, specs.Conv) and layer.padding for layer in layers):
            return "it has no padded conv"
        fixed = spec.fixed_input_size()
        if fixed is None:
            return "its input size is not fixed, and a padded conv built unpadded shrinks its output at some input size"
        if not droppable_padding(spec):
            return f"at its fixed {fixed[0]}x{fixed[1]} input every padded conv's output shrinks unpadded"
        return None
    raise KeyError(f"no applicability rule for variant {variant!r}")


SEPARATOR = "+"
# d2l's tabs besides PyTorch's, whose code the specs are.
TAB_FRAMEWORKS = ("tf", "jax", "mxnet")


def book_tab(framework: str) -> str:
    """The variant name of d2l's tab in ``framework``: ``d2l_tf_tab``."""
    return f"d2l_{framework}_tab"


def known_variants(framework: str, variants: Mapping[str, str]) -> str:
    """The variants ``framework``'s backend builds, for an error message: its pitfalls and its book tab."""
    names = [*variants, *([book_tab(framework)] if framework in TAB_FRAMEWORKS else [])]
    return ", ".join(names) or "none"


def variant_pitfalls(framework: str, variants: Mapping[str, str], spec: specs.Spec, variant: str) -> tuple[str, ...]:
    """The pitfall names that ``variant`` means for ``spec`` on ``framework``'s backend: its book tab's, or
    the ``+``-joined names themselves; ValueError naming ``variant`` when it means none."""
    known = known_variants(framework, variants)
    if framework in TAB_FRAMEWORKS and variant == book_tab(framework):
        tab = spec.book_tabs().get(framework)
        if tab is None:
            raise ValueError(
                f"variant: {variant!r} does not apply to {spec.name}: d2l's {framework} tab of it computes what "
                f"its PyTorch tab does (known variants: {known})"
            )
        return tab.pitfalls
    if variant.startswith("d2l_") and variant.endswith("_tab"):
        own = book_tab(framework) if framework in TAB_FRAMEWORKS else "the spec itself, d2l's PyTorch tab"
        raise ValueError(f"variant: {variant!r} is another framework's tab; the {framework} backend builds {own}")
    pitfalls = tuple(variant.split(SEPARATOR))
    unknown = [pitfall for pitfall in pitfalls if pitfall not in variants]
    if unknown:
        raise ValueError(
            f"variant: unknown variant {unknown[0]!r} of the {framework} backend; known variants: {known}"
            + (f" (join several with {SEPARATOR!r})" if variants else "")
        )
    return pitfalls


def check_variant(framework: str, variants: Mapping[str, str], spec: specs.Spec, variant: str | None) -> frozenset[str]:
    """The pitfalls a model built as ``variant`` has (none for None); ValueError naming ``variant``
    unless it is None or means pitfalls of ``variants`` that all apply to ``spec``.

    Model code asks ``"same_padding" in pitfalls``: the one way every backend switches a pitfall on.
    """
    if variant is None:
        return frozenset()
    pitfalls = variant_pitfalls(framework, variants, spec, variant)
    for pitfall in pitfalls:
        problem = variant_problem(spec, pitfall)
        if problem:
            known = ", ".join([*variants, book_tab(framework)])
            raise ValueError(f"variant: {pitfall!r} does not apply to {spec.name}: {problem} (known variants: {known})")
    return frozenset(pitfalls)
