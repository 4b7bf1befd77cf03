"""The framework-neutral rules for when a naive-port variant applies."""

import numpy as np
import pytest

from parity.specs import AnyNet, GoogLeNet, InceptionNet, ResNeXtBlock, Stage, get_spec
from parity.variants import check_variant, untransposed, variant_problem

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
    ],
)
def test_each_variant_applies_where_it_changes_the_function(variant, spec):
    assert variant_problem(spec, variant) is None


def test_the_check_names_the_variant_the_spec_and_the_reason():
    variants = {"same_padding": "", "d2l_stage_bug": ""}
    with pytest.raises(
        ValueError,
        match=r"^variant: unknown variant 'x' of the fw backend; known variants: same_padding, d2l_stage_bug$",
    ):
        check_variant("fw", variants, REGNETX32, "x")
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
