"""The ``parity`` command: ``parity summary MODEL``, ``parity compare MODEL``, ``parity convert``,
``parity explain MODEL --from A --to B`` and ``parity report MODEL --out report.html``.

Exit codes: 0 all transfers within tolerance (explain: no divergence), 1 some transfer out of
tolerance (explain: the backends diverge),
2 a usage error (unknown model or framework, framework not installed, bad option,
a weights file that does not fit the model), reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from rich.console import Console

from parity.backends import DTYPES, FRAMEWORKS, BackendUnavailable, get_backend
from parity.specs import SPECS, get_spec
from parity.weights import WeightsError

EXIT_FAIL, EXIT_USAGE = 1, 2


class UsageError(Exception):
    pass


def parse_frameworks(text: str | None) -> list[str]:
    """The named frameworks, or every framework; each must be known and installed."""
    names = [n.strip() for n in text.split(",") if n.strip()] if text else list(FRAMEWORKS)
    for name in names:
        try:
            get_backend(name)
        except KeyError as error:
            raise UsageError(error.args[0]) from None
        except BackendUnavailable:
            hint = "" if text else " (or pick installed ones with --frameworks)"
            raise UsageError(f"{name} is not installed: pip install -e '.[{name}]'{hint}") from None
    if len(names) != len(set(names)):
        raise UsageError(f"--frameworks names a framework twice: {text}")
    return names


def parse_shape(text: str, option: str, rank: int) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != rank or min(shape) < 1:
        raise UsageError(f"{option}: expected {rank} positive integers separated by commas, got {text!r}")
    return shape


def model_spec(name: str):
    try:
        return get_spec(name)
    except KeyError as error:
        raise UsageError(error.args[0]) from None


def cmd_summary(args: argparse.Namespace, console: Console) -> int:
    from parity.harness import native_input_shape, summarize
    from parity.report import d2l_lines, summary_table

    spec = model_spec(args.model)
    frameworks = parse_frameworks(args.frameworks)
    shape = parse_shape(args.input_shape, "--input-shape", 4) if args.input_shape else (1, spec.in_channels, *spec.input_size)
    with console.status("building models"):
        summaries = summarize(spec, frameworks, shape)
    for fw, rows in summaries.items():
        console.print(f"[bold]{fw}[/] layer_summary({native_input_shape(fw, shape)})", highlight=False)
        print("\n".join(d2l_lines(rows)), end="\n\n", flush=True)  # verbatim: rich would expand the tab
    console.print(summary_table(summaries, f"{spec.name}: layer summaries side by side, input (NCHW) {shape}"))
    return 0


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from parity.harness import compare
    from parity.report import matrix_table, summary_table

    spec = model_spec(args.model)
    frameworks = parse_frameworks(args.frameworks)
    if len(frameworks) < 2:
        raise UsageError("--frameworks: a comparison needs at least two frameworks")
    if args.batch < 1:
        raise UsageError(f"--batch: expected a positive integer, got {args.batch}")
    height, width = parse_shape(args.input_size, "--input-size", 2) if args.input_size else spec.input_size
    x = np.random.default_rng(args.seed).standard_normal((args.batch, spec.in_channels, height, width)).astype(args.dtype)
    err = Console(stderr=True)
    with err.status("comparing") as status:
        report = compare(spec, frameworks, x, args.dtype, train=args.train, seed=args.seed, progress=lambda m: status.update(m))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        console.print(summary_table(report.summaries, f"{spec.name}: layer summaries side by side, input (NCHW) {report.input_shape}"))
        console.print(matrix_table(report))
        verdict = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
        failed = sum(not t.passed for t in report.transfers)
        console.print(f"{verdict}: {len(report.transfers) - failed}/{len(report.transfers)} transfers within tolerance")
    return 0 if report.passed else EXIT_FAIL


TORCHVISION = "torchvision"


@dataclass(frozen=True)
class Endpoint:
    """One side of a conversion: ``torchvision`` or a framework, and the model named after its colon, if any."""

    kind: str
    model: str | None


def parse_endpoint(text: str, option: str) -> Endpoint:
    kind, _, model = text.partition(":")
    if kind != TORCHVISION and kind not in FRAMEWORKS:
        raise UsageError(f"{option}: expected torchvision:MODEL or one of {', '.join(FRAMEWORKS)} (optionally :MODEL), got {text!r}")
    return Endpoint(kind, model or None)


def endpoint_backend(endpoint: Endpoint):
    """The backend of one side; torchvision's comes from ``parity.torchvision_io``."""
    if endpoint.kind != TORCHVISION:
        return get_backend(parse_frameworks(endpoint.kind)[0])
    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise UsageError("torchvision is not installed: pip install -e '.[torch]'") from None
    from parity import torchvision_io

    return torchvision_io.BACKEND


