"""The JAX/Flax backend's naive-port variants and its structural audit.

Each variant is the faithful model with one classic porting pitfall; these tests
show that it runs, where it first departs from the faithful model given the same
canonical weights, and why (each departure is recomputed in numpy from its cause).
Compiles are the cost here, so the models are built once per module and shared.
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import reference, specs
from parity.layout import nchw_to_nhwc
from parity.weights import cast, randomize_batchnorm, schema
from support import assert_same_bits, max_relative_diff

pytest.importorskip("flax")
from impl_jax import backend, inception  # noqa: E402
from impl_jax.anynet import AvgPool2D  # noqa: E402

REGNETX32 = parity.get_spec("regnetx32")
MNIST_NET = parity.get_spec("inception_mnist")
NIN = parity.get_spec("nin")
DENSENET = parity.get_spec("densenet")
BNLENET = parity.get_spec("bnlenet")
INCEPTION = specs.Inception(in_channels=16, c1=8, c2=(4, 8), c3=(2, 4), c4=4)
# No conv of this block has out channels == in channels / groups.
NON_SQUARE_BLOCK = specs.ResNeXtBlock(
    in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2
)
IDENTITY_BLOCK = specs.ResNeXtBlock(in_channels=8, num_channels=8, group_width=4, bot_mul=1)
# A stride-2 stem and one stride-2 block: quick to compile.
TINY = specs.AnyNet(name="tiny_anynet", stem_width=4, stages=(specs.Stage(depth=1, width=8, group_width=4, bot_mul=1),))


def randn(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def canonical_weights(spec, seed=0):
    """float64 weights far from Flax's initial state: random BatchNorm and biases (Flax starts biases at
    zero, and a pitfall in a zero tensor would hide)."""
    weights = randomize_batchnorm(backend.export_weights(backend.build(spec, seed=seed, dtype="float64")), seed=seed)
    rng = np.random.default_rng(seed + 1)
    return {k: v + rng.normal(0, 0.1, v.shape) if k.endswith("bias") else v for k, v in weights.items()}


def built(spec, weights, variant=None, dtype="float64"):
    model = backend.build(spec, dtype=dtype, variant=variant)
    backend.load_weights(model, weights)
    return model


def first_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> str:
    """The first activation point, in execution order, where the two models do not agree bit for bit."""
    return next(key for key in a if not np.array_equal(a[key], b[key]))


# float64 rounding (eps 2.2e-16) over one conv or dense of <= 1408-term sums stays below 1e-13 of the
# values' scale; 1e-12 leaves margin, and a pitfall moves values by O(0.1).
ONE_LAYER_TOLERANCE = 1e-12
# Logits of a model and its variant: a pitfall moves them by >= 3% of their scale (measured), the
# same model recompiled by ~1e-15; 1e-3 separates the two by orders of magnitude.
DIVERGED = 1e-3


@pytest.fixture(scope="module")
def regnet_weights():
    return canonical_weights(REGNETX32)


@pytest.fixture(scope="module")
def regnet(regnet_weights):
    return built(REGNETX32, regnet_weights)


@pytest.fixture(scope="module")
def mnist_weights():
    return canonical_weights(MNIST_NET)


@pytest.fixture(scope="module")
def mnist_net(mnist_weights):
    return built(MNIST_NET, mnist_weights)


# --- the variants and where they apply ---


def test_variants_are_the_shared_names_with_descriptions():
    assert list(backend.VARIANTS) == [
        "same_padding",
        "same_padding_in_blocks",
        "unpermuted_flatten",
        "untransposed_kernel",
        "d2l_densenet_channels",
        "d2l_bnlenet_padding",
        "d2l_nin_pool",
    ]
    assert all(isinstance(text, str) and text for text in backend.VARIANTS.values())


def test_unknown_variant_raises_naming_the_known_ones():
    known = (
        r"same_padding, same_padding_in_blocks, unpermuted_flatten, untransposed_kernel, d2l_densenet_channels, "
        r"d2l_bnlenet_padding, d2l_nin_pool, d2l_jax_tab"
    )
    with pytest.raises(
        ValueError, match=f"^variant: unknown variant 'keras' of the jax backend; known variants: {known} "
    ):
        backend.build(REGNETX32, variant="keras")


@pytest.mark.parametrize(
    "variant, spec, why",
    [
        ("same_padding", MNIST_NET, "stride-1 layer symmetrically"),
        ("same_padding", INCEPTION, "stride-1 layer symmetrically"),
        ("same_padding", IDENTITY_BLOCK, "stride-1 layer symmetrically"),
        ("unpermuted_flatten", REGNETX32, "no dense layer follows a flatten"),
        ("untransposed_kernel", NON_SQUARE_BLOCK, "out channels == in channels / groups"),
        ("same_padding", NIN, "stride-1 layer symmetrically"),
        ("unpermuted_flatten", NIN, "no dense layer follows a flatten"),
        ("d2l_densenet_channels", REGNETX32, "DenseNet specs only"),
        ("d2l_densenet_channels", specs.DenseNet(arch=(4, 4)), r"output \(96,\) channels either way"),
    ],
    ids=[
        "same-mnist-net",
        "same-inception-block",
        "same-stride1-block",
        "flatten-no-flatten",
        "kernel-no-square-conv",
        "same-nin",
        "flatten-nin",
        "densenet-channels-anynet",
        "densenet-channels-one-transition",
    ],
)
def test_variant_that_changes_nothing_raises(variant, spec, why):
    with pytest.raises(ValueError, match=rf"^variant: '{variant}' does not apply to {spec.name}: .*{why}"):
        backend.build(spec, variant=variant)


def test_variants_switch_on_through_pitfalls_and_only_the_network_ones_change_the_network():
    """The weight-mapping pitfalls build the faithful linen module, so they share its compiled functions."""
    network = {"same_padding", "same_padding_in_blocks", "d2l_densenet_channels", "d2l_bnlenet_padding", "d2l_nin_pool"}
    applies_to = {
        "unpermuted_flatten": MNIST_NET,
        "d2l_densenet_channels": DENSENET,
        "d2l_bnlenet_padding": BNLENET,
        "d2l_nin_pool": NIN,
    }
    for variant in backend.VARIANTS:
        spec = applies_to.get(variant, REGNETX32)
        model = backend.build(spec, variant=variant)
        assert model.pitfalls == frozenset({variant})
        assert model.network_pitfalls == (frozenset({variant}) & network)
    assert backend.build(REGNETX32).pitfalls == frozenset()


# --- same_padding ---


def test_same_padding_diverges_at_the_stem_of_an_even_input(regnet, regnet_weights):
    model = built(REGNETX32, regnet_weights, "same_padding")
    x = randn((2, 1, 96, 96))
    faithful, naive = backend.activations(regnet, x), backend.activations(model, x)
    assert first_difference(faithful, naive) == "stem.conv"
    assert {k: v.shape for k, v in naive.items()} == {k: v.shape for k, v in faithful.items()}
    assert max_relative_diff(naive["head.fc"], faithful["head.fc"]) > DIVERGED
    # Why: 'SAME' at stride 2 on 96 pixels pads 0 on the top/left and 1 on the bottom/right.
    x_bottom_right = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)))
    expected = reference.conv2d(
        x_bottom_right, regnet_weights["stem.conv.weight"], regnet_weights["stem.conv.bias"], 2, 0, 1
    )
    assert max_relative_diff(naive["stem.conv"], expected) < ONE_LAYER_TOLERANCE


def test_same_padding_agrees_with_symmetric_padding_on_odd_sizes():
    """'SAME' at stride 2 pads (1, 1) on an odd size: the stem (7x9 -> 4x5) agrees; the block strides
    over an even height, where 'SAME' pads (0, 1), and departs at its strided conv."""
    weights = canonical_weights(TINY)
    faithful, naive = built(TINY, weights), built(TINY, weights, "same_padding")
    x = randn((2, 1, 7, 9), seed=1)
    faithful_acts, naive_acts = backend.activations(faithful, x), backend.activations(naive, x)
    assert first_difference(faithful_acts, naive_acts) == "stages.0.blocks.0.conv2"
    assert max_relative_diff(naive_acts["head.fc"], faithful_acts["head.fc"]) > DIVERGED


def test_same_padding_keeps_the_printed_summary_and_the_structure(regnet, regnet_weights):
    import jax

    model = built(REGNETX32, regnet_weights, "same_padding")
    # It starts from the faithful model's variables for the seed: they have exactly its own module's tree.
    x = np.zeros((1, 8, 8, 1))
    own = jax.eval_shape(
        backend._module(REGNETX32, "float64", False, frozenset({"same_padding"})).init, jax.random.PRNGKey(0), x
    )
    assert jax.tree_util.tree_map(lambda v: v.shape, own) == jax.tree_util.tree_map(np.shape, model.variables)
    assert_same_bits(
        backend.export_weights(backend.build(REGNETX32, seed=5, variant="same_padding")),
        backend.export_weights(backend.build(REGNETX32, seed=5)),
    )
    assert backend.layer_summary(model, (1, 96, 96, 1)) == backend.layer_summary(regnet, (1, 96, 96, 1))
    assert backend.structure(model) == backend.structure(regnet)
    assert_same_bits(backend.export_weights(model), regnet_weights)


def test_same_padding_googlenet_pads_every_padded_conv_and_pool_with_same():
    """Checked on the linen modules themselves (a GoogLeNet compile is slow): convs that the spec pads,
    and every max-pool, use Flax's 'SAME'; unpadded convs stay unpadded."""
    spec = parity.get_spec("googlenet")
    faithful = inception.GoogLeNet(spec).bind({})
    naive = inception.GoogLeNet(spec, pitfalls=frozenset({"same_padding"})).bind({})
    for layer in spec.layers():
        if isinstance(layer, specs.Conv):
            path = backend.table(spec).native_module(layer.path)
            p = layer.padding
            assert backend._submodule(faithful, path).padding == ((p, p), (p, p)), layer.path
            assert backend._submodule(naive, path).padding == ("SAME" if p else ((0, 0), (0, 0))), layer.path
    pools = ["net/b1/pool", "net/b2/pool", "net/b3/pool", "net/b4/pool", "net/b3/inception0/p4_1"]
    assert {backend._submodule(naive, path).padding for path in pools} == {"SAME"}
    assert {backend._submodule(faithful, path).padding for path in pools} == {1}


