"""Parity of d2l's NiN (Network in Network) across PyTorch, Flax, Keras and Gluon.

Select with ``pytest parity -k nin``. What had to be made equal: max-pools without padding
(3x3, stride 2), 1x1 convolutions on the channel axis of each layout, and the logits as a
global average of the last block's ``num_classes`` channels (no dense layer, so no flatten
order to permute). Dropout is the identity in eval mode, the only mode compared here.
Tolerances are ``parity.harness.TOLERANCE``.
"""

from __future__ import annotations

import pytest

from parity import checks
from parity.checks import Case
from parity.specs import get_spec, spatial_size_problem

SPEC = get_spec("nin")
# NiN's smallest input is 67x67 (the third max-pool needs a 3x3 map); an odd, non-square size
# just above it in both dtypes, and d2l's 224x224 in float32.
ODD = (2, 1, 67, 71)
BOOK = (1, 1, 224, 224)
CASES = [Case(SPEC, "float32", ODD), Case(SPEC, "float32", BOOK), Case(SPEC, "float64", ODD)]

# The d2l book's printed NiN summary (PyTorch), input (1, 1, 224, 224).
D2L_SUMMARY = [
    "Sequential output shape:\t torch.Size([1, 96, 54, 54])",
    "MaxPool2d output shape:\t torch.Size([1, 96, 26, 26])",
    "Sequential output shape:\t torch.Size([1, 256, 26, 26])",
    "MaxPool2d output shape:\t torch.Size([1, 256, 12, 12])",
    "Sequential output shape:\t torch.Size([1, 384, 12, 12])",
    "MaxPool2d output shape:\t torch.Size([1, 384, 5, 5])",
    "Dropout output shape:\t torch.Size([1, 384, 5, 5])",
    "Sequential output shape:\t torch.Size([1, 10, 5, 5])",
    "AdaptiveAvgPool2d output shape:\t torch.Size([1, 10, 1, 1])",
    "Flatten output shape:\t torch.Size([1, 10])",
]
D2L_PARAMETERS = 1_992_166


def test_inputs_are_the_smallest_sizes_nin_takes():
    assert spatial_size_problem(SPEC, 67, 71) is None and spatial_size_problem(SPEC, 66, 71) is not None


def test_summary_reproduces_d2l_book(models):
    checks.check_d2l_summary(models, SPEC, BOOK, D2L_SUMMARY)


def test_parameter_count_matches_d2l(models):
    """d2l's NiN for 10 classes and one input channel: 1,992,166 parameters, no BatchNorm; every
    backend's native layers hold exactly those."""
    checks.check_parameter_counts(models, SPEC, D2L_PARAMETERS, 0)


@pytest.mark.parametrize("input_shape", [BOOK, ODD], ids=["224x224", "67x71"])
def test_summary_shapes_and_params_agree_across_frameworks(models, input_shape):
    """Every framework's summary has the same groups, with the same NCHW shape and parameters each."""
    checks.check_summaries_agree(models, SPEC, input_shape)


@pytest.mark.parametrize("case, src, dst", checks.transfer_params(CASES))
def test_logits(transfers, case, src, dst):
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s logits."""
    checks.check_transfer(transfers, case, src, dst)


def test_nin_matches_numpy_reference():
    """An independent numpy forward of the canonical weights gives torch's logits (float64)."""
    checks.check_numpy_reference(Case(SPEC, "float64", ODD))
