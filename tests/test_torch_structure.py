"""The PyTorch backend's structural audit (``structure()``) and its (empty) set of variants."""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity.specs import ResNeXtBlock
from parity.weights import schema

torch = pytest.importorskip("torch")
from impl_torch import backend  # noqa: E402


def spec_structure(spec) -> dict[str, tuple[int, int]]:
    """(trainable parameters, groups or 1) per layer, from the canonical schema alone."""
    expected: dict[str, tuple[int, int]] = {}
    for param in schema(spec).values():
        count, groups = expected.get(param.layer.path, (0, getattr(param.layer, "groups", 1)))
        expected[param.layer.path] = (count + (int(np.prod(param.shape)) if param.trainable else 0), groups)
    return expected


@pytest.mark.parametrize("name", ["regnetx32", "googlenet", "inception_mnist", "nin"])
def test_structure_is_the_specs_layer_by_layer(name):
    spec = parity.get_spec(name)
    found = backend.structure(backend.build(spec))
    assert found == spec_structure(spec)
    assert list(found) == [layer.path for layer in spec.layers()]


def test_structure_reads_groups_and_counts_from_the_modules():
    spec = parity.get_spec("regnetx32")
    found = backend.structure(backend.build(spec))
    assert found["stages.0.blocks.1.conv2"] == (32 * 16 * 9 + 32, 2)
    assert found["stages.1.blocks.0.conv2"] == (80 * 16 * 9 + 80, 5)
    assert found["stages.1.blocks.0.bn4"] == (2 * 80, 1)  # running statistics are not trainable
    assert found["head.fc"] == (80 * 10 + 10, 1)


def test_structure_of_a_standalone_block_has_unprefixed_paths():
    block = ResNeXtBlock(in_channels=16, num_channels=24, group_width=4, bot_mul=0.5, use_1x1conv=True, stride=2)
    assert backend.structure(backend.build(block)) == spec_structure(block)


def test_structure_sees_a_module_that_differs_from_the_spec():
    spec = parity.get_spec("regnetx32")
    model = backend.build(spec)
    model.net.stage1[1].conv2 = torch.nn.Conv2d(32, 32, kernel_size=3, padding=1, groups=1)
    found = backend.structure(model)
    assert found["stages.0.blocks.1.conv2"] == (32 * 32 * 9 + 32, 1) != spec_structure(spec)["stages.0.blocks.1.conv2"]


def test_the_reference_has_no_variants():
    assert backend.VARIANTS == {}
    spec = parity.get_spec("regnetx32")
    backend.build(spec, variant=None)
    message = r"^variant: unknown variant 'd2l_stage_bug' of the torch backend; known variants: none$"
    with pytest.raises(ValueError, match=message):
        backend.build(spec, variant="d2l_stage_bug")
    with pytest.raises(ValueError, match=message):
        backend.table(spec, variant="d2l_stage_bug")
