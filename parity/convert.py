"""``parity convert``: a checkpoint from torchvision or one framework into another, through the canonical form.

One side is ``torchvision:MODEL`` (a torchvision state_dict, ``.safetensors`` or ``.pth``/``.pt``)
or ``FRAMEWORK[:MODEL]`` (that framework's weights in canonical form, ``.safetensors``). The
destination model is built, loaded and exported; with the check on, the source framework's own
logits and the destination's for one random input must agree within ``parity.harness.TOLERANCE``,
or nothing is written.

From Python::

    from parity import convert

    result = convert.convert("torchvision:regnet_x_400mf", "tv.pth", "jax", "jax.safetensors")
    result.written, result.check.max_rel, result.seconds

``prepare`` checks the endpoints, the model and the paths without reading anything; ``run``
converts. Both raise ``ConvertError``, one line naming the command line's option at fault.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.backends import FRAMEWORKS, BackendUnavailable, get_backend
from parity.specs import SPECS, Architecture, get_spec
from parity.weights import Weights, WeightsError, WeightsFileError

TORCHVISION = "torchvision"


class ConvertError(ValueError):
    """A conversion that cannot run as asked (endpoint, model, path, or a weights file that does not fit)."""


@dataclass(frozen=True)
class Endpoint:
    """One side of a conversion: ``torchvision`` or a framework, and the model named after its colon, if any."""

    kind: str
    model: str | None


def parse_endpoint(text: str, option: str) -> Endpoint:
    kind, _, model = text.partition(":")
    if kind != TORCHVISION and kind not in FRAMEWORKS:
        raise ConvertError(
            f"{option}: expected torchvision:MODEL or one of {', '.join(FRAMEWORKS)} (optionally :MODEL), got {text!r}"
        )
    return Endpoint(kind, model or None)


def endpoint_backend(endpoint: Endpoint):
    """The backend of one side; torchvision's comes from ``parity.torchvision_io``."""
    if endpoint.kind != TORCHVISION:
        try:
            return get_backend(endpoint.kind)
        except BackendUnavailable:
            raise ConvertError(f"{endpoint.kind} is not installed: pip install -e '.[{endpoint.kind}]'") from None
    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise ConvertError("torchvision is not installed: pip install -e '.[torch]'") from None
    from parity import torchvision_io

    return torchvision_io.BACKEND


def named_spec(endpoint: Endpoint, option: str) -> Architecture:
    """The spec of a torchvision model name (``regnet_x_400mf``) or, for a framework, a parity model name too."""
    from parity import torchvision_io

    if endpoint.model in torchvision_io.MODELS:
        return torchvision_io.spec_for(endpoint.model)
    if endpoint.kind != TORCHVISION and endpoint.model in SPECS:
        return get_spec(endpoint.model)
    known = [*torchvision_io.MODELS, *(sorted(SPECS) if endpoint.kind != TORCHVISION else [])]
    raise ConvertError(f"{option}: unknown {endpoint.kind} model {endpoint.model!r}; known: {', '.join(known)}")


def conversion_spec(src: Endpoint, dst: Endpoint) -> Architecture:
    """The one model both sides name (at least one must)."""
    named = {option: named_spec(e, option) for option, e in (("--from", src), ("--to", dst)) if e.model}
    if not named:
        raise ConvertError("--from: name the model, e.g. torchvision:regnet_x_400mf or jax:regnetx_400mf")
    specs = list(named.values())
    if len(specs) == 2 and specs[0] != specs[1]:
        raise ConvertError(f"--from names {specs[0].name} but --to names {specs[1].name}")
    if TORCHVISION in (src.kind, dst.kind):
        from parity import torchvision_io

        try:
            torchvision_io.model_for(specs[0])
        except KeyError as error:
            raise ConvertError(error.args[0]) from None
    return specs[0]


