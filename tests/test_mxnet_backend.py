"""Unit tests of the MXNet Gluon AnyNet, RegNetX32 and ResNeXt block: native names, float64,
the compiled forward, training-mode BatchNorm, d2l's layer summary, the activation points,
checked against ``parity.reference`` (numpy, from the spec and the canonical weights only),
and the model built empty for loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import parity
from parity import reference
from parity.harness import TOLERANCE
from parity.specs import AlexNet, ResNeXtBlock, block_path
from parity.weights import WeightsError, count_parameters, randomize_batchnorm, schema
from support import assert_same_bits, max_relative_diff, randn

pytest.importorskip("impl_mxnet.backend")
import mxnet as mx  # noqa: E402
from mxnet import autograd, nd  # noqa: E402

from impl_mxnet import RegNetX32, backend  # noqa: E402

FLOAT32_BOUND = TOLERANCE["float32"][1]  # the suite's float32 bound, relative to the largest logit

SPEC = parity.get_spec("regnetx32")
BLOCK = ResNeXtBlock(in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2)
IDENTITY_BLOCK = ResNeXtBlock(in_channels=24, num_channels=24, group_width=8, bot_mul=1, conv_bias=False, bn_eps=1e-3)
D2L_SUMMARY = [
    "Sequential output shape:\t (1, 32, 48, 48)",
    "Sequential output shape:\t (1, 32, 24, 24)",
    "Sequential output shape:\t (1, 80, 12, 12)",
    "GlobalAvgPool2D output shape:\t (1, 80, 1, 1)",
    "Dense output shape:\t (1, 10)",
]


def build_randomized(spec, dtype="float32", seed=0):
    """A model whose BatchNorm parameters and statistics are far from their fresh 1/0 values."""
    model = backend.build(spec, seed=seed, dtype=dtype)
    backend.load_weights(model, randomize_batchnorm(backend.export_weights(model), seed=seed + 100))
    return model


@pytest.fixture(scope="module")
def model():
    return build_randomized(SPEC)


# --- native names ---


def test_native_names_count_stages_from_one_and_blocks_from_zero(model):
    rows = {canonical: native for canonical, native, _, _ in backend.table(SPEC).rows(SPEC)}
    assert rows["stages.0.blocks.0.conv2.weight"] == "stage1_block0_conv2_weight"
    assert rows["stages.1.blocks.5.bn3.running_var"] == "stage2_block5_bn3_running_var"
    assert rows["stem.bn.weight"] == "stem_bn_gamma"
    assert rows["stem.bn.bias"] == "stem_bn_beta"
    assert rows["head.fc.bias"] == "head_fc_bias"
    blocks = [stage.name for stage in model.net[1:3]] + [block.name for block in model.net[2]]
    assert blocks == ["stage1", "stage2"] + [f"stage2_block{j}" for j in range(6)]
    block = {canonical: native for canonical, native, _, _ in backend.table(BLOCK).rows(BLOCK)}
    assert block["conv4.weight"] == "conv4_weight" and block["bn4.running_mean"] == "bn4_running_mean"


def test_regnetx32_is_the_anynet_of_the_spec():
    net = RegNetX32(num_classes=7, prefix="")
    assert net.spec == dataclasses.replace(SPEC, num_classes=7)
    net.initialize()
    expected = {native: shape for _, native, shape, _ in backend.table(net.spec).rows(net.spec)}
    assert {key: param.data().shape for key, param in net.collect_params().items()} == expected


# --- build ---


def test_float64_model_computes_in_float64(model):
    model64 = backend.build(SPEC, dtype="float64")
    weights = backend.export_weights(model)
    backend.load_weights(model64, parity.weights.cast(weights, "float64"))
    assert all(w.dtype == np.float64 for w in backend.export_weights(model64).values())
    x = randn((2, 1, 37, 53), "float64")
    y64 = backend.forward(model64, x)
    assert y64.dtype == np.float64
    # float32 keeps ~7 digits; ~30 layers of rounding stay near 1e-6 relative, so 1e-4 is a safe bound.
    assert max_relative_diff(backend.forward(model, x.astype(np.float32)), y64) < 1e-4
    # float64 against numpy's float64: only summation order differs (~1e-15); any float32 step would show at ~1e-7.
    assert max_relative_diff(y64, reference.forward(SPEC, backend.export_weights(model64), x)) < 1e-12


# --- forward ---


# the book's convolutions with a small fc6: dense layers after a flatten, and dropout
SMALL_ALEXNET = AlexNet(input_size=(67, 67))


def imperative_forward(model, x, train=False):
    """The model's own call, op by op, as the book runs it."""
    with autograd.pause(train_mode=train):
        return model(nd.array(x, dtype=model.dtype)).asnumpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("spec", "train"),
    [(SPEC, False), (SPEC, True), (SMALL_ALEXNET, False)],
    ids=["regnetx32", "regnetx32-train", "alexnet"],
)
def test_compiled_forward_is_the_imperative_call(spec, train, dtype):
    model = build_randomized(spec, dtype)
    x = randn((3, spec.in_channels, *(spec.fixed_input_size() or (37, 53))), dtype)
    got, expected = backend.forward(model, x, train=train), imperative_forward(model, x, train)
    if dtype == "float32" and not train:
        # oneDNN's fused graph folds each BatchNorm into its conv's kernel and bias: the same function in
        # another rounding, ~1e-7 of the largest logit; a structural error would be O(1). The suite's bound.
        assert "inference" in backend._GRAPHS[model]
        assert max_relative_diff(got, expected) <= FLOAT32_BOUND
    else:
        # The graph runs the very operators of the imperative call on the same inputs: no tolerance.
        assert got.tobytes() == expected.tobytes()


