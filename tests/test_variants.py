"""The framework-neutral rules for when a naive-port variant applies."""

import numpy as np
import pytest

from parity.specs import AnyNet, DenseNet, GoogLeNet, InceptionNet, NiN, ResNeXtBlock, Stage, get_spec, infer_shapes
from parity.specs.classic import d2l_bnlenet_padding_layers
from parity.variants import check_variant, droppable_padding, untransposed, variant_problem

REGNETX32 = get_spec("regnetx32")


@pytest.mark.parametrize(
    "variant, spec",
    [
        ("same_padding", REGNETX32),
        ("keras_bn_epsilon", REGNETX32),
        ("avgpool_excludes_padding", InceptionNet()),
        ("unpermuted_flatten", InceptionNet()),
        ("untransposed_kernel", REGNETX32),
        ("d2l_stage_bug", REGNETX32),
        ("d2l_densenet_channels", get_spec("densenet")),
        ("dropped_padding", get_spec("alexnet")),
        ("d2l_bnlenet_padding", get_spec("bnlenet")),
        ("d2l_nin_pool", get_spec("nin")),
    ],
)
def test_each_variant_applies_where_it_changes_the_function(variant, spec):
    assert variant_problem(spec, variant) is None


def test_the_check_names_the_variant_the_spec_and_the_reason():
    variants = {"same_padding": "", "d2l_stage_bug": ""}
    known = r"known variants: same_padding, d2l_stage_bug, d2l_mxnet_tab \(join several with '\+'\)$"
    with pytest.raises(ValueError, match=r"^variant: unknown variant 'x' of the mxnet backend; " + known):
        check_variant("mxnet", variants, REGNETX32, "x")
    with pytest.raises(ValueError, match=r"; known variants: none$"):
        check_variant("torch", {}, REGNETX32, "same_padding")
    with pytest.raises(ValueError, match=r"another framework's tab; the torch backend builds the spec itself"):
        check_variant("torch", {}, REGNETX32, "d2l_tf_tab")
    with pytest.raises(ValueError, match=r"^variant: 'd2l_stage_bug' does not apply to googlenet: .*AnyNet specs only"):
        check_variant("fw", variants, GoogLeNet(), "d2l_stage_bug")
    shallow = AnyNet("shallow", stem_width=8, stages=(Stage(depth=1, width=16, group_width=8, bot_mul=1),))
    with pytest.raises(ValueError, match="every stage of shallow has depth 1"):
        check_variant("fw", variants, shallow, "d2l_stage_bug")
    block = ResNeXtBlock(in_channels=8, num_channels=8, group_width=8, bot_mul=1)
    with pytest.raises(ValueError, match="stride 1"):
        check_variant("fw", variants, block, "same_padding")
    check_variant("fw", variants, REGNETX32, None)


def test_the_wrong_transpose_swaps_input_and_output_channels_and_is_its_own_inverse():
    w = np.arange(4 * 4 * 3 * 3, dtype=np.float32).reshape(4, 4, 3, 3)
    naive = untransposed(w)
    assert naive.shape == (3, 3, 4, 4) and naive[1, 2, 3, 0] == w[3, 0, 1, 2]
    assert np.array_equal(untransposed(naive), w)


TF = {"same_padding": "", "keras_bn_epsilon": "", "untransposed_kernel": ""}


def test_pitfalls_compose_and_each_is_checked_on_its_own():
    assert check_variant("tf", TF, REGNETX32, "same_padding+keras_bn_epsilon") == {"same_padding", "keras_bn_epsilon"}
    with pytest.raises(ValueError, match=r"^variant: unknown variant 'bn_eps' of the tf backend"):
        check_variant("tf", TF, REGNETX32, "same_padding+bn_eps")
    with pytest.raises(
        ValueError, match=r"^variant: 'keras_bn_epsilon' does not apply to googlenet: it has no BatchNorm"
    ):
        check_variant("tf", TF, GoogLeNet(), "same_padding+keras_bn_epsilon")


