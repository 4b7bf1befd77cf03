"""Unit tests of the Keras 3 (TensorFlow) Inception family: d2l's Inception block and GoogLeNet,
the tutorials' InceptionA block and MNIST net.

Float64 outputs are checked against ``parity.reference`` (numpy, from the spec and the
canonical weights only), and the numerics that Keras would get wrong by default are pinned one by one: max-pool
padding that must never win a max, average-pool padding that must count, the channel
axis of the concatenation, and the order of the flatten before the dense layer.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import reference
from parity.specs import GoogLeNet, Inception, InceptionA, InceptionNet
from parity.weights import cast
from support import max_relative_diff

pytest.importorskip("tensorflow")
import keras  # noqa: E402

from impl_tf import backend, inception  # noqa: E402

GOOGLENET = GoogLeNet()
INCEPTION_NET = InceptionNet()
# Small blocks with every channel count different, so a swapped path or axis shows.
INCEPTION = Inception(in_channels=5, c1=2, c2=(3, 4), c3=(2, 3), c4=6)
INCEPTION_A = InceptionA(in_channels=6)
SPECS = {"googlenet": GOOGLENET, "inception_net": INCEPTION_NET, "inception": INCEPTION, "inception_a": INCEPTION_A}
INPUTS = {
    "googlenet": (2, 1, 33, 29),
    "inception_net": (2, 1, 28, 28),
    "inception": (2, 5, 9, 7),
    "inception_a": (2, 6, 9, 7),
}

D2L_SUMMARY = [
    "Sequential output shape:\t (1, 24, 24, 64)",
    "Sequential output shape:\t (1, 12, 12, 192)",
    "Sequential output shape:\t (1, 6, 6, 480)",
    "Sequential output shape:\t (1, 3, 3, 832)",
    "Sequential output shape:\t (1, 1024)",
    "Dense output shape:\t (1, 10)",
]


def randn(shape, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def with_random_biases(weights, seed=1):
    """Keras initialises biases to zero, which would hide a dropped or misplaced bias."""
    rng = np.random.default_rng(seed)
    return {
        k: rng.normal(0, 0.1, v.shape).astype(v.dtype) if k.endswith(".bias") else v.copy() for k, v in weights.items()
    }


def build_loaded(spec, dtype="float64", seed=0):
    model = backend.build(spec, seed=seed, dtype=dtype)
    backend.load_weights(model, with_random_biases(backend.export_weights(model), seed + 1))
    return model


@pytest.fixture(scope="module")
def googlenet64():
    return build_loaded(GOOGLENET, "float64")


# --- names, tables and weight transfer ---


def rows(spec) -> dict[str, tuple[str, str]]:
    """{canonical name: (native name, transform)} of ``spec``'s table."""
    return {canonical: (native, transform) for canonical, native, _, transform in backend.table(spec).rows(spec)}


def test_tables_map_canonical_paths_to_keras_paths():
    googlenet, net = rows(GOOGLENET), rows(INCEPTION_NET)
    assert googlenet["b1.conv.weight"] == ("net/b1/conv/kernel", "OIHW->HWIO")
    assert googlenet["b2.conv2.bias"] == ("net/b2/conv2/bias", "identity")
    # The Inception block's paths keep the book's names p1_1 .. p4_2.
    assert googlenet["b4.3.b3_2.weight"] == ("net/b4/inception3/p3_2/kernel", "OIHW->HWIO")
    assert googlenet["head.fc.weight"] == ("net/fc/kernel", "(out,in)->(in,out)")
    assert net["incep2.branch_pool.weight"] == ("net/incep2/branch_pool/kernel", "OIHW->HWIO")
    assert net["conv1.weight"][0] == "net/conv1/kernel" and net["fc.bias"][0] == "net/fc/bias"
    assert rows(INCEPTION)["b4_2.weight"][0] == "p4_2/kernel" and rows(INCEPTION)["b1_1.bias"][0] == "p1_1/bias"
    assert rows(INCEPTION_A)["branch5x5_2.bias"][0] == "branch5x5_2/bias"
    # AnyNet keeps its table: its head.fc is inside a "head" Sequential, GoogLeNet's is not.
    regnet = parity.get_spec("regnetx32")
    assert backend.table(regnet) is backend.ANYNET_TABLE and rows(regnet)["head.fc.weight"][0] == "net/head/fc/kernel"
    assert all(backend.table(spec) is backend.INCEPTION_TABLE for spec in SPECS.values())
    assert backend.ANYNET_TABLE.flatten_order == backend.INCEPTION_TABLE.flatten_order == "HWC"


