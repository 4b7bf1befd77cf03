"""Every classic porting pitfall, live: a naive-port variant of a backend must be reported as
diverging at the right canonical point, with a hint that names the pitfall; a faithful pair
must not diverge. ``pytest parity -k pitfall`` (or ``-k same_padding``, ...) selects them.

Each explanation is computed once per session and shared with the README check, which
rebuilds the porting guide's table from these results.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from parity import divergence
from parity.divergence.pitfalls import D2L_BNLENET_PADDING, D2L_DENSENET_CHANNELS, D2L_NIN_POOL, DROPPED_PADDING
from parity.specs import get_spec
from parity.variants import droppable_padding, fits_untransposed
from parity.weights import schema

README = Path(__file__).resolve().parent.parent / "README.md"

# Even sizes: 'same' padding at stride 2 pads an even size asymmetrically (an odd one symmetrically).
INPUT_SIZES = {
    "regnetx32": (32, 32),
    "inception_mnist": (28, 28),
    "resnet18": (32, 32),
    "googlenet": (64, 64),
    "densenet": (32, 32),
    "alexnet": (224, 224),  # its flatten fixes it
    "bnlenet": (28, 28),  # its flatten fixes it
    "nin": (256, 256),  # a 6x6 last map: at 224 it is 5x5, where d2l's JAX 5x5 pool is the global one
}


@dataclass(frozen=True)
class Case:
    """One naive port: ``variant`` of ``dst``'s backend, fed torch's weights for ``model``."""

    label: str
    variant: str
    model: str
    dst: str
    first: str
    pitfall: divergence.Pitfall


CASES = (
    Case("a", "same_padding", "regnetx32", "tf", "stem.conv", divergence.SAME_PADDING),
    Case("a", "same_padding", "regnetx32", "jax", "stem.conv", divergence.SAME_PADDING),
    Case("b", "keras_bn_epsilon", "regnetx32", "tf", "stem.bn", divergence.KERAS_BN),
    Case(
        "c",
        "avgpool_excludes_padding",
        "inception_mnist",
        "tf",
        "incep1.branch_pool.avg",
        divergence.AVGPOOL_EXCLUDES_PADDING,
    ),
    Case("d", "unpermuted_flatten", "inception_mnist", "tf", "fc", divergence.UNPERMUTED_FLATTEN),
    Case("d", "unpermuted_flatten", "inception_mnist", "jax", "fc", divergence.UNPERMUTED_FLATTEN),
    Case("e", "d2l_stage_bug", "regnetx32", "mxnet", "stages.0.blocks.1.conv1", divergence.D2L_STAGE_BUG),
    Case("f", "untransposed_kernel", "regnetx32", "tf", "stages.0.blocks.0.conv1", divergence.UNTRANSPOSED_KERNEL),
    Case("f", "untransposed_kernel", "regnetx32", "jax", "stages.0.blocks.0.conv1", divergence.UNTRANSPOSED_KERNEL),
)


@functools.cache
def explained(model: str, src: str, dst: str, variant: str | None) -> divergence.Divergence:
    spec = get_spec(model)
    x = np.random.default_rng(0).standard_normal((2, spec.in_channels, *INPUT_SIZES[model])).astype("float32")
    return divergence.explain(spec, src, dst, x, variant)


def case_id(case: Case) -> str:
    return f"{case.label}-{case.variant}-{case.dst}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_pitfall_is_reported_at_its_layer_with_a_hint_naming_it(case):
    result = explained(case.model, "torch", case.dst, case.variant)
    assert result.diverged and result.first == case.first
    assert result.hint.pitfall == case.pitfall and result.hint.text.startswith(case.pitfall.title)
    layers = {layer.path for layer in get_spec(case.model).layers()}
    assert bool(result.mapping) == (case.first in layers), (
        "a diverging layer lists its tensors' native names on both sides"
    )


@pytest.mark.parametrize("case", [c for c in CASES if c.variant != "d2l_stage_bug"], ids=case_id)
def test_pitfall_every_point_before_the_first_divergence_agrees(case):
    result = explained(case.model, "torch", case.dst, case.variant)
    points = [p.point for p in result.points]
    assert not any(p.exceeds for p in result.points[: points.index(case.first)])
    assert result.points[-1].exceeds, "the pitfall reaches the logits"


def pitfall_locations(model: str, variant: str) -> list[str]:
    """The activation points of ``model`` that ``variant``'s pitfall changes, read from the spec's graph."""
    spec = get_spec(model)
    fits = {p.name.rsplit(".", 1)[0] for p in schema(spec).values() if fits_untransposed(p)}

    def changed(node) -> bool:
        if variant == "same_padding_in_blocks":
            return ".blocks." in node.name and node.op == "conv" and node.layer.stride > 1 and node.layer.padding > 0
        if variant == "same_padding":  # INPUT_SIZES keep every strided layer's input even: 'same' pads (0, 1)
            if node.op == "max_pool":
                return node.window[1] > 1 and node.window[2] > 0
            return node.op == "conv" and node.layer.stride > 1 and node.layer.padding > 0
        if variant == "keras_bn_epsilon":
            return node.op == "bn"
        if variant == "avgpool_excludes_padding":
            return node.op == "avg_pool" and node.window[2] > 0
        if variant == "unpermuted_flatten":
            return node.op == "dense" and node.layer.flatten_from is not None
        if variant == "dropped_padding":
            return node.op == "conv" and node.layer.path in droppable_padding(spec)
        if variant == "d2l_nin_pool":
            return node.op == "global_avg_pool"
        return node.op == "conv" and node.layer.path in fits  # untransposed_kernel

    return [node.name for node in spec.graph() if node.point and changed(node)]


@pytest.mark.parametrize("case", [c for c in CASES if c.variant != "d2l_stage_bug"], ids=case_id)
def test_pitfall_every_layer_it_changes_is_one_cause(case):
    """Checked layer by layer after the first divergence, the layers whose own computation differs are
    exactly those the pitfall changes, and one cause, the pitfall, explains them all."""
    result = explained(case.model, "torch", case.dst, case.variant)
    assert [cause.pitfall for cause in result.causes] == [case.pitfall]
    assert list(result.causes[0].points) == pitfall_locations(case.model, case.variant)


@dataclass(frozen=True)
class Tab:
    """d2l's tab of ``model`` in ``dst``'s framework (``d2l_{dst}_tab``), fed torch's weights: a model that
    diverges first at ``first`` with ``causes``, or one whose ``structural`` pitfall refuses the weights."""

    model: str
    dst: str
    first: str
    causes: tuple[tuple[divergence.Pitfall, str], ...]  # (pitfall, the variant whose locations it has)
    structural: divergence.Pitfall | None = None

    @property
    def variant(self) -> str:
        return f"d2l_{self.dst}_tab"


TABS = (
    Tab(
        "regnetx32",
        "tf",
        "stem.conv",
        ((divergence.SAME_PADDING, "same_padding"), (divergence.KERAS_BN, "keras_bn_epsilon")),
    ),
    Tab("regnetx32", "jax", "stages.0.blocks.0.conv2", ((divergence.SAME_PADDING, "same_padding_in_blocks"),)),
    Tab(
        "resnet18",
        "tf",
        "b1.conv",
        ((divergence.SAME_PADDING, "same_padding"), (divergence.KERAS_BN, "keras_bn_epsilon")),
    ),
    Tab("resnet18", "jax", "b1.conv", ((divergence.SAME_PADDING, "same_padding"),)),
    Tab("regnetx32", "mxnet", "stages.0.blocks.1.conv1", (), divergence.D2L_STAGE_BUG),
    Tab("googlenet", "tf", "b1.conv", ((divergence.SAME_PADDING, "same_padding"),)),
    Tab("googlenet", "jax", "b1.conv", ((divergence.SAME_PADDING, "same_padding"),)),
    Tab(
        "densenet",
        "tf",
        "b1.conv",
        ((divergence.SAME_PADDING, "same_padding"), (divergence.KERAS_BN, "keras_bn_epsilon")),
    ),
    # Its 'same' padding in b1 too, but the channels decide: B cannot take the canonical weights.
    Tab("densenet", "jax", "tran_blk2.conv", (), D2L_DENSENET_CHANNELS),
    Tab("alexnet", "tf", "conv1", ((DROPPED_PADDING, "dropped_padding"),)),
    Tab("alexnet", "mxnet", "conv1", ((DROPPED_PADDING, "dropped_padding"),)),
    Tab("bnlenet", "tf", "bn1", ((divergence.KERAS_BN, "keras_bn_epsilon"),)),
    Tab("bnlenet", "jax", "fc1", (), D2L_BNLENET_PADDING),
    Tab("nin", "jax", "head.pool", ((D2L_NIN_POOL, "d2l_nin_pool"),)),
)


@pytest.mark.parametrize("tab", TABS, ids=lambda tab: f"{tab.model}-{tab.variant}")
def test_pitfall_book_tab_diverges_first_where_the_book_pads_and_names_every_cause(tab):
    result = explained(tab.model, "torch", tab.dst, tab.variant)
    if tab.structural:  # a structure that takes no canonical weights: the structural audit names it
        assert result.load_error and result.hint.pitfall == tab.structural and result.first == tab.first
        assert result.points == [] and result.causes == []
        return
    assert result.first == tab.first and result.hint.pitfall == tab.causes[0][0]
    assert [cause.pitfall for cause in result.causes] == [pitfall for pitfall, _ in tab.causes]
    for cause, (_, located) in zip(result.causes, tab.causes, strict=True):
        assert list(cause.points) == pitfall_locations(tab.model, located)


def test_pitfall_d2l_stage_bug_is_caught_by_the_structural_audit():
    """Same printed shapes, but B cannot take the canonical weights: the audit names every later block."""
    result = explained("regnetx32", "torch", "mxnet", "d2l_stage_bug")
    assert result.load_error is not None and result.points == []
    differing_blocks = {diff.layer.rsplit(".", 1)[0] for diff in result.structure}
    spec = get_spec("regnetx32")
    assert differing_blocks == {f"stages.{i}.blocks.{j}" for i, j, _ in spec.blocks() if j > 0}
    assert 6.0e6 < result.parameters_b < 6.6e6 and result.parameters_a < 0.2e6
    assert "16x wider bottleneck, extra projection" in result.hint.text


def test_pitfall_d2l_densenet_channels_is_caught_by_the_structural_audit():
    """d2l's JAX DenseNet: every transition halves 64 + 4 * 32 = 192 channels, so from the second transition
    on every layer is narrower (the first transition outputs 96 either way)."""
    result = explained("densenet", "torch", "jax", "d2l_jax_tab")
    assert result.load_error is not None and result.points == []
    spec = get_spec("densenet")
    paths = [layer.path for layer in spec.layers()]
    assert [diff.layer for diff in result.structure] == paths[paths.index("tran_blk2.conv") :]
    assert result.parameters_a == 758_226 and result.parameters_b == 700_586
    assert "transitions output 96/96/96 channels, not 96/112/120" in result.hint.text


def test_pitfall_d2l_nin_pool_is_the_global_pool_where_the_last_map_is_5x5_only():
    """At 224x224 NiN's last map is 5x5, and d2l's JAX pool computes the PyTorch tab's logits; at 256x256 (a
    6x6 map, INPUT_SIZES) it leaves 2x2 averages of each of the 10 channels."""
    spec = get_spec("nin")
    x = np.random.default_rng(0).standard_normal((2, 1, 224, 224)).astype("float32")
    assert not divergence.explain(spec, "torch", "jax", x, "d2l_jax_tab").diverged
    result = explained("nin", "torch", "jax", "d2l_jax_tab")
    last = result.points[-1]
    assert last.point == "head.pool" and last.shape_a == (2, 10) and last.shape_b == (2, 2 * 2 * 10)
    assert "a 5x5 window at stride 1 over the 6x6 map leaves 2x2 averages per channel" in result.hint.text


def test_pitfall_d2l_bnlenet_padding_is_caught_by_the_structural_audit():
    """d2l's JAX BNLeNet: 'SAME' keeps 28x28 and 14x14 maps, so 16 x 7 x 7 = 784 features reach fc1, not
    16 x 4 x 4 = 256; the convs keep their parameters, fc1 gains (784 - 256) x 120 weights."""
    result = explained("bnlenet", "torch", "jax", "d2l_jax_tab")
    assert result.load_error is not None and result.points == []
    assert [diff.layer for diff in result.structure] == ["fc1"]
    assert result.structure[0].a == (256 * 120 + 120, 1) and result.structure[0].b == (784 * 120 + 120, 1)
    assert result.parameters_b - result.parameters_a == (784 - 256) * 120
    assert "the flatten holds 16 x 7 x 7 = 784 features, not 256" in result.hint.text


@pytest.mark.parametrize(
    "model, src, dst",
    [("regnetx32", "torch", "jax"), ("regnetx32", "torch", "mxnet"), ("inception_mnist", "mxnet", "tf")],
)
def test_pitfall_free_pair_reports_no_divergence(model, src, dst):
    result = explained(model, src, dst, None)
    assert not result.diverged and result.first is None and result.hint is None
    assert result.structure == [] and len(result.points) == len(get_spec(model).activation_points())


def porting_guide_rows() -> list[str]:
    """The README's porting-guide table, one row per pitfall, from what the harness reports."""
    rows = []
    for label in dict.fromkeys(c.label for c in CASES):
        cases = [c for c in CASES if c.label == label]
        results = [explained(c.model, "torch", c.dst, c.variant) for c in cases]
        (first,), (pitfall,) = {r.first for r in results}, {r.hint.pitfall for r in results}
        frameworks = ", ".join(c.dst for c in cases)
        rows.append(
            f"| ({label}) {pitfall.title} | `{cases[0].variant}` ({frameworks}) | {cases[0].model} "
            f"| `{first}` | {pitfall.fix} |"
        )
    return rows