def named_spec(endpoint: Endpoint, option: str):
    """The spec of a torchvision model name (``regnet_x_400mf``) or, for a framework, a parity model name too."""
    from parity import torchvision_io

    if endpoint.model in torchvision_io.MODELS:
        return torchvision_io.spec_for(endpoint.model)
    if endpoint.kind != TORCHVISION and endpoint.model in SPECS:
        return get_spec(endpoint.model)
    known = [*torchvision_io.MODELS, *(sorted(SPECS) if endpoint.kind != TORCHVISION else [])]
    raise UsageError(f"{option}: unknown {endpoint.kind} model {endpoint.model!r}; known: {', '.join(known)}")


def conversion_spec(src: Endpoint, dst: Endpoint):
    """The one model both sides name (at least one must)."""
    named = {option: named_spec(e, option) for option, e in (("--from", src), ("--to", dst)) if e.model}
    if not named:
        raise UsageError("--from: name the model, e.g. torchvision:regnet_x_400mf or jax:regnetx_400mf")
    specs = list(named.values())
    if len(specs) == 2 and specs[0] != specs[1]:
        raise UsageError(f"--from names {specs[0].name} but --to names {specs[1].name}")
    if TORCHVISION in (src.kind, dst.kind):
        from parity import torchvision_io

        try:
            torchvision_io.model_for(specs[0])
        except KeyError as error:
            raise UsageError(error.args[0]) from None
    return specs[0]


def check_paths(args: argparse.Namespace, src: Endpoint, dst: Endpoint) -> None:
    from parity.torchvision_io import FILE_SUFFIXES

    for option, path, endpoint in (("--weights", Path(args.weights), src), ("--out", Path(args.out), dst)):
        suffixes = FILE_SUFFIXES if endpoint.kind == TORCHVISION else (".safetensors",)
        if path.suffix not in suffixes:
            raise UsageError(f"{option}: expected a {' or '.join(suffixes)} file for {endpoint.kind}, got {str(path)!r}")
    if not Path(args.weights).is_file():
        raise UsageError(f"--weights: no such file {args.weights!r}")
    if not Path(args.out).resolve().parent.is_dir():
        raise UsageError(f"--out: no such directory {str(Path(args.out).parent)!r}")


def one_line(error: WeightsError) -> str:
    """A WeightsError's headline and its first problem, on one line."""
    lines = [line.strip() for line in str(error).splitlines()]
    return f"{lines[0].rstrip(':')}: {lines[1]}" if len(lines) > 1 else lines[0]


class Steps:
    """A progress bar over a conversion's steps (on stderr, when it is a terminal) that times each step."""

    def __init__(self, names: Sequence[str]):
        from tqdm import tqdm

        self.bar = tqdm(total=len(names), unit="step", file=sys.stderr, disable=None)
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


def tensor_progress(description: str):
    """A per-tensor progress bar for the long loops over a big model's tensors."""
    from tqdm import tqdm

    return functools.partial(tqdm, desc=description, unit="tensor", leave=False, file=sys.stderr, disable=None)


def read_source(src: Endpoint, spec, path: str):
    """Canonical weights from ``--weights``: a torchvision state_dict, or canonical safetensors."""
    from parity import torchvision_io
    from parity.weights import validate

    if src.kind == TORCHVISION:
        return torchvision_io.state_dict_to_canonical(torchvision_io.read_state_dict(path), spec, tensor_progress("to canonical"))
    weights = torchvision_io.read_safetensors(path)
    validate(weights, spec)
    return weights


def write_destination(dst: Endpoint, spec, weights, path: str) -> None:
    """``--out``: a torchvision state_dict, or the destination model's weights in canonical form."""
    from parity import torchvision_io
    from parity.weights import save_weights

    if dst.kind == TORCHVISION:
        torchvision_io.write_state_dict(torchvision_io.canonical_to_state_dict(weights, spec, tensor_progress("to torchvision")), path)
    else:
        save_weights(weights, path)


def weights_dtype(weights, requested: str | None) -> str:
    dtypes = sorted({str(value.dtype) for value in weights.values()})
    if requested is None and len(dtypes) > 1:
        raise UsageError(f"--weights holds tensors of several dtypes ({', '.join(dtypes)}); pick one with --dtype")
    return requested or dtypes[0]


def source_logits(src_backend, spec, weights, x: np.ndarray, seed: int, steps: Steps) -> np.ndarray:
    """The source framework's own logits for ``x`` with ``weights``: the reference of the check."""
    with steps("build source"):
        model = src_backend.build(spec, seed=seed, dtype=str(x.dtype))
    with steps("load source"):
        src_backend.load_weights(model, weights)
    with steps("forward source"):
        return src_backend.forward(model, x)


