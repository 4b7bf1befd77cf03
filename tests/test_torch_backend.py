"""Unit tests of the PyTorch backend, the reference the other backends are compared with.

The contract every backend shares (weights I/O, errors, determinism) is checked in
``test_backend_contract.py``; here are the torch specifics: d2l's native names, dtypes,
summaries, a forward that changes nothing, and every activation point, in eval and
train mode, checked against numpy built from ``parity.reference``'s layers, which read
only the spec and the canonical weights: the torch model is proven to compute the spec's
function, not just to agree with itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import reference
from parity.specs import INPUT, NiN, ResNeXtBlock
from parity.weights import randomize_batchnorm
from support import assert_same_bits, max_relative_diff, randn

torch = pytest.importorskip("torch")
from impl_torch import backend  # noqa: E402

SPEC = parity.get_spec("regnetx32")
BLOCKS = {
    "projection": ResNeXtBlock(in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2),
    "identity": ResNeXtBlock(in_channels=24, num_channels=24, group_width=8, bot_mul=1, conv_bias=False, bn_eps=1e-3),
}
D2L_SUMMARY = [
    "Sequential output shape:\t torch.Size([1, 32, 48, 48])",
    "Sequential output shape:\t torch.Size([1, 32, 24, 24])",
    "Sequential output shape:\t torch.Size([1, 80, 12, 12])",
    "Sequential output shape:\t torch.Size([1, 10])",
]


def build_randomized(spec, dtype="float32", seed=0):
    """A model whose BatchNorm parameters and statistics are far from their fresh 1/0 values."""
    model = backend.build(spec, seed=seed, dtype=dtype)
    backend.load_weights(model, randomize_batchnorm(backend.export_weights(model), seed=seed + 100))
    return model


def state(model) -> dict[str, np.ndarray]:
    """Every tensor the model holds, num_batches_tracked included, as fresh numpy arrays."""
    return {key: t.detach().numpy().copy() for key, t in model.state_dict().items()}


# --- every activation point in numpy, from the spec's graph and canonical weights only ---


def batch_statistics(x, weights, path):
    """``weights`` with ``path``'s running statistics replaced by x's batch mean and biased variance."""
    return {**weights, f"{path}.running_mean": x.mean(axis=(0, 2, 3)), f"{path}.running_var": x.var(axis=(0, 2, 3))}


def np_reference(spec, weights, x, train=False) -> dict[str, np.ndarray]:
    """Every activation point of ``spec``: ``parity.reference`` applied to each node of its graph;
    ``train`` normalises with batch statistics, as torch does in training mode."""
    values = {INPUT: x}
    for node in spec.graph():
        inputs = [values[name] for name in node.inputs]
        stats = batch_statistics(inputs[0], weights, node.name) if train and node.op == "bn" else weights
        values[node.name] = reference.apply(node, inputs, stats)
    return {key: values[key] for key in spec.activation_points()}


# --- native names ---


def test_table_maps_canonical_paths_like_d2l():
    rows = {canonical: native for canonical, native, _, _ in backend.table(SPEC).rows(SPEC)}
    assert rows["stem.conv.weight"] == "net.stem.conv.weight"
    assert rows["stages.1.blocks.0.conv4.weight"] == "net.stage2.0.conv4.weight"
    assert rows["stages.1.blocks.5.bn3.running_var"] == "net.stage2.5.bn3.running_var"
    assert rows["head.fc.bias"] == "net.head.fc.bias"


# --- build ---


def test_build_leaves_the_global_rng_alone():
    rng_state = torch.get_rng_state()
    backend.build(SPEC, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_build_holds_spec_and_dtype_and_is_fully_built():
    model = backend.build(SPEC, dtype="float64")
    assert model.spec == SPEC and backend.model_dtype(model) == "float64"
    assert not any(isinstance(t, torch.nn.parameter.UninitializedTensorMixin) for t in model.state_dict().values())
    assert {t.dtype for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked")} == {torch.float64}
    assert not model.training


def test_d2l_model_class_builds_the_named_spec():
    from impl_torch import RegNetX32

    model = RegNetX32()
    assert model.spec == SPEC and list(model.net.named_children())[1][0] == "stage1"
    assert [type(m).__name__ for m in model.net.head] == ["AdaptiveAvgPool2d", "Flatten", "Linear"]


def test_block_takes_d2l_keywords():
    from impl_torch import ResNeXtBlock as TorchResNeXtBlock

    block = TorchResNeXtBlock(in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, strides=2)
    assert block.spec == BLOCKS["projection"] and block.conv2.stride == block.conv4.stride == (2, 2)


def test_block_uses_spec_groups_bias_and_batchnorm_settings():
    spec = BLOCKS["identity"]
    model = backend.build(spec)
    assert model.conv2.groups == spec.groups == 3 and model.conv2.padding == (1, 1)
    assert model.conv1.bias is None and model.conv4 is None
    assert all(bn.eps == 1e-3 and bn.momentum == 0.1 for bn in (model.bn1, model.bn2, model.bn3))


# --- numerics ---


def test_float64_really_computes_in_float64():
    x = randn((2, 1, 37, 53), "float64")
    m64 = build_randomized(SPEC, "float64")
    m32 = backend.build(SPEC, dtype="float32")
    backend.load_weights(m32, parity.weights.cast(backend.export_weights(m64), "float32"))
    y64, y32 = backend.forward(m64, x), backend.forward(m32, x.astype(np.float32))
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    # float32 rounds ~6e-8 relative per operation, over ~30 layers with fan-in up to 720:
    # 1e-4 relative is far above that and far below the O(1) change of a structural bug.
    assert max_relative_diff(y32, y64) < 1e-4
    # A float64 model that secretly computed in float32 would agree with it to the bit.
    assert not np.array_equal(y32.astype(np.float64), y64)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("shape", [(2, 1, 37, 53), (3, 1, 32, 32)], ids=["odd", "square"])
def test_anynet_matches_numpy_reference(shape, train):
    model = build_randomized(SPEC, "float64")
    x = randn(shape, "float64")
    expected = np_reference(SPEC, backend.export_weights(model), x, train)
    # float64 with fan-in <= 720 rounds at ~1e-14 relative; 1e-12 catches any real difference.
    assert max_relative_diff(backend.forward(model, x, train=train), expected["head.fc"]) < 1e-12
    if not train:
        assert max_relative_diff(expected["head.fc"], reference.forward(SPEC, backend.export_weights(model), x)) < 1e-12
        actual = backend.activations(model, x)
        for key in SPEC.activation_points():
            assert actual[key].shape == expected[key].shape, key
            assert max_relative_diff(actual[key], expected[key]) < 1e-12, key


def test_float32_matches_float64_numpy_reference():
    model = build_randomized(SPEC, "float32")
    x = randn((2, 1, 37, 53))
    weights = parity.weights.cast(backend.export_weights(model), "float64")
    expected = np_reference(SPEC, weights, x.astype(np.float64))
    # The suite's float32 parity target; float32 rounding stays near 1e-6 relative here.
    assert max_relative_diff(backend.forward(model, x), expected["head.fc"]) < 1e-5


@pytest.mark.parametrize("name", BLOCKS)
def test_block_matches_numpy_reference(name):
    spec = BLOCKS[name]
    model = build_randomized(spec, "float64")
    x = randn((2, spec.in_channels, 13, 10), "float64")
    expected = np_reference(spec, backend.export_weights(model), x)
    y = backend.forward(model, x)
    assert y.shape == spec.output_shape(x.shape)
    # Same float64 rounding argument as for the AnyNet reference.
    assert max_relative_diff(y, expected["output"]) < 1e-12
    acts = backend.activations(model, x)
    assert list(acts) == spec.activation_points() and list(acts)[-1] == "output"
    assert np.array_equal(acts["output"], y)


# --- forward never changes the model ---


@pytest.mark.parametrize("was_training", [False, True])
def test_train_forward_uses_batch_stats_and_changes_nothing(was_training):
    model = build_randomized(SPEC)
    model.train(was_training)
    flags = [m.training for m in model.modules()]
    before = state(model)
    x = randn((4, 1, 37, 53))
    y_train = backend.forward(model, x, train=True)
    y_eval = backend.forward(model, x, train=False)
    backend.activations(model, x)
    backend.layer_summary(model, (1, 1, 96, 96))
    assert_same_bits(state(model), before)
    assert [m.training for m in model.modules()] == flags
    assert np.abs(y_train - y_eval).max() > 1e-2
    assert np.array_equal(backend.forward(model, x, train=True), y_train)


# --- d2l layer summary and activations ---


def test_layer_summary_reproduces_the_d2l_book():
    rows = backend.layer_summary(backend.build(SPEC), (1, 1, 96, 96))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["stem", "stages.0", "stages.1", "head"]
    assert [row.shape for row in rows] == [(1, 32, 48, 48), (1, 32, 24, 24), (1, 80, 12, 12), (1, 10)]
    assert sum(row.params for row in rows) == parity.count_parameters(SPEC)[0] == 179_290


def test_layer_summary_counts_each_group_like_the_schema():
    rows = backend.layer_summary(backend.build(SPEC), (1, 1, 96, 96))
    counts = dict.fromkeys([row.group for row in rows], 0)
    for p in parity.schema(SPEC).values():
        parts = p.name.split(".")
        group = ".".join(parts[:2]) if parts[0] == "stages" else parts[0]
        counts[group] += int(np.prod(p.shape)) if p.trainable else 0
    assert [row.params for row in rows] == list(counts.values())


def test_layer_summary_of_a_block_is_one_row():
    spec = BLOCKS["projection"]
    (row,) = backend.layer_summary(backend.build(spec), (1, 16, 9, 11))
    assert row.d2l_line() == "ResNeXtBlock output shape:\t torch.Size([1, 24, 5, 6])"
    assert row.group == "block" and row.params == parity.count_parameters(spec)[0]


def test_activations_follow_the_spec_and_end_in_the_logits():
    model = build_randomized(SPEC)
    x = randn((2, 1, 37, 53))
    acts = backend.activations(model, x)
    assert list(acts) == SPEC.activation_points()
    assert acts["stem"].shape == (2, 32, 19, 27) and acts["head.pool"].shape == (2, 80)
    assert np.array_equal(acts["head.fc"], backend.forward(model, x))


# --- NiN ---

NIN = NiN()
NIN_SUMMARY = [  # d2l's printed summary for a (1, 1, 224, 224) input
    "Sequential output shape:\t torch.Size([1, 96, 54, 54])",
    "MaxPool2d output shape:\t torch.Size([1, 96, 26, 26])",
    "Sequential output shape:\t torch.Size([1, 256, 26, 26])",
    "MaxPool2d output shape:\t torch.Size([1, 256, 12, 12])",
    "Sequential output shape:\t torch.Size([1, 384, 12, 12])",
    "MaxPool2d output shape:\t torch.Size([1, 384, 5, 5])",
    "Dropout output shape:\t torch.Size([1, 384, 5, 5])",
    "Sequential output shape:\t torch.Size([1, 10, 5, 5])",
    "AdaptiveAvgPool2d output shape:\t torch.Size([1, 10, 1, 1])",
    "Flatten output shape:\t torch.Size([1, 10])",
]


def test_nin_layer_summary_reproduces_the_d2l_book():
    rows = backend.layer_summary(backend.build(NIN), (1, 1, 224, 224))
    assert [row.d2l_line() for row in rows] == NIN_SUMMARY
    assert [row.group for row in rows] == [*NIN.summary_groups(), "head"]  # the Flatten joins the head
    assert sum(row.params for row in rows) == parity.count_parameters(NIN)[0] == 1_992_166


def test_nin_native_names_are_the_books_sequential_indices():
    from impl_torch import NiN as TorchNiN

    model = TorchNiN()
    assert model.spec == NIN and len(model.net) == 10
    assert [type(layer).__name__ for layer in model.net[0]] == ["Conv2d", "ReLU"] * 3
    assert model.net[6].p == NIN.dropout and model.net[1].padding == 0
    rows = {canonical: native for canonical, native, _, _ in backend.table(NIN).rows(NIN)}
    assert rows["blocks.0.conv1.weight"] == "net.0.0.weight"
    assert rows["blocks.1.conv2.bias"] == "net.2.2.bias"
    assert rows["blocks.2.conv3.weight"] == "net.4.4.weight"
    assert rows["blocks.3.conv1.weight"] == "net.7.0.weight"
