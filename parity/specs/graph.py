"""The vocabulary every architecture is described in: parameterised layers, and the op graph.

A spec describes its network ONCE, as an op graph in execution order (``Node``s built with
a ``GraphBuilder``, which reads like the network's forward pass). Everything
framework-neutral is derived from that graph: the parameterised layers and so the
canonical weight names (``parity.weights.schema``), the activation points that
``activations()`` returns, the summary groups, the output shape and which input sizes
the net takes, the numpy reference (``parity.reference``) and the per-point ops that
``parity explain`` recomputes.

BatchNorm follows PyTorch's conventions in a spec: ``eps`` is added to the variance, and
``momentum`` is the weight of the *new* batch statistic (running = (1 - m) * running + m * batch).
Keras, Flax and Gluon call ``1 - momentum`` their momentum; backends convert, never use a default.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

INPUT = "input"  # the network's input, as a node name
OUTPUT = "output"  # the output point of a standalone block


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution, with symmetric zero padding ``padding`` on every side; ``kernel_size`` is
    square, or (kh, kw) (a dense layer over a non-square map turned into a convolution)."""

    path: str
    in_channels: int
    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = True

    @property
    def kernel_hw(self) -> tuple[int, int]:
        k = self.kernel_size
        return (k, k) if isinstance(k, int) else tuple(k)


@dataclass(frozen=True)
class BatchNorm:
    """BatchNorm over the channel axis (axis 1 of NCHW, or the features of (N, C))."""

    path: str
    channels: int
    eps: float
    momentum: float


@dataclass(frozen=True)
class Dense:
    """A dense layer. ``flatten_from`` is the (C, H, W) feature map flattened into its input, if
    any: the canonical weight's input axis is in NCHW flatten order (C, H, W), and NHWC
    frameworks, which flatten in (H, W, C) order, see it permuted."""

    path: str
    in_features: int
    out_features: int
    flatten_from: tuple[int, int, int] | None = None


Layer = Conv | BatchNorm | Dense

# op -> the layer type it carries (None: no parameters)
OPS = {
    "conv": Conv,
    "bn": BatchNorm,
    "dense": Dense,
    "relu": None,
    "sigmoid": None,
    "max_pool": None,  # window (kernel, stride, padding); padded cells are -inf, so they never win
    "avg_pool": None,  # window (kernel, stride, padding); padded zeros count (PyTorch's count_include_pad)
    "global_avg_pool": None,  # (N, C, H, W) -> (N, C)
    # (N, C, H, W) -> (N, C, *output_size); output cell i averages rows floor(i*H/o) to ceil((i+1)*H/o) (PyTorch's bins)
    "adaptive_avg_pool": None,
    "flatten": None,  # (N, C, H, W) -> (N, C*H*W), in NCHW (C, H, W) order
    "add": None,
    "concat": None,  # on the channel axis
    "dropout": None,  # the identity in eval mode; ``rate`` is the drop probability
}