# --- untransposed_kernel ---


def test_untransposed_kernel_loads_and_diverges_at_the_first_square_conv(regnet, regnet_weights):
    model = built(REGNETX32, regnet_weights, "untransposed_kernel")
    x = randn((2, 1, 96, 96))
    faithful, naive = backend.activations(regnet, x), backend.activations(model, x)
    square = [p.layer.path for p in schema(REGNETX32).values() if p.role == "conv.weight" and p.shape[0] == p.shape[1]]
    assert square[0] == "stages.0.blocks.0.conv1" and "stem.conv" not in square
    assert first_difference(faithful, naive) == "stages.0.blocks.0.conv1"
    assert max_relative_diff(backend.forward(model, x), faithful["head.fc"]) > DIVERGED
    # Why: (kh, kw, O, I) read as HWIO swaps input and output channels, i.e. the 1x1 kernel is transposed.
    swapped = regnet_weights["stages.0.blocks.0.conv1.weight"].transpose(1, 0, 2, 3)
    expected = reference.conv2d(faithful["stem"], swapped, regnet_weights["stages.0.blocks.0.conv1.bias"], 1, 0, 1)
    assert max_relative_diff(naive["stages.0.blocks.0.conv1"], expected) < ONE_LAYER_TOLERANCE


def test_untransposed_kernel_swaps_exactly_the_square_kernels_and_round_trips(regnet, regnet_weights):
    model = built(REGNETX32, regnet_weights, "untransposed_kernel")
    faithful, naive = backend._tensors(regnet.variables), backend._tensors(model.variables)
    params = {backend.table(REGNETX32).native_name(p): p for p in schema(REGNETX32).values()}
    for name, param in params.items():
        if param.role == "conv.weight" and param.shape[0] == param.shape[1]:
            np.testing.assert_array_equal(naive[name], np.swapaxes(faithful[name], 2, 3))
        else:
            np.testing.assert_array_equal(naive[name], faithful[name])
    assert_same_bits(backend.export_weights(model), regnet_weights)
    assert backend.structure(model) == backend.structure(regnet)


