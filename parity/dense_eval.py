"""Dense evaluation: a net's dense classifier head turned into convolutions (Simonyan & Zisserman, sec. 3.2).

``dense_to_conv(spec, weights)`` returns ``parity.specs.FullyConvolutional(spec)`` and its weights: fc6's
(out, C*h*w) weight, whose input axis is in the canonical (C, h, w) flatten order, is the (out, C, h, w)
kernel of an h x w conv; fc7's and fc8's are 1x1 kernels; biases and the features are unchanged. No
framework's flatten order enters: each backend loads the conv kernels through its own table (OIHW ->
HWIO for the NHWC ones). At the base's input size the score map is 1x1 and equals the dense head's
logits; on a larger input, ``class_scores`` (the map's spatial mean) is the dense-evaluation prediction.
``score_maps`` runs the fully convolutional net in several frameworks: ``parity dense-eval`` compares them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from parity.specs import Architecture, Conv, FullyConvolutional, conv_head_problem
from parity.weights import Weights, schema, validate


def dense_to_conv(spec: Architecture, weights: Mapping[str, np.ndarray]) -> tuple[FullyConvolutional, Weights]:
    """The fully convolutional spec of ``spec`` (AlexNet, VGG: d2l's or torchvision's) and its weights.

    Raises ValueError naming the spec where it has no dense head to convert, WeightsError where ``weights``
    do not fit ``spec``.
    """
    problem = conv_head_problem(spec)
    if problem:
        raise ValueError(f"spec: {problem}")
    validate(weights, spec)
    conv = FullyConvolutional(spec)
    return conv, {
        name: weights[name].reshape(param.shape) if isinstance(param.layer, Conv) else weights[name]
        for name, param in schema(conv).items()
    }


def class_scores(score_map: np.ndarray) -> np.ndarray:
    """The dense-evaluation prediction: the (N, classes, H, W) score map averaged over its positions."""
    return score_map.mean(axis=(2, 3))


def conv_form(spec: Architecture, weights: Mapping[str, np.ndarray]) -> tuple[FullyConvolutional, Weights]:
    """``dense_to_conv(spec, weights)``, or, where ``weights`` are of the fully convolutional form already
    (their first head kernel is 4-d, as ``parity convert --dense-eval --format canonical`` writes), that
    spec and the weights, validated."""
    problem = conv_head_problem(spec)
    if problem:
        raise ValueError(f"spec: {problem}")
    first = next(node.layer for node in spec.graph() if node.op == "dense")
    kernel = weights.get(f"{first.path}.weight")
    if kernel is None or kernel.ndim != 4:
        return dense_to_conv(spec, weights)
    conv = FullyConvolutional(spec)
    validate(weights, conv)
    return conv, dict(weights)


def score_maps(
    spec: FullyConvolutional,
    weights: Mapping[str, np.ndarray],
    frameworks: Sequence[str],
    x: np.ndarray,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, np.ndarray]:
    """{framework: its (N, classes, H, W) score map of the NCHW ``x``}, one framework's model at a time."""
    from parity.backends import get_backend
    from parity.convert import build_for_loading

    maps = {}
    for framework in frameworks:
        backend = get_backend(framework)
        progress(f"{framework}: build and load")
        model = build_for_loading(backend, spec, str(x.dtype), seed=0)
        backend.load_weights(model, weights)
        progress(f"{framework}: forward {x.shape}")
        maps[framework] = backend.forward(model, x)
        del model
    return maps


def top_classes(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best (class, score) pairs of one image's class scores, best first."""
    best = np.argsort(-scores, kind="stable")[:k]
    return [(int(c), float(scores[c])) for c in best]
