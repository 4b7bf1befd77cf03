import pytest

from parity.specs import AnyNet, Conv, ResNeXtBlock, Stage, get_spec, spatial_size_problem


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
    with pytest.raises(
        KeyError,
        match="known models: alexnet, bnlenet, densenet, googlenet, inception_mnist, lenet, nin, regnetx32, "
        "regnetx_16gf",
    ):
        get_spec("regnetx33")


def test_activation_points_follow_execution_order():
    points = get_spec("regnetx32").activation_points()
    assert points[:3] == ["stem.conv", "stem.bn", "stem"]
    assert points[3:12] == [
        f"stages.0.blocks.0.{n}" for n in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "conv4", "bn4")
    ] + ["stages.0.blocks.0"]
    assert points[-2:] == ["head.pool", "head.fc"]
    assert ResNeXtBlock(in_channels=8, num_channels=8, group_width=8, bot_mul=1).activation_points()[-1] == "output"


def test_nin_is_d2ls():
    """d2l's nin_block(out, k, s, p): a k x k conv, then two 1x1 convs; four blocks, three max-pools."""
    spec = get_spec("nin")
    convs = [(c.path, c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in spec.layers()]
    firsts = [(96, 11, 4, 0), (256, 5, 1, 2), (384, 3, 1, 1), (10, 3, 1, 1)]
    expected, channels = [], 1
    for i, (out, kernel, stride, padding) in enumerate(firsts):
        expected.append((f"blocks.{i}.conv1", channels, out, kernel, stride, padding))
        expected += [(f"blocks.{i}.conv{j}", out, out, 1, 1, 0) for j in (2, 3)]
        channels = out
    assert convs == expected
    groups = ["blocks.0", "pools.0", "blocks.1", "pools.1", "blocks.2", "pools.2", "dropout", "blocks.3", "head"]
    assert spec.summary_groups() == groups
    assert spec.activation_points()[:5] == ["blocks.0.conv1", "blocks.0.conv2", "blocks.0.conv3", "blocks.0", "pools.0"]
    assert spec.activation_points()[-7:] == [
        "pools.2",
        "dropout",
        *(f"blocks.3.conv{j}" for j in (1, 2, 3)),
        "blocks.3",
        "head.pool",
    ]


def test_nin_takes_67x67_and_larger():
    """The third 3x3 max-pool needs a 3x3 map: 67 is the smallest side (d2l trains at 224)."""
    spec = get_spec("nin")
    assert spec.output_shape((1, 1, 224, 224)) == (1, 10) and spec.output_shape((2, 1, 67, 71)) == (2, 10)
    assert spatial_size_problem(spec, 67, 67) is None
    assert (
        spatial_size_problem(spec, 66, 67)
        == "nin cannot take 66x67 inputs (pools.2: a 2x3 input is smaller than its 3x3 window)"
    )
