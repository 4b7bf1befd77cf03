"""parity.divergence: the activation-point table, the hint recomputation on synthetic numpy data,
the structural audit, and the ``explain`` and ``report`` commands."""

from __future__ import annotations

import re

import numpy as np
import pytest

from parity import cli, divergence, reference
from parity.backends import FRAMEWORKS, get_backend
from parity.divergence import (
    diagnose_layer,
    diagnose_structure,
    point_inputs,
    point_nodes,
    point_sources,
    same_pads,
    spec_structure,
)
from parity.reference import apply
from parity.specs import (
    INPUT,
    AnyNet,
    BatchNorm,
    Conv,
    Dense,
    GoogLeNet,
    Inception,
    InceptionA,
    Node,
    ResNeXtBlock,
    Stage,
    d2l_stage_bug_blocks,
    get_spec,
)

rng = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def weights_of(layer) -> dict[str, np.ndarray]:
    """Random canonical tensors of one layer (BatchNorm's all positive)."""
    if isinstance(layer, Conv):
        kernel = randn(layer.out_channels, layer.in_channels // layer.groups, layer.kernel_size, layer.kernel_size)
        return {f"{layer.path}.weight": kernel, f"{layer.path}.bias": randn(layer.out_channels)}
    if isinstance(layer, BatchNorm):
        c = layer.channels
        return {
            f"{layer.path}.{leaf}": rng.uniform(0.5, 1.5, c)
            for leaf in ("weight", "bias", "running_mean", "running_var")
        }
    return {
        f"{layer.path}.weight": randn(layer.out_features, layer.in_features),
        f"{layer.path}.bias": randn(layer.out_features),
    }


def Op(op: str, inputs: tuple[str, ...], layer=None, window=None) -> Node:
    """A one-node graph fragment to diagnose, named after its layer."""
    return Node(layer.path if layer else op, op, inputs, layer=layer, window=window)


def hint_for(op: Node, x: np.ndarray, observed: np.ndarray, weights, dtype: str = "float64"):
    return diagnose_layer(op, [x], observed, weights, dtype)


# --- the activation-point table ---

SMALL_ANYNET = AnyNet("small", stem_width=8, stages=(Stage(2, 8, 4, 1), Stage(1, 16, 8, 0.5)), input_size=(12, 10))
SPECS = (
    SMALL_ANYNET,
    get_spec("inception_mnist"),
    GoogLeNet(),
    ResNeXtBlock(8, 16, 4, 1, use_1x1conv=True, stride=2),
    Inception(8, 4, (4, 6), (2, 3), 5),
    InceptionA(6),
)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_activation_point_reads_earlier_points(spec):
    sources = point_sources(spec)
    order = spec.activation_points()
    assert list(point_nodes(spec)) == order and list(sources) == order
    for k, point in enumerate(order):
        assert sources[point] and all(source == INPUT or order.index(source) < k for source in sources[point]), point


@pytest.mark.parametrize(
    "spec", [SMALL_ANYNET, get_spec("inception_mnist"), GoogLeNet(input_size=(32, 32))], ids=lambda s: s.name
)
def test_every_op_recomputed_from_torch_inputs_reproduces_torch(spec):
    """The table is checked against a real model: each point from its inputs' activations, in float64."""
    torch_backend = get_backend("torch")
    model = torch_backend.build(spec, dtype="float64")
    weights = torch_backend.export_weights(model)
    x = randn(2, spec.in_channels, *spec.input_size)
    acts = torch_backend.activations(model, x)
    for point, node in point_nodes(spec).items():
        inputs = point_inputs(spec, point, acts, x, weights)
        assert divergence.reproduces(apply(node, inputs, weights), acts[point], "float64"), point


# --- hints from synthetic data ---


def test_same_pads_put_the_odd_cell_at_the_end():
    assert same_pads(32, 3, 2) == (0, 1) and same_pads(33, 3, 2) == (1, 1)
    assert same_pads(96, 7, 2) == (2, 3) and same_pads(10, 3, 1) == (1, 1) and same_pads(8, 1, 2) == (0, 0)


def test_hint_same_padding_at_stride_2():
    conv = Conv("c", 3, 4, 3, stride=2, padding=1)
    weights, x = weights_of(conv), randn(2, 3, 8, 8)
    observed = reference.conv2d(
        np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1))), weights["c.weight"], weights["c.bias"], 2, 0, 1
    )
    hint = hint_for(Op("conv", ("x",), conv), x, observed, weights)
    assert hint.pitfall is divergence.SAME_PADDING and "(0, 1)" in hint.text


