"""The backend contract, checked the same way for every framework and every kind of spec.

Per framework x spec: weights go out and back in through the canonical form bit for bit,
the name table names exactly the tensors the native model holds, a build is deterministic
for its seed, forward and activations follow the spec's graph, and inputs the spec cannot
take raise InputError. Per framework, on a small AnyNet: loading is strict and changes
nothing on error, and bad inputs raise InputError naming ``x_nchw`` before any framework
sees them.

Models are built once per module (JAX and Keras compile per spec and dtype) and run on the
smallest input each spec accepts.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from parity import get_backend, reference
from parity.backends import FRAMEWORKS, InputError
from parity.harness import native_input_shape
from parity.specs import (
    INPUT,
    VGG,
    AlexNet,
    AnyNet,
    DenseNet,
    Inception,
    InceptionA,
    Residual,
    ResidualBlock,
    ResNet,
    ResNeXtBlock,
    Stage,
    get_spec,
    infer_shapes,
    spatial_size_problem,
)
from parity.weights import WeightsError, randomize_batchnorm, randomize_biases, schema
from support import assert_same_bits

SPECS = {
    "regnetx32": get_spec("regnetx32"),
    "googlenet": get_spec("googlenet"),
    "inception_mnist": get_spec("inception_mnist"),
    "nin": get_spec("nin"),
    # a projection block with a bottleneck and four groups: conv4/bn4 and a grouped conv
    "resnext_block": ResNeXtBlock(
        in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2
    ),
    "inception_block": Inception(in_channels=12, c1=4, c2=(6, 8), c3=(2, 4), c4=4),
    "inception_a_block": InceptionA(in_channels=10),
    "lenet": get_spec("lenet"),
    "bnlenet": get_spec("bnlenet"),
    # the book's convolutions with a small fc6 (256 and 512 inputs) and 64-unit fc6 and fc7
    "alexnet": AlexNet(input_size=(67, 67), head_width=64),
    "vgg": VGG(input_size=(32, 32), head_width=64),
    # d2l's ResNet and DenseNet, narrower and shallower than the book's (the same kinds of layers: identity
    # and projection residuals; dense blocks and a transition), so that each framework compiles small graphs
    "resnet": ResNet(name="small_resnet", arch=((1, 64), (1, 128))),
    "densenet": DenseNet(name="small_densenet", num_channels=16, growth_rate=8, arch=(2, 2)),
    "residual_mnist": get_spec("residual_mnist"),
    # d2l's projection shortcut: a strided 1x1 conv3 without BatchNorm
    "residual": Residual(8, 16, use_1x1conv=True, stride=2),
    "residual_block": ResidualBlock(6),
}
DTYPES = ("float32", "float64")

SMALL = AnyNet(
    name="small_anynet",
    stem_width=8,
    stages=(Stage(depth=1, width=16, group_width=8, bot_mul=1), Stage(depth=2, width=24, group_width=4, bot_mul=0.5)),
    num_classes=5,
    in_channels=3,
)
OTHER = AnyNet(
    name="other_anynet",
    stem_width=8,
    stages=(Stage(depth=1, width=16, group_width=16, bot_mul=1),),
    num_classes=5,
    in_channels=3,
)


def smallest_size(spec) -> int:
    """The smallest square input size ``spec`` takes (its one size, for a net with a flatten)."""
    return next(size for size in range(1, 1024) if spatial_size_problem(spec, size, size) is None)


def build(framework: str, spec, seed: int = 0, dtype: str = "float32"):
    """A fresh native model: every backend builds every spec of the grid."""
    return get_backend(framework).build(spec, seed=seed, dtype=dtype)


# --- the native tensors, read with each framework's own API ---
# Integer tensors are counters and RNG state, not weights: torch's BatchNorm num_batches_tracked,
# the state of a Keras Dropout's SeedGenerator.


def torch_tensors(model) -> dict[str, tuple[int, ...]]:
    return {key: tuple(t.shape) for key, t in model.state_dict().items() if t.is_floating_point()}


def jax_tensors(model) -> dict[str, tuple[int, ...]]:
    """Flax variables as ``module path/collection/leaf``, the names the jax table uses."""
    from flax.traverse_util import flatten_dict

    flat = flatten_dict(model.variables)
    return {
        "/".join((*path, collection, leaf)): tuple(value.shape) for (collection, *path, leaf), value in flat.items()
    }


def tf_tensors(model) -> dict[str, tuple[int, ...]]:
    """Keras variables by path relative to the model."""
    prefix = f"{model.name}/"
    return {v.path.removeprefix(prefix): tuple(v.shape) for v in model.variables if "float" in str(v.dtype)}


def mxnet_tensors(model) -> dict[str, tuple[int, ...]]:
    return {key: tuple(param.data().shape) for key, param in model.collect_params().items()}  # data(): none deferred


NATIVE_TENSORS = {"torch": torch_tensors, "jax": jax_tensors, "tf": tf_tensors, "mxnet": mxnet_tensors}


@pytest.fixture(scope="module", params=FRAMEWORKS)
def framework(request):
    return request.param


@pytest.fixture(scope="module", params=list(SPECS))
def spec(request):
    return SPECS[request.param]


@pytest.fixture(scope="module")
def pristine():
    """pristine(framework, spec, seed, dtype) -> a model built once per module; tests only read it.

    pytest runs the tests grouped by the module-scoped ``framework`` and ``spec``: when the next
    group starts, the previous group's models of seed 1 and float64 are dropped, so that AlexNet's
    and VGG's dense layers are not all held at once; the float32 seed-0 models stay for the module
    (the input-size test reads them)."""
    cache = {}

    def get(framework, spec, seed=0, dtype="float32"):
        key = (framework, spec, seed, dtype)
        if key not in cache:
            for old in [old for old in cache if old[:2] != (framework, spec) and old[2:] != (0, "float32")]:
                del cache[old]
            cache[key] = build(framework, spec, seed, dtype)
        return cache[key]

    return get


def random_input(spec, dtype="float32", batch=2) -> np.ndarray:
    size = smallest_size(spec)
    return np.random.default_rng(0).standard_normal((batch, spec.in_channels, size, size)).astype(dtype)


# --- every framework x spec ---


@pytest.mark.parametrize("dtype", DTYPES)
def test_export_load_export_is_bit_exact(framework, spec, pristine, dtype):
    """Weights (BatchNorm and biases randomised away from their constant starts) exported, loaded
    into a fresh model of another seed and exported again are the same bits, names and dtypes."""
    backend = get_backend(framework)
    exported = backend.export_weights(pristine(framework, spec, 0, dtype))
    weights = randomize_biases(randomize_batchnorm(exported, seed=1), seed=2)
    target = build(framework, spec, seed=1, dtype=dtype)
    backend.load_weights(target, weights)
    again = backend.export_weights(target)
    assert list(again) == list(schema(spec))
    assert all(value.dtype == np.dtype(dtype) for value in again.values())
    assert_same_bits(again, weights)


def test_every_activation_point_equals_the_numpy_reference_in_float64(framework, spec, pristine):
    """With BatchNorm tensors and biases randomised, every activation point and the output equal
    ``parity.reference`` evaluating the spec's graph. Float64 rounding through these nets stays near
    1e-15 of a point's scale; the bound is the suite's float64 1e-9 of that scale, and a wrong op,
    padding or layout moves a point by a sizeable fraction of it."""
    backend = get_backend(framework)
    weights = randomize_biases(randomize_batchnorm(backend.export_weights(pristine(framework, spec)), 3), 4)
    weights = {name: value.astype(np.float64) for name, value in weights.items()}
    model = build(framework, spec, seed=0, dtype="float64")
    backend.load_weights(model, weights)
    x = random_input(spec, "float64")
    acts = backend.activations(model, x)
    known = {INPUT: x}
    for point in spec.activation_points():
        expected = reference.evaluate(spec, weights, known, point)
        known[point] = expected
        scale = max(float(np.max(np.abs(expected))), np.finfo(np.float64).tiny)
        assert np.max(np.abs(acts[point] - expected)) <= 1e-9 * scale, point
    output = reference.forward(spec, weights, x)
    assert np.max(np.abs(backend.forward(model, x) - output)) <= 1e-9 * np.max(np.abs(output))


def test_table_names_exactly_the_models_own_tensors(framework, spec, pristine):
    """Every row of ``table(spec)`` is a tensor of the native model, with its native shape, and
    the model holds no other weight."""
    model = pristine(framework, spec)
    rows = get_backend(framework).table(spec).rows(spec)
    assert [canonical for canonical, _, _, _ in rows] == list(schema(spec))
    assert {native: shape for _, native, shape, _ in rows} == NATIVE_TENSORS[framework](model)


def test_build_is_deterministic_per_seed_and_differs_across_seeds(framework, spec, pristine):
    backend = get_backend(framework)
    first = backend.export_weights(pristine(framework, spec, seed=0))
    assert_same_bits(backend.export_weights(build(framework, spec, seed=0)), first)
    other = backend.export_weights(pristine(framework, spec, seed=1))
    drawn = [name for name, p in schema(spec).items() if p.role in ("conv.weight", "dense.weight")]
    assert drawn and all(not np.array_equal(first[name], other[name]) for name in drawn)


def test_forward_and_activations_follow_the_spec_and_change_nothing(framework, spec, pristine):
    """On the smallest input: the output has the spec's shape and the model's dtype, the activation
    points are the spec's, in order, with the graph's NCHW shapes; forward, activations and the layer
    summary leave every weight as it was, and so does a training-mode forward of a net with BatchNorm."""
    backend = get_backend(framework)
    model = pristine(framework, spec)
    before = backend.export_weights(model)
    x = random_input(spec)
    y = backend.forward(model, x)
    assert y.dtype == np.float32 and y.shape == spec.output_shape(x.shape)
    acts = backend.activations(model, x)
    shapes = infer_shapes(spec.graph(), x.shape)
    assert list(acts) == spec.activation_points()
    assert {key: value.shape for key, value in acts.items()} == {key: shapes[key] for key in acts}
    # Training mode differs from eval where BatchNorm could update its running statistics; NiN's
    # dropout would draw there, and no test compares NiN in training mode.
    if any(node.op == "bn" for node in spec.graph()):
        backend.forward(model, x, train=True)
    backend.layer_summary(model, native_input_shape(framework, (1, *x.shape[1:])))
    assert_same_bits(backend.export_weights(model), before)


@pytest.mark.parametrize("name", [name for name, spec in SPECS.items() if smallest_size(spec) > 1])
def test_an_input_one_pixel_too_small_is_refused_before_the_framework_sees_it(framework, pristine, name):
    spec = SPECS[name]
    size = smallest_size(spec)
    shape = (1, spec.in_channels, size - 1, size)
    problem = spatial_size_problem(spec, size - 1, size)
    assert problem.startswith(spec.name)
    with pytest.raises(InputError, match="^" + re.escape(f"x_nchw: {problem}, got shape {shape}") + "$"):
        get_backend(framework).forward(pristine(framework, spec), np.zeros(shape, np.float32))


# --- strict loading and input checks, on a small AnyNet ---


@pytest.fixture(scope="module")
def model(framework):
    backend = get_backend(framework)
    built = backend.build(SMALL, seed=0)
    backend.load_weights(built, randomize_batchnorm(backend.export_weights(built), seed=1))
    return built


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
    assert_same_bits(backend.export_weights(model), before)


def test_weights_of_another_spec_are_refused_whole(framework, model):
    backend = get_backend(framework)
    before = backend.export_weights(model)
    with pytest.raises(WeightsError, match="weights do not fit small_anynet") as info:
        backend.load_weights(model, backend.export_weights(backend.build(OTHER, seed=0)))
    assert "missing key 'stages.1.blocks.0.conv1.weight'" in str(info.value)
    assert "'stages.0.blocks.0.conv2.weight': expected shape (16, 8, 3, 3), got (16, 16, 3, 3)" in str(info.value)
    assert_same_bits(backend.export_weights(model), before)


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


def test_unknown_dtype_is_refused_at_build(framework):
    with pytest.raises(ValueError, match="dtype"):
        get_backend(framework).build(SMALL, seed=0, dtype="float16")


def test_exported_arrays_are_fresh_copies(framework, model):
    backend = get_backend(framework)
    first = backend.export_weights(model)
    reference = {k: v.copy() for k, v in first.items()}
    for value in first.values():
        value[...] = 7
    assert_same_bits(backend.export_weights(model), reference)


def test_read_only_arrays_load(framework):
    """safetensors hands out read-only arrays; loading must not need to write to them."""
    backend = get_backend(framework)
    weights = good_weights(framework)
    for value in weights.values():
        value.flags.writeable = False
    target = backend.build(SMALL, seed=0)
    backend.load_weights(target, weights)
    assert_same_bits(backend.export_weights(target), weights)
