"""The backend contract, checked the same way for every framework: strict loading that
changes nothing on error, and clear input errors raised before any framework sees the input."""

from __future__ import annotations

import numpy as np
import pytest

from parity import get_backend
from parity.backends import FRAMEWORKS, InputError
from parity.specs import AnyNet, InceptionNet, Stage
from parity.weights import WeightsError, randomize_batchnorm

SMALL = AnyNet(
    name="small_anynet",
    stem_width=8,
    stages=(Stage(depth=1, width=16, group_width=8, bot_mul=1), Stage(depth=2, width=24, group_width=4, bot_mul=0.5)),
    num_classes=5,
    in_channels=3,
)
OTHER = AnyNet(name="other_anynet", stem_width=8, stages=(Stage(depth=1, width=16, group_width=16, bot_mul=1),), num_classes=5, in_channels=3)


@pytest.fixture(scope="module", params=FRAMEWORKS)
def framework(request):
    return request.param


@pytest.fixture(scope="module")
def model(framework):
    backend = get_backend(framework)
    built = backend.build(SMALL, seed=0)
    backend.load_weights(built, randomize_batchnorm(backend.export_weights(built), seed=1))
    return built


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


def good_weights(framework):
    return get_backend(framework).export_weights(get_backend(framework).build(SMALL, seed=5))


def test_every_problem_is_named_at_once_and_the_model_is_unchanged(framework, model):
    backend = get_backend(framework)
    before = backend.export_weights(model)
    weights = good_weights(framework)
    del weights["stages.1.blocks.1.conv2.weight"]
    weights["stages.1.blocks.1.conv4.weight"] = np.zeros((24, 24, 1, 1), np.float32)
    weights["stages.1.blocks.0.conv2.weight"] = np.zeros((12, 12, 3, 3), np.float32)
    weights["stem.bn.running_var"] = weights["stem.bn.running_var"].astype(np.float64)
    weights["head.fc.weight"][3, 4] = np.nan
    weights["head.fc.bias"][0] = np.inf
    with pytest.raises(WeightsError) as info:
        backend.load_weights(model, weights)
    message = str(info.value)
    for expected in (
        "missing key 'stages.1.blocks.1.conv2.weight' (expected shape (12, 4, 3, 3))",
        "unexpected key 'stages.1.blocks.1.conv4.weight'",
        "'stages.1.blocks.0.conv2.weight': expected shape (12, 4, 3, 3), got (12, 12, 3, 3)",
        "'stem.bn.running_var': expected dtype float32, got float64",
        "'head.fc.weight': contains NaN or Inf",
        "'head.fc.bias': contains NaN or Inf",
    ):
        assert expected in message
    assert same_bits(backend.export_weights(model), before)


def test_weights_of_another_spec_are_refused_whole(framework, model):
    backend = get_backend(framework)
    before = backend.export_weights(model)
    with pytest.raises(WeightsError, match="weights do not fit small_anynet") as info:
        backend.load_weights(model, backend.export_weights(backend.build(OTHER, seed=0)))
    assert "missing key 'stages.1.blocks.0.conv1.weight'" in str(info.value)
    assert "'stages.0.blocks.0.conv2.weight': expected shape (16, 8, 3, 3), got (16, 16, 3, 3)" in str(info.value)
    assert same_bits(backend.export_weights(model), before)


def test_non_finite_values_load_only_when_allowed(framework):
    backend = get_backend(framework)
    target = backend.build(SMALL, seed=0)
    weights = good_weights(framework)
    weights["head.fc.weight"][0, 0] = np.nan
    with pytest.raises(WeightsError, match="'head.fc.weight': contains NaN or Inf"):
        backend.load_weights(target, weights)
    backend.load_weights(target, weights, allow_nonfinite=True)
    assert np.isnan(backend.export_weights(target)["head.fc.weight"][0, 0])


