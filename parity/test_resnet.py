"""Parity of d2l's Residual block and ResNet-18, and of the tutorials' residual MNIST net (its
ResidualBlock), across PyTorch, Flax, Keras and Gluon.

Select with ``pytest parity -k resnet`` or ``-k residual``. What had to be made equal: the
shortcut's strided 1x1 conv (no BatchNorm on it, as in the book), 3x3 convs padded by 1 on both
sides at stride 2 (Keras 'same' would pad an odd size on one side only), the stem's max-pool
padding that never wins a max, and the MNIST net's flatten order before its dense layer.
Tolerances are ``parity.harness.TOLERANCE``.
"""

from __future__ import annotations

import pytest

from parity import checks
from parity.checks import Case
from parity.specs import Residual, ResidualBlock, get_spec

RESNET18 = get_spec("resnet18")
RESIDUAL_MNIST = get_spec("residual_mnist")
# ResNet-18 takes any size; an odd, non-square one where each stride-2 layer floors.
ODD = (2, 1, 33, 41)
MNIST = (2, 1, 28, 28)
BLOCKS = [
    Residual(8, 16, use_1x1conv=True, stride=2),
    Residual(16, 16),
    ResidualBlock(6),
]


def block_case(block, dtype: str) -> Case:
    return Case(block, dtype, (2, block.in_channels, 13, 11))


# Each (spec, dtype) once, so that the transfer tests build each set of models once.
CASES = [
    Case(RESNET18, "float32", ODD),
    Case(RESNET18, "float64", ODD),
    Case(RESIDUAL_MNIST, "float32", MNIST),
    Case(RESIDUAL_MNIST, "float64", MNIST),
    *(block_case(block, "float64") for block in BLOCKS),
]
REFERENCE_CASES = [case for case in CASES if case.dtype == "float64"]

# The d2l book's printed ResNet-18 summary (PyTorch), input (1, 1, 96, 96).
D2L_SUMMARY = [
    "Sequential output shape:\t torch.Size([1, 64, 24, 24])",
    "Sequential output shape:\t torch.Size([1, 64, 24, 24])",
    "Sequential output shape:\t torch.Size([1, 128, 12, 12])",
    "Sequential output shape:\t torch.Size([1, 256, 6, 6])",
    "Sequential output shape:\t torch.Size([1, 512, 3, 3])",
    "Sequential output shape:\t torch.Size([1, 10])",
]
BOOK = (1, 1, 96, 96)


def test_resnet18_summary_reproduces_d2l_book(models):
    checks.check_d2l_summary(models, RESNET18, BOOK, D2L_SUMMARY)


def test_resnet18_parameter_count_matches_d2l(models):
    """d2l's ResNet-18 for 10 classes and one input channel: 11,178,378 parameters and 7,808
    BatchNorm running statistics, in the spec and in every backend's native layers."""
    checks.check_parameter_counts(models, RESNET18, 11_178_378, 7_808)


@pytest.mark.parametrize("input_shape", [BOOK, ODD], ids=["resnet18-96x96", "resnet18-33x41"])
def test_resnet18_summary_shapes_and_params_agree_across_frameworks(models, input_shape):
    """Every framework's summary has the spec's groups, with the same NCHW shape and parameters each."""
    checks.check_summaries_agree(models, RESNET18, input_shape)


def test_residual_mnist_parameter_count(models):
    """The tutorials' net: conv1 416, rblock1 4,640, conv2 12,832, rblock2 18,496, fc 5,130."""
    checks.check_parameter_counts(models, RESIDUAL_MNIST, 41_514, 0)


def test_residual_mnist_summary_shapes_and_params_agree_across_frameworks(models):
    checks.check_summaries_agree(models, RESIDUAL_MNIST, MNIST)


@pytest.mark.parametrize("case, src, dst", checks.transfer_params(CASES))
def test_logits(transfers, case, src, dst):
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s logits (a block's feature map)."""
    checks.check_transfer(transfers, case, src, dst)


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=[case.spec.name for case in REFERENCE_CASES])
def test_matches_numpy_reference(case):
    """An independent numpy forward of the canonical weights gives torch's output (float64)."""
    checks.check_numpy_reference(case)
