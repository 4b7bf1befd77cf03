"""Parity of d2l's DenseNet across PyTorch, Flax, Keras and Gluon.

Select with ``pytest parity -k densenet``. What had to be made equal: the channel axis of each
dense block's concatenation (1 in NCHW, -1 in NHWC), BatchNorm before every conv (so each conv
block reads a normalised concatenation), the transition's 2x2 average pool that floors odd
sizes, and the stem's max-pool padding that never wins a max. Tolerances are
``parity.harness.TOLERANCE``.
"""

from __future__ import annotations

import pytest

from parity import checks
from parity.checks import Case
from parity.specs import get_spec

SPEC = get_spec("densenet")
# DenseNet takes any size from 29x29 up; an odd, non-square one where every pool floors.
ODD = (2, 1, 33, 41)
BOOK = (1, 1, 96, 96)
CASES = [Case(SPEC, "float32", ODD), Case(SPEC, "float64", ODD)]

# The d2l book's DenseNet printed by its layer_summary (PyTorch), input (1, 1, 96, 96): the
# Fashion-MNIST size it trains at (the book prints no summary for DenseNet).
D2L_SUMMARY = [
    "Sequential output shape:\t torch.Size([1, 64, 24, 24])",
    "DenseBlock output shape:\t torch.Size([1, 192, 24, 24])",
    "Sequential output shape:\t torch.Size([1, 96, 12, 12])",
    "DenseBlock output shape:\t torch.Size([1, 224, 12, 12])",
    "Sequential output shape:\t torch.Size([1, 112, 6, 6])",
    "DenseBlock output shape:\t torch.Size([1, 240, 6, 6])",
    "Sequential output shape:\t torch.Size([1, 120, 3, 3])",
    "DenseBlock output shape:\t torch.Size([1, 248, 3, 3])",
    "Sequential output shape:\t torch.Size([1, 10])",
]


def test_densenet_summary_reproduces_d2l_book(models):
    checks.check_d2l_summary(models, SPEC, BOOK, D2L_SUMMARY)


def test_densenet_parameter_count_matches_d2l(models):
    """d2l's DenseNet for 10 classes and one input channel: 758,226 parameters and 6,608 BatchNorm
    running statistics, in the spec and in every backend's native layers."""
    checks.check_parameter_counts(models, SPEC, 758_226, 6_608)


@pytest.mark.parametrize("input_shape", [BOOK, ODD], ids=["densenet-96x96", "densenet-33x41"])
def test_summary_shapes_and_params_agree_across_frameworks(models, input_shape):
    """Every framework's summary has the spec's groups, with the same NCHW shape and parameters each."""
    checks.check_summaries_agree(models, SPEC, input_shape)


@pytest.mark.parametrize("case, src, dst", checks.transfer_params(CASES))
def test_logits(transfers, case, src, dst):
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s logits."""
    checks.check_transfer(transfers, case, src, dst)


def test_densenet_matches_numpy_reference():
    """An independent numpy forward of the canonical weights gives torch's logits (float64)."""
    checks.check_numpy_reference(CASES[-1])
