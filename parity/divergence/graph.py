"""Each activation point's op, and its inputs recomputed from another model's activations.

All of it is read from the spec's op graph: the node that computes a point, and the
nodes between it and the earlier points it reads (a ReLU, a flatten, a residual sum that
no framework exposes) are recomputed in numpy from those earlier points' values.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from parity import reference
from parity.specs import INPUT, Node, Spec


def point_nodes(spec: Spec) -> dict[str, Node]:
    """{activation point: the node that computes it}, in execution order."""
    return {node.name: node for node in spec.graph() if node.point}


def point_sources(spec: Spec) -> dict[str, tuple[str, ...]]:
    """{activation point: the earlier points (or INPUT) its value is computed from}."""
    nodes = {node.name: node for node in spec.graph()}

    def sources(name: str) -> tuple[str, ...]:
        if name == INPUT or nodes[name].point:
            return (name,)
        return tuple(dict.fromkeys(s for source in nodes[name].inputs for s in sources(source)))

    return {
        point: tuple(dict.fromkeys(s for source in node.inputs for s in sources(source)))
        for point, node in point_nodes(spec).items()
    }


def point_inputs(
    spec: Spec, point: str, activations: Mapping[str, np.ndarray], x: np.ndarray, weights: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """The inputs of ``point``'s node, computed in float64 from ``activations`` (and the network
    input ``x``): the points it reads are taken as they are, the ops in between recomputed."""
    return dict(each_point_inputs(spec, [point], activations, x, weights))[point]


def each_point_inputs(
    spec: Spec,
    points: Iterable[str],
    activations: Mapping[str, np.ndarray],
    x: np.ndarray,
    weights: Mapping[str, np.ndarray],
) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(point, its node's inputs) for each of ``points``, as ``point_inputs`` computes them, converting
    the activations and weights to float64 once."""
    known = {name: np.asarray(value, np.float64) for name, value in activations.items()}
    known[INPUT] = np.asarray(x, np.float64)
    weights64 = {name: np.asarray(value, np.float64) for name, value in weights.items()}
    nodes = point_nodes(spec)
    for point in points:
        yield point, [reference.evaluate(spec, weights64, known, source) for source in nodes[point].inputs]
