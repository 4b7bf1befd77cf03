"""Unit tests of the Keras 3 (TensorFlow) backend on d2l's AnyNet, ResNeXt block and NiN: native
names, dtypes, modes, summaries, and the Keras pitfalls it avoids ('same' padding, default
BatchNorm settings, float32 Sequential containers, grouped convolutions through XLA).

Eval-mode outputs are checked against ``parity.reference`` (numpy, from the spec and the
canonical weights only), so the Keras model is proven to compute the spec's function.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import parity
from parity import reference
from parity.specs import AnyNet, NiN, ResNeXtBlock, Stage
from parity.weights import cast, randomize_batchnorm
from support import max_relative_diff, randn

pytest.importorskip("tensorflow")
import keras  # noqa: E402

import impl_tf  # noqa: E402
from impl_tf import anynet, backend, classic  # noqa: E402

REGNETX32 = parity.get_spec("regnetx32")
NIN = NiN()
# Small and quick to build: three input channels, two stages, a bottleneck, 2 and 3 groups.
SMALL = AnyNet(
    name="small_anynet",
    stem_width=8,
    stages=(Stage(depth=1, width=16, group_width=8, bot_mul=1), Stage(depth=2, width=24, group_width=4, bot_mul=0.5)),
    num_classes=5,
    in_channels=3,
)
BLOCKS = {
    "projection": ResNeXtBlock(in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2),
    "identity": ResNeXtBlock(in_channels=24, num_channels=24, group_width=8, bot_mul=1, conv_bias=False, bn_eps=1e-3),
}
D2L_SUMMARY = [
    "Sequential output shape:\t (1, 48, 48, 32)",
    "Sequential output shape:\t (1, 24, 24, 32)",
    "Sequential output shape:\t (1, 12, 12, 80)",
    "Sequential output shape:\t (1, 10)",
]


# d2l's NiN summary, TensorFlow tab, for a (1, 224, 224, 1) input.
NIN_SUMMARY = [
    ("Sequential", (1, 54, 54, 96), "blocks.0"),
    ("MaxPooling2D", (1, 26, 26, 96), "pools.0"),
    ("Sequential", (1, 26, 26, 256), "blocks.1"),
    ("MaxPooling2D", (1, 12, 12, 256), "pools.1"),
    ("Sequential", (1, 12, 12, 384), "blocks.2"),
    ("MaxPooling2D", (1, 5, 5, 384), "pools.2"),
    ("Dropout", (1, 5, 5, 384), "dropout"),
    ("Sequential", (1, 5, 5, 10), "blocks.3"),
    ("GlobalAveragePooling2D", (1, 10), "head"),
    ("Flatten", (1, 10), "head"),
]


def build_randomized(spec, dtype="float32", seed=0):
    """A model whose BatchNorm parameters and statistics are far from their fresh 1/0 values."""
    model = backend.build(spec, seed=seed, dtype=dtype)
    backend.load_weights(model, randomize_batchnorm(backend.export_weights(model), seed=seed + 100))
    return model


def state(model) -> dict[str, bytes]:
    """Every variable the model holds (moving statistics included), as bytes."""
    return {variable.path: variable.numpy().tobytes() for variable in model.variables}


# --- the name table and weight transfer ---


def test_table_maps_canonical_paths_to_keras_paths():
    rows = {
        canonical: (native, transform) for canonical, native, _, transform in backend.table(REGNETX32).rows(REGNETX32)
    }
    assert rows["stem.conv.weight"] == ("net/stem/conv/kernel", "OIHW->HWIO")
    # Stages are named from 1, as d2l's f'stage{i+1}'; blocks from 0.
    assert rows["stages.1.blocks.0.conv2.weight"] == ("net/stage2/block0/conv2/kernel", "OIHW->HWIO")
    assert rows["stages.1.blocks.5.bn3.running_var"] == ("net/stage2/block5/bn3/moving_variance", "identity")
    assert rows["head.fc.weight"] == ("net/head/fc/kernel", "(out,in)->(in,out)")
    block = {
        canonical: native for canonical, native, _, _ in backend.table(BLOCKS["projection"]).rows(BLOCKS["projection"])
    }
    assert block["bn4.weight"] == "bn4/gamma"
    nin = {canonical: native for canonical, native, _, _ in backend.table(NIN).rows(NIN)}
    assert (
        nin["blocks.0.conv1.weight"] == "net/block0/conv1/kernel"
        and nin["blocks.3.conv3.bias"] == "net/block3/conv3/bias"
    )


# --- build ---


def test_build_holds_spec_and_dtype_and_every_layer_computes_in_it():
    model = backend.build(SMALL, dtype="float64")
    assert model.spec == SMALL and model.dtype == "float64" and model.built
    assert len(model.variables) == len(parity.schema(SMALL))
    assert {v.dtype for v in model.variables} == {"float64"}
    # A float32 layer anywhere (a Sequential container included) would cast float64 down.
    layers = [layer for layer in model._flatten_layers() if not isinstance(layer, keras.layers.InputLayer)]
    assert {layer.compute_dtype for layer in layers} == {"float64"}


def test_d2l_model_class_builds_the_named_spec():
    model = anynet.RegNetX32(dtype="float64")
    model.build((None, None, None, 1))
    assert model.spec == REGNETX32
    assert [layer.name for layer in model.net.layers] == ["stem", "stage1", "stage2", "head"]
    assert [type(layer).__name__ for layer in model.net.layers[-1].layers] == ["GlobalAveragePooling2D", "Dense"]
    assert len(model.variables) == len(parity.schema(REGNETX32))


def test_regnetx32_takes_a_class_count():
    model = anynet.RegNetX32(num_classes=7)
    model.build((None, None, None, 1))
    assert model.spec.num_classes == 7 and model.net.get_layer("head").get_layer("fc").units == 7


def test_block_uses_spec_groups_bias_padding_and_batchnorm_settings():
    spec = BLOCKS["identity"]
    model = backend.build(spec)
    assert isinstance(model.conv2, anynet.GroupedConv2D) and model.conv2.groups == spec.groups == 3
    assert model.conv2_pad.padding == ((1, 1), (1, 1)) and model.conv2.padding == "valid"
    assert not model.conv1.use_bias and model.conv4 is None
    # Keras' momentum is the weight of the old statistic: 1 - PyTorch's 0.1.
    assert all(bn.epsilon == 1e-3 and bn.momentum == pytest.approx(0.9) for bn in (model.bn1, model.bn2, model.bn3))


def test_no_layer_uses_same_padding_or_keras_batchnorm_defaults():
    model = backend.build(REGNETX32)
    layers = list(model._flatten_layers())
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(convs) == sum(isinstance(layer, parity.specs.Conv) for layer in REGNETX32.layers())
    assert {conv.padding for conv in convs} == {"valid"} and {conv.use_bias for conv in convs} == {True}
    assert len(bns) == sum(isinstance(layer, parity.specs.BatchNorm) for layer in REGNETX32.layers())
    assert all(bn.epsilon == 1e-5 and bn.momentum == pytest.approx(0.9) for bn in bns)


def test_grouped_conv_equals_keras_grouped_conv2d():
    x = randn((2, 9, 11, 12), "float64")
    grouped = anynet.GroupedConv2D(6, 3, strides=2, groups=3, dtype="float64")
    grouped.build(x.shape)
    plain = keras.layers.Conv2D(6, 3, strides=2, groups=3, dtype="float64")
    plain.build(x.shape)
    plain.set_weights(grouped.get_weights())
    # Same sums of the same products; only XLA's summation order may differ (~1e-16 relative).
    assert max_relative_diff(grouped(x).numpy(), plain(x).numpy()) < 1e-13


# --- numerics ---


def test_float64_really_computes_in_float64():
    x = randn((2, 3, 37, 53), "float64")
    m64 = build_randomized(SMALL, "float64")
    m32 = backend.build(SMALL, dtype="float32")
    backend.load_weights(m32, cast(backend.export_weights(m64), "float32"))
    y64, y32 = backend.forward(m64, x), backend.forward(m32, x.astype(np.float32))
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    # float32 rounds ~6e-8 relative per operation, over ~15 layers with fan-in up to 216:
    # 1e-4 relative is far above that and far below the O(1) change of a structural bug.
    assert max_relative_diff(y32, y64) < 1e-4
    # A float64 model that secretly computed in float32 would agree with it to the bit.
    assert not np.array_equal(y32.astype(np.float64), y64)


@pytest.mark.parametrize("shape", [(2, 3, 37, 53), (1, 3, 32, 32)], ids=["odd", "square"])
def test_anynet_matches_numpy_reference(shape):
    model = build_randomized(SMALL, "float64")
    x = randn(shape, "float64")
    expected = reference.forward(SMALL, backend.export_weights(model), x)
    # float64 with fan-in <= 216 rounds at ~1e-15 relative; 1e-12 catches any real difference
    # (one-sided 'same' padding or a wrong epsilon moves logits by >1e-4).
    assert max_relative_diff(backend.forward(model, x), expected) < 1e-12


def test_regnetx32_float32_matches_float64_numpy_reference():
    model = build_randomized(REGNETX32, "float32")
    x = randn((2, 1, 37, 53))
    expected = reference.forward(REGNETX32, cast(backend.export_weights(model), "float64"), x.astype(np.float64))
    # The suite's float32 parity target; float32 rounding stays near 1e-6 relative here.
    assert max_relative_diff(backend.forward(model, x), expected) < 1e-5


@pytest.mark.parametrize("name", BLOCKS)
def test_block_matches_numpy_reference(name):
    spec = BLOCKS[name]
    model = build_randomized(spec, "float64")
    x = randn((2, spec.in_channels, 13, 10), "float64")
    y = backend.forward(model, x)
    assert y.shape == spec.output_shape(x.shape)
    # Same float64 rounding argument as for the AnyNet reference.
    assert max_relative_diff(y, reference.forward(spec, backend.export_weights(model), x)) < 1e-12


# --- forward never changes the model ---


def test_train_forward_uses_batch_stats_and_changes_nothing():
    model = build_randomized(SMALL)
    before = state(model)
    x = randn((4, 3, 37, 53))
    y_train = backend.forward(model, x, train=True)
    y_eval = backend.forward(model, x, train=False)
    backend.activations(model, x)
    backend.layer_summary(model, (1, 32, 32, 3))
    assert state(model) == before
    # Randomised running statistics are far from this batch's: the outputs differ by O(1).
    assert np.abs(y_train - y_eval).max() > 1e-2
    assert np.array_equal(backend.forward(model, x, train=True), y_train)


def test_train_forward_normalises_with_the_batch_statistics():
    """Train mode equals eval mode with every BatchNorm's running statistics set to its own
    batch's mean and biased variance, found layer by layer."""
    spec = BLOCKS["identity"]
    model = build_randomized(spec, "float64")
    x = randn((3, spec.in_channels, 7, 9), "float64")
    y_train = backend.forward(model, x, train=True)
    weights = backend.export_weights(model)
    for i in (1, 2, 3):
        conv = backend.activations(model, x)[f"conv{i}"]
        weights |= {f"bn{i}.running_mean": conv.mean(axis=(0, 2, 3)), f"bn{i}.running_var": conv.var(axis=(0, 2, 3))}
        backend.load_weights(model, weights)
    # float64 rounding only (~1e-15): the statistics are the same sums, taken in numpy.
    assert max_relative_diff(backend.forward(model, x), y_train) < 1e-12


