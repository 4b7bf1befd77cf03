"""torchvision's ResNet, AlexNet and VGG checkpoints in every framework, and back (``pytest parity -k torchvision``).

Nothing is downloaded: torchvision builds each model with random weights (``weights=None``), its
BatchNorm tensors randomised away from 1/0/0/1 so that a dropped one shows. Each backend loads that
state_dict through the canonical form and must give torchvision's own logits at 224x224 within
``parity.harness.TOLERANCE`` (float64: 1e-9 absolute, far above float64 rounding and far below any
structural error; float32: 2e-5 of the largest logit, room for each framework's own summation order);
exporting it back must give the same tensors, bit for bit. A second, odd input size (97x131: AlexNet's
last map is 2x3, which its 6x6 adaptive pool must spread as torchvision's bins do) checks the
adaptive pool of every framework against torchvision too.

By default alexnet and resnet18 run in float32; ``pytest -m slow`` adds float64 and resnet50, vgg11,
vgg16 and vgg16_bn. A float64 case at 224x224 takes 27-49 s per framework on 2 cores (XLA's CPU backend
and TensorFlow run float64 convolutions without their float32 kernels), and VGG16 float64 is about 1.1 GB
a copy: the cases run one model at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import reference
from parity import torchvision_io as tvio
from parity.backends import FRAMEWORKS, get_backend
from parity.checks import Latest
from parity.harness import logit_diff, tolerance_text
from parity.weights import WeightsError, count_parameters, randomize_batchnorm

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

DEFAULT = {("alexnet", "float32"), ("resnet18", "float32")}
DTYPES = ("float64", "float32")
ORDER = ("alexnet", "resnet18", "resnet50", "vgg11", "vgg16", "vgg16_bn")  # the default cases first
SIZES = ((224, 224), (97, 131))


def cases():
    for model in ORDER:
        for dtype in DTYPES:
            marks = [] if (model, dtype) in DEFAULT else [pytest.mark.slow]
            for fw in FRAMEWORKS:
                yield pytest.param(model, dtype, fw, marks=marks, id=f"torchvision-{model}-{dtype}-{fw}")


class Case:
    """torchvision's model in one dtype with randomised BatchNorm, its state_dict, inputs and logits."""

    def __init__(self, model: str, dtype: str):
        self.spec = tvio.spec_for(model)
        self.torchvision = tvio.BACKEND.build(self.spec, seed=0, dtype=dtype)
        weights = randomize_batchnorm(tvio.BACKEND.export_weights(self.torchvision), seed=1)
        tvio.BACKEND.load_weights(self.torchvision, weights)
        self.state_dict = {k: v.clone() for k, v in self.torchvision.state_dict().items()}
        rng = np.random.default_rng(0)
        self.inputs = [rng.standard_normal((1, 3, *size)).astype(dtype) for size in SIZES]
        self.logits = [tvio.BACKEND.forward(self.torchvision, x) for x in self.inputs]


@pytest.fixture(scope="module")
def case():
    """case(model, dtype) -> Case; only the latest is kept (the cases run model by model)."""
    return Latest(Case)


@pytest.mark.slow
def test_torchvision_alexnet_reference_forward_matches_torchvision(case):
    """The spec's graph, evaluated in numpy, is torchvision's AlexNet, at an odd size too (float64)."""
    c = case("alexnet", "float64")
    weights = tvio.state_dict_to_canonical(c.state_dict, c.spec)
    for x, logits in zip(c.inputs, c.logits, strict=True):
        assert np.abs(reference.forward(c.spec, weights, x) - logits).max() <= 1e-9


@pytest.mark.parametrize("model, dtype, fw", list(cases()))
def test_torchvision_checkpoint_gives_torchvisions_logits_and_exports_back(case, model, dtype, fw):
    c, backend = case(model, dtype), get_backend(fw)
    native = backend.build(c.spec, seed=0, dtype=dtype)
    backend.load_weights(native, tvio.state_dict_to_canonical(c.state_dict, c.spec))
    for x, logits in zip(c.inputs, c.logits, strict=True):
        max_abs, max_rel, ok = logit_diff(logits, backend.forward(native, x), dtype)
        need = tolerance_text(dtype)
        assert ok, f"{model} {fw} {dtype} {x.shape}: max |diff| {max_abs:.3e}, rel {max_rel:.3e}; need {need}"
    back = tvio.canonical_to_state_dict(backend.export_weights(native), c.spec)
    c.torchvision.load_state_dict(back, strict=True)
    assert list(back) == list(c.state_dict)
    assert all(torch.equal(v, c.state_dict[k]) for k, v in back.items() if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("model", tvio.CLASSICS, ids=lambda m: f"torchvision-{m}")
def test_torchvision_structure_equals_the_spec(model):
    """Every state_dict key and shape, in torchvision's order, and the parameter count of torchvision's
    own model (on the meta device: no values needed) equal the spec's; ResNet's convs have no bias."""
    net, spec = tvio.build_torchvision(model, empty=True), tvio.spec_for(model)
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == list(tvio.expected_shapes(spec).items())
    assert sum(p.numel() for p in net.parameters()) == count_parameters(spec)[0]
    if model.startswith("resnet"):
        assert not any(m.bias is not None for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def test_torchvision_resnet50_is_v1_5():
    """The stride of a downsampling Bottleneck is on its 3x3 conv (v1.5), as in torchvision."""
    net, spec = tvio.build_torchvision("resnet50", empty=True), tvio.spec_for("resnet50")
    strides = {layer.path: layer.stride for layer in spec.layers() if layer.path.startswith("layer2.0.conv")}
    assert strides == {"layer2.0.conv1": 1, "layer2.0.conv2": 2, "layer2.0.conv3": 1}
    assert (net.layer2[0].conv1.stride, net.layer2[0].conv2.stride) == ((1, 1), (2, 2))


@pytest.mark.parametrize("size, out", [((13, 10), (6, 6)), ((2, 3), (7, 7)), ((9, 9), (4, 5))])
def test_torchvision_adaptive_pool_reference_bins_as_pytorch(size, out):
    """The numpy reference's adaptive pool (the referee of the frameworks') against PyTorch's own, on maps
    smaller and larger than the output, where bins overlap and repeat cells."""
    x = np.random.default_rng(0).standard_normal((2, 3, *size))
    expected = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), out).numpy()
    np.testing.assert_allclose(reference.adaptive_avg_pool(x, out), expected, rtol=0, atol=1e-15)


def test_torchvision_checkpoint_of_another_model_is_named():
    """A resnet18 state_dict given for resnet50: one WeightsError that names the model it does fit."""
    state_dict = tvio.build_torchvision("resnet18", empty=True).state_dict()
    with pytest.raises(WeightsError, match=r"does not fit tv_resnet50 \(.* problems; it fits resnet18\)"):
        tvio.check_state_dict(state_dict, tvio.spec_for("resnet50"))
