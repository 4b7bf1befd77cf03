"""PyTorch: leaf modules captured with forward hooks, tensors from ``named_parameters`` and ``named_buffers``."""

from __future__ import annotations

import numpy as np

from parity.port_check.native import Call, Layer, Tensor, explicit_padding, pair

name = "torch"
layout = "NCHW"


def owns(model) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def describe(module) -> tuple[str, dict]:
    """(kind, config) of one leaf module."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        return "conv", {
            "kernel": pair(module.kernel_size),
            "stride": pair(module.stride),
            "padding": explicit_padding(padding),
            "dilation": pair(module.dilation),
            "groups": module.groups,
            "padding_mode": module.padding_mode,
        }
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "bn", {"eps": float(module.eps)}
    if isinstance(module, nn.Linear):
        return "dense", {}
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        config = {
            "kernel": pair(module.kernel_size),
            "stride": pair(module.stride or module.kernel_size),
            "padding": explicit_padding(module.padding),
            "ceil_mode": module.ceil_mode,
        }
        if isinstance(module, nn.AvgPool2d):
            return "avg_pool", {**config, "count_include_pad": module.count_include_pad}
        return "max_pool", {**config, "dilation": pair(module.dilation)}
    if isinstance(module, nn.AdaptiveAvgPool2d) and pair(module.output_size) == (1, 1):
        return "global_avg_pool", {}
    if isinstance(module, nn.Flatten):
        return "flatten", {}
    if isinstance(module, nn.ZeroPad2d):
        left, right, top, bottom = module.padding
        return "pad", {"padding": ((top, bottom), (left, right))}
    if isinstance(module, nn.ReLU):
        return "relu", {}
    return "other", {"class": type(module).__name__}


def leaves(model) -> list[tuple[str, object]]:
    return [(path, m) for path, m in model.named_modules() if next(m.children(), None) is None]


def numpy(value) -> np.ndarray:
    """A copy: an in-place op later in the forward (``nn.ReLU(inplace=True)``) must not change what was seen."""
    return value.detach().cpu().numpy().copy()


def run(model, x: np.ndarray) -> tuple[list[Call], np.ndarray]:
    """Every leaf module call of one eval-mode forward on ``x`` (NCHW), and the output."""
    import torch

    calls: list[Call] = []

    def recorder(path: str, module):
        kind, config = describe(module)

        def hook(_, args, output):
            calls.append(Call(path or type(model).__name__, kind, config, tuple(numpy(a) for a in args), numpy(output)))

        return hook

    model.eval()
    handles = [m.register_forward_hook(recorder(path, m)) for path, m in leaves(model)]
    try:
        with torch.no_grad():
            output = model(torch.from_numpy(x))
    finally:
        for handle in handles:
            handle.remove()
    return calls, numpy(output)


def layers(model, calls: list[Call]) -> list[Layer]:
    """Every leaf module with tensors, in definition order; BatchNorm's ``num_batches_tracked`` left out."""
    found = []
    for path, module in leaves(model):
        kind, config = describe(module)
        named = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        tensors = {
            leaf: Tensor(leaf, f"{path}.{leaf}", numpy(value))
            for leaf, value in named
            if value is not None and leaf != "num_batches_tracked"
        }
        if tensors:
            found.append(Layer(path, kind, config, tensors))
    return found


def load(model, arrays: dict[str, np.ndarray]):
    import torch

    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        for native, value in arrays.items():
            state[native].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return model