# --- unpermuted_flatten ---


def test_unpermuted_flatten_diverges_only_at_the_dense_layer(mnist_net, mnist_weights):
    model = built(MNIST_NET, mnist_weights, "unpermuted_flatten")
    x = randn((2, 1, 28, 28))
    faithful, naive = backend.activations(mnist_net, x), backend.activations(model, x)
    assert first_difference(faithful, naive) == "fc" == MNIST_NET.activation_points()[-1]
    assert max_relative_diff(backend.forward(model, x), faithful["fc"]) > DIVERGED
    # Why: Flax flattens (H, W, C), but the weight's input axis is still in PyTorch's (C, H, W) order.
    features = nchw_to_nhwc(faithful["incep2"]).reshape(2, -1)
    expected = features @ mnist_weights["fc.weight"].T + mnist_weights["fc.bias"]
    assert max_relative_diff(naive["fc"], expected) < ONE_LAYER_TOLERANCE


def test_unpermuted_flatten_round_trips_through_its_own_table(mnist_net, mnist_weights):
    model = built(MNIST_NET, mnist_weights, "unpermuted_flatten")
    assert backend.table(MNIST_NET, "unpermuted_flatten").flatten_order == "CHW"
    assert backend.table(MNIST_NET).flatten_order == "HWC"
    assert_same_bits(backend.export_weights(model), mnist_weights)
    naive_kernel = backend._tensors(model.variables)["fc/params/kernel"]
    np.testing.assert_array_equal(naive_kernel, mnist_weights["fc.weight"].T)


