"""``parity convert``: a checkpoint from torchvision, timm or one framework into another, through the canonical form.

The source is ``torchvision:MODEL`` or ``timm:MODEL`` (a state_dict, ``.safetensors`` or ``.pth``/``.pt``) or
``FRAMEWORK[:MODEL]`` (that framework's own checkpoint file, ``parity.native``, or canonical ``.safetensors``).
The destination is a framework, written in its own format (``--format native``, the default) or as canonical
safetensors (``--format canonical``), ``torchvision[:MODEL]``, or ``onnx`` (the torch model exported to ONNX).
The destination model is built and loaded; with the check on, the source framework's own logits and the
destination's for one random input must agree within ``parity.harness.TOLERANCE``, or nothing is written.
With ``dense_eval`` the destination is the fully convolutional model (``parity.dense_to_conv``), checked at
the model's input size, where its 1x1 score map must equal the source's logits, and written in its framework's
format or as its canonical weights.

From Python::

    from parity import convert

    result = convert.convert("torchvision:regnet_x_400mf", "tv.pth", "jax", "jax.msgpack")
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
from parity.specs import SPECS, Architecture, FullyConvolutional, conv_head_problem, get_spec
from parity.weights import Weights, WeightsError, WeightsFileError

TORCHVISION = "torchvision"
TIMM = "timm"  # a source only: timm's checkpoints (``parity.timm_io``)
ONNX = "onnx"  # a destination only: the torch model exported to ONNX (``parity.onnx_runtime``)
FORMATS = ("native", "canonical")  # of a framework's --out: its own checkpoint format, or canonical safetensors


class ConvertError(ValueError):
    """A conversion that cannot run as asked (endpoint, model, path, or a weights file that does not fit)."""


@dataclass(frozen=True)
class Endpoint:
    """One side of a conversion: ``torchvision`` or a framework, and the model named after its colon, if any."""

    kind: str
    model: str | None


def parse_endpoint(text: str, option: str) -> Endpoint:
    kind, _, model = text.partition(":")
    extra = {"--from": TIMM, "--to": ONNX}.get(option)
    if kind != TORCHVISION and kind not in FRAMEWORKS and kind != extra:
        raise ConvertError(
            f"{option}: expected torchvision:MODEL or one of {', '.join((*FRAMEWORKS, extra))} (optionally :MODEL), "
            f"got {text!r}"
        )
    return Endpoint(kind, model or None)


def endpoint_backend(endpoint: Endpoint):
    """The backend of one side; torchvision's comes from ``parity.torchvision_io``, timm's from
    ``parity.timm_io`` and ONNX's from ``parity.onnx_runtime``."""
    if endpoint.kind == TIMM:
        from parity import timm_io

        try:
            return timm_io.backend()
        except BackendUnavailable as error:
            raise ConvertError(str(error)) from None
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
    from parity import timm_io, torchvision_io

    if endpoint.kind == TIMM:
        if endpoint.model in timm_io.MODELS:
            return timm_io.spec_for(endpoint.model)
        raise ConvertError(f"{option}: unknown timm model {endpoint.model!r}; known: {', '.join(timm_io.MODELS)}")
    if endpoint.model in torchvision_io.SPEC_NAMES:
        return torchvision_io.spec_for(endpoint.model)
    if endpoint.kind != TORCHVISION and endpoint.model in SPECS:
        return get_spec(endpoint.model)
    known = [*torchvision_io.SPEC_NAMES, *(sorted(SPECS) if endpoint.kind != TORCHVISION else [])]
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


def file_suffixes(endpoint: Endpoint, option: str, format: str) -> tuple[str, ...]:
    """The file suffixes one side reads (``--weights``) or writes (``--out``, in ``format``)."""
    from parity import native
    from parity.torchvision_io import FILE_SUFFIXES

    if endpoint.kind in (TORCHVISION, TIMM):
        return FILE_SUFFIXES
    if endpoint.kind == ONNX:
        return (".onnx",)
    if option == "--weights":
        return tuple(dict.fromkeys((".safetensors", *native.FORMATS[endpoint.kind].suffixes)))
    return native.FORMATS[endpoint.kind].suffixes if format == "native" else (".safetensors",)


def check_paths(weights: str, out: str, src: Endpoint, dst: Endpoint, format: str = "native") -> None:
    """``weights`` exists and ``out``'s folder does; each has a suffix its side reads or writes."""
    if format not in FORMATS:
        raise ConvertError(f"--format: expected one of {', '.join(FORMATS)}, got {format!r}")
    for option, path, endpoint in (("--weights", Path(weights), src), ("--out", Path(out), dst)):
        suffixes = file_suffixes(endpoint, option, format)
        if not path.name.endswith(suffixes):
            if option == "--out" and endpoint.kind in FRAMEWORKS and format == "native":
                raise ConvertError(
                    f"--out: a native {endpoint.kind} file is {' or '.join(suffixes)} (--format canonical writes "
                    f"canonical .safetensors), got {str(path)!r}"
                )
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
    format: str = "native"
    dense_eval: bool = False

    @property
    def out_spec(self) -> Architecture:
        """The model written: the spec's, or with ``dense_eval`` its fully convolutional form."""
        return FullyConvolutional(self.spec) if self.dense_eval else self.spec


def check_dense_eval(spec: Architecture, dst: Endpoint) -> None:
    """``--dense-eval`` needs a dense head to turn into convolutions and a framework to hold the result."""
    problem = conv_head_problem(spec)
    if problem:
        raise ConvertError(f"--dense-eval: {problem}")
    if dst.kind not in FRAMEWORKS:
        raise ConvertError(
            f"--dense-eval: writes the fully convolutional model for one of {', '.join(FRAMEWORKS)}; "
            f"{dst.kind} has none (--to {dst.kind})"
        )