def test_hint_same_padding_of_a_max_pool_pads_with_minus_infinity():
    x = -1 - np.abs(randn(1, 2, 6, 6))
    observed = reference.max_pool(np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=-np.inf), 3, 2)
    assert hint_for(Op("max_pool", ("x",), window=(3, 2, 1)), x, observed, {}).pitfall is divergence.SAME_PADDING


def test_hint_keras_batchnorm_epsilon():
    bn = BatchNorm("bn", 4, 1e-5, 0.1)
    weights, x = weights_of(bn), randn(2, 4, 3, 3)
    weights["bn.running_var"] = np.full(4, 0.01)  # small variances make epsilon matter
    hint = hint_for(Op("bn", ("x",), bn), x, reference.batch_norm(x, weights, "bn", 1e-3), weights, "float32")
    assert hint.pitfall is divergence.KERAS_BN


def test_hint_average_pool_that_excludes_padding():
    x = randn(1, 2, 5, 4)
    ones = np.ones_like(x)
    observed = reference.avg_pool(x, 3, 1, 1) / reference.avg_pool(ones, 3, 1, 1)
    assert (
        hint_for(Op("avg_pool", ("x",), window=(3, 1, 1)), x, observed, {}).pitfall
        is divergence.AVGPOOL_EXCLUDES_PADDING
    )


def test_hint_unpermuted_flatten():
    fc = Dense("fc", 3 * 2 * 2, 5, flatten_from=(3, 2, 2))
    weights, x = weights_of(fc), randn(2, 3, 2, 2)
    observed = x.transpose(0, 2, 3, 1).reshape(2, -1) @ weights["fc.weight"].T + weights["fc.bias"]
    flat = x.reshape(2, -1)  # the graph's flatten, in NCHW order, feeds the dense node
    assert hint_for(Op("dense", ("x",), fc), flat, observed, weights).pitfall is divergence.UNPERMUTED_FLATTEN


def test_hint_untransposed_kernel_needs_square_channels():
    conv = Conv("c", 4, 4, 1)
    weights, x = weights_of(conv), randn(2, 4, 3, 3)
    swapped = reference.conv2d(x, weights["c.weight"].transpose(1, 0, 2, 3), weights["c.bias"], 1, 0, 1)
    assert hint_for(Op("conv", ("x",), conv), x, swapped, weights).pitfall is divergence.UNTRANSPOSED_KERNEL


def test_hint_says_so_when_no_pitfall_reproduces_the_output():
    conv = Conv("c", 4, 4, 1)
    weights, x = weights_of(conv), randn(2, 4, 3, 3)
    hint = hint_for(Op("conv", ("x",), conv), x, randn(2, 4, 3, 3), weights)
    assert hint.pitfall is None and "no known pitfall reproduces" in hint.text and "untransposed_kernel" in hint.text
    hint = hint_for(Op("relu", ("x",)), x, randn(2, 4, 3, 3), {})
    assert hint.pitfall is None and "no known pitfall applies to a relu" in hint.text


def test_hint_says_when_b_follows_the_spec_and_a_does_not():
    conv = Conv("c", 4, 4, 1)
    weights, x = weights_of(conv), randn(2, 4, 3, 3)
    hint = hint_for(Op("conv", ("x",), conv), x, apply(Op("conv", ("x",), conv), [x], weights), weights)
    assert hint.pitfall is None and "A is the side that differs" in hint.text


