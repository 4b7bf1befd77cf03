"""Parity of the Inception block, d2l's GoogLeNet and the tutorials' InceptionA MNIST net across
PyTorch, Flax, Keras and Gluon. Select with ``pytest parity -k "inception or googlenet"``.

What had to be made equal: the channel axis of the concat (1 in NCHW, -1 in NHWC), max-pool
padding that never wins a max, average-pool padding that counts zeros (Keras 'same' would not),
and the flatten order before the MNIST net's dense layer (the hub permutes the weight).
Tolerances are ``parity.harness.TOLERANCE``.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import reference
from parity.backends import FRAMEWORKS, get_backend
from parity.harness import TransferRig, logit_diff, native_input_shape, tolerance_text
from parity.report import d2l_lines, group_view
from parity.specs import GoogLeNet, Inception, InceptionA, InceptionNet

GOOGLENET = GoogLeNet()
MNIST_NET = InceptionNet()
PAIRS = [(src, dst) for src in FRAMEWORKS for dst in FRAMEWORKS if src != dst]
DTYPES = ("float32", "float64")
# d2l's input, and an odd, non-square one where 'same' padding would differ; the MNIST net's
# flatten fixes its input at 28x28.
INPUTS = {
    "googlenet-96x96": (GOOGLENET, (2, 1, 96, 96)),
    "googlenet-65x47": (GOOGLENET, (2, 1, 65, 47)),
    "inception_mnist-28x28": (MNIST_NET, (2, 1, 28, 28)),
}
BLOCKS = {
    "inception_block": Inception(in_channels=12, c1=4, c2=(6, 8), c3=(2, 4), c4=4),
    "inception_a_block": InceptionA(in_channels=10),
}

# The d2l book's printed GoogLeNet summaries, input (1, 1, 96, 96), or (1, 96, 96, 1) for TF and JAX.
_NHWC = [
    "Sequential output shape:\t (1, 24, 24, 64)",
    "Sequential output shape:\t (1, 12, 12, 192)",
    "Sequential output shape:\t (1, 6, 6, 480)",
    "Sequential output shape:\t (1, 3, 3, 832)",
    "Sequential output shape:\t (1, 1024)",
    "Dense output shape:\t (1, 10)",
]
D2L_SUMMARY = {
    "torch": [
        "Sequential output shape:\t torch.Size([1, 64, 24, 24])",
        "Sequential output shape:\t torch.Size([1, 192, 12, 12])",
        "Sequential output shape:\t torch.Size([1, 480, 6, 6])",
        "Sequential output shape:\t torch.Size([1, 832, 3, 3])",
        "Sequential output shape:\t torch.Size([1, 1024])",
        "Linear output shape:\t torch.Size([1, 10])",
    ],
    "mxnet": [
        "Sequential output shape:\t (1, 64, 24, 24)",
        "Sequential output shape:\t (1, 192, 12, 12)",
        "Sequential output shape:\t (1, 480, 6, 6)",
        "Sequential output shape:\t (1, 832, 3, 3)",
        "Sequential output shape:\t (1, 1024, 1, 1)",
        "Dense output shape:\t (1, 10)",
    ],
    "tf": _NHWC,
    "jax": _NHWC,
}


def pair_id(pair):
    return f"{pair[0]}->{pair[1]}"


def random_input(shape, dtype):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)


@pytest.fixture(scope="module")
def rigs():
    cache = {}

    def get(spec, dtype):
        if (spec, dtype) not in cache:
            cache[spec, dtype] = TransferRig(spec, FRAMEWORKS, dtype)
        return cache[spec, dtype]

    return get


@pytest.fixture(scope="module")
def sources(rigs):
    cache = {}

    def get(input_name, dtype, src):
        if (input_name, dtype, src) not in cache:
            spec, shape = INPUTS[input_name]
            x = random_input(shape, dtype)
            cache[input_name, dtype, src] = (*rigs(spec, dtype).source(src, x), x)
        return cache[input_name, dtype, src]

    return get


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_googlenet_summary_reproduces_d2l_book(fw):
    backend = get_backend(fw)
    rows = backend.layer_summary(backend.build(GOOGLENET, seed=0), native_input_shape(fw, (1, 1, 96, 96)))
    assert d2l_lines(rows) == D2L_SUMMARY[fw]


@pytest.mark.parametrize("input_name", list(INPUTS))
def test_summary_shapes_and_params_agree_across_frameworks(input_name):
    spec, shape = INPUTS[input_name]
    views = {}
    for fw in FRAMEWORKS:
        backend = get_backend(fw)
        views[fw] = group_view(fw, backend.layer_summary(backend.build(spec, seed=0), native_input_shape(fw, shape)))
    for fw in FRAMEWORKS:
        assert views[fw] == views["torch"], fw
    assert sum(params for _, params in views["torch"].values()) == sum(int(np.prod(p.shape)) for p in _schema(spec))
    assert list(views["torch"].values())[-1][0] == (shape[0], spec.num_classes)


def _schema(spec):
    from parity.weights import schema

    return schema(spec).values()


def test_googlenet_parameter_count_matches_d2l():
    """d2l's GoogLeNet for 10 classes and one input channel: 5,977,530 parameters, no BatchNorm."""
    from parity.weights import count_parameters

    assert count_parameters(GOOGLENET) == (5_977_530, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_name", list(INPUTS))
@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_logits(sources, rigs, pair, input_name, dtype):
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s logits."""
    src, dst = pair
    spec, _ = INPUTS[input_name]
    weights, expected, x = sources(input_name, dtype, src)
    got = rigs(spec, dtype).destination(dst, weights, x)
    assert got.dtype == np.dtype(dtype) and got.shape == (x.shape[0], spec.num_classes)
    max_abs, max_rel, ok = logit_diff(expected, got, dtype)
    assert ok, f"{src}->{dst} {dtype}: max |diff| {max_abs:.3e}, relative {max_rel:.3e}; need {tolerance_text(dtype)}"


@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("input_name", ["googlenet-65x47", "inception_mnist-28x28"])
def test_matches_numpy_reference(sources, input_name, fw):
    """An independent numpy forward of the canonical weights gives every framework's logits (float64)."""
    spec, _ = INPUTS[input_name]
    weights, logits, x = sources(input_name, "float64", fw)
    max_abs, _, ok = logit_diff(reference.forward(spec, weights, x), logits, "float64")
    assert ok, f"{fw}: max |diff| to numpy {max_abs:.3e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_name", list(BLOCKS))
def test_block_all_pairs_and_numpy_reference(block_name, dtype):
    """A standalone block: every transfer reproduces the source's feature map, which equals numpy's.

    The input is negative at the border on purpose: a max-pool padded with zeros would pick the
    zeros there, and an average pool that excluded padding would divide by fewer than 9.
    """
    block = BLOCKS[block_name]
    x = random_input((2, block.in_channels, 7, 6), dtype) - 3.0
    rig = TransferRig(block, FRAMEWORKS, dtype)
    failures = []
    for src in FRAMEWORKS:
        weights, expected = rig.source(src, x)
        assert expected.shape == block.output_shape(x.shape), src
        max_abs, _, ok = logit_diff(reference.forward(block, weights, x.astype(np.float64)), expected, dtype)
        if not ok:
            failures.append(f"{src} vs numpy: max |diff| {max_abs:.3e}")
        for dst in FRAMEWORKS:
            if dst != src:
                max_abs, _, ok = logit_diff(expected, rig.destination(dst, weights, x), dtype)
                if not ok:
                    failures.append(f"{src}->{dst}: max |diff| {max_abs:.3e}")
    assert not failures, f"need {tolerance_text(dtype)}:\n" + "\n".join(failures)