@dataclass(frozen=True)
class Node:
    """One op of the graph. ``name`` is its output's canonical path; ``point`` says whether that
    output is an activation point (returned by ``activations()``); ``group`` is the part of the
    network (d2l's top-level layer: ``stem``, ``stages.0``, ``head``) it belongs to."""

    name: str
    op: str
    inputs: tuple[str, ...]
    layer: Layer | None = None
    window: tuple[int, int, int] | None = None
    rate: float = 0.0
    point: bool = True
    group: str = ""
    output_size: tuple[int, int] | None = None


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class GraphBuilder:
    """Collects ``Node``s in execution order. Each method adds one op and returns its name, so
    a spec's graph reads like its forward pass::

        x = g.relu("stem", g.bn("stem.bn", g.conv("stem.conv", g.input, 1, 32, 3, stride=2, padding=1), 32, ...))

    Ops given no name are not activation points; they get a name derived from their input.
    """

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.input = INPUT
        self._group = ""

    @contextlib.contextmanager
    def group(self, name: str) -> Iterator[None]:
        """Every node added inside belongs to summary group ``name``."""
        outer, self._group = self._group, name
        try:
            yield
        finally:
            self._group = outer

    def add(self, op: str, inputs: tuple[str, ...], name: str | None = None, **fields) -> str:
        point = name is not None
        name = name if point else f"{inputs[0]}~{op}"
        if any(node.name == name for node in self.nodes):
            raise ValueError(f"graph: node {name!r} is added twice")
        self.nodes.append(Node(name, op, inputs, point=point, group=self._group, **fields))
        return name

    def conv(
        self,
        path: str,
        x: str,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = True,
    ) -> str:
        layer = Conv(path, in_channels, out_channels, kernel_size, stride, padding, groups, bias)
        return self.add("conv", (x,), path, layer=layer)

    def bn(self, path: str, x: str, channels: int, eps: float, momentum: float) -> str:
        return self.add("bn", (x,), path, layer=BatchNorm(path, channels, eps, momentum))

    def dense(self, path: str, x: str, in_features: int, out_features: int, *, flatten_from=None) -> str:
        return self.add("dense", (x,), path, layer=Dense(path, in_features, out_features, flatten_from))

    def relu(self, x: str, name: str | None = None) -> str:
        return self.add("relu", (x,), name)

    def sigmoid(self, x: str, name: str | None = None) -> str:
        return self.add("sigmoid", (x,), name)

    def max_pool(self, x: str, kernel: int, stride: int, padding: int = 0, name: str | None = None) -> str:
        return self.add("max_pool", (x,), name, window=(kernel, stride, padding))

    def avg_pool(self, x: str, kernel: int, stride: int, padding: int = 0, name: str | None = None) -> str:
        return self.add("avg_pool", (x,), name, window=(kernel, stride, padding))

    def global_avg_pool(self, x: str, name: str | None = None) -> str:
        return self.add("global_avg_pool", (x,), name)

    def adaptive_avg_pool(self, x: str, output_size: tuple[int, int], name: str | None = None) -> str:
        return self.add("adaptive_avg_pool", (x,), name, output_size=tuple(output_size))

    def flatten(self, x: str, name: str | None = None) -> str:
        return self.add("flatten", (x,), name)

    def dropout(self, x: str, rate: float, name: str | None = None) -> str:
        return self.add("dropout", (x,), name, rate=rate)

    def sum(self, *xs: str, name: str | None = None) -> str:
        return self.add("add", tuple(xs), name)

    def concat(self, *xs: str, name: str | None = None) -> str:
        return self.add("concat", tuple(xs), name)