def test_structural_hint_recognises_d2l_stage_bug_and_nothing_else():
    spec = get_spec("regnetx32")
    faithful = spec_structure(spec.layers())
    buggy = dict(faithful)
    for prefix, block in d2l_stage_bug_blocks(spec).items():
        buggy.update(spec_structure(block.layers(prefix)))
    hint = diagnose_structure(spec, faithful, buggy)
    assert hint.pitfall is divergence.D2L_STAGE_BUG and "16x wider bottleneck, extra projection" in hint.text
    assert "6.29 M parameters instead of 0.18 M" in hint.text
    assert divergence.audit(faithful, buggy)[0].layer == "stages.0.blocks.1.conv1"
    other = dict(faithful) | {"stages.1.blocks.0.conv2": (1, 1)}
    assert diagnose_structure(spec, faithful, other).pitfall is None


# --- the commands ---


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["explain", "inception_mnist", "--from", "torch", "--to", "tf", "--variant", "nope"],
            "of the tf backend; known variants: ",
        ),
        (
            ["explain", "inception_mnist", "--from", "torch", "--to", "torch", "--variant", "same_padding"],
            "of the torch backend; known variants: none",
        ),
        (["explain", "inception_mnist", "--from", "torch", "--to", "caffe"], "unknown framework 'caffe'"),
        (
            ["explain", "inception_mnist", "--from", "torch", "--to", "tf", "--input-size", "32,32"],
            "needs 28x28 inputs",
        ),
        (["report", "inception_mnist", "--out", "/no/such/dir/r.html"], "--out: no such directory"),
        (["report", "inception_mnist", "--out", "r.html", "--frameworks", "tf"], "at least two frameworks"),
    ],
)
def test_explain_and_report_usage_errors_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_explain_unknown_variant_names_the_known_ones(capsys):
    _, _, err = run(capsys, "explain", "regnetx32", "--from", "torch", "--to", "tf", "--variant", "nope")
    assert all(name in err for name in get_backend("tf").VARIANTS)


def test_explain_variant_that_does_not_apply_exits_2(capsys):
    code, out, err = run(
        capsys, "explain", "inception_mnist", "--from", "torch", "--to", "tf", "--variant", "keras_bn_epsilon"
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and "--variant" in err


def test_explain_shows_the_first_divergence_its_tensors_and_the_hint(capsys):
    code, out, _ = run(
        capsys, "explain", "inception_mnist", "--from", "torch", "--to", "tf", "--variant", "unpermuted_flatten"
    )
    assert code == 1
    first = next(line for line in out.splitlines() if "FIRST" in line)
    assert re.search(r"\bfc\b.*dense", first)
    assert "fc.weight" in out and "net/fc/kernel" in out and "(1408, 10)" in out
    assert "hint at fc: flatten order not permuted" in out
    assert "earlier points, all within tolerance" in out


def test_explain_faithful_pair_exits_0(capsys):
    code, out, _ = run(capsys, "explain", "inception_mnist", "--from", "mxnet", "--to", "torch", "--dtype", "float64")
    assert code == 0 and "no divergence" in out and "FIRST" not in out


def test_report_is_one_self_contained_page(capsys, tmp_path):
    out_file = tmp_path / "report.html"
    code, out, err = run(capsys, "report", "inception_mnist", "--out", str(out_file))
    page = out_file.read_text(encoding="utf-8")
    assert code == 0 and "wrote" in out and "per-layer diffs against torch" in err
    assert all(f"<caption><b>{fw}</b>" in page for fw in FRAMEWORKS), "the four layer summaries"
    spec = get_spec("inception_mnist")
    for canonical, native, _, _ in get_backend("tf").table(spec).rows(spec):
        assert f"<td class=mono>{canonical}</td>" in page and native in page
    assert page.count("PASS</td>") == 12, "the 12-pair matrix"
    assert re.search(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)
    assert not re.search(r"https?://", page)
