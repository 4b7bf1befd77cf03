"""Unit tests of the Flax LeNet, BNLeNet, AlexNet, VGG, ResNet-18 (and its Residual block), DenseNet
and the tutorials' residual MNIST net (and its ResidualBlock).

The layer summaries at the book's input sizes have d2l's shapes in NHWC, the spec's groups and the
book's parameter counts; they run on zero variables of the shapes ``jax.eval_shape`` gives, so no
net is initialised or compiled for them (VGG-224 alone holds 129M parameters). Every activation point and the logits are
checked in float64 against ``parity.reference``, on small specs of the same classes where the
book's are slow to compile. ``tests/test_backend_contract.py`` covers export/load bit-exactness and
the name table at the book's specs.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import parity
from parity import specs
from parity.variants import variant_problem
from parity.weights import count_parameters, randomize_batchnorm
from support import assert_same_bits, max_relative_diff, randn

pytest.importorskip("flax")
from impl_jax import backend, classic, densenet, resnet  # noqa: E402

# d2l's summaries (the PyTorch tab's shapes, in NHWC), for (1, 28, 28, 1) LeNet, BNLeNet and residual
# MNIST inputs, (1, 224, 224, 1) AlexNet and VGG inputs and (1, 96, 96, 1) ResNet-18 and DenseNet inputs:
# (layer, shape, group) per row. A sigmoid or ReLU joins its layer's group, a Flatten the dense layer it feeds.
SUMMARIES = {
    "lenet": [
        ("Conv", (1, 28, 28, 6), "conv1"),
        ("sigmoid", (1, 28, 28, 6), "conv1"),
        ("AvgPool2D", (1, 14, 14, 6), "conv1"),
        ("Conv", (1, 10, 10, 16), "conv2"),
        ("sigmoid", (1, 10, 10, 16), "conv2"),
        ("AvgPool2D", (1, 5, 5, 16), "conv2"),
        ("Flatten", (1, 400), "fc1"),
        ("Dense", (1, 120), "fc1"),
        ("sigmoid", (1, 120), "fc1"),
        ("Dense", (1, 84), "fc2"),
        ("sigmoid", (1, 84), "fc2"),
        ("Dense", (1, 10), "fc3"),
    ],
    "bnlenet": [
        ("Conv", (1, 24, 24, 6), "conv1"),
        ("BatchNorm", (1, 24, 24, 6), "conv1"),
        ("sigmoid", (1, 24, 24, 6), "conv1"),
        ("AvgPool2D", (1, 12, 12, 6), "conv1"),
        ("Conv", (1, 8, 8, 16), "conv2"),
        ("BatchNorm", (1, 8, 8, 16), "conv2"),
        ("sigmoid", (1, 8, 8, 16), "conv2"),
        ("AvgPool2D", (1, 4, 4, 16), "conv2"),
        ("Flatten", (1, 256), "fc1"),
        ("Dense", (1, 120), "fc1"),
        ("BatchNorm", (1, 120), "fc1"),
        ("sigmoid", (1, 120), "fc1"),
        ("Dense", (1, 84), "fc2"),
        ("BatchNorm", (1, 84), "fc2"),
        ("sigmoid", (1, 84), "fc2"),
        ("Dense", (1, 10), "fc3"),
    ],
    "alexnet": [
        ("Conv", (1, 54, 54, 96), "conv1"),
        ("relu", (1, 54, 54, 96), "conv1"),
        ("MaxPool2D", (1, 26, 26, 96), "conv1"),
        ("Conv", (1, 26, 26, 256), "conv2"),
        ("relu", (1, 26, 26, 256), "conv2"),
        ("MaxPool2D", (1, 12, 12, 256), "conv2"),
        ("Conv", (1, 12, 12, 384), "conv3"),
        ("relu", (1, 12, 12, 384), "conv3"),
        ("Conv", (1, 12, 12, 384), "conv4"),
        ("relu", (1, 12, 12, 384), "conv4"),
        ("Conv", (1, 12, 12, 256), "conv5"),
        ("relu", (1, 12, 12, 256), "conv5"),
        ("MaxPool2D", (1, 5, 5, 256), "conv5"),
        ("Flatten", (1, 6400), "fc6"),
        ("Dense", (1, 4096), "fc6"),
        ("relu", (1, 4096), "fc6"),
        ("Dropout", (1, 4096), "fc6"),
        ("Dense", (1, 4096), "fc7"),
        ("relu", (1, 4096), "fc7"),
        ("Dropout", (1, 4096), "fc7"),
        ("Dense", (1, 10), "fc8"),
    ],
    "vgg": [
        ("Sequential", (1, 112, 112, 64), "blocks.0"),
        ("Sequential", (1, 56, 56, 128), "blocks.1"),
        ("Sequential", (1, 28, 28, 256), "blocks.2"),
        ("Sequential", (1, 14, 14, 512), "blocks.3"),
        ("Sequential", (1, 7, 7, 512), "blocks.4"),
        ("Flatten", (1, 25088), "fc6"),
        ("Dense", (1, 4096), "fc6"),
        ("relu", (1, 4096), "fc6"),
        ("Dropout", (1, 4096), "fc6"),
        ("Dense", (1, 4096), "fc7"),
        ("relu", (1, 4096), "fc7"),
        ("Dropout", (1, 4096), "fc7"),
        ("Dense", (1, 10), "fc8"),
    ],
    "resnet18": [
        ("Sequential", (1, 24, 24, 64), "b1"),
        ("Sequential", (1, 24, 24, 64), "b2"),
        ("Sequential", (1, 12, 12, 128), "b3"),
        ("Sequential", (1, 6, 6, 256), "b4"),
        ("Sequential", (1, 3, 3, 512), "b5"),
        ("Sequential", (1, 10), "last"),
    ],
    "densenet": [
        ("Sequential", (1, 24, 24, 64), "b1"),
        ("DenseBlock", (1, 24, 24, 192), "dense_blk1"),
        ("Sequential", (1, 12, 12, 96), "tran_blk1"),
        ("DenseBlock", (1, 12, 12, 224), "dense_blk2"),
        ("Sequential", (1, 6, 6, 112), "tran_blk2"),
        ("DenseBlock", (1, 6, 6, 240), "dense_blk3"),
        ("Sequential", (1, 3, 3, 120), "tran_blk3"),
        ("DenseBlock", (1, 3, 3, 248), "dense_blk4"),
        ("Sequential", (1, 10), "last"),
    ],
    "residual_mnist": [
        ("Conv", (1, 24, 24, 16), "conv1"),
        ("Sequential", (1, 12, 12, 16), "conv1"),
        ("ResidualBlock", (1, 12, 12, 16), "rblock1"),
        ("Conv", (1, 8, 8, 32), "conv2"),
        ("Sequential", (1, 4, 4, 32), "conv2"),
        ("ResidualBlock", (1, 4, 4, 32), "rblock2"),
        ("Flatten", (1, 512), "fc"),
        ("Dense", (1, 10), "fc"),
    ],
}
# The book's trainable parameters of each net (and the tutorial's, for the residual MNIST net).
PARAMETERS = {
    "lenet": 61_706,
    "bnlenet": 44_878,
    "alexnet": 46_764_746,
    "vgg": 128_806_154,
    "resnet18": 11_178_378,
    "densenet": 758_226,
    "residual_mnist": 41_514,
}
MODULES = {
    "lenet": classic.LeNet,
    "bnlenet": classic.BNLeNet,
    "alexnet": classic.AlexNet,
    "vgg": classic.VGG,
    "resnet18": resnet.ResNet18,
    "densenet": densenet.DenseNet,
    "residual_mnist": resnet.ResidualNet,
}


def abstract_model(name: str) -> backend.FlaxModel:
    """The book's net as d2l's class builds it (its defaults), with zero variables of the shapes that
    ``jax.eval_shape`` gives its ``init``: enough for a layer summary, with nothing initialised or compiled."""
    spec = parity.get_spec(name)
    X = np.zeros((1, *spec.input_size, spec.in_channels), np.float32)
    shapes = jax.eval_shape(MODULES[name]().init, jax.random.PRNGKey(0), X)
    return backend.FlaxModel(spec, "float32", jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes))


@pytest.mark.parametrize("name", list(SUMMARIES))
def test_summary_has_the_books_shapes_the_specs_groups_and_its_parameter_count(name):
    spec = parity.get_spec(name)
    rows = backend.layer_summary(abstract_model(name), (1, *spec.input_size, 1))
    assert [(row.layer, row.shape, row.group) for row in rows] == SUMMARIES[name]
    assert list(dict.fromkeys(row.group for row in rows)) == spec.summary_groups()
    assert sum(row.params for row in rows) == count_parameters(spec)[0] == PARAMETERS[name]
    if name == "resnet18":
        assert rows[0].d2l_line() == "Sequential output shape:\t (1, 24, 24, 64)"


def test_summary_of_a_block_is_one_row():
    block = specs.Residual(6, 10, use_1x1conv=True, stride=2)
    (row,) = backend.layer_summary(backend.build(block), (1, 9, 11, 6))
    assert (row.layer, row.shape, row.group, row.params) == ("Residual", (1, 5, 6, 10), "block", 1570)


def native(spec, canonical: str) -> str:
    """The native module path of a canonical module path (a layer or an activation point)."""
    return backend.table(spec).native_module(canonical)


def test_native_names_follow_the_folders_one_scheme():
    lenet, vgg = parity.get_spec("lenet"), parity.get_spec("vgg")
    resnet18, dense = parity.get_spec("resnet18"), parity.get_spec("densenet")
    names = {canonical: name for canonical, name, _, _ in backend.table(vgg).rows(vgg)}
    assert names["blocks.3.conv2.weight"] == "net/block3/conv2/params/kernel"
    assert names["fc6.weight"] == "net/fc6/params/kernel"
    assert [native(lenet, p) for p in ("conv1", "pool1", "fc3")] == ["net/conv1", "net/pool1", "net/fc3"]
    assert [native(vgg, p) for p in ("blocks.4", "drop7")] == ["net/block4", "net/drop7"]
    names = {canonical: name for canonical, name, _, _ in backend.table(resnet18).rows(resnet18)}
    assert names["b1.bn.running_var"] == "net/b1/bn/batch_stats/var"
    assert names["b3.0.conv3.weight"] == "net/b3/block0/conv3/params/kernel"
    assert names["last.fc.bias"] == "net/last/fc/params/bias"
    assert [native(resnet18, p) for p in ("b1", "b5.1", "last.pool")] == ["net/b1", "net/b5/block1", "net/last/pool"]
    names = {canonical: name for canonical, name, _, _ in backend.table(dense).rows(dense)}
    assert names["dense_blk1.0.conv.weight"] == "net/dense_blk1/block0/conv/params/kernel"
    assert names["tran_blk3.bn.weight"] == "net/tran_blk3/bn/params/scale"
    # a conv block's output is its concatenation, as in the book's JAX ConvBlock
    assert [native(dense, p) for p in ("dense_blk2.3", "tran_blk1")] == ["net/dense_blk2/block3", "net/tran_blk1"]
    mnist = parity.get_spec("residual_mnist")
    assert [native(mnist, p) for p in ("pool1", "rblock2.conv1", "fc")] == ["pool1", "rblock2/conv1", "fc"]


# Float64 numerics. LeNet, BNLeNet and the residual MNIST net take 28x28 only; ResNet and DenseNet run
# at an odd size on small specs of the same classes (fewer, narrower stages and blocks), so that each
# compiles in seconds. AlexNet and VGG, whose 4096-wide dense layers make every build slow, are checked
# against the numpy reference by ``parity/test_classic.py``.
NUMERIC_CASES = {
    "lenet": (parity.get_spec("lenet"), (3, 1, 28, 28)),
    "bnlenet": (parity.get_spec("bnlenet"), (3, 1, 28, 28)),
    "residual_mnist": (parity.get_spec("residual_mnist"), (2, 1, 28, 28)),
    # b1 has 64 channels, so the first stage's identity blocks do too
    "resnet_2_stages": (specs.ResNet(arch=((1, 64), (2, 16))), (2, 1, 37, 41)),
    "densenet_2_blocks": (specs.DenseNet(num_channels=8, growth_rate=4, arch=(2, 3)), (2, 1, 37, 41)),
    "residual_projection": (specs.Residual(6, 10, use_1x1conv=True, stride=2), (2, 6, 9, 11)),
    "residual_block": (specs.ResidualBlock(5), (2, 5, 7, 9)),
}


def test_same_padding_builds_the_books_padded_convs_and_pools():
    """d2l's JAX ResNet and DenseNet: 'same' at stride 2 on an even size pads b1's conv and max-pool
    more at the bottom/right, so the naive port first departs from the faithful model at b1.conv,
    with the same shapes (on an odd size 'same' pads this 7x7 stride-2 conv symmetrically)."""
    for spec in (NUMERIC_CASES["resnet_2_stages"][0], NUMERIC_CASES["densenet_2_blocks"][0]):
        assert variant_problem(spec, "same_padding") is None
        faithful = backend.build(spec, dtype="float64")
        naive = backend.build(spec, dtype="float64", variant="same_padding")
        x = randn((2, 1, 36, 40), "float64")
        a, b = backend.activations(faithful, x), backend.activations(naive, x)
        assert next(key for key in a if not np.array_equal(a[key], b[key])) == "b1.conv"
        assert {key: value.shape for key, value in a.items()} == {key: value.shape for key, value in b.items()}


def test_bnlenet_train_mode_uses_batch_statistics_over_dense_features():
    bnlenet = backend.build(parity.get_spec("bnlenet"), dtype="float64")
    before = randomize_batchnorm(backend.export_weights(bnlenet), seed=1)
    backend.load_weights(bnlenet, before)
    x = randn((3, 1, 28, 28), "float64")
    # Randomised running statistics are far from this batch's: outputs differ by O(0.1).
    assert max_relative_diff(backend.forward(bnlenet, x, train=True), backend.forward(bnlenet, x)) > 1e-2
    assert_same_bits(backend.export_weights(bnlenet), before)


def test_model_classes_are_shaped_like_the_books():
    block = resnet.Residual(num_channels=8, use_1x1conv=True, strides=2)
    variables = jax.eval_shape(block.init, jax.random.PRNGKey(0), np.zeros((1, 9, 9, 4)))
    assert sorted(variables["params"]) == ["bn1", "bn2", "conv1", "conv2", "conv3"]
    assert "conv3" not in variables["batch_stats"]  # the book's projection has no BatchNorm
    with pytest.raises(TypeError):
        resnet.Residual(8)  # keyword-only, as every block of this folder
    blk = densenet.DenseBlock(num_convs=2, num_channels=10)
    Y, variables = jax.eval_shape(blk.init_with_output, jax.random.PRNGKey(0), np.zeros((4, 8, 8, 3)))
    assert Y.shape == (4, 8, 8, 23) and sorted(variables["params"]) == ["block0", "block1"]
    vgg = classic.vgg_block(2, 16, dtype=np.float32, name="block0")
    variables = jax.eval_shape(vgg.init, jax.random.PRNGKey(0), np.zeros((1, 9, 9, 3)))
    assert sorted(variables["params"]) == ["conv1", "conv2"]