def test_dense_after_flatten_gets_the_permuted_canonical_weight():
    """Keras flattens (H, W, C); the canonical fc weight's input axis is PyTorch's (C, H, W)."""
    weights = with_random_biases(backend.export_weights(backend.build(INCEPTION_NET)))
    model = backend.build(INCEPTION_NET, seed=1)
    backend.load_weights(model, weights)
    kernel = model.net.get_layer("fc").kernel.numpy()
    canonical = weights["fc.weight"].reshape(10, 88, 4, 4)
    assert np.array_equal(kernel, canonical.transpose(2, 3, 1, 0).reshape(1408, 10))


# --- build ---


def test_googlenet_is_d2l_shaped_in_float64_with_explicit_padding_only(googlenet64):
    assert googlenet64.spec == GOOGLENET and googlenet64.built
    assert [layer.name for layer in googlenet64.net.layers] == ["b1", "b2", "b3", "b4", "b5", "fc"]
    assert [type(layer).__name__ for layer in googlenet64.net.layers[4].layers] == [
        "Inception",
        "Inception",
        "GlobalAveragePooling2D",
    ]
    layers = [layer for layer in googlenet64._flatten_layers() if not isinstance(layer, keras.layers.InputLayer)]
    assert {layer.compute_dtype for layer in layers} == {"float64"}
    assert {v.dtype for v in googlenet64.variables} == {"float64"}
    convs = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == len(GOOGLENET.layers()) - 1 and {conv.padding for conv in convs} == {"valid"}
    max_pools = [(layer.strides, layer.padding) for layer in layers if isinstance(layer, inception.PaddedMaxPool2D)]
    assert sorted(max_pools) == [(1, 1)] * 9 + [(2, 1)] * 4  # one per Inception block; after b1, b2, b3, b4
    assert not any(isinstance(layer, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D) for layer in layers)


def test_inception_net_pools_without_padding_and_builds_for_its_input_size():
    model = backend.build(INCEPTION_NET)
    pools = [layer for layer in model.net.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides, p.padding) for p in pools] == [((2, 2), (2, 2), "valid")] * 2
    assert model.net.get_layer("fc").kernel.shape == (1408, 10)


# --- numerics ---


@pytest.mark.parametrize("name", SPECS)
def test_float64_forward_matches_numpy(name, googlenet64):
    spec = SPECS[name]
    model = googlenet64 if name == "googlenet" else build_loaded(spec)
    x = randn(INPUTS[name])
    y = backend.forward(model, x)
    assert y.dtype == np.float64 and y.shape == spec.output_shape(x.shape)
    # float64 rounds ~1e-16 per operation; ~60 layers with fan-in <= 2304 stay below 1e-13.
    # 1e-12 catches any real difference: one-sided padding, a zero-padded max-pool or an
    # average pool that ignores its padding move outputs by > 1e-3.
    assert max_relative_diff(y, reference.forward(spec, backend.export_weights(model), x)) < 1e-12


def test_googlenet_float32_matches_float64(googlenet64):
    model = backend.build(GOOGLENET, dtype="float32")
    backend.load_weights(model, cast(backend.export_weights(googlenet64), "float32"))
    x = randn((2, 1, 65, 47))
    y32, y64 = backend.forward(model, x.astype(np.float32)), backend.forward(googlenet64, x)
    assert y32.dtype == np.float32
    # float32 rounds ~6e-8 per operation; measured ~1e-7 relative over GoogLeNet's 60 layers.
    # 1e-5 (the suite's float32 target) is far above that and far below a structural bug.
    assert max_relative_diff(y32, y64) < 1e-5
    assert not np.array_equal(y32.astype(np.float64), y64)