def check_paths(weights: str, out: str, src: Endpoint, dst: Endpoint) -> None:
    """``weights`` exists and ``out``'s folder does; each has a suffix its side reads or writes."""
    from parity.torchvision_io import FILE_SUFFIXES

    for option, path, endpoint in (("--weights", Path(weights), src), ("--out", Path(out), dst)):
        suffixes = FILE_SUFFIXES if endpoint.kind == TORCHVISION else (".safetensors",)
        if path.suffix not in suffixes:
            raise ConvertError(
                f"{option}: expected a {' or '.join(suffixes)} file for {endpoint.kind}, got {str(path)!r}"
            )
    if not Path(weights).is_file():
        raise ConvertError(f"--weights: no such file {weights!r}")
    if not Path(out).resolve().parent.is_dir():
        raise ConvertError(f"--out: no such directory {str(Path(out).parent)!r}")


@dataclass(frozen=True)
class Plan:
    """A conversion whose endpoints, model and paths have been checked; nothing read yet."""

    source: str
    to: str
    src: Endpoint
    dst: Endpoint
    spec: Architecture
    weights: str
    out: str
    src_backend: Any
    dst_backend: Any


def prepare(source: str, weights: str | os.PathLike, to: str, out: str | os.PathLike) -> Plan:
    """Check ``--from source --weights weights --to to --out out`` without reading the weights."""
    src, dst = parse_endpoint(source, "--from"), parse_endpoint(to, "--to")
    spec = conversion_spec(src, dst)
    # torchvision's side first: importing torchvision after tensorflow kills the process (a segfault in
    # triton's native library, which torchvision loads through torch._dynamo); tensorflow after it is fine
    dst_backend = endpoint_backend(dst) if dst.kind == TORCHVISION else None
    src_backend = endpoint_backend(src)
    dst_backend = dst_backend or endpoint_backend(dst)
    weights, out = os.fspath(weights), os.fspath(out)
    check_paths(weights, out, src, dst)
    return Plan(source, to, src, dst, spec, weights, out, src_backend, dst_backend)