# --- input errors ---


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (32, 32, 3)], ids=["nchw", "rank"])
def test_layer_summary_rejects_non_native_shapes(shape):
    with pytest.raises(parity.InputError):
        backend.layer_summary(backend.build(SMALL), shape)


# --- d2l layer summary and activations ---


def test_layer_summary_reproduces_the_d2l_book():
    rows = backend.layer_summary(backend.build(REGNETX32), (1, 96, 96, 1))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["stem", "stages.0", "stages.1", "head"]
    assert [row.shape for row in rows] == [(1, 48, 48, 32), (1, 24, 24, 32), (1, 12, 12, 80), (1, 10)]
    assert sum(row.params for row in rows) == parity.count_parameters(REGNETX32)[0] == 179_290
    counts = dict.fromkeys([row.group for row in rows], 0)
    for p in parity.schema(REGNETX32).values():
        parts = p.name.split(".")
        counts[".".join(parts[:2]) if parts[0] == "stages" else parts[0]] += int(np.prod(p.shape)) if p.trainable else 0
    assert [row.params for row in rows] == list(counts.values())


def test_layer_summary_of_a_block_is_one_row():
    spec = BLOCKS["projection"]
    (row,) = backend.layer_summary(backend.build(spec), (1, 9, 11, 16))
    assert row.d2l_line() == "ResNeXtBlock output shape:\t (1, 5, 6, 24)"
    assert row.group == "block" and row.params == parity.count_parameters(spec)[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_follow_the_spec_and_end_in_the_logits(dtype):
    model = build_randomized(SMALL, dtype)
    x = randn((2, 3, 37, 53), dtype)
    acts = backend.activations(model, x)
    assert list(acts) == SMALL.activation_points()
    assert acts["stem"].shape == (2, 8, 19, 27) and acts["head.pool"].shape == (2, 24)
    assert all(a.dtype == np.dtype(dtype) for a in acts.values())
    # Eager layer by layer vs one graph: the same kernels, but graph rewrites may fuse
    # differently, so allow a few units of rounding (float32 eps 1.2e-7, float64 2.2e-16).
    tolerance = {"float32": 1e-6, "float64": 1e-14}[dtype]
    assert max_relative_diff(acts["head.fc"], backend.forward(model, x)) < tolerance


@pytest.mark.parametrize("name", BLOCKS)
def test_block_activations_end_in_the_output(name):
    spec = BLOCKS[name]
    model = build_randomized(spec)
    x = randn((2, spec.in_channels, 13, 10))
    acts = backend.activations(model, x)
    assert list(acts) == spec.activation_points() and list(acts)[-1] == "output"
    # Same eager-vs-graph rounding argument as for the AnyNet logits.
    assert max_relative_diff(acts["output"], backend.forward(model, x)) < 1e-6


# --- the Keras backend pin ---


def test_impl_tf_pins_keras_to_tensorflow_over_the_users_setting():
    code = "import impl_tf, keras; print(keras.config.backend())"
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "tensorflow"


def test_impl_tf_refuses_keras_imported_with_another_backend(monkeypatch):
    class OtherKeras:
        class config:
            @staticmethod
            def backend():
                return "jax"

    monkeypatch.setitem(sys.modules, "keras", OtherKeras)
    with pytest.raises(ImportError, match="'jax' backend"):
        impl_tf._require_tensorflow_keras()


# --- NiN ---


def test_nin_summary_reproduces_the_d2l_book():
    rows = backend.layer_summary(backend.build(NIN), (1, 224, 224, 1))
    assert [(row.layer, row.shape, row.group) for row in rows] == NIN_SUMMARY
    assert list(dict.fromkeys(row.group for row in rows)) == NIN.summary_groups()
    assert rows[0].d2l_line() == "Sequential output shape:\t (1, 54, 54, 96)"
    assert sum(row.params for row in rows) == parity.count_parameters(NIN)[0] == 1_992_166


def test_nin_is_d2l_shaped_with_explicit_symmetric_padding():
    model = backend.build(NIN)
    assert isinstance(model, classic.NiN) and model.spec == NIN
    names = ["block0", "pool0", "block1", "pool1", "block2", "pool2", "dropout", "block3", "avg_pool", "flatten"]
    assert [layer.name for layer in model.net.layers] == names
    block1 = model.net.get_layer("block1")
    assert [layer.name for layer in block1.layers] == [
        "conv1_pad",
        "conv1",
        "relu1",
        "conv2",
        "relu2",
        "conv3",
        "relu3",
    ]
    assert block1.get_layer("conv1_pad").padding == ((2, 2), (2, 2))
    assert "conv1_pad" not in [layer.name for layer in model.net.get_layer("block0").layers]  # padding 0
    convs = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 12 and {conv.padding for conv in convs} == {"valid"}
    assert model.net.get_layer("dropout").rate == NIN.dropout


def test_nin_train_forward_drops_and_changes_nothing():
    """Train mode makes the dropout drop (no parity check runs NiN in train mode); the model is unchanged."""
    model = backend.build(NIN)
    before = state(model)
    x = randn((2, 1, 67, 75))
    assert not np.array_equal(backend.forward(model, x, train=True), backend.forward(model, x))
    assert state(model) == before


# --- beside PyTorch ---


def test_torchs_compiler_stack_loads_after_impl_tf():
    """torch._dynamo (triton's native library), which torchvision, torch.onnx and torch.optim load on first
    use, kills the process when first loaded after TensorFlow; impl_tf loads it first where torch is installed."""
    pytest.importorskip("torch")
    code = "import impl_tf.backend, torch._dynamo, torchvision; print('loaded')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "loaded" in result.stdout, (result.returncode, result.stderr[-2000:])