def test_a_failed_load_leaves_outputs_unchanged(framework, model):
    backend = get_backend(framework)
    x = np.random.default_rng(0).standard_normal((2, 3, 11, 9)).astype(np.float32)
    before = backend.forward(model, x)
    weights = good_weights(framework)
    weights["head.fc.bias"] = weights["head.fc.bias"][:4]
    with pytest.raises(WeightsError):
        backend.load_weights(model, weights)
    assert backend.forward(model, x).tobytes() == before.tobytes()


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((3, 11, 9), np.float32), r"expected rank 4 \(N, C, H, W\), got shape \(3, 11, 9\)"),
        (np.zeros((1, 11, 9, 3), np.float32), r"expected 3 input channels \(N, 3, H, W\), got shape \(1, 11, 9, 3\)"),
        (np.zeros((1, 3, 11, 9), np.float64), "the model is float32, got an input of dtype float64"),
        (np.zeros((1, 3, 11, 9), np.float16), "the model is float32, got an input of dtype float16"),
        (np.zeros((1, 3, 11, 9), np.int32), "the model is float32, got an input of dtype int32"),
        (np.zeros((1, 3, 0, 9), np.float32), r"expected a non-empty \(N, C, H, W\) array, got shape \(1, 3, 0, 9\)"),
        ([[[[0.0]]]], "expected a numpy.ndarray, got list"),
    ],
    ids=["rank", "channels", "float64", "float16", "int32", "empty", "list"],
)
def test_bad_inputs_raise_input_error_naming_the_parameter(framework, model, x, message):
    backend = get_backend(framework)
    for call in (backend.forward, backend.activations):
        with pytest.raises(InputError, match="^x_nchw: " + message):
            call(model, x)


def test_the_smallest_input_runs(framework, model):
    """Every stride-2 stage maps a 1x1 map to 1x1: the smallest input is legal and gives finite logits."""
    logits = get_backend(framework).forward(model, np.ones((1, 3, 1, 1), np.float32))
    assert logits.shape == (1, 5) and np.isfinite(logits).all()


def test_an_input_too_small_for_a_flatten_is_refused_before_the_framework_sees_it(framework):
    backend = get_backend(framework)
    net = backend.build(InceptionNet(), seed=0)
    with pytest.raises(InputError, match=r"x_nchw: inception_mnist needs 28x28 inputs .* got shape \(1, 1, 27, 28\)"):
        backend.forward(net, np.zeros((1, 1, 27, 28), np.float32))


def test_unknown_dtype_is_refused_at_build(framework):
    with pytest.raises(ValueError, match="dtype"):
        get_backend(framework).build(SMALL, seed=0, dtype="float16")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_export_load_export_is_bit_exact(framework, dtype):
    backend = get_backend(framework)
    weights = randomize_batchnorm(backend.export_weights(backend.build(SMALL, seed=3, dtype=dtype)), seed=4)
    target = backend.build(SMALL, seed=0, dtype=dtype)
    backend.load_weights(target, weights)
    assert same_bits(backend.export_weights(target), weights)


def test_exported_arrays_are_fresh_copies(framework, model):
    backend = get_backend(framework)
    first = backend.export_weights(model)
    reference = {k: v.copy() for k, v in first.items()}
    for value in first.values():
        value[...] = 7
    assert same_bits(backend.export_weights(model), reference)


def test_read_only_arrays_load(framework):
    """safetensors hands out read-only arrays; loading must not need to write to them."""
    backend = get_backend(framework)
    weights = good_weights(framework)
    for value in weights.values():
        value.flags.writeable = False
    target = backend.build(SMALL, seed=0)
    backend.load_weights(target, weights)
    assert same_bits(backend.export_weights(target), weights)


def test_build_is_deterministic_per_seed_and_differs_across_seeds(framework):
    backend = get_backend(framework)
    first, again, other = (backend.export_weights(backend.build(SMALL, seed=s)) for s in (11, 11, 12))
    assert same_bits(first, again)
    assert not np.array_equal(first["stem.conv.weight"], other["stem.conv.weight"])
