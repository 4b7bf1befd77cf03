"""Parity of d2l's LeNet, BNLeNet, AlexNet and VGG across PyTorch, Flax, Keras and Gluon.

Select with ``pytest parity -k lenet`` (also BNLeNet), ``-k bnlenet``, ``-k alexnet`` or ``-k vgg``.
What had to be made equal: the flatten order before the first dense layer (the hub permutes its
weight between NCHW and NHWC), average pools without padding, BatchNorm over the features of an
(N, C) input (BNLeNet's dense layers), max-pools that floor odd sizes, and dropout, which is the
identity in eval mode, the only mode compared here. Tolerances are ``parity.harness.TOLERANCE``.

LeNet and BNLeNet take only 28x28. AlexNet runs at the book's 224x224 in float32 with batch 1;
the float64 runs of AlexNet and VGG use specs for smaller inputs, whose convolutions are the
book's and whose fc6 is smaller. VGG's transfers at 224x224 (batch 1, float32 and float64) run
with ``pytest -m slow``: four VGG-224 models and their weights take about 12 GB in float32 (a
minute on two cores) and 17 GB in float64; its summaries and parameter counts at 224 run always.
"""

from __future__ import annotations

import pytest

from parity import checks
from parity.checks import Case
from parity.specs import VGG, AlexNet, get_spec

LENET = get_spec("lenet")
BNLENET = get_spec("bnlenet")
ALEXNET = get_spec("alexnet")
VGG11 = get_spec("vgg")
# The book's convolutions at odd, non-square inputs, with a smaller fc6: the flatten before it
# holds 256 x 1 x 1 (AlexNet) and 512 x 1 x 1 (VGG) features, which no flatten order changes; the
# permutation that NHWC frameworks need before fc6 is checked by AlexNet at 127x159 (a 2x3 map,
# where an H/W swap cannot pass by symmetry), the LeNets' (5x5, 4x4) and the slow book-size runs
# (AlexNet 5x5, VGG 7x7). Their fc6 and fc7 have 64 units, not 4096: the same layers, without
# building and moving 17M weights per framework and pair.
SMALL_ALEXNET = AlexNet(input_size=(67, 75), head_width=64)
WIDE_ALEXNET = AlexNet(input_size=(127, 159), head_width=64)
SMALL_VGG = VGG(input_size=(33, 47), head_width=64)
MNIST = (2, 1, 28, 28)
BOOK = (1, 1, 224, 224)

# Each (spec, dtype) once, so that the transfer tests build each set of models once.
CASES = [
    Case(LENET, "float32", MNIST),
    Case(LENET, "float64", MNIST),
    Case(BNLENET, "float32", MNIST),
    Case(BNLENET, "float64", MNIST),
    Case(SMALL_ALEXNET, "float64", (2, 1, 67, 75)),
    Case(WIDE_ALEXNET, "float32", (2, 1, 127, 159)),
    Case(ALEXNET, "float32", BOOK, slow=True),
    Case(SMALL_VGG, "float64", (2, 1, 33, 47)),
    Case(VGG11, "float32", BOOK, slow=True),
    Case(VGG11, "float64", BOOK, slow=True),
]
REFERENCE_CASES = [case for case in CASES if case.dtype == "float64" and not case.slow]

