"""Where the frameworks run: ``parity compare MODEL --device cpu|gpu``.

``placed(frameworks, device)`` is a context inside which every framework of ``frameworks`` builds its
models and runs them on ``device``, each the way its users choose a device:

- torch: models are built on the CPU, from the same seeded draws as anywhere, then moved with
  ``model.to(device)`` (``torch_device()``, read by ``impl_torch``, which moves each input to its model's
  device and every result back);
- jax: ``jax.default_device(...)``: arrays created and computations run on it;
- tf: ``tf.device(...)``: variables created and ops placed on it;
- mxnet (the suite pins MXNet's CPU build) and onnx (onnxruntime's CPU provider): the CPU only.

``cpu`` pins every framework to the CPU, also on a machine with a GPU, where TensorFlow and JAX would
otherwise take the GPU and torch would not. A scope is entered only where it changes the framework's
default (JAX keys its compiled code by the default device: a needless scope would recompile). A
framework that cannot run on ``device`` is an error that names it, raised before any scope is entered
or any model built. The context yields each framework's device as the framework names it
(``cuda:0``, ``TFRT_CPU_0``, ``/device:GPU:0``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from parity.backends import get_backend

DEVICES = ("cpu", "gpu")


class DeviceUnavailable(RuntimeError):
    """A framework cannot run on the device asked for; the message names the framework and what it sees."""


_TORCH_DEVICE: contextvars.ContextVar[str] = contextvars.ContextVar("torch_device", default="cpu")


def torch_device() -> str:
    """The device that torch models are moved to once built: ``cpu`` outside ``placed``."""
    return _TORCH_DEVICE.get()


@contextlib.contextmanager
def _torch_scope(name: str) -> Iterator[None]:
    token = _TORCH_DEVICE.set(name)
    try:
        yield
    finally:
        _TORCH_DEVICE.reset(token)


def _torch(device: str) -> tuple[contextlib.AbstractContextManager, str]:
    import torch

    if device == "cpu":
        return _torch_scope("cpu"), "cpu"
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceUnavailable(f"torch sees no CUDA device (torch {torch.__version__}, {build})")
    return _torch_scope("cuda:0"), f"cuda:0 ({torch.cuda.get_device_name(0)})"


def _jax(device: str) -> tuple[contextlib.AbstractContextManager, str]:
    import jax

    try:
        found = jax.devices(device)[0]
    except RuntimeError:
        seen = ", ".join(str(d) for d in jax.devices())
        raise DeviceUnavailable(f"jax sees no GPU (its devices: {seen}; a GPU needs jax[cuda12])") from None
    # JAX keys its compiled code by the default device: a scope that changes nothing would recompile
    return (contextlib.nullcontext() if found == jax.devices()[0] else jax.default_device(found)), str(found)


def _tf(device: str) -> tuple[contextlib.AbstractContextManager, str]:
    get_backend("tf")  # TensorFlow as impl_tf imports it (Keras pinned to it, torch's compiler stack first)
    import tensorflow as tf

    found = tf.config.list_logical_devices(device.upper())
    if not found:
        raise DeviceUnavailable("tf sees no GPU (tf.config.list_logical_devices('GPU') is empty)")
    # TensorFlow places ops on its first GPU where it sees one, else on the CPU: a scope only to keep it off a GPU
    pinned = device == "cpu" and tf.config.list_logical_devices("GPU")
    return (tf.device(found[0].name) if pinned else contextlib.nullcontext()), found[0].name


def _cpu_only(framework: str, why: str) -> Callable[[str], tuple[contextlib.AbstractContextManager, str]]:
    def place(device: str) -> tuple[contextlib.AbstractContextManager, str]:
        if device != "cpu":
            raise DeviceUnavailable(f"{framework} runs on the CPU only ({why})")
        return contextlib.nullcontext(), "cpu"

    return place


_PLACERS: dict[str, Callable[[str], tuple[contextlib.AbstractContextManager, str]]] = {
    "torch": _torch,
    "jax": _jax,
    "tf": _tf,
    "mxnet": _cpu_only("mxnet", "the suite pins MXNet's CPU build, mxnet==1.9.1"),
    "onnx": _cpu_only("onnx", "the suite runs onnxruntime's CPU execution provider"),
}


@contextlib.contextmanager
def placed(frameworks: Sequence[str], device: str) -> Iterator[dict[str, Any]]:
    """Inside, each of ``frameworks`` builds and runs on ``device``; yields {framework: its device's name}."""
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    scopes = {framework: _PLACERS[framework](device) for framework in frameworks}
    with contextlib.ExitStack() as stack:
        for scope, _ in scopes.values():
            stack.enter_context(scope)
        yield {framework: name for framework, (_, name) in scopes.items()}