def test_a_book_tab_is_the_pitfalls_its_spec_records_for_that_framework():
    assert check_variant("tf", TF, REGNETX32, "d2l_tf_tab") == {"same_padding", "keras_bn_epsilon"}
    assert check_variant("tf", TF, get_spec("resnet18"), "d2l_tf_tab") == {"same_padding", "keras_bn_epsilon"}
    jax = {"same_padding": "", "same_padding_in_blocks": ""}
    assert check_variant("jax", jax, REGNETX32, "d2l_jax_tab") == {"same_padding_in_blocks"}
    assert check_variant("jax", jax, get_spec("resnet18"), "d2l_jax_tab") == {"same_padding"}
    assert check_variant("mxnet", {"d2l_stage_bug": ""}, REGNETX32, "d2l_mxnet_tab") == {"d2l_stage_bug"}
    densenet = get_spec("densenet")
    assert check_variant("tf", TF, densenet, "d2l_tf_tab") == {"same_padding", "keras_bn_epsilon"}
    jax = {"same_padding": "", "d2l_densenet_channels": "", "d2l_bnlenet_padding": ""}
    assert check_variant("jax", jax, densenet, "d2l_jax_tab") == {"same_padding", "d2l_densenet_channels"}
    assert check_variant("jax", jax, get_spec("bnlenet"), "d2l_jax_tab") == {"d2l_bnlenet_padding"}
    assert check_variant("jax", {"d2l_nin_pool": ""}, get_spec("nin"), "d2l_jax_tab") == {"d2l_nin_pool"}
    assert check_variant("tf", TF, get_spec("bnlenet"), "d2l_tf_tab") == {"keras_bn_epsilon"}
    mxnet_tab = r"^variant: 'd2l_mxnet_tab' does not apply to resnet18: d2l's mxnet tab of it computes what"
    with pytest.raises(ValueError, match=mxnet_tab):
        check_variant("mxnet", {"d2l_stage_bug": ""}, get_spec("resnet18"), "d2l_mxnet_tab")
    with pytest.raises(ValueError, match=r"^variant: 'd2l_jax_tab' is another framework's tab; .* builds d2l_tf_tab"):
        check_variant("tf", TF, REGNETX32, "d2l_jax_tab")


def test_every_recorded_tab_cites_the_book_and_applies_to_its_spec():
    for name in ("regnetx32", "resnet18", "googlenet", "densenet", "alexnet", "bnlenet", "nin"):
        spec = get_spec(name)
        for framework, tab in spec.book_tabs().items():
            assert tab.pitfalls and ".md l. " in tab.source, (name, framework)
            assert all(variant_problem(spec, pitfall) is None for pitfall in tab.pitfalls), (name, framework)


def test_same_padding_in_blocks_needs_an_anynet_with_a_strided_block():
    assert variant_problem(REGNETX32, "same_padding_in_blocks") is None
    assert "AnyNet" in variant_problem(get_spec("resnet18"), "same_padding_in_blocks")
    flat = AnyNet("flat", stem_width=8, stages=(Stage(depth=1, width=8, group_width=8, bot_mul=1, stride=1),))
    assert "stride 1" in variant_problem(flat, "same_padding_in_blocks")


def test_d2l_densenet_channels_needs_a_densenet_whose_transitions_differ():
    densenet = get_spec("densenet")
    assert densenet.transition_channels() == (96, 112, 120)
    assert densenet.d2l_jax_transition_channels() == (96, 96, 96)
    assert variant_problem(densenet, "d2l_densenet_channels") is None
    assert "DenseNet specs only" in variant_problem(REGNETX32, "d2l_densenet_channels")
    assert "either way" in variant_problem(DenseNet(arch=(4, 4)), "d2l_densenet_channels")


def test_dropped_padding_applies_where_an_unpadded_conv_keeps_its_output_size_at_the_fixed_input():
    """AlexNet's 11x11 stride-4 conv1 at 224x224: (224 + 2 - 11) // 4 + 1 = 54 = (224 - 11) // 4 + 1; its
    stride-1 convs and every padded conv of VGG and LeNet shrink unpadded; a spec of any input size has none."""
    assert droppable_padding(get_spec("alexnet")) == {"conv1"}
    assert droppable_padding(get_spec("vgg")) == droppable_padding(get_spec("lenet")) == frozenset()
    assert droppable_padding(get_spec("nin")) == frozenset()
    assert "not fixed" in variant_problem(get_spec("nin"), "dropped_padding")
    assert "no padded conv" in variant_problem(get_spec("bnlenet"), "dropped_padding")


def test_d2l_bnlenet_padding_builds_a_784_feature_flatten_and_applies_to_bnlenet_only():
    """Flax's 'SAME' pads a stride-1 5x5 conv by 2: 28 -> 28, pool 14, 14 -> 14, pool 7."""
    layers = {layer.path: layer for layer in d2l_bnlenet_padding_layers(get_spec("bnlenet"))}
    assert layers["fc1"].in_features == 784 and layers["fc1"].flatten_from == (16, 7, 7)
    assert layers["conv1"].padding == layers["conv2"].padding == 2
    assert "BNLeNet specs only" in variant_problem(get_spec("lenet"), "d2l_bnlenet_padding")
    assert d2l_bnlenet_padding_layers(get_spec("lenet")) == []


def test_d2l_nin_pool_window_is_the_last_map_at_224_and_applies_to_nin_only():
    nin = get_spec("nin")
    shapes = infer_shapes(nin.graph(), (1, 1, 224, 224))
    assert shapes["blocks.3"][2:] == (NiN.D2L_JAX_POOL, NiN.D2L_JAX_POOL) == (5, 5)
    assert variant_problem(nin, "d2l_nin_pool") is None
    assert "NiN specs only" in variant_problem(REGNETX32, "d2l_nin_pool")
