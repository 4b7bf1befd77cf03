import pytest

from parity.specs import AnyNet, Conv, ResNeXtBlock, Stage, get_spec


def test_regnetx32_is_d2ls():
    spec = get_spec("regnetx32")
    assert spec.stem_width == 32 and spec.num_classes == 10 and spec.in_channels == 1 and spec.conv_bias
    assert spec.stages == (Stage(4, 32, 16, 1), Stage(6, 80, 16, 1))
    assert (spec.bn_eps, spec.bn_momentum) == (1e-5, 0.1)


def test_first_block_of_each_stage_projects_and_strides_the_rest_keep_shape():
    blocks = list(get_spec("regnetx32").blocks())
    assert [(i, j) for i, j, _ in blocks] == [(0, j) for j in range(4)] + [(1, j) for j in range(6)]
    first = {i: b for i, j, b in blocks if j == 0}
    assert (first[0].in_channels, first[0].num_channels, first[0].stride, first[0].use_1x1conv) == (32, 32, 2, True)
    assert (first[1].in_channels, first[1].num_channels, first[1].stride, first[1].use_1x1conv) == (32, 80, 2, True)
    rest = [b for _, j, b in blocks if j > 0]
    assert all(b.in_channels == b.num_channels and b.stride == 1 and not b.use_1x1conv for b in rest)


def test_group_width_is_channels_per_group():
    block = ResNeXtBlock(in_channels=80, num_channels=80, group_width=16, bot_mul=1)
    assert block.groups == 5
    conv2 = next(layer for layer in block.layers() if layer.path == "conv2")
    assert conv2 == Conv("conv2", 80, 80, 3, 1, 1, 5, True)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(in_channels=32, num_channels=32, group_width=12, bot_mul=1), "multiple of group_width=12"),
        (dict(in_channels=16, num_channels=32, group_width=16, bot_mul=1), "identity shortcut"),
        (dict(in_channels=32, num_channels=32, group_width=16, bot_mul=1, stride=2), "identity shortcut"),
        (dict(in_channels=32, num_channels=32, group_width=0, bot_mul=1), "group_width must be a positive int"),
        (dict(in_channels=32, num_channels=32, group_width=16, bot_mul=0), "bot_mul must be > 0"),
    ],
)
def test_invalid_blocks_are_rejected_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNeXtBlock(**kwargs)


def test_anynet_rejects_a_stage_whose_width_does_not_fit_its_group_width():
    with pytest.raises(ValueError, match="multiple of group_width=16"):
        AnyNet(name="bad", stem_width=16, stages=(Stage(1, 24, 16, 1),))


def test_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="known models: googlenet, inception_mnist, nin, regnetx32"):
        get_spec("regnetx33")


def test_activation_points_follow_execution_order():
    points = get_spec("regnetx32").activation_points()
    assert points[:3] == ["stem.conv", "stem.bn", "stem"]
    assert points[3:12] == [f"stages.0.blocks.0.{n}" for n in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "conv4", "bn4")] + [
        "stages.0.blocks.0"
    ]
    assert points[-2:] == ["head.pool", "head.fc"]
    assert ResNeXtBlock(in_channels=8, num_channels=8, group_width=8, bot_mul=1).activation_points()[-1] == "output"