class ShapeError(ValueError):
    """An input size the graph cannot take; the message names the node."""


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def infer_shapes(
    nodes: tuple[Node, ...], input_shape: tuple[int, ...], same_padding: bool = False
) -> dict[str, tuple[int, ...]]:
    """{node name: output shape} for an NCHW input of ``input_shape``; ShapeError where it does not fit.

    With ``same_padding`` every padded conv and pool sizes its output as TF/Flax 'same' does,
    ceil(size / stride): the shapes of a naive port that uses 'same' instead of symmetric padding.
    """
    shapes = {INPUT: tuple(input_shape)}
    for node in nodes:
        x = shapes[node.inputs[0]]
        layer, op = node.layer, node.op
        if op == "conv" or node.window is not None:
            if op == "conv":
                kernel, stride, padding = layer.kernel_hw, layer.stride, layer.padding
            else:
                kernel, stride, padding = node.window[:1] * 2, *node.window[1:]
            if len(x) != 4:
                raise ShapeError(f"{node.name}: expected an (N, C, H, W) input, got {x}")
            channels = layer.out_channels if op == "conv" else x[1]
            if same_padding and padding:
                out = (x[0], channels, *(-(-s // stride) for s in x[2:]))
            else:
                sizes = (conv_output_size(s, k, stride, padding) for s, k in zip(x[2:], kernel, strict=True))
                out = (x[0], channels, *sizes)
            if min(out[2:]) < 1:
                window = f"{kernel[0]}x{kernel[1]}"
                raise ShapeError(f"{node.name}: a {x[2]}x{x[3]} input is smaller than its {window} window")
            shapes[node.name] = out
        elif op == "adaptive_avg_pool":
            if len(x) != 4:
                raise ShapeError(f"{node.name}: expected an (N, C, H, W) input, got {x}")
            shapes[node.name] = (*x[:2], *node.output_size)
        elif op == "dense":
            if x[1:] != (layer.in_features,):
                raise ShapeError(f"{node.name}: expects {layer.in_features} input features, got {x[1:]}")
            shapes[node.name] = (x[0], layer.out_features)
        elif op == "global_avg_pool":
            shapes[node.name] = x[:2]
        elif op == "flatten":
            shapes[node.name] = (x[0], functools.reduce(int.__mul__, x[1:], 1))
        elif op == "concat":
            parts = [shapes[name] for name in node.inputs]
            shapes[node.name] = (x[0], sum(part[1] for part in parts), *x[2:])
        else:  # bn, relu, sigmoid, add, dropout keep the shape
            shapes[node.name] = x
    return shapes


@dataclass(frozen=True)
class BookTab:
    """One of d2l's TensorFlow, JAX or MXNet tabs of an architecture, as its published code computes it:
    the naive-port pitfalls it has against the PyTorch tab (variant names of ``parity.variants``),
    where its code has them (``source``, the book's file and lines), and what differs that no eval-mode
    check sees (``training_only``: BatchNorm momentum)."""

    pitfalls: tuple[str, ...]
    source: str
    training_only: str = ""


class Architecture:
    """What every spec is: a frozen dataclass with ``name`` and ``in_channels`` that adds its op
    graph to a ``GraphBuilder`` in ``build_graph``. The rest is derived here."""

    name: str
    in_channels: int
    input_size: tuple[int, int] | None = None  # the size it is trained at (d2l's), or None

    def build_graph(self, g: GraphBuilder) -> str:
        """Add the network's nodes to ``g``, in execution order; return the output's name."""
        raise NotImplementedError

    def graph(self) -> tuple[Node, ...]:
        """The op graph, in execution order (computed once per spec)."""
        return _graph(self)

    def layers(self) -> list[Layer]:
        """The parameterised layers, in execution order, with canonical paths."""
        return [node.layer for node in self.graph() if node.layer is not None]

    def activation_points(self) -> list[str]:
        """Canonical keys of ``activations()``, in execution order."""
        return [node.name for node in self.graph() if node.point]

    def summary_groups(self) -> list[str]:
        """The parts of the network in d2l's layer summary (its top-level layers), in order."""
        return list(dict.fromkeys(node.group for node in self.graph()))

    def output_shape(self, input_shape: tuple[int, int, int, int]) -> tuple[int, ...]:
        return infer_shapes(self.graph(), tuple(input_shape))[self.graph()[-1].name]

    def fixed_input_size(self) -> tuple[int, int] | None:
        """The one spatial size the net takes (its flatten feeds a dense layer, and no adaptive pool
        sizes the map for it), or None."""
        ops = {node.op for node in self.graph()}
        fixed = "flatten" in ops and "adaptive_avg_pool" not in ops
        return self.input_size if fixed else None

    def book_tabs(self) -> dict[str, BookTab]:
        """{framework: d2l's tab of this architecture in it} for the tabs whose code computes something
        other than the PyTorch tab's; none recorded by default."""
        return {}


class Block(Architecture):
    """A spec that is also a part of larger nets (a ResNeXt or Inception block): ``add_to`` adds
    its nodes under a path prefix; standalone, its output point is ``output``."""

    def add_to(self, g: GraphBuilder, X: str, prefix: str = "") -> str:
        """Add the block's nodes under ``prefix`` reading ``X``; return the output's name."""
        raise NotImplementedError

    def build_graph(self, g: GraphBuilder) -> str:
        with g.group("block"):
            return self.add_to(g, g.input)

    def layers(self, prefix: str = "") -> list[Layer]:
        """The block's parameterised layers under ``prefix``, in execution order."""
        if not prefix:
            return super().layers()
        g = GraphBuilder()
        self.add_to(g, g.input, prefix)
        return [node.layer for node in g.nodes if node.layer is not None]


@functools.lru_cache(maxsize=256)
def _graph(spec: Architecture) -> tuple[Node, ...]:
    g = GraphBuilder()
    output = spec.build_graph(g)
    nodes = tuple(g.nodes)
    if nodes[-1].name != output:
        raise ValueError(f"{spec.name}: the graph's output {output!r} is not its last node")
    for node in nodes:
        if OPS.get(node.op, ...) is ... or (OPS[node.op] is not None) != (node.layer is not None):
            raise ValueError(f"{spec.name}: node {node.name!r} has op {node.op!r} and layer {node.layer!r}")
        if node.layer is not None and not node.point:
            raise ValueError(f"{spec.name}: layer {node.name!r} must be an activation point")
    return nodes


def spatial_size_problem(spec: Architecture, height: int, width: int) -> str | None:
    """Why ``spec`` cannot take an input of this spatial size, or None (derived from the graph)."""
    try:
        spec.output_shape((1, spec.in_channels, height, width))
    except ShapeError as error:
        fixed = spec.fixed_input_size()
        if fixed:
            dense = next(node.layer for node in spec.graph() if node.op == "dense")
            c, h, w = dense.flatten_from or (dense.in_features, 1, 1)
            return (
                f"{spec.name} needs {fixed[0]}x{fixed[1]} inputs "
                f"(its flatten feeds a dense layer of {c}*{h}*{w} = {dense.in_features} inputs)"
            )
        return f"{spec.name} cannot take {height}x{width} inputs ({error})"
    return None
