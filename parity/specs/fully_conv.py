"""A net's dense classifier head as convolutions, for dense evaluation (the VGG paper's, sec. 3.2).

``FullyConvolutional(base)`` is ``base`` with the flatten (and an adaptive average pool before it)
dropped and every dense layer of the head turned into a convolution of the same name: the first,
fed by the flatten of a (C, h, w) map, an h x w conv over the feature map; the others 1x1 convs.
At ``base``'s input size the score map is 1x1 and equals ``base``'s logits; on a larger input it
is the dense head slid over the image. ``parity.dense_eval.dense_to_conv`` converts the weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from parity.specs.graph import Architecture, Conv, Dense, GraphBuilder

DROPPED = ("flatten", "adaptive_avg_pool")


def dense_as_conv(dense: Dense) -> Conv:
    """The convolution that computes ``dense`` at every position: h x w over a flattened (C, h, w) map, else 1x1."""
    channels, h, w = dense.flatten_from or (dense.in_features, 1, 1)
    return Conv(dense.path, channels, dense.out_features, h if h == w else (h, w))


def conv_head_problem(base: Architecture) -> str | None:
    """Why ``base`` has no dense head to turn into convolutions, or None: its dense layers must all
    follow one flatten, the first reading the flattened map."""
    nodes = base.graph()
    flatten = [i for i, node in enumerate(nodes) if node.op == "flatten"]
    dense = [node.layer for node in nodes if node.op == "dense"]
    if len(flatten) != 1 or not dense:
        return f"{base.name} has no dense head after one flatten"
    if any(node.op not in ("dense", "relu", "dropout") for node in nodes[flatten[0] + 1 :]):
        return f"{base.name}'s head has layers other than dense, ReLU and dropout"
    if dense[0].flatten_from is None or any(layer.flatten_from for layer in dense[1:]):
        return f"{base.name}'s first dense layer must read the flattened feature map, and only it"
    return None


@dataclass(frozen=True)
class FullyConvolutional(Architecture):
    """``base`` (AlexNet, VGG: d2l's or torchvision's) with its dense head as convolutions. Points: ``base``'s,
    less the adaptive pool's; the head's are NCHW score maps."""

    base: Architecture

    def __post_init__(self) -> None:
        problem = conv_head_problem(self.base)
        if problem:
            raise ValueError(f"base: {problem}")

    @property
    def name(self) -> str:
        return f"{self.base.name}_conv"

    @property
    def in_channels(self) -> int:
        return self.base.in_channels

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.base.input_size

    def build_graph(self, g: GraphBuilder) -> str:
        renamed: dict[str, str] = {}  # a dropped node -> the node it passes on
        for node in self.base.graph():
            inputs = tuple(renamed.get(name, name) for name in node.inputs)
            if node.op in DROPPED:
                renamed[node.name] = inputs[0]
            elif node.op == "dense":
                g.nodes.append(dataclasses.replace(node, op="conv", inputs=inputs, layer=dense_as_conv(node.layer)))
            else:
                g.nodes.append(dataclasses.replace(node, inputs=inputs))
        return g.nodes[-1].name