class Steps:
    """A progress bar over a conversion's steps (on stderr, when it is a terminal) that times each step."""

    def __init__(self, names: Sequence[str], progress: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(total=len(names), unit="step", file=sys.stderr, disable=None if progress else True)
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.bar.set_description(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def tensor_progress(description: str, progress: bool = True):
    """A per-tensor progress bar for the long loops over a big model's tensors."""
    from tqdm import tqdm

    return functools.partial(
        tqdm, desc=description, unit="tensor", leave=False, file=sys.stderr, disable=None if progress else True
    )


def read_source(src: Endpoint, spec, path: str, progress: bool = True) -> Weights:
    """Canonical weights from ``--weights``: a torchvision state_dict, or canonical safetensors."""
    from parity import torchvision_io
    from parity.weights import load_weights, validate

    if src.kind == TORCHVISION:
        state_dict = torchvision_io.read_state_dict(path)
        return torchvision_io.state_dict_to_canonical(state_dict, spec, tensor_progress("to canonical", progress))
    weights = load_weights(path)
    validate(weights, spec)
    return weights


def write_destination(dst: Endpoint, spec, weights: Mapping[str, np.ndarray], path: str, progress: bool = True) -> None:
    """``--out``: a torchvision state_dict, or the destination model's weights in canonical form."""
    from parity import torchvision_io
    from parity.weights import save_weights

    if dst.kind == TORCHVISION:
        state_dict = torchvision_io.canonical_to_state_dict(weights, spec, tensor_progress("to torchvision", progress))
        torchvision_io.write_state_dict(state_dict, path)
    else:
        save_weights(weights, path)


def weights_dtype(weights: Mapping[str, np.ndarray], requested: str | None) -> str:
    dtypes = sorted({str(value.dtype) for value in weights.values()})
    if requested is None and len(dtypes) > 1:
        raise ConvertError(f"--weights holds tensors of several dtypes ({', '.join(dtypes)}); pick one with --dtype")
    return requested or dtypes[0]


def build_for_loading(backend, spec, dtype: str, seed: int):
    """A model that is loaded right away: without values where the backend can build one
    (``build_empty``, no random initialisation to overwrite), else initialised from ``seed``."""
    build_empty = getattr(backend, "build_empty", None)
    return build_empty(spec, dtype=dtype) if build_empty else backend.build(spec, seed=seed, dtype=dtype)


def source_logits(src_backend, spec, weights: Weights, x: np.ndarray, seed: int, steps: Steps) -> np.ndarray:
    """The source framework's own logits for ``x`` with ``weights``: the reference of the check."""
    with steps("build source"):
        model = build_for_loading(src_backend, spec, str(x.dtype), seed)
    with steps("load source"):
        src_backend.load_weights(model, weights)
    with steps("forward source"):
        return src_backend.forward(model, x)


def loaded_destination(dst_backend, spec, weights: Weights, dtype: str, seed: int, steps: Steps):
    """The destination model holding ``weights``."""
    with steps("build"):
        model = build_for_loading(dst_backend, spec, dtype, seed)
    with steps("load"):
        dst_backend.load_weights(model, weights)
    return model


def one_line(error: Exception) -> str:
    """An error's headline and its first problem, on one line."""
    lines = [line.strip() for line in str(error).splitlines()]
    return f"{lines[0].rstrip(':')}: {lines[1]}" if len(lines) > 1 else lines[0]


@dataclass(frozen=True)
class LogitCheck:
    """The source's and the destination's logits for one random input of ``shape``."""

    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    passed: bool


@dataclass(frozen=True)
class Conversion:
    """What a conversion did: its dtype, each step's wall time, the logit check (None with the check
    off) and whether ``plan.out`` was written (not when the check failed)."""

    plan: Plan
    dtype: str
    seconds: dict[str, float]
    check: LogitCheck | None
    written: bool


def run(
    plan: Plan,
    dtype: str | None = None,
    check_size: tuple[int, int] | None = None,
    check: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> Conversion:
    """Read, convert (checking the logits at ``check_size``, the model's input size by default) and write.

    ``dtype`` casts the weights first; without it the file's one dtype is kept. Each copy of the
    weights is dropped once the next one exists (the source's once the destination model holds them,
    that model once exported), so a conversion holds about two copies of the weights at a time.
    """
    from parity.harness import logit_diff
    from parity.weights import cast

    spec, dst_backend = plan.spec, plan.dst_backend
    height, width = check_size or spec.input_size
    checks = ["build source", "load source", "forward source", "forward"] if check else []
    steps = Steps(["read", "build", "load", "export", "write", *checks], progress)
    try:
        with steps("read"):
            weights = read_source(plan.src, spec, plan.weights, progress)
        dtype = weights_dtype(weights, dtype)
        weights = cast(weights, dtype)
        verdict = None
        if check:
            x = np.random.default_rng(seed).standard_normal((1, spec.in_channels, height, width)).astype(dtype)
            reference = source_logits(plan.src_backend, spec, weights, x, seed, steps)
        model = loaded_destination(dst_backend, spec, weights, dtype, seed, steps)
        del weights
        if check:
            with steps("forward"):
                verdict = LogitCheck(x.shape, *logit_diff(reference, dst_backend.forward(model, x), dtype))
        written = verdict is None or verdict.passed
        if written:
            with steps("export"):
                converted = dst_backend.export_weights(model)
            del model
            with steps("write"):
                write_destination(plan.dst, spec, converted, plan.out, progress)
    except WeightsFileError as error:  # names the file already
        raise ConvertError(f"--weights {one_line(error)}") from None
    except WeightsError as error:
        raise ConvertError(f"--weights {plan.weights}: {one_line(error)}") from None
    finally:
        steps.close()
    return Conversion(plan, dtype, steps.seconds, verdict, written)


def convert(source: str, weights: str | os.PathLike, to: str, out: str | os.PathLike, **options) -> Conversion:
    """``prepare`` then ``run`` (``options``: dtype, check_size, check, seed, progress)."""
    return run(prepare(source, weights, to, out), **options)