def test_forward_calls_the_model_once_to_trace_it_then_runs_the_graph():
    model = backend.build(SPEC)
    calls = []
    model.register_forward_hook(lambda block, inputs, output: calls.append(type(output)))
    for batch in (1, 2, 1):
        backend.forward(model, randn((batch, 1, 32, 32)))
    assert calls == [mx.sym.Symbol]


def test_eval_forward_after_a_training_step_reads_the_stepped_weights():
    """oneDNN's fused graph keeps the parameters it first read, folded: a step must drop it."""
    from impl_mxnet.training import Trainer
    from parity.training import OptimizerSpec

    model = build_randomized(SPEC)
    x, labels = randn((2, 1, 32, 32)), np.array([1, 7])
    before = backend.forward(model, x)
    Trainer(model, OptimizerSpec()).step(x, labels)
    after, expected = backend.forward(model, x), imperative_forward(model, x)
    assert max_relative_diff(after, before) > 1e-3  # the step moved the logits
    assert max_relative_diff(after, expected) <= FLOAT32_BOUND


def test_forward_and_activations_use_the_weights_loaded_after_they_ran():
    other = build_randomized(SPEC, seed=1)
    x = randn((2, 1, 32, 32))
    model = build_randomized(SPEC)
    before = backend.forward(model, x), backend.activations(model, x)
    backend.load_weights(model, backend.export_weights(other))
    after = backend.forward(model, x), backend.activations(model, x)
    assert not np.array_equal(after[0], before[0])
    assert after[0].tobytes() == backend.forward(other, x).tobytes()
    assert_same_bits(after[1], backend.activations(other, x))
    assert_same_bits(backend.export_weights(model), backend.export_weights(other))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_training_mode_uses_batch_statistics_and_changes_nothing(dtype):
    model = build_randomized(SPEC, dtype)
    before = backend.export_weights(model)
    x = randn((4, 1, 32, 32), dtype)
    eval_out = backend.forward(model, x)
    train_out = backend.forward(model, x, train=True)
    assert_same_bits(backend.export_weights(model), before)
    assert np.array_equal(backend.forward(model, x), eval_out)
    # Randomised running statistics are far from the batch's: the outputs differ by O(1), not by rounding.
    assert max_relative_diff(train_out, eval_out) > 1e-2