# --- the padding of the pools, the concatenation axis, the flatten order ---


@pytest.mark.parametrize("size, stride", [((6, 5), 2), ((7, 8), 2), ((5, 4), 1)])
def test_max_pool_padding_never_wins_a_max(size, stride):
    """All-negative input: a zero-padded max-pool would output 0 at every border cell."""
    x = -1 - np.random.default_rng(0).uniform(size=(1, 3, *size))
    pool = inception.PaddedMaxPool2D(3, strides=stride, padding=1, dtype="float64")
    y = np.transpose(pool(np.transpose(x, (0, 2, 3, 1))).numpy(), (0, 3, 1, 2))
    # A max picks one of its inputs: exact.
    assert np.array_equal(y, reference.max_pool(x, 3, stride, 1)) and (y < -1).all()


def test_inception_max_pool_path_on_negative_input():
    model = build_loaded(INCEPTION)
    x = -1 - np.random.default_rng(0).uniform(size=(2, 5, 6, 7))
    pooled = backend.activations(model, x)["b4_1"]
    assert np.array_equal(pooled, reference.max_pool(x, 3, 1, 1)) and (pooled < -1).all()


def test_average_pool_counts_the_padded_zeros():
    """On ones, PyTorch's count_include_pad gives 4/9 in corners, 6/9 on edges, 1 inside."""
    model = build_loaded(INCEPTION_A)
    avg = backend.activations(model, np.ones((1, 6, 5, 4)))["branch_pool.avg"]
    expected = np.ones((5, 4))
    expected[[0, -1], :] = expected[:, [0, -1]] = 6 / 9
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 4 / 9
    # A sum of nine float64 numbers and one division: within 2 units of 1e-16.
    assert np.allclose(avg, expected[None, None], rtol=1e-15, atol=0)


def test_inception_concatenates_relu_paths_on_channels_in_order():
    acts = backend.activations(build_loaded(INCEPTION), randn((2, 5, 6, 7)))
    paths = [np.maximum(acts[name], 0) for name in ("b1_1", "b2_2", "b3_2", "b4_2")]
    assert acts["output"].shape == (2, 2 + 4 + 3 + 6, 6, 7)
    assert np.array_equal(acts["output"], np.concatenate(paths, axis=1))


def test_inception_a_concatenates_branches_on_channels_in_order():
    acts = backend.activations(build_loaded(INCEPTION_A), randn((2, 6, 6, 7)))
    branches = [acts[name] for name in ("branch1x1", "branch5x5_2", "branch3x3_3", "branch_pool")]
    assert [b.shape[1] for b in branches] == [16, 24, 24, 24]
    assert np.array_equal(acts["output"], np.concatenate(branches, axis=1))


def test_inception_net_logits_are_the_chw_flatten_times_the_canonical_fc():
    model = build_loaded(INCEPTION_NET)
    weights = backend.export_weights(model)
    acts = backend.activations(model, randn((2, 1, 28, 28)))
    features = acts["incep2"].reshape(2, -1)  # NCHW flattened in (C, H, W) order, as in PyTorch
    # One dot product of 1408 float64 terms, summed in another order: ~1e-15.
    assert max_relative_diff(acts["fc"], features @ weights["fc.weight"].T + weights["fc.bias"]) < 1e-13


# --- d2l layer summaries ---


def test_googlenet_summary_reproduces_the_d2l_book(googlenet64):
    rows = backend.layer_summary(googlenet64, (1, 96, 96, 1))
    assert [row.d2l_line() for row in rows] == D2L_SUMMARY
    assert [row.group for row in rows] == ["b1", "b2", "b3", "b4", "b5", "head"]
    counts = dict.fromkeys(["b1", "b2", "b3", "b4", "b5", "head"], 0)
    for p in parity.schema(GOOGLENET).values():
        counts[p.name.split(".")[0]] += int(np.prod(p.shape))
    assert [row.params for row in rows] == list(counts.values())
    assert sum(counts.values()) == parity.count_parameters(GOOGLENET)[0]


