"""Parity of d2l's NiN (Network in Network) across PyTorch, Flax, Keras and Gluon.

Select with ``pytest parity -k nin``. What had to be made equal: max-pools without padding
(3x3, stride 2), 1x1 convolutions on the channel axis of each layout, and the logits as a
global average of the last block's ``num_classes`` channels (no dense layer, so no flatten
order to permute). Dropout is the identity in eval mode, the only mode compared here.
Tolerances are ``parity.harness.TOLERANCE``.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import reference
from parity.backends import FRAMEWORKS, get_backend
from parity.harness import logit_diff, native_input_shape, tolerance_text
from parity.report import d2l_lines, group_view
from parity.specs import get_spec, spatial_size_problem
from parity.weights import count_parameters

SPEC = get_spec("nin")
PAIRS = [(src, dst) for src in FRAMEWORKS for dst in FRAMEWORKS if src != dst]
# NiN's smallest input is 67x67 (the third max-pool needs a 3x3 map); an odd, non-square size
# just above it in both dtypes, and d2l's 224x224 in float64.
INPUTS = {"67x71": (2, 1, 67, 71), "224x224": (1, 1, 224, 224)}
CASES = [("float32", "67x71"), ("float64", "67x71"), ("float32", "224x224")]

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


def pair_id(pair):
    return f"{SPEC.name}-{pair[0]}->{pair[1]}"


def summary(fw, input_shape=(1, 1, 224, 224)):
    backend = get_backend(fw)
    return backend.layer_summary(backend.build(SPEC, seed=0), native_input_shape(fw, input_shape))


def test_inputs_are_the_smallest_sizes_nin_takes():
    assert spatial_size_problem(SPEC, 67, 71) is None and spatial_size_problem(SPEC, 66, 71) is not None


def test_summary_reproduces_d2l_book():
    assert d2l_lines(summary("torch")) == D2L_SUMMARY


def test_parameter_count_matches_d2l():
    """d2l's NiN for 10 classes and one input channel: 1,992,166 parameters, no BatchNorm; every
    backend's native layers hold exactly those."""
    assert count_parameters(SPEC) == (D2L_PARAMETERS, 0)
    for fw in FRAMEWORKS:
        backend = get_backend(fw)
        structure = backend.structure(backend.build(SPEC, seed=0))
        assert list(structure) == [layer.path for layer in SPEC.layers()], fw
        assert sum(params for params, _ in structure.values()) == D2L_PARAMETERS, fw


@pytest.mark.parametrize("input_shape", [(1, 1, 224, 224), INPUTS["67x71"]], ids=["224x224", "67x71"])
def test_summary_shapes_and_params_agree_across_frameworks(input_shape):
    """Every framework's summary has the same groups, with the same NCHW shape and parameters each."""
    views = {fw: group_view(fw, summary(fw, input_shape)) for fw in FRAMEWORKS}
    assert list(views["torch"]) == SPEC.summary_groups()
    for fw in FRAMEWORKS:
        assert views[fw] == views["torch"], fw
    assert views["torch"]["head"][0] == (input_shape[0], SPEC.num_classes)
    assert sum(params for _, params in views["torch"].values()) == D2L_PARAMETERS


@pytest.mark.parametrize("dtype, input_name", CASES, ids=[f"{dtype}-{name}" for dtype, name in CASES])
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_logits(source, rig, pair, dtype, input_name):
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s logits."""
    src, dst = pair
    weights, expected, x = source(SPEC, dtype, INPUTS[input_name], src)
    got = rig(SPEC, dtype).destination(dst, weights, x)
    assert got.dtype == np.dtype(dtype) and got.shape == (x.shape[0], SPEC.num_classes)
    max_abs, max_rel, ok = logit_diff(expected, got, dtype)
    assert ok, f"{src}->{dst} {dtype}: max |diff| {max_abs:.3e}, relative {max_rel:.3e}; need {tolerance_text(dtype)}"


def test_nin_matches_numpy_reference(source):
    """An independent numpy forward of the canonical weights gives torch's logits (float64)."""
    weights, logits, x = source(SPEC, "float64", INPUTS["67x71"], "torch")
    max_abs, _, ok = logit_diff(reference.forward(SPEC, weights, x), logits, "float64")
    assert ok, f"torch: max |diff| to numpy {max_abs:.3e}"