# The d2l book's printed summaries (PyTorch): LeNet for (1, 1, 28, 28), AlexNet and VGG for
# (1, 1, 224, 224). The book prints none for BNLeNet; its lines are those of the book's
# Sequential for the 28x28 Fashion-MNIST it trains on.
D2L_SUMMARY = {
    "lenet": [
        "Conv2d output shape:\t torch.Size([1, 6, 28, 28])",
        "Sigmoid output shape:\t torch.Size([1, 6, 28, 28])",
        "AvgPool2d output shape:\t torch.Size([1, 6, 14, 14])",
        "Conv2d output shape:\t torch.Size([1, 16, 10, 10])",
        "Sigmoid output shape:\t torch.Size([1, 16, 10, 10])",
        "AvgPool2d output shape:\t torch.Size([1, 16, 5, 5])",
        "Flatten output shape:\t torch.Size([1, 400])",
        "Linear output shape:\t torch.Size([1, 120])",
        "Sigmoid output shape:\t torch.Size([1, 120])",
        "Linear output shape:\t torch.Size([1, 84])",
        "Sigmoid output shape:\t torch.Size([1, 84])",
        "Linear output shape:\t torch.Size([1, 10])",
    ],
    "bnlenet": [
        "Conv2d output shape:\t torch.Size([1, 6, 24, 24])",
        "BatchNorm2d output shape:\t torch.Size([1, 6, 24, 24])",
        "Sigmoid output shape:\t torch.Size([1, 6, 24, 24])",
        "AvgPool2d output shape:\t torch.Size([1, 6, 12, 12])",
        "Conv2d output shape:\t torch.Size([1, 16, 8, 8])",
        "BatchNorm2d output shape:\t torch.Size([1, 16, 8, 8])",
        "Sigmoid output shape:\t torch.Size([1, 16, 8, 8])",
        "AvgPool2d output shape:\t torch.Size([1, 16, 4, 4])",
        "Flatten output shape:\t torch.Size([1, 256])",
        "Linear output shape:\t torch.Size([1, 120])",
        "BatchNorm1d output shape:\t torch.Size([1, 120])",
        "Sigmoid output shape:\t torch.Size([1, 120])",
        "Linear output shape:\t torch.Size([1, 84])",
        "BatchNorm1d output shape:\t torch.Size([1, 84])",
        "Sigmoid output shape:\t torch.Size([1, 84])",
        "Linear output shape:\t torch.Size([1, 10])",
    ],
    "alexnet": [
        "Conv2d output shape:\t torch.Size([1, 96, 54, 54])",
        "ReLU output shape:\t torch.Size([1, 96, 54, 54])",
        "MaxPool2d output shape:\t torch.Size([1, 96, 26, 26])",
        "Conv2d output shape:\t torch.Size([1, 256, 26, 26])",
        "ReLU output shape:\t torch.Size([1, 256, 26, 26])",
        "MaxPool2d output shape:\t torch.Size([1, 256, 12, 12])",
        "Conv2d output shape:\t torch.Size([1, 384, 12, 12])",
        "ReLU output shape:\t torch.Size([1, 384, 12, 12])",
        "Conv2d output shape:\t torch.Size([1, 384, 12, 12])",
        "ReLU output shape:\t torch.Size([1, 384, 12, 12])",
        "Conv2d output shape:\t torch.Size([1, 256, 12, 12])",
        "ReLU output shape:\t torch.Size([1, 256, 12, 12])",
        "MaxPool2d output shape:\t torch.Size([1, 256, 5, 5])",
        "Flatten output shape:\t torch.Size([1, 6400])",
        "Linear output shape:\t torch.Size([1, 4096])",
        "ReLU output shape:\t torch.Size([1, 4096])",
        "Dropout output shape:\t torch.Size([1, 4096])",
        "Linear output shape:\t torch.Size([1, 4096])",
        "ReLU output shape:\t torch.Size([1, 4096])",
        "Dropout output shape:\t torch.Size([1, 4096])",
        "Linear output shape:\t torch.Size([1, 10])",
    ],
    "vgg": [
        "Sequential output shape:\t torch.Size([1, 64, 112, 112])",
        "Sequential output shape:\t torch.Size([1, 128, 56, 56])",
        "Sequential output shape:\t torch.Size([1, 256, 28, 28])",
        "Sequential output shape:\t torch.Size([1, 512, 14, 14])",
        "Sequential output shape:\t torch.Size([1, 512, 7, 7])",
        "Flatten output shape:\t torch.Size([1, 25088])",
        "Linear output shape:\t torch.Size([1, 4096])",
        "ReLU output shape:\t torch.Size([1, 4096])",
        "Dropout output shape:\t torch.Size([1, 4096])",
        "Linear output shape:\t torch.Size([1, 4096])",
        "ReLU output shape:\t torch.Size([1, 4096])",
        "Dropout output shape:\t torch.Size([1, 4096])",
        "Linear output shape:\t torch.Size([1, 10])",
    ],
}
# d2l's parameter counts (10 classes, one input channel): (trainable, BatchNorm running statistics).
D2L_PARAMETERS = {
    "lenet": (61_706, 0),
    "bnlenet": (44_878, 452),
    "alexnet": (46_764_746, 0),
    "vgg": (128_806_154, 0),
}
SPECS = {"lenet": LENET, "bnlenet": BNLENET, "alexnet": ALEXNET, "vgg": VGG11}
BOOK_INPUT = {"lenet": (1, 1, 28, 28), "bnlenet": (1, 1, 28, 28), "alexnet": BOOK, "vgg": BOOK}
# Where every framework's summary is compared: the book's spec and input, then the odd ones.
SUMMARY_INPUTS = {
    "lenet": [(LENET, MNIST)],
    "bnlenet": [(BNLENET, MNIST)],
    "alexnet": [(ALEXNET, BOOK), (SMALL_ALEXNET, (2, 1, 67, 75))],
    "vgg": [(VGG11, BOOK), (SMALL_VGG, (2, 1, 33, 47))],
}
# A module-scoped parameter: pytest runs the next three tests net by net, so ``models`` builds
# each net once per framework for all three.
by_net = pytest.mark.parametrize("name", list(SPECS), scope="module")


@by_net
def test_summary_reproduces_d2l_book(models, name):
    checks.check_d2l_summary(models, SPECS[name], BOOK_INPUT[name], D2L_SUMMARY[name])


@by_net
def test_parameter_count_matches_d2l(models, name):
    """The spec and every backend's native layers hold d2l's parameter counts."""
    checks.check_parameter_counts(models, SPECS[name], *D2L_PARAMETERS[name])


@by_net
def test_summary_shapes_and_params_agree_across_frameworks(models, name):
    """Every framework's summary has the spec's groups, with the same NCHW shape and parameters each."""
    for spec, input_shape in SUMMARY_INPUTS[name]:
        checks.check_summaries_agree(models, spec, input_shape)


@pytest.mark.parametrize("case, src, dst", checks.transfer_params(CASES))
def test_logits(transfers, case, src, dst):
    """``src``'s weights through the hub into ``dst`` reproduce ``src``'s logits."""
    checks.check_transfer(transfers, case, src, dst)


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=[case.spec.name for case in REFERENCE_CASES])
def test_matches_numpy_reference(case):
    """An independent numpy forward of the canonical weights gives torch's logits (float64)."""
    checks.check_numpy_reference(case)