def test_inception_net_summary_is_its_flat_sequential():
    rows = backend.layer_summary(backend.build(INCEPTION_NET), (1, 28, 28, 1))
    assert [(row.layer, row.shape, row.group) for row in rows] == [
        ("Conv2D", (1, 24, 24, 10), "conv1"),
        ("MaxPooling2D", (1, 12, 12, 10), "conv1"),
        ("Activation", (1, 12, 12, 10), "conv1"),
        ("InceptionA", (1, 12, 12, 88), "incep1"),
        ("Conv2D", (1, 8, 8, 20), "conv2"),
        ("MaxPooling2D", (1, 4, 4, 20), "conv2"),
        ("Activation", (1, 4, 4, 20), "conv2"),
        ("InceptionA", (1, 4, 4, 88), "incep2"),
        ("Flatten", (1, 1408), "fc"),
        ("Dense", (1, 10), "fc"),
    ]
    assert rows[-1].d2l_line() == "Dense output shape:\t (1, 10)"
    assert sum(row.params for row in rows) == parity.count_parameters(INCEPTION_NET)[0]


@pytest.mark.parametrize(
    "name, line",
    [
        ("inception", "Inception output shape:\t (1, 9, 7, 15)"),
        ("inception_a", "InceptionA output shape:\t (1, 9, 7, 88)"),
    ],
)
def test_block_summary_is_one_row(name, line):
    spec = SPECS[name]
    (row,) = backend.layer_summary(backend.build(spec), (1, 9, 7, spec.in_channels))
    assert row.d2l_line() == line and row.group == "block" and row.params == parity.count_parameters(spec)[0]


# --- activations and inputs ---


@pytest.mark.parametrize("name", SPECS)
def test_activations_follow_the_spec_and_end_in_the_output(name, googlenet64):
    spec = SPECS[name]
    model = googlenet64 if name == "googlenet" else build_loaded(spec)
    x = randn(INPUTS[name])
    acts = backend.activations(model, x)
    assert list(acts) == spec.activation_points()
    assert all(a.dtype == np.float64 for a in acts.values())
    # Eager layer by layer vs one graph: the same kernels, fused or ordered differently at most.
    assert max_relative_diff(list(acts.values())[-1], backend.forward(model, x)) < 1e-14


def test_googlenet_activation_shapes(googlenet64):
    acts = backend.activations(googlenet64, randn((2, 1, 96, 96)))
    expected = {
        "b1.conv": (2, 64, 48, 48),
        "b1": (2, 64, 24, 24),
        "b2": (2, 192, 12, 12),
        "b3.0.b4_1": (2, 192, 12, 12),
    }
    expected |= {
        "b3.1": (2, 480, 12, 12),
        "b3": (2, 480, 6, 6),
        "b4": (2, 832, 3, 3),
        "b5": (2, 1024),
        "head.fc": (2, 10),
    }
    assert {key: acts[key].shape for key in expected} == expected
    assert (acts["b1"] >= 0).all() and (acts["b3.0.b1_1"] < 0).any()  # points before a ReLU keep their sign


def test_inception_net_takes_its_input_size_only():
    model = backend.build(INCEPTION_NET)
    for run in (backend.forward, backend.activations):
        with pytest.raises(parity.InputError, match="28x28"):
            run(model, randn((1, 1, 32, 32), "float32"))
    with pytest.raises(parity.InputError):
        backend.layer_summary(model, (1, 32, 32, 1))


def test_googlenet_forward_is_traced_once_for_every_call(googlenet64):
    """One graph serves every call: a retrace per call (a Python value in the signature, a new
    variable list) would rebuild the graph each time."""
    graph = backend._forward_graph(googlenet64, train=False)
    for shape in ((2, 1, 96, 96), (1, 1, 96, 96), (2, 1, 96, 96)):
        backend.forward(googlenet64, randn(shape))
    assert graph.experimental_get_tracing_count() == 1