def convert_into(dst_backend, spec, weights, dtype: str, x: np.ndarray | None, seed: int, steps: Steps):
    """(the destination model's weights, its logits for ``x`` or None): build, load, forward, export."""
    with steps("build"):
        model = dst_backend.build(spec, seed=seed, dtype=dtype)
    with steps("load"):
        dst_backend.load_weights(model, weights)
    logits = None
    if x is not None:
        with steps("forward"):
            logits = dst_backend.forward(model, x)
    with steps("export"):
        return dst_backend.export_weights(model), logits


def print_conversion(console: Console, args: argparse.Namespace, spec, dtype: str, steps: Steps) -> None:
    from parity.weights import count_parameters

    trainable, stats = count_parameters(spec)
    console.print(f"{args.source} -> {args.to}: {spec.name}, {trainable:,} parameters + {stats:,} running statistics, {dtype}")
    for name, seconds in steps.seconds.items():
        console.print(f"  {name:<15}{seconds:8.2f} s")


def cmd_convert(args: argparse.Namespace, console: Console) -> int:
    from parity.harness import logit_diff, tolerance_text
    from parity.weights import cast

    src, dst = parse_endpoint(args.source, "--from"), parse_endpoint(args.to, "--to")
    spec = conversion_spec(src, dst)
    src_backend, dst_backend = endpoint_backend(src), endpoint_backend(dst)
    check_paths(args, src, dst)
    height, width = parse_shape(args.check_size, "--check-size", 2) if args.check_size else spec.input_size
    checks = ["build source", "load source", "forward source", "forward"] if args.check else []
    steps = Steps(["read", "build", "load", "export", "write", *checks])
    try:
        with steps("read"):
            weights = read_source(src, spec, args.weights)
        dtype = weights_dtype(weights, args.dtype)
        weights = cast(weights, dtype)
        x = np.random.default_rng(args.seed).standard_normal((1, spec.in_channels, height, width)).astype(dtype) if args.check else None
        reference = source_logits(src_backend, spec, weights, x, args.seed, steps) if args.check else None
        converted, logits = convert_into(dst_backend, spec, weights, dtype, x, args.seed, steps)
        verdict = logit_diff(reference, logits, dtype) if args.check else None
        if verdict is None or verdict[2]:
            with steps("write"):
                write_destination(dst, spec, converted, args.out)
    except WeightsError as error:
        raise UsageError(f"--weights {args.weights}: {one_line(error)}") from None
    finally:
        steps.close()

    print_conversion(console, args, spec, dtype, steps)
    if verdict is not None:
        max_abs, max_rel, passed = verdict
        console.print(
            f"{'[bold green]PASS[/]' if passed else '[bold red]FAIL[/]'}: logits at {x.shape}, {src.kind} vs {dst.kind}: "
            f"max |diff| {max_abs:.3e}, relative {max_rel:.3e} (need {tolerance_text(dtype)})",
            soft_wrap=True,
        )
        if not passed:
            console.print(f"{args.out} not written")
            return EXIT_FAIL
    console.print(f"wrote {args.out}")
    return 0


def explain_input(spec, size: str | None, dtype: str) -> np.ndarray:
    """The random NCHW input of ``parity explain`` (batch 2, the model's size unless ``--input-size``)."""
    from parity.specs import spatial_size_problem

    height, width = parse_shape(size, "--input-size", 2) if size else spec.input_size
    problem = spatial_size_problem(spec, height, width)
    if problem:
        raise UsageError(f"--input-size: {problem}")
    return np.random.default_rng(0).standard_normal((2, spec.in_channels, height, width)).astype(dtype)


