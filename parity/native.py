"""Checkpoints in each framework's own format, written and read with that framework's own API.

- torch: ``state_dict()`` as ``.safetensors`` (``safetensors.torch.save_file``) or ``.pth``/``.pt``
  (``torch.save``), read back with ``model.load_state_dict``;
- jax: the Flax variables (``params``, ``batch_stats``) as ``.msgpack`` (``flax.serialization.to_bytes``),
  read back with ``flax.serialization.from_bytes``;
- tf: Keras' ``.weights.h5`` (``model.save_weights``), read back with ``model.load_weights``;
- mxnet: Gluon's ``.params`` (``net.save_parameters``), read back with ``net.load_parameters``.

The model is the backend's own (``impl_torch``'s module, ``impl_jax``'s variables, ``impl_tf``'s Keras
model, ``impl_mxnet``'s Gluon net), so the file's names are that model's. Reading builds the model that
the file should fit, checks every entry's name and shape against the model's before loading anything
(a file of another framework, another model or a truncated one gets one ``WeightsFileError`` naming the
file and what was expected), loads it with the framework's API and exports canonical weights. A
``.pth`` is read with ``torch.load(weights_only=True)`` only. Files are written to a temporary name in
the same folder and renamed when complete, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.backends import get_backend
from parity.specs import Spec
from parity.weights import Weights, WeightsFileError, load_weights, schema, validate

Entries = dict[str, tuple[tuple[int, ...], str]]  # {native name: (shape, dtype)}


@dataclass(frozen=True)
class Format:
    """One framework's checkpoint file: its suffixes, a description for messages, and four functions:
    ``save(model, path)``, ``load(model, path, entries)`` (the framework's own loader), ``entries(path)``
    (what the file holds, WeightsFileError if it cannot be read) and ``expected(model)`` (what a file
    of ``model`` holds)."""

    suffixes: tuple[str, ...]
    description: str
    save: Callable[[Any, str], None]
    load: Callable[[Any, str, Mapping[str, Any]], None]
    entries: Callable[[str], tuple[Entries, Mapping[str, Any]]]
    expected: Callable[[Any], Entries]


def _shape_dtype(value: Any) -> tuple[tuple[int, ...], str]:
    return tuple(value.shape), str(value.dtype).removeprefix("torch.")


def _unreadable(path: str, description: str, error: Exception) -> WeightsFileError:
    reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return WeightsFileError(f"{path}: not a readable {description} ({reason})")


# ---- torch: the module's state_dict ----


def _torch_save(model, path: str) -> None:
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(model.state_dict(), path)
    else:
        torch.save(model.state_dict(), path)


def _torch_entries(path: str) -> tuple[Entries, Mapping[str, Any]]:
    from parity.torchvision_io import read_state_dict  # safetensors without pickle, .pth with weights_only=True

    state_dict = read_state_dict(path)
    return {key: _shape_dtype(value) for key, value in state_dict.items()}, state_dict


def _torch_load(model, path: str, state_dict: Mapping[str, Any]) -> None:
    import torch

    empty = any(tensor.is_meta for tensor in model.state_dict().values())
    model.load_state_dict({key: torch.as_tensor(value) for key, value in state_dict.items()}, strict=True, assign=empty)


def _torch_expected(model) -> Entries:
    return {key: _shape_dtype(value) for key, value in model.state_dict().items()}


# ---- jax: the Flax variables pytree (params, batch_stats) ----


def _flat(tree: Mapping[str, Any]) -> dict[str, Any]:
    from flax.traverse_util import flatten_dict

    return flatten_dict(tree, sep="/")


def _jax_save(model, path: str) -> None:
    """The bytes of Flax's ``serialization.to_bytes(model.variables)``, written one array at a time: ``to_bytes``
    builds the whole file in memory beside a numpy copy of every array, 3x the model at its peak (RegNetX-32GF:
    1.3 GB above the model). Its own encoder packs each array (``_msgpack_ext_pack``; arrays over 1 GiB in
    its chunked form), so ``msgpack_restore`` reads the file as it reads ``to_bytes``'."""
    import msgpack
    from flax import serialization

    packer = msgpack.Packer(default=serialization._msgpack_ext_pack, strict_types=True)

    def write(tree: Any, file) -> None:
        if isinstance(tree, dict):
            file.write(packer.pack_map_header(len(tree)))
            for key, value in tree.items():
                file.write(packer.pack(key))
                write(value, file)
        else:
            file.write(packer.pack(serialization._chunk_array_leaves_in_place(np.asarray(tree))))

    with open(path, "wb") as file:
        write(serialization.to_state_dict(model.variables), file)


def _jax_entries(path: str) -> tuple[Entries, Mapping[str, Any]]:
    from flax import serialization

    try:
        state = serialization.msgpack_restore(Path(path).read_bytes())
    except OSError as error:
        raise WeightsFileError(f"{path}: cannot read weights: {error.strerror}") from None
    except Exception as error:  # msgpack's own errors for a truncated or foreign file
        raise _unreadable(path, FORMATS["jax"].description, error) from None
    if not isinstance(state, dict):
        raise WeightsFileError(f"{path}: expected Flax variables (a msgpack mapping), got {type(state).__name__}")
    flat = _flat(state)
    if not all(isinstance(value, np.ndarray) for value in flat.values()):
        raise WeightsFileError(f"{path}: expected Flax variables (a mapping of arrays)")
    return {key: _shape_dtype(value) for key, value in flat.items()}, state


def _jax_load(model, path: str, state: Mapping[str, Any]) -> None:
    import jax
    import jax.numpy as jnp
    from flax import serialization

    model.variables = jax.tree_util.tree_map(jnp.asarray, serialization.from_state_dict(model.variables, state))


def _jax_expected(model) -> Entries:
    return {key: _shape_dtype(value) for key, value in _flat(model.variables).items()}


# ---- tf: Keras' .weights.h5 ----


def _h5_entries(path: str) -> tuple[Entries, None]:
    import h5py

    found: Entries = {}
    try:
        with h5py.File(path, "r") as file:
            file.visititems(
                lambda key, item: found.__setitem__(key, _shape_dtype(item)) if isinstance(item, h5py.Dataset) else None
            )
    except OSError as error:
        raise _unreadable(path, FORMATS["tf"].description, error) from None
    return found, None


def _tf_load(model, path: str, _: None) -> None:
    model.load_weights(path)


def _tf_expected(model) -> Entries:
    """The entries of the model's own file: Keras names them by its layer tree, not by variable path."""
    with tempfile.TemporaryDirectory(prefix="parity-") as folder:
        path = os.path.join(folder, "expected.weights.h5")
        model.save_weights(path)
        return _h5_entries(path)[0]


# ---- mxnet: Gluon's .params ----


def _mxnet_entries(path: str) -> tuple[Entries, None]:
    import mxnet as mx

    if not Path(path).is_file():
        raise WeightsFileError(f"{path}: cannot read weights: no such file")
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as error:
        raise _unreadable(path, FORMATS["mxnet"].description, error) from None
    if not isinstance(loaded, dict):
        raise WeightsFileError(f"{path}: expected named parameters (save_parameters), got a list of arrays")
    return {key: (tuple(value.shape), np.dtype(value.dtype).name) for key, value in loaded.items()}, None


def _mxnet_expected(model) -> Entries:
    with tempfile.TemporaryDirectory(prefix="parity-") as folder:
        path = os.path.join(folder, "expected.params")
        model.save_parameters(path)
        return _mxnet_entries(path)[0]


FORMATS: dict[str, Format] = {
    "torch": Format(
        (".safetensors", ".pth", ".pt"), "PyTorch state_dict", _torch_save, _torch_load, _torch_entries, _torch_expected
    ),
    "jax": Format((".msgpack",), "Flax variables msgpack", _jax_save, _jax_load, _jax_entries, _jax_expected),
    "tf": Format(
        (".weights.h5",),
        "Keras .weights.h5 file",
        lambda model, path: model.save_weights(path),
        _tf_load,
        _h5_entries,
        _tf_expected,
    ),
    "mxnet": Format(
        (".params",),
        "Gluon .params file",
        lambda model, path: model.save_parameters(path),
        lambda model, path, _: model.load_parameters(path),
        _mxnet_entries,
        _mxnet_expected,
    ),
}


def has_suffix(framework: str, path: str | os.PathLike) -> bool:
    """Whether ``path``'s name ends as ``framework``'s native files do."""
    return os.fspath(path).endswith(FORMATS[framework].suffixes)


@contextlib.contextmanager
def written_whole(path: str) -> Iterator[str]:
    """A temporary path beside ``path`` (same suffix) to write to; renamed to ``path`` only on success."""
    target = Path(path)
    partial = target.with_name(f".partial-{os.getpid()}-{target.name}")
    try:
        yield str(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def save(framework: str, model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` (built by ``framework``'s backend) in ``framework``'s own format."""
    with written_whole(os.fspath(path)) as partial:
        FORMATS[framework].save(model, partial)


def save_weights(framework: str, spec: Spec, weights: Weights, path: str | os.PathLike) -> None:
    """Write canonical ``weights`` of ``spec`` as ``framework``'s own checkpoint file."""
    backend = get_backend(framework)
    dtype = str(next(iter(weights.values())).dtype)
    model = backend.build_empty(spec, dtype) if hasattr(backend, "build_empty") else backend.build(spec, 0, dtype)
    backend.load_weights(model, weights)
    save(framework, model, path)


def file_dtype(path: str, entries: Entries) -> str:
    """The one float dtype of a file's tensors (integer counters such as num_batches_tracked aside)."""
    dtypes = sorted({dtype for _, dtype in entries.values() if dtype in ("float32", "float64")})
    if len(dtypes) != 1:
        found = ", ".join(sorted({dtype for _, dtype in entries.values()})) or "no tensors"
        raise WeightsFileError(f"{path}: expected float32 or float64 tensors of one dtype, found {found}")
    return dtypes[0]


def problems(expected: Entries, found: Entries) -> list[str]:
    """Every entry that is missing, unexpected or of another shape."""
    listed = [f"missing {key!r} of shape {shape}" for key, (shape, _) in expected.items() if key not in found]
    listed += [f"unexpected {key!r}" for key in found if key not in expected]
    listed += [
        f"{key!r}: expected shape {expected[key][0]}, got {shape}"
        for key, (shape, _) in found.items()
        if key in expected and expected[key][0] != shape
    ]
    return listed


def load_model(framework: str, spec: Spec, path: str | os.PathLike) -> Any:
    """``framework``'s model of ``spec`` holding the native file ``path``, loaded by the framework's own API
    once every entry has been checked against the model's."""
    path = os.fspath(path)
    fmt = FORMATS[framework]
    if not has_suffix(framework, path):
        raise WeightsFileError(f"{path}: expected a {fmt.description} ({' or '.join(fmt.suffixes)})")
    found, content = fmt.entries(path)
    backend = get_backend(framework)
    dtype = file_dtype(path, found)
    model = backend.build_empty(spec, dtype) if hasattr(backend, "build_empty") else backend.build(spec, 0, dtype)
    listed = problems(fmt.expected(model), found)
    if listed:
        raise WeightsFileError(
            f"{path}: expected a {fmt.description} of {spec.name} ({len(listed)} problem{'s' * (len(listed) > 1)}):\n  "
            + "\n  ".join(listed)
        )
    try:
        fmt.load(model, path, content)
    except (ValueError, RuntimeError, AssertionError, OSError) as error:
        raise _unreadable(path, fmt.description, error) from None
    return model


def load(framework: str, spec: Spec, path: str | os.PathLike) -> Weights:
    """Canonical weights of ``spec`` from ``framework``'s own checkpoint file ``path``; for jax, tf and mxnet
    a ``.safetensors`` file holds canonical weights, and so does a torch one whose names are the canonical
    ones."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        weights = load_weights(path)
        if framework != "torch" or set(weights) == set(schema(spec)):
            validate(weights, spec)
            return weights
    return get_backend(framework).export_weights(load_model(framework, spec, path))
