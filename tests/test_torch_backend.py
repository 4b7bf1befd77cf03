"""Unit tests of the PyTorch backend, the reference the other backends are compared with.

Besides the contract (weights I/O, errors, determinism, dtypes, summaries), every
activation point, in eval and train mode, is checked against numpy built from
``parity.reference``'s layers, which reads only the spec and the canonical weights:
the torch model is proven to compute the spec's function, not just to agree with itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import assert_same_bits, randn

import parity
from parity import reference
from parity.specs import ResNeXtBlock
from parity.weights import randomize_batchnorm

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


def max_relative_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(1.0, np.abs(expected).max()))


# --- every activation point in numpy, from canonical weights only ---


def batch_statistics(x, weights, path):
    """``weights`` with ``path``'s running statistics replaced by x's batch mean and biased variance."""
    return {**weights, f"{path}.running_mean": x.mean(axis=(0, 2, 3)), f"{path}.running_var": x.var(axis=(0, 2, 3))}


def np_reference(spec, weights, x, train=False) -> dict[str, np.ndarray]:
    """Every activation point of ``spec``, from ``parity.reference``'s numpy layers; ``train``
    normalises with batch statistics, as torch does in training mode."""
    layers = {layer.path: layer for layer in spec.layers()}
    acts: dict[str, np.ndarray] = {}

    def conv(path, x):
        layer = layers[path]
        w, b = weights[f"{path}.weight"], weights.get(f"{path}.bias")
        acts[path] = reference.conv2d(x, w, b, layer.stride, layer.padding, layer.groups)
        return acts[path]

    def bn(path, x):
        stats = batch_statistics(x, weights, path) if train else weights
        acts[path] = reference.batch_norm(x, stats, path, layers[path].eps)
        return acts[path]

    def block(prefix, x):
        p = (lambda name: f"{prefix}.{name}") if prefix else (lambda name: name)
        y = reference.relu(bn(p("bn1"), conv(p("conv1"), x)))
        y = reference.relu(bn(p("bn2"), conv(p("conv2"), y)))
        y = bn(p("bn3"), conv(p("conv3"), y))
        if p("conv4") in layers:
            x = bn(p("bn4"), conv(p("conv4"), x))
        acts[prefix or "output"] = reference.relu(y + x)
        return acts[prefix or "output"]

    if isinstance(spec, ResNeXtBlock):
        block("", x)
        return acts
    x = acts["stem"] = reference.relu(bn("stem.bn", conv("stem.conv", x)))
    for i, j, _ in spec.blocks():
        x = block(parity.specs.block_path(i, j), x)
    acts["head.pool"] = x.mean(axis=(2, 3))
    acts["head.fc"] = acts["head.pool"] @ weights["head.fc.weight"].T + weights["head.fc.bias"]
    return acts


# --- the name table and weight transfer ---


@pytest.mark.parametrize("spec", [SPEC, *BLOCKS.values()], ids=["anynet", *BLOCKS])
def test_table_names_exactly_the_model_tensors(spec):
    model = backend.build(spec)
    native = {name: shape for _, name, shape, _ in backend.TABLE.rows(spec)}
    tensors = {k: tuple(t.shape) for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert native == tensors


def test_table_maps_canonical_paths_like_d2l():
    rows = {canonical: native for canonical, native, _, _ in backend.TABLE.rows(SPEC)}
    assert rows["stem.conv.weight"] == "net.stem.conv.weight"
    assert rows["stages.1.blocks.0.conv4.weight"] == "net.stage2.0.conv4.weight"
    assert rows["stages.1.blocks.5.bn3.running_var"] == "net.stage2.5.bn3.running_var"
    assert rows["head.fc.bias"] == "net.head.fc.bias"


# --- build ---


def test_build_is_deterministic_per_seed_and_leaves_the_global_rng_alone():
    rng_state = torch.get_rng_state()
    a, b, c = (backend.export_weights(backend.build(SPEC, seed=s)) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert_same_bits(a, b)
    assert all(not np.array_equal(a[k], c[k]) for k in a if k.endswith("conv.weight") or k.endswith("fc.weight"))


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


# --- input errors ---


def test_layer_summary_rejects_wrong_channels():
    with pytest.raises(parity.InputError):
        backend.layer_summary(backend.build(SPEC), (1, 3, 96, 96))


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
