"""MXNet Gluon: leaf blocks captured with forward hooks (a hybridized block runs as one graph and
shows no leaves: capture it before ``hybridize()``), tensors from each block's own parameters."""

from __future__ import annotations

import sys

import numpy as np

from parity.port_check.native import Call, Layer, Tensor, explicit_padding, pair

name = "mxnet"
layout = "NCHW"

ROLES = {
    "weight": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "running_mean": "running_mean",
    "running_var": "running_var",
}


def owns(model) -> bool:
    mx = sys.modules.get("mxnet")
    return mx is not None and isinstance(model, mx.gluon.Block)


def describe(block) -> tuple[str, dict]:
    from mxnet.gluon import nn

    kwargs = getattr(block, "_kwargs", {})
    if isinstance(block, nn.Conv2D) and not isinstance(block, nn.Conv2DTranspose):
        return "conv", {
            "kernel": pair(kwargs["kernel"]),
            "stride": pair(kwargs["stride"]),
            "padding": explicit_padding(tuple(kwargs["pad"])),
            "dilation": pair(kwargs["dilate"]),
            "groups": kwargs["num_group"],
        }
    if isinstance(block, nn.BatchNorm):
        return "bn", {"eps": float(kwargs["eps"])}
    if isinstance(block, nn.Dense):
        return "dense", {}
    if isinstance(block, nn.GlobalAvgPool2D):
        return "global_avg_pool", {}
    if isinstance(block, nn.MaxPool2D | nn.AvgPool2D):
        config = {
            "kernel": pair(kwargs["kernel"]),
            "stride": pair(kwargs["stride"]),
            "padding": explicit_padding(tuple(kwargs["pad"])),
            "ceil_mode": kwargs.get("pooling_convention") == "full",
        }
        if isinstance(block, nn.AvgPool2D):
            return "avg_pool", {**config, "count_include_pad": kwargs.get("count_include_pad", True)}
        return "max_pool", config
    if isinstance(block, nn.Flatten):
        return "flatten", {}
    if isinstance(block, nn.Activation) and block._act_type == "relu":
        return "relu", {}
    return "other", {"class": type(block).__name__}


def children(block) -> list[tuple[str, object]]:
    found = []
    for key, child in block._children.items():
        found.append((key, child() if callable(child) and not hasattr(child, "_children") else child))
    return found


def leaves(block, prefix: str = "") -> list[tuple[str, object]]:
    """(path of attribute names, block) of every block without children."""
    kids = children(block)
    if not kids:
        return [(prefix or block.name, block)]
    return [leaf for key, child in kids for leaf in leaves(child, f"{prefix}.{key}" if prefix else key)]


def numpy(value) -> np.ndarray:
    return value.asnumpy()


def array(value: np.ndarray):
    import mxnet as mx

    return mx.np.array(value, dtype=value.dtype) if mx.util.is_np_array() else mx.nd.array(value, dtype=value.dtype)


def run(model, x: np.ndarray) -> tuple[list[Call], np.ndarray]:
    """Every leaf block call of one forward on ``x`` (NCHW, not recorded: BatchNorm on running statistics)."""
    calls: list[Call] = []

    def recorder(path, block):
        kind, config = describe(block)

        def hook(_, inputs, output):
            calls.append(Call(path, kind, config, tuple(numpy(a) for a in inputs), numpy(output)))

        return hook

    handles = [block.register_forward_hook(recorder(path, block)) for path, block in leaves(model)]
    try:
        output = model(array(x))
    finally:
        for handle in handles:
            handle.detach()
    return calls, numpy(output)


def layers(model, calls: list[Call]) -> list[Layer]:
    found = []
    for path, block in leaves(model):
        kind, config = describe(block)
        tensors = {
            ROLES[leaf]: Tensor(ROLES[leaf], param.name, numpy(param.data()))
            for leaf, param in block._reg_params.items()
            if leaf in ROLES
        }
        if tensors:
            found.append(Layer(path, kind, config, tensors))
    return found


def load(model, arrays: dict[str, np.ndarray]):
    params = {param.name: param for param in model.collect_params().values()}
    for native, value in arrays.items():
        params[native].set_data(array(np.ascontiguousarray(value)))
    return model
