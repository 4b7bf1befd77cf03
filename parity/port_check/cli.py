"""``parity port-check --a module:factory --b module:factory --input-size H,W [--html FILE]``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

from parity.port_check.check import port_check
from parity.port_check.native import PortCheckError
from parity.port_check.screen import screen, write_html
from parity.port_check.side import capture_for


def load_factory(text: str, option: str):
    """The model that ``module:factory`` returns, the module importable from the current directory or PYTHONPATH."""
    module_name, _, factory_name = text.partition(":")
    if not module_name or not factory_name:
        raise PortCheckError(f"{option}: expected module:factory, got {text!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise PortCheckError(f"{option}: cannot load {text!r}: {error}") from None
    if not callable(factory):
        raise PortCheckError(f"{option}: {text!r} is not callable")
    model = factory()
    capture_for(model, option)
    return model


def input_channels(model, option: str) -> int:
    """The input channels of ``model``'s first convolution (its first 4-D kernel)."""
    capture = capture_for(model, option)
    if capture.name == "jax":
        kernels = [leaf for leaf in _leaves(model[1].get("params", {})) if getattr(leaf, "ndim", 0) == 4]
        if kernels:
            return int(kernels[0].shape[2])
    else:
        for layer in capture.layers(model, []):
            if layer.kind == "conv":
                shape = layer.tensors["weight"].array.shape
                return int((shape[2] if capture.layout == "NHWC" else shape[1]) * layer.config.get("groups", 1))
    raise PortCheckError(f"{option}: found no convolution to read the input channels from")


def _leaves(tree):
    for value in tree.values():
        yield from _leaves(value) if hasattr(value, "values") else (value,)


def run(args, console, parse_shape) -> int:
    """Exit 0 when the ports agree, 1 when they diverge; PortCheckError for bad usage."""
    height, width = parse_shape(args.input_size, "--input-size", 2)
    if args.html and not Path(args.html).resolve().parent.is_dir():
        raise PortCheckError(f"--html: no such directory {str(Path(args.html).parent)!r}")
    name_map = []
    for rule in args.map or ():
        pattern, sep, replacement = rule.partition("=")
        if not sep:
            raise PortCheckError(f"--map: expected A_REGEX=B_NAME, got {rule!r}")
        name_map.append((pattern, replacement))
    model_a, model_b = load_factory(args.a, "--a"), load_factory(args.b, "--b")
    shape = (args.batch, input_channels(model_a, "--a"), height, width)
    x = np.random.default_rng(args.seed).standard_normal(shape).astype(args.dtype)
    with console.status("checking the port") as status:
        check = port_check(model_a, model_b, x, name_map or None, progress=lambda m: status.update(m))
    for part in screen(check):
        console.print(part)
    if args.html:
        write_html(check, Path(args.html))
        console.print(f"wrote {args.html}")
    return 0 if check.agree else 1