def layer_count(count: int) -> str:
    return f"{count} layer{'' if count == 1 else 's'}"


def book_tab_rows() -> list[str]:
    """The README's table of d2l's tabs, one row per tab, from what the harness reports."""
    rows = []
    for tab in TABS:
        result = explained(tab.model, "torch", tab.dst, tab.variant)
        book = get_spec(tab.model).book_tabs()[tab.dst]
        if result.load_error:
            causes = f"{result.hint.pitfall.title} (structural: {layer_count(len(result.structure))})"
            logits = f"cannot take the weights: {result.parameters_b:,} parameters, not {result.parameters_a:,}"
        else:
            causes = ", ".join(f"{cause.pitfall.title} ({layer_count(len(cause.points))})" for cause in result.causes)
            last = result.points[-1]
            logits = f"{last.max_rel:.0%}" if last.max_rel >= 0.01 else f"{last.max_rel:.2%}"
            if last.shape_a != last.shape_b:
                logits = f"shape {last.shape_b}, not {last.shape_a}"
        pitfalls = " + ".join(f"`{pitfall}`" for pitfall in book.pitfalls)
        rows.append(
            f"| `{tab.variant}` | {tab.model} | {pitfalls} | {causes} | `{result.first}` | {logits} "
            f"| {book.training_only or '-'} |"
        )
    return rows


def test_pitfall_readme_porting_guide_matches_the_harness():
    readme = README.read_text(encoding="utf-8")
    missing = [row for row in porting_guide_rows() + book_tab_rows() if row not in readme]
    assert not missing, "README's porting guide differs from the harness; expected rows:\n" + "\n".join(missing)
