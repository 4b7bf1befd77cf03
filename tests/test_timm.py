"""timm as a checkpoint source (``parity.timm_io``): its name tables fit timm's own models, and every backend
loaded with a timm model's weights computes timm's logits.

Models are timm's own with random weights (``pretrained=False``: nothing is downloaded); BatchNorm tensors
and biases are randomised first, since timm starts each block's last BatchNorm scale at 0, which would hide
a wrong mapping of everything in the residual branch. float64: the bound is the README's 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import get_backend, timm_io
from parity.backends import FRAMEWORKS
from parity.weights import randomize_batchnorm, randomize_biases

timm = pytest.importorskip("timm", reason="timm is not installed: pip install -e '.[timm]'")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("model", timm_io.MODELS)
def test_the_name_table_fits_timms_state_dict(model):
    """Every key and shape, from timm's own module tree (built on the meta device: no values)."""
    with torch.device("meta"):
        state_dict = timm.create_model(model, pretrained=False).state_dict()
    expected = timm_io.expected_shapes(timm_io.spec_for(model))
    assert {key: tuple(value.shape) for key, value in state_dict.items()} == expected


def test_the_regnet_parameters_are_timms():
    """The table's paper parameters, against timm's own configurations."""
    from timm.models.regnet import model_cfgs

    for model, p in timm_io.REGNETX_PARAMS.items():
        cfg = model_cfgs[model]
        assert (p.depth, p.w0, p.wa, p.wm, p.group_width) == (cfg.depth, cfg.w0, cfg.wa, cfg.wm, cfg.group_size)


@pytest.fixture(scope="module")
def timm_models():
    cache = {}

    def get(model):
        if model not in cache:
            backend = timm_io.backend()
            net = backend.build(timm_io.spec_for(model), seed=0, dtype="float64")
            backend.load_weights(net, randomize_biases(randomize_batchnorm(backend.export_weights(net), 1), 2))
            x = np.random.default_rng(0).standard_normal((1, 3, 32, 32))
            cache[model] = backend.export_weights(net), x, backend.forward(net, x)
        return cache[model]

    return get


# torch's case runs by default; the others build ImageNet-size models in three more frameworks (~40 s)
@pytest.mark.parametrize("fw", [fw if fw == "torch" else pytest.param(fw, marks=pytest.mark.slow) for fw in FRAMEWORKS])
@pytest.mark.parametrize("model", ["regnetx_002", "resnet18"])
def test_each_backend_computes_timms_logits(timm_models, model, fw):
    spec = timm_io.spec_for(model)
    backend = get_backend(fw)
    if type(spec) not in backend.REGISTRY:
        pytest.skip(f"the {fw} backend does not build {type(spec).__name__}")
    weights, x, expected = timm_models(model)
    net = backend.build(spec, seed=5, dtype="float64")
    backend.load_weights(net, weights)
    assert np.abs(backend.forward(net, x) - expected).max() <= 1e-9