def prepare(
    source: str,
    weights: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    format: str = "native",
    dense_eval: bool = False,
) -> Plan:
    """Check ``--from source --weights weights --to to --out out --format format [--dense-eval]`` without
    reading the weights."""
    src, dst = parse_endpoint(source, "--from"), parse_endpoint(to, "--to")
    spec = conversion_spec(src, dst)
    if dense_eval:
        check_dense_eval(spec, dst)
    # torchvision's side first: importing torchvision after tensorflow kills the process (a segfault in
    # triton's native library, which torchvision loads through torch._dynamo); tensorflow after it is fine
    dst_backend = endpoint_backend(dst) if dst.kind == TORCHVISION else None
    src_backend = endpoint_backend(src)
    dst_backend = dst_backend or endpoint_backend(dst)
    weights, out = os.fspath(weights), os.fspath(out)
    check_paths(weights, out, src, dst, format)
    return Plan(source, to, src, dst, spec, weights, out, src_backend, dst_backend, format, dense_eval)


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
    """Canonical weights from ``--weights``: a torchvision or timm state_dict, a framework's own checkpoint
    file, or canonical safetensors (``parity.native.load``)."""
    from parity import native, timm_io, torchvision_io

    if src.kind in (TORCHVISION, TIMM):
        io = torchvision_io if src.kind == TORCHVISION else timm_io
        state_dict = torchvision_io.read_state_dict(path)
        return io.state_dict_to_canonical(state_dict, spec, tensor_progress("to canonical", progress))
    return native.load(src.kind, spec, path)


def write_destination(dst: Endpoint, spec, weights: Mapping[str, np.ndarray], path: str, progress: bool = True) -> None:
    """``--out``: a torchvision state_dict, or the destination model's weights in canonical form."""
    from parity import torchvision_io
    from parity.weights import save_weights

    if dst.kind == TORCHVISION:
        state_dict = torchvision_io.canonical_to_state_dict(weights, spec, tensor_progress("to torchvision", progress))
        torchvision_io.write_state_dict(state_dict, path)
    else:
        save_weights(weights, path)


def writes_model(plan: Plan) -> bool:
    """Whether ``--out`` is the destination model in its own format (a framework's native file, or ONNX),
    written from the model itself rather than from its canonical weights."""
    return plan.dst.kind == ONNX or (plan.dst.kind in FRAMEWORKS and plan.format == "native")


def save_model(plan: Plan, model: Any) -> None:
    from parity import native, onnx_runtime

    if plan.dst.kind == ONNX:
        onnx_runtime.save(model, plan.out)
    else:
        native.save(plan.dst.kind, model, plan.out)


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
    With ``plan.dense_eval`` the check runs at the input size alone (where the score map is 1x1).

    ``dtype`` casts the weights first; without it the file's one dtype is kept. Each copy of the
    weights is dropped once the next one exists (the source's once the destination model holds them,
    that model once exported), so a conversion holds about two copies of the weights at a time.
    """
    from parity.dense_eval import class_scores, dense_to_conv
    from parity.harness import logit_diff
    from parity.weights import cast

    spec, dst_backend = plan.spec, plan.dst_backend
    height, width = check_size or spec.input_size
    if plan.dense_eval and (height, width) != spec.input_size:
        raise ConvertError(
            f"--check-size: with --dense-eval the check runs at {spec.name}'s input size "
            f"{','.join(map(str, spec.input_size))}, where the score map is 1x1; got {height},{width}"
        )
    checks = ["build source", "load source", "forward source", "forward"] if check else []
    steps = Steps(["read", "build", "load", *([] if writes_model(plan) else ["export"]), "write", *checks], progress)
    try:
        with steps("read"):
            weights = read_source(plan.src, spec, plan.weights, progress)
        dtype = weights_dtype(weights, dtype)
        weights = cast(weights, dtype)
        verdict = None
        if check:
            x = np.random.default_rng(seed).standard_normal((1, spec.in_channels, height, width)).astype(dtype)
            reference = source_logits(plan.src_backend, spec, weights, x, seed, steps)
        out_spec = spec
        if plan.dense_eval:
            out_spec, weights = dense_to_conv(spec, weights)
        model = loaded_destination(dst_backend, out_spec, weights, dtype, seed, steps)
        del weights
        if check:
            with steps("forward"):
                logits = dst_backend.forward(model, x)
                if plan.dense_eval:
                    logits = class_scores(logits)  # the one position of the 1x1 score map
                verdict = LogitCheck(x.shape, *logit_diff(reference, logits, dtype))
            if hasattr(dst_backend, "drop_compiled"):
                dst_backend.drop_compiled(model)  # a compiled graph's own copy of the weights
        written = verdict is None or verdict.passed
        if written and writes_model(plan):
            with steps("write"):
                save_model(plan, model)
        elif written:
            with steps("export"):
                converted = dst_backend.export_weights(model)
            del model
            with steps("write"):
                write_destination(plan.dst, out_spec, converted, plan.out, progress)
    except WeightsFileError as error:  # names the file already
        raise ConvertError(f"--weights {one_line(error)}") from None
    except WeightsError as error:
        raise ConvertError(f"--weights {plan.weights}: {one_line(error)}") from None
    finally:
        steps.close()
    return Conversion(plan, dtype, steps.seconds, verdict, written)


def convert(
    source: str,
    weights: str | os.PathLike,
    to: str,
    out: str | os.PathLike,
    format: str = "native",
    dense_eval: bool = False,
    **options,
) -> Conversion:
    """``prepare`` then ``run`` (``options``: dtype, check_size, check, seed, progress)."""
    return run(prepare(source, weights, to, out, format, dense_eval), **options)