def test_untransposed_kernel_applies_to_the_mnist_net(mnist_net, mnist_weights):
    model = built(MNIST_NET, mnist_weights, "untransposed_kernel")
    x = randn((2, 1, 28, 28))
    # conv1 (10, 1, 5, 5), conv2 (20, 88, 5, 5): the first square kernel is incep1's 24 -> 24 3x3.
    assert first_difference(backend.activations(mnist_net, x), backend.activations(model, x)) == "incep1.branch3x3_3"


# --- structure ---


def expected_structure(spec) -> dict[str, tuple[int, int]]:
    """Per layer of the spec: trainable parameters (from the canonical schema) and conv groups."""
    counts = {layer.path: 0 for layer in spec.layers()}
    for param in schema(spec).values():
        if param.trainable:
            counts[param.layer.path] += int(np.prod(param.shape))
    return {layer.path: (counts[layer.path], getattr(layer, "groups", 1)) for layer in spec.layers()}


def test_structure_of_faithful_models_is_the_specs(regnet, mnist_net):
    for model in (regnet, mnist_net, backend.build(INCEPTION)):
        structure = backend.structure(model)
        assert structure == expected_structure(model.spec)
        assert list(structure) == [layer.path for layer in model.spec.layers()]
    assert backend.structure(regnet)["stages.1.blocks.2.conv2"] == (80 * 16 * 9 + 80, 5)
    assert sum(params for params, _ in backend.structure(regnet).values()) == 179_290


def test_structure_reads_the_native_variables(regnet):
    """A model whose native tensors differ from the spec shows it (here: a dense layer with extra inputs)."""
    tensors = dict(backend._tensors(regnet.variables))
    tensors["net/head/fc/params/kernel"] = np.zeros((96, 10))
    doctored = backend.FlaxModel(REGNETX32, "float64", backend._variables(tensors))
    assert backend.structure(doctored)["head.fc"] == (96 * 10 + 10, 1) != backend.structure(regnet)["head.fc"]


def test_the_books_jax_tab_pads_same_only_in_the_blocks_conv2():
    """d2l's JAX AnyNet: the stem conv padded symmetrically (``padding=(1, 1)``), every block's grouped
    3x3 conv2 with ``padding='same'``; BatchNorm at Flax's epsilon 1e-5, which is the spec's."""
    model = backend.build(REGNETX32, variant="d2l_jax_tab")
    bound, table = backend._bound(model), backend.table(REGNETX32)
    convs = [layer for layer in REGNETX32.layers() if isinstance(layer, specs.Conv) and layer.padding]
    padding = {conv.path: backend._submodule(bound, table.native_module(conv.path)).padding for conv in convs}
    assert padding.pop("stem.conv") == ((1, 1), (1, 1))
    assert set(padding.values()) == {"SAME"} and all(path.endswith(".conv2") for path in padding)