def checked_variant(framework: str, variant: str | None) -> str | None:
    known = getattr(get_backend(framework), "VARIANTS", {})
    if variant is not None and variant not in known:
        names = ", ".join(known) or "none"
        raise UsageError(f"--variant: {framework} has no variant {variant!r}; known {framework} variants: {names}")
    return variant


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    from parity.divergence import VariantUnavailable, explain
    from parity.report import explain_screen

    spec = model_spec(args.model)
    src, dst = parse_frameworks(args.source)[0], parse_frameworks(args.to)[0]
    variant = checked_variant(dst, args.variant)
    x = explain_input(spec, args.input_size, args.dtype)
    with Console(stderr=True).status("explaining") as status:
        try:
            result = explain(spec, src, dst, x, variant, args.dtype, progress=lambda m: status.update(m))
        except VariantUnavailable as error:
            raise UsageError(f"--variant: {error}") from None
    for renderable in explain_screen(result):
        console.print(renderable)
    return EXIT_FAIL if result.diverged else 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from parity.html_report import write_report

    spec = model_spec(args.model)
    frameworks = parse_frameworks(args.frameworks)
    if len(frameworks) < 2:
        raise UsageError("--frameworks: a report needs at least two frameworks")
    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        raise UsageError(f"--out: no such directory {str(out.parent)!r}")
    x = np.random.default_rng(0).standard_normal((2, spec.in_channels, *spec.input_size)).astype(args.dtype)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    report = write_report(spec, frameworks, x, args.dtype, out, progress)
    console.print(f"wrote {out}: {'[bold green]PASS[/]' if report.passed else '[bold red]FAIL[/]'} ({len(report.transfers)} transfers)")
    return 0 if report.passed else EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    models = ", ".join(sorted(SPECS))
    parser = argparse.ArgumentParser(prog="parity", description="Cross-framework CNN parity: summaries and weight-transfer checks.")
    sub = parser.add_subparsers(dest="command", required=True)

    summary = sub.add_parser("summary", help="d2l layer summaries of MODEL in each framework, side by side")
    summary.add_argument("model", help=f"one of: {models}")
    summary.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    summary.add_argument("--input-shape", help="N,C,H,W (default: 1, C and the model's input size, 96x96 for d2l's models)")
    summary.set_defaults(run=cmd_summary)

    comp = sub.add_parser("compare", help="move weights between every pair of frameworks and compare logits")
    comp.add_argument("model", help=f"one of: {models}")
    comp.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    comp.add_argument("--dtype", choices=DTYPES, default="float32")
    comp.add_argument("--batch", type=int, default=2)
    comp.add_argument("--input-size", help="H,W of the input (default: the model's, 96,96 for d2l's models)")
    comp.add_argument("--train", action="store_true", help="compare training-mode outputs (BatchNorm on batch statistics)")
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    comp.set_defaults(run=cmd_compare)

    conv = sub.add_parser(
        "convert",
        help="move a checkpoint between torchvision and a framework through the canonical form, checking the logits",
        description="e.g. parity convert --from torchvision:regnet_x_400mf --weights tv.pth --to jax --out jax.safetensors; "
        "a framework's file holds its weights in canonical form (parity.load_weights).",
    )
    conv.add_argument("--from", dest="source", required=True, help="torchvision:MODEL (regnet_x_400mf, ...) or FRAMEWORK[:MODEL]")
    conv.add_argument("--weights", required=True, help="the source's weights: .safetensors (or .pth/.pt for torchvision)")
    conv.add_argument("--to", required=True, help="FRAMEWORK or torchvision[:MODEL]")
    conv.add_argument("--out", required=True, help="where to write the converted weights")
    conv.add_argument("--dtype", choices=DTYPES, help="cast the weights first (default: keep the file's dtype)")
    conv.add_argument("--check-size", help="H,W of the random input whose logits must agree (default: the model's, 224,224)")
    conv.add_argument("--no-check", dest="check", action="store_false", help="skip the logit check (faster for big models)")
    conv.add_argument("--seed", type=int, default=0)
    conv.set_defaults(run=cmd_convert)
    expl = sub.add_parser(
        "explain",
        help="compare two frameworks layer by layer: the first diverging layer and a cause hint",
        description="A's weights (randomised BatchNorm and biases) go into B; every activation point is compared in "
        "execution order. --variant builds B as one of its naive ports (a classic porting pitfall).",
    )
    expl.add_argument("model", help=f"one of: {models}")
    expl.add_argument("--from", dest="source", required=True, help=f"A, one of {', '.join(FRAMEWORKS)}")
    expl.add_argument("--to", required=True, help=f"B, one of {', '.join(FRAMEWORKS)}")
    expl.add_argument("--variant", help="build B as this naive port (see each backend's VARIANTS)")
    expl.add_argument("--dtype", choices=DTYPES, default="float32")
    expl.add_argument("--input-size", help="H,W of the input (default: the model's)")
    expl.set_defaults(run=cmd_explain)

    rep = sub.add_parser("report", help="a self-contained HTML page: summaries, parameter mapping, transfer matrix, per-layer plot")
    rep.add_argument("model", help=f"one of: {models}")
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    rep.add_argument("--dtype", choices=DTYPES, default="float32")
    rep.set_defaults(run=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # rich assumes 80 columns when stdout is not a terminal; the side-by-side tables need more
        return args.run(args, Console(highlight=False, width=None if sys.stdout.isatty() else 132))
    except UsageError as error:
        print(f"parity: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
