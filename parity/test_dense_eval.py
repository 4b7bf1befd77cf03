"""Dense evaluation: the dense head as convolutions (``parity.dense_to_conv``), in every framework.

At the net's own input size the conv head's 1x1 score map is the dense head's logits; on a larger input
the score map is the same in every framework. d2l's VGG (with 64-unit fc6 and fc7) at 64x96 has a 2x3
last map, so fc6 becomes a 2x3 conv: a flatten-order permutation that swapped H and W in an NHWC
framework could not pass by symmetry. Float64 throughout: 1e-9 absolute, far above float64 rounding of
these logits (|logit| < 10) and far below any wrong permutation (which moves them by O(1)).
"""

from __future__ import annotations

import numpy as np
import pytest

import parity
from parity import dense_eval
from parity.backends import FRAMEWORKS, get_backend
from parity.specs import VGG, TorchvisionAlexNet

SPECS = {
    "vgg_2x3": (VGG(arch=((1, 8), (1, 16), (1, 16), (1, 32), (1, 32)), input_size=(64, 96), head_width=64), (96, 160)),
    "tv_alexnet": (TorchvisionAlexNet(), (288, 320)),
}
DTYPE = "float64"


@pytest.fixture(scope="module")
def weights():
    """weights[name]: random canonical weights of a spec from the torch backend (biases randomised too)."""

    class Weights(dict):
        def __missing__(self, name):
            torch_backend, rng = get_backend("torch"), np.random.default_rng(7)
            exported = torch_backend.export_weights(torch_backend.build(SPECS[name][0], seed=0, dtype=DTYPE))
            noisy = {
                k: v + 0.01 * rng.standard_normal(v.shape) if k.endswith("bias") else v for k, v in exported.items()
            }
            self[name] = noisy
            return noisy

    return Weights()


# torchvision's AlexNet: its 6x6 fc6 conv over 4096 channels in float64 took XLA 64-265 s on 2 shared cores
CASES = [
    pytest.param(name, fw, marks=[pytest.mark.slow] if name == "tv_alexnet" else [], id=f"dense_eval-{name}-{fw}")
    for name in SPECS
    for fw in FRAMEWORKS
]


@pytest.mark.parametrize("name, fw", CASES)
def test_dense_eval_score_map_is_the_logits_at_the_input_size_and_agrees_when_larger(weights, name, fw):
    spec, larger = SPECS[name]
    conv_spec, conv_weights = parity.dense_to_conv(spec, weights[name])
    backend, rng = get_backend(fw), np.random.default_rng(0)
    dense = backend.build(spec, dtype=DTYPE)
    backend.load_weights(dense, weights[name])
    conv = backend.build(conv_spec, dtype=DTYPE)
    backend.load_weights(conv, conv_weights)
    x = rng.standard_normal((2, spec.in_channels, *spec.input_size))
    score_map = backend.forward(conv, x)
    assert score_map.shape == (2, spec.num_classes, 1, 1)
    assert np.abs(score_map[:, :, 0, 0] - backend.forward(dense, x)).max() <= 1e-9
    big = rng.standard_normal((2, spec.in_channels, *larger))
    score_map = backend.forward(conv, big)
    assert score_map.shape[:2] == (2, spec.num_classes) and min(score_map.shape[2:]) > 1
    torch_backend = get_backend("torch")
    reference = torch_backend.build(conv_spec, dtype=DTYPE)
    torch_backend.load_weights(reference, conv_weights)
    expected = torch_backend.forward(reference, big)
    assert np.abs(score_map - expected).max() <= 1e-9
    assert np.abs(dense_eval.class_scores(score_map) - dense_eval.class_scores(expected)).max() <= 1e-9


def test_dense_eval_conv_weights_are_the_dense_weights_reshaped_in_chw_order(weights):
    spec, _ = SPECS["vgg_2x3"]
    conv_spec, conv_weights = parity.dense_to_conv(spec, weights["vgg_2x3"])
    assert conv_weights["fc6.weight"].shape == (64, 32, 2, 3)
    assert conv_weights["fc6.weight"][5, 7, 1, 2] == weights["vgg_2x3"]["fc6.weight"][5, 7 * 6 + 1 * 3 + 2]
    assert conv_weights["fc8.weight"].shape == (10, 64, 1, 1)
    assert "avgpool" not in conv_spec.activation_points()


def test_dense_eval_refuses_a_net_without_a_dense_head():
    with pytest.raises(ValueError, match="spec: nin has no dense head after one flatten"):
        parity.dense_to_conv(parity.get_spec("nin"), {})