def test_the_books_jax_densenet_pads_b1_same_and_counts_every_transition_from_64_channels():
    """d2l's JAX DenseNet: b1's 7x7 stride-2 conv and 3x3 stride-2 max-pool with padding='same' (the
    conv blocks' stride-1 3x3 convs pad (1, 1) either way); ``create_net`` halves 64 + 4 * 32 channels
    at every transition, so the transitions' 1x1 convs output 96, 96 and 96 channels, the last
    BatchNorm sees 96 + 4 * 32 = 224, and the net has 700,586 parameters (the spec's 758,226). The
    model runs and refuses canonical weights."""
    model = backend.build(DENSENET, variant="d2l_jax_tab")
    assert model.pitfalls == {"same_padding", "d2l_densenet_channels"}
    bound, table = backend._bound(model), backend.table(DENSENET)

    def module(path):
        return backend._submodule(bound, table.native_module(path))

    assert module("b1.conv").padding == module("b1.pool").padding == "SAME"
    assert [module(f"tran_blk{i}.conv").features for i in (1, 2, 3)] == [96, 96, 96]
    structure = backend.structure(model)
    assert structure["last.bn"] == (2 * 224, 1) and structure["last.fc"] == (224 * 10 + 10, 1)
    assert sum(params for params, _ in structure.values()) == 700_586
    assert backend.forward(model, randn((2, 1, 32, 32)).astype(np.float32)).shape == (2, 10)
    with pytest.raises(parity.WeightsError, match=r"'net/tran_blk2/conv/params/kernel': model expects shape"):
        backend.load_weights(model, backend.export_weights(backend.build(DENSENET)))


def test_the_books_jax_bnlenet_pads_its_convs_same_and_feeds_784_features_to_fc1():
    """d2l's JAX BNLeNet: nn.Conv(6, (5, 5)) and nn.Conv(16, (5, 5)) at Flax's default padding='SAME', so
    the maps stay 28x28 and 14x14 and fc1's kernel is 16 * 7 * 7 = 784 x 120 (the spec's 256 x 120). The
    model runs and refuses canonical weights."""
    model = backend.build(BNLENET, variant="d2l_jax_tab")
    assert model.pitfalls == {"d2l_bnlenet_padding"}
    bound, table = backend._bound(model), backend.table(BNLENET)
    assert {backend._submodule(bound, table.native_module(path)).padding for path in ("conv1", "conv2")} == {"SAME"}
    assert backend._tensors(model.variables)["net/fc1/params/kernel"].shape == (784, 120)
    assert backend.forward(model, randn((2, 1, 28, 28)).astype(np.float32)).shape == (2, 10)
    with pytest.raises(parity.WeightsError, match=r"'net/fc1/params/kernel': model expects shape \(784, 120\)"):
        backend.load_weights(model, backend.export_weights(backend.build(BNLENET)))


def test_the_books_jax_nin_averages_a_fixed_5x5_window_the_global_pool_at_224_only():
    """d2l's JAX NiN: nn.avg_pool(x, (5, 5)) at stride 1, then a flatten. On a 224x224 input the last map is
    5x5 and the logits are the faithful model's; on 256x256 (a 6x6 map) there are 2 x 2 x 10 outputs, each a
    5x5 mean in (H, W, C) order.

    In float32: XLA's CPU backend runs float64 convolutions as plain loops, seconds per 224x224 call."""
    weights = cast(canonical_weights(NIN), "float32")
    faithful, book = built(NIN, weights, dtype="float32"), built(NIN, weights, "d2l_jax_tab", dtype="float32")
    assert book.pitfalls == {"d2l_nin_pool"}
    pool = backend._submodule(backend._bound(book), "net/avg_pool")
    assert isinstance(pool, AvgPool2D) and (pool.window, pool.strides) == (5, 1)
    # The same convs, then a 25-term mean either way (or the numpy reference's): float32 rounding (eps
    # 1.2e-7) of one mean stays below 1e-6 of the values' scale; the wrong window moves them by O(0.1).
    x = randn((1, 1, 224, 224)).astype(np.float32)
    assert max_relative_diff(backend.forward(book, x), backend.forward(faithful, x)) < 1e-6
    x = randn((1, 1, 256, 256)).astype(np.float32)
    last_map = backend.activations(faithful, x)["blocks.3"]  # (1, 10, 6, 6)
    expected = nchw_to_nhwc(reference.avg_pool(last_map, 5, 1, 0)).reshape(1, -1)
    assert max_relative_diff(backend.forward(book, x), expected) < 1e-6