def test_a_recorded_training_step_moves_running_statistics_by_the_specs_momentum():
    spec = ResNeXtBlock(in_channels=8, num_channels=8, group_width=4, bot_mul=1, bn_momentum=0.25)
    model = backend.build(spec, dtype="float64")
    x = randn((4, 8, 5, 7), "float64")
    conv1 = backend.activations(model, x)["conv1"]
    before = backend.export_weights(model)
    with autograd.record():
        out = model(nd.array(x, dtype="float64"))
    out.backward()
    after = backend.export_weights(model)
    # PyTorch's convention (new = 0.75 old + 0.25 batch); MXNet keeps the biased batch variance. float64 rounding only.
    expected_mean = 0.75 * before["bn1.running_mean"] + 0.25 * conv1.mean(axis=(0, 2, 3))
    expected_var = 0.75 * before["bn1.running_var"] + 0.25 * conv1.var(axis=(0, 2, 3))
    np.testing.assert_allclose(after["bn1.running_mean"], expected_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(after["bn1.running_var"], expected_var, rtol=0, atol=1e-12)


def test_block_forward_is_an_nchw_feature_map():
    model = backend.build(BLOCK)
    x = randn((2, 16, 37, 53))
    assert backend.forward(model, x).shape == BLOCK.output_shape(x.shape) == (2, 24, 19, 27)


# --- d2l's layer summary ---


def summary_group(canonical_name: str) -> str:
    parts = canonical_name.split(".")
    return ".".join(parts[:2]) if parts[0] == "stages" else parts[0]


def test_summary_reproduces_d2l_book_and_counts_every_parameter_once(model):
    rows = backend.layer_summary(model, (1, 1, 96, 96))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["stem", "stages.0", "stages.1", "head", "head"]
    per_group: dict[str, int] = {}
    for row in rows:
        per_group[row.group] = per_group.get(row.group, 0) + row.params
    expected: dict[str, int] = {}
    for name, param in schema(SPEC).items():
        if param.trainable:
            expected[summary_group(name)] = expected.get(summary_group(name), 0) + int(np.prod(param.shape))
    assert per_group == expected
    assert sum(per_group.values()) == count_parameters(SPEC)[0] == 179_290


def test_block_summary_is_one_row():
    (row,) = backend.layer_summary(backend.build(BLOCK), (1, 16, 37, 53))
    assert (row.layer, row.shape, row.shape_text) == ("ResNeXtBlock", (1, 24, 19, 27), "(1, 24, 19, 27)")
    assert row.group == "block"
    assert row.params == count_parameters(BLOCK)[0]


# --- activations ---


def numpy_activations(spec: ResNeXtBlock, weights, x):
    """Every activation point of a standalone block, from ``parity.reference``'s numpy layers."""
    acts = {}

    def conv(name, x, stride, padding, groups=1):
        bias = weights.get(f"{name}.bias")
        acts[name] = reference.conv2d(x, weights[f"{name}.weight"], bias, stride, padding, groups)
        return acts[name]

    def bn(name, x):
        acts[name] = reference.batch_norm(x, weights, name, spec.bn_eps)
        return acts[name]

    y = reference.relu(bn("bn1", conv("conv1", x, 1, 0)))
    y = reference.relu(bn("bn2", conv("conv2", y, spec.stride, 1, spec.groups)))
    y = bn("bn3", conv("conv3", y, 1, 0))
    if spec.use_1x1conv:
        x = bn("bn4", conv("conv4", x, spec.stride, 0))
    acts["output"] = reference.relu(y + x)
    return acts


@pytest.mark.parametrize("spec", [BLOCK, IDENTITY_BLOCK], ids=["projection", "identity"])
def test_block_activations_equal_numpy_at_every_point(spec):
    model = build_randomized(spec, "float64")
    x = randn((2, spec.in_channels, 11, 13), "float64")
    acts = backend.activations(model, x)
    expected = numpy_activations(spec, backend.export_weights(model), x)
    assert list(acts) == spec.activation_points() == list(expected)
    for point in acts:
        # float64 against numpy float64: summation order only, ~1e-15 relative.
        assert max_relative_diff(acts[point], expected[point]) < 1e-12, point


def test_anynet_activations_cover_every_point_and_end_in_the_logits(model):
    x = randn((2, 1, 37, 53))
    acts = backend.activations(model, x)
    assert list(acts) == SPEC.activation_points()
    # The points' graph runs the imperative operators; float32 forward, oneDNN's fused ones (see above).
    assert max_relative_diff(backend.forward(model, x), acts["head.fc"]) <= FLOAT32_BOUND
    assert acts["stem"].shape == (2, 32, 19, 27)
    assert acts[block_path(1, 0)].shape == (2, 80, 5, 7)
    assert acts["head.pool"].shape == (2, 80)
    # Global average pooling of the last block in float32: summation order only, far below 1e-5.
    np.testing.assert_allclose(acts["head.pool"], acts[block_path(1, 5)].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    hooks = []
    model.apply(lambda block: hooks.extend(block._forward_hooks.values()))
    assert not hooks


# --- a model built empty for loading ---


@pytest.mark.parametrize("spec, dtype", [(SPEC, "float32"), (BLOCK, "float64")], ids=["anynet", "block-float64"])
def test_an_empty_model_loaded_equals_a_built_one_loaded(spec, dtype):
    """``build_empty`` (constant values, no gradient buffers) then ``load_weights``: the same tensors,
    logits, structure and summary bit for bit as a seeded build loaded with the same weights."""
    weights = randomize_batchnorm(backend.export_weights(backend.build(spec, seed=3, dtype=dtype)), seed=4)
    built, empty = backend.build(spec, seed=0, dtype=dtype), backend.build_empty(spec, dtype=dtype)
    for model in (built, empty):
        backend.load_weights(model, weights)
    assert_same_bits(backend.export_weights(empty), weights)
    x = randn((2, spec.in_channels, 32, 32), dtype)
    assert backend.forward(empty, x).tobytes() == backend.forward(built, x).tobytes()
    assert backend.structure(empty) == backend.structure(built)
    summary = backend.layer_summary(empty, x.shape)
    assert summary == backend.layer_summary(built, x.shape)
    assert sum(row.params for row in summary) == count_parameters(spec)[0]
    assert {param.grad_req for param in empty.collect_params().values()} == {"null"}
    trainable = {key for key, param in built.collect_params().items() if param.grad_req == "write"}
    assert len(trainable) == sum(param.trainable for param in schema(spec).values())


def test_a_failed_load_leaves_an_empty_model_unchanged():
    empty = backend.build_empty(SPEC)
    before = backend.export_weights(empty)
    weights = backend.export_weights(backend.build(SPEC, seed=1))
    weights["head.fc.bias"] = weights["head.fc.bias"][:4]
    with pytest.raises(WeightsError, match=r"'head.fc.bias': expected shape \(10,\), got \(4,\)"):
        backend.load_weights(empty, weights)
    assert_same_bits(backend.export_weights(empty), before)
