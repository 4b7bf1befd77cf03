"""The ``parity`` command: ``parity summary MODEL``, ``parity compare MODEL``, ``parity convert``,
``parity explain MODEL --from A --to B``, ``parity report MODEL --out report.html``, ``parity port-check``,
``parity dense-eval MODEL`` and ``parity bench``: argument handling and printing (``parity convert``'s pipeline
is ``parity.convert``, ``parity dense-eval``'s ``parity.dense_eval_cli``).

Exit codes: 0 all transfers within tolerance (explain: no divergence), 1 some transfer out of
tolerance (explain: the backends diverge; bench never fails on what it measures),
2 a usage error (unknown model or framework, framework not installed, bad option,
a weights file that does not fit the model), reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from parity import bench
from parity.backends import DTYPES, FRAMEWORKS, BackendUnavailable, get_backend
from parity.devices import DEVICES, DeviceUnavailable
from parity.quiet import quiet_tensorflow
from parity.specs import SPECS, get_spec

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
    shape = (
        parse_shape(args.input_shape, "--input-shape", 4)
        if args.input_shape
        else (1, spec.in_channels, *spec.input_size)
    )
    with console.status("building models"):
        summaries = summarize(spec, frameworks, shape)
    for fw, rows in summaries.items():
        console.print(f"[bold]{fw}[/] layer_summary({native_input_shape(fw, shape)})", highlight=False)
        print("\n".join(d2l_lines(rows)), end="\n\n", flush=True)  # verbatim: rich would expand the tab
    console.print(summary_table(summaries, f"{spec.name}: layer summaries side by side, input (NCHW) {shape}"))
    return 0


@contextlib.contextmanager
def device_usage(device: str) -> Iterator[None]:
    """A framework that cannot run on ``--device`` is a usage error (exit 2), found before any model is built."""
    try:
        yield
    except DeviceUnavailable as error:
        raise UsageError(f"--device {device}: {error}") from None


def cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from parity.harness import compare
    from parity.report import matrix_table, summary_table

    spec = model_spec(args.model)
    frameworks = parse_frameworks(args.frameworks)
    if len(frameworks) < 2:
        raise UsageError("--frameworks: a comparison needs at least two frameworks")
    if "onnx" in frameworks and (args.train or args.dtype != "float32"):
        raise UsageError("--frameworks: onnx runs eval mode in float32 only (no --train, no --dtype float64)")
    if args.batch < 1:
        raise UsageError(f"--batch: expected a positive integer, got {args.batch}")
    height, width = parse_shape(args.input_size, "--input-size", 2) if args.input_size else spec.input_size
    x = (
        np.random.default_rng(args.seed)
        .standard_normal((args.batch, spec.in_channels, height, width))
        .astype(args.dtype)
    )
    err = Console(stderr=True)
    with err.status("comparing") as status, device_usage(args.device):
        report = compare(
            spec,
            frameworks,
            x,
            args.dtype,
            train=args.train,
            seed=args.seed,
            progress=lambda m: status.update(m),
            device=args.device,
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        console.print(
            summary_table(
                report.summaries, f"{spec.name}: layer summaries side by side, input (NCHW) {report.input_shape}"
            )
        )
        console.print(matrix_table(report))
        verdict = "[bold green]PASS[/]" if report.passed else "[bold red]FAIL[/]"
        failed = sum(not t.passed for t in report.transfers)
        console.print(f"{verdict}: {len(report.transfers) - failed}/{len(report.transfers)} transfers within tolerance")
    return 0 if report.passed else EXIT_FAIL


def print_conversion(console: Console, result) -> None:
    """The model, each step's wall time and the logit check's verdict."""
    from parity.harness import tolerance_text
    from parity.weights import count_parameters

    plan, check = result.plan, result.check
    trainable, stats = count_parameters(plan.spec)
    params = f"{trainable:,} parameters + {stats:,} running statistics"
    console.print(f"{plan.source} -> {plan.to}: {plan.out_spec.name}, {params}, {result.dtype}")
    for name, seconds in result.seconds.items():
        console.print(f"  {name:<15}{seconds:8.2f} s")
    if check is not None:
        verdict = "[bold green]PASS[/]" if check.passed else "[bold red]FAIL[/]"
        versus = f"{plan.src.kind} vs {plan.dst.kind}" + ("'s 1x1 score map" if plan.dense_eval else "")
        console.print(
            f"{verdict}: logits at {check.shape}, {versus}: max |diff| {check.max_abs:.3e}, "
            f"relative {check.max_rel:.3e} (need {tolerance_text(result.dtype)})",
            soft_wrap=True,
        )


def cmd_convert(args: argparse.Namespace, console: Console) -> int:
    from parity import convert

    try:
        plan = convert.prepare(args.source, args.weights, args.to, args.out, args.format, args.dense_eval)
        size = parse_shape(args.check_size, "--check-size", 2) if args.check_size else None
        result = convert.run(plan, args.dtype, size, check=args.check, seed=args.seed)
    except convert.ConvertError as error:
        raise UsageError(str(error)) from None
    print_conversion(console, result)
    if not result.written:
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


def checked_variant(framework: str, spec, variant: str | None) -> str | None:
    """``variant`` if ``framework``'s backend builds it for ``spec`` (``parity.variants.check_variant``)."""
    from parity.variants import check_variant

    try:
        check_variant(framework, getattr(get_backend(framework), "VARIANTS", {}), spec, variant)
    except ValueError as error:
        raise UsageError(f"--{error}") from None
    return variant


def cmd_explain(args: argparse.Namespace, console: Console) -> int:
    from parity.divergence import VariantUnavailable, explain
    from parity.report import explain_screen

    spec = model_spec(args.model)
    src, dst = parse_frameworks(args.source)[0], parse_frameworks(args.to)[0]
    if args.train:
        from parity.training.cli import run_explain_train

        try:
            return run_explain_train(args, spec, src, dst, console)
        except ValueError as error:
            raise UsageError(f"--{error}") from None
    args.dtype = args.dtype or "float32"
    variant = checked_variant(dst, spec, args.variant)
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
    console.print(
        f"wrote {out}: {'[bold green]PASS[/]' if report.passed else '[bold red]FAIL[/]'} "
        f"({len(report.transfers)} transfers)"
    )
    return 0 if report.passed else EXIT_FAIL


def cmd_port_check(args: argparse.Namespace, console: Console) -> int:
    from parity.port_check import PortCheckError
    from parity.port_check.cli import run

    try:
        return run(args, console, parse_shape)
    except PortCheckError as error:
        raise UsageError(str(error)) from None


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    if args.rounds < 1:
        raise UsageError(f"--rounds: expected a positive integer, got {args.rounds}")
    frameworks = [n.strip() for n in args.frameworks.split(",")] if args.frameworks else list(FRAMEWORKS)
    if not set(frameworks) <= set(FRAMEWORKS) or len(set(frameworks)) != len(frameworks):
        raise UsageError(f"--frameworks: expected distinct names from {','.join(FRAMEWORKS)}, got {args.frameworks!r}")
    if args.json not in (None, "-") and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"--json: no such directory {str(Path(args.json).parent)!r}")
    sections = [s for s in bench.SECTIONS if s in (args.only or bench.SECTIONS)]
    # with --json -, stdout holds the JSON alone and the tables go to stderr
    shown = Console(stderr=True, highlight=False, width=console.width) if args.json == "-" else console
    result = bench.run(frameworks, sections, args.rounds, shown.print)
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        shown.print(f"wrote {args.json}")
    return 0


def cmd_train_check(args: argparse.Namespace, console: Console) -> int:
    from parity.training.cli import run_train_check

    spec, frameworks = model_spec(args.model), parse_frameworks(args.frameworks)
    try:
        return run_train_check(args, spec, frameworks, console)
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_dense_eval(args: argparse.Namespace, console: Console) -> int:
    from parity.dense_eval_cli import DenseEvalError, run_dense_eval

    spec, frameworks = model_spec(args.model), parse_frameworks(args.frameworks)
    size = parse_shape(args.input_size, "--input-size", 2)
    try:
        return run_dense_eval(args, spec, frameworks, size, console)
    except DenseEvalError as error:
        raise UsageError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    models = ", ".join(sorted(SPECS))
    parser = argparse.ArgumentParser(
        prog="parity", description="Cross-framework CNN parity: summaries and weight-transfer checks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    summary = sub.add_parser("summary", help="d2l layer summaries of MODEL in each framework, side by side")
    summary.add_argument("model", help=f"one of: {models}")
    summary.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    summary.add_argument(
        "--input-shape", help="N,C,H,W (default: 1, C and the model's input size, 96x96 for d2l's models)"
    )
    summary.set_defaults(run=cmd_summary)

    comp = sub.add_parser("compare", help="move weights between every pair of frameworks and compare logits")
    comp.add_argument("model", help=f"one of: {models}")
    comp.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    comp.add_argument("--dtype", choices=DTYPES, default="float32")
    comp.add_argument("--batch", type=int, default=2)
    comp.add_argument("--input-size", help="H,W of the input (default: the model's, 96,96 for d2l's models)")
    comp.add_argument(
        "--train", action="store_true", help="compare training-mode outputs (BatchNorm on batch statistics)"
    )
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="run every framework on the CPU (default) or the first GPU (torch CUDA, jax CUDA, tf GPU)",
    )
    comp.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    comp.set_defaults(run=cmd_compare)

    conv = sub.add_parser(
        "convert",
        help="move a checkpoint between torchvision and a framework through the canonical form, checking the logits",
        description="e.g. parity convert --from torchvision:regnet_x_400mf --weights tv.pth --to jax "
        "--out jax.msgpack; a framework's file is in its own format (--format native) unless --format canonical.",
    )
    conv.add_argument(
        "--from",
        dest="source",
        required=True,
        help="torchvision:MODEL (regnet_x_400mf, ...), timm:MODEL (regnetx_002, resnet50, ...) or FRAMEWORK[:MODEL]",
    )
    conv.add_argument(
        "--weights",
        required=True,
        help="the source's weights: a state_dict (.safetensors, .pth/.pt) for torchvision and timm; a framework's "
        "own file (torch .safetensors/.pth, jax .msgpack, tf .weights.h5, mxnet .params) or canonical .safetensors",
    )
    conv.add_argument("--to", required=True, help="FRAMEWORK, torchvision[:MODEL] or onnx")
    conv.add_argument("--out", required=True, help="where to write the converted weights")
    conv.add_argument(
        "--format",
        choices=("native", "canonical"),
        default="native",
        help="a framework's --out: its own checkpoint format (default; torch .safetensors/.pth, jax .msgpack, "
        "tf .weights.h5, mxnet .params) or the canonical form (.safetensors, parity.load_weights)",
    )
    conv.add_argument("--dtype", choices=DTYPES, help="cast the weights first (default: keep the file's dtype)")
    conv.add_argument(
        "--check-size", help="H,W of the random input whose logits must agree (default: the model's, 224,224)"
    )
    conv.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the logit check (faster for big models)"
    )
    conv.add_argument(
        "--dense-eval",
        action="store_true",
        help="write the fully convolutional model (AlexNet, VGG: the dense head as convolutions), its 1x1 score map "
        "checked against the source's logits at the model's input size",
    )
    conv.add_argument("--seed", type=int, default=0)
    conv.set_defaults(run=cmd_convert)

    dense = sub.add_parser(
        "dense-eval",
        help="AlexNet's or VGG's dense head as convolutions, run on a larger input in each framework: score maps, "
        "top classes",
        description="MODEL's dense head becomes convolutions; each framework runs them on one random H x W input. "
        "Prints each framework's score-map shape and top classes (the map's spatial mean) side by side; exit 0 when "
        "every score map agrees with the first framework's, 1 when one diverges.",
    )
    dense.add_argument("model", help="alexnet, vgg, tv_alexnet, tv_vgg11, tv_vgg16 or tv_vgg16_bn")
    dense.add_argument(
        "--weights",
        required=True,
        help="canonical .safetensors of MODEL or of its fully convolutional form (parity convert --dense-eval "
        "--format canonical); for tv_* also torchvision's state_dict (.pth/.pt/.safetensors)",
    )
    dense.add_argument("--input-size", required=True, help="H,W of the random input, at least the model's")
    dense.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    dense.add_argument("--top", type=int, default=5, help="classes shown per framework (default: 5)")
    dense.add_argument("--dtype", choices=DTYPES, help="cast the weights first (default: keep the file's dtype)")
    dense.add_argument("--seed", type=int, default=0, help="of the random input (default: 0)")
    dense.set_defaults(run=cmd_dense_eval)
    expl = sub.add_parser(
        "explain",
        help="compare two frameworks layer by layer: the first diverging layer and a cause hint",
        description="A's weights (randomised BatchNorm and biases) go into B; every activation point is compared in "
        "execution order. --variant builds B as one of its naive ports: a classic porting pitfall, several "
        "joined by '+', or d2l_FRAMEWORK_tab, the book's code in B's framework.",
    )
    expl.add_argument("model", help=f"one of: {models}")
    expl.add_argument("--from", dest="source", required=True, help=f"A, one of {', '.join(FRAMEWORKS)}")
    expl.add_argument("--to", required=True, help=f"B, one of {', '.join(FRAMEWORKS)}")
    expl.add_argument(
        "--variant", help="build B as this naive port: PITFALL[+PITFALL...] (each backend's VARIANTS) or d2l_FW_tab"
    )
    expl.add_argument("--dtype", choices=DTYPES, help="default: float32 (--train: float64)")
    expl.add_argument(
        "--train",
        action="store_true",
        help="train A and B side by side (SGD, 6 steps, the rate changing after 3): the first diverging step and "
        "tensor, its cause replayed in numpy; --variant then names a training pitfall of B",
    )
    expl.add_argument("--input-size", help="H,W of the input (default: the model's)")
    expl.set_defaults(run=cmd_explain)

    rep = sub.add_parser(
        "report", help="a self-contained HTML page: summaries, parameter mapping, transfer matrix, per-layer plot"
    )
    rep.add_argument("model", help=f"one of: {models}")
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    rep.add_argument("--dtype", choices=DTYPES, default="float32")
    rep.set_defaults(run=cmd_report)

    port = sub.add_parser(
        "port-check",
        help="check your own port: A's weights into B, every layer compared, the first divergence and its cause",
        description="Each factory, importable from the current directory or PYTHONPATH, returns a built model: a torch "
        "nn.Module, a Flax (module, variables) pair, a Keras model or a Gluon block. A is the reference; random NCHW "
        "input (NHWC where B wants it) with A's input channels.",
    )
    port.add_argument("--a", required=True, help="module:factory of the reference model")
    port.add_argument("--b", required=True, help="module:factory of the port")
    port.add_argument("--input-size", required=True, help="H,W of the random input")
    port.add_argument("--html", help="also write a self-contained HTML report to this file")
    port.add_argument(
        "--map", action="append", help="A_REGEX=B_NAME: pair layers by name instead of automatically (repeatable)"
    )
    port.add_argument("--dtype", choices=DTYPES, default="float32")
    port.add_argument("--batch", type=int, default=2)
    port.add_argument("--seed", type=int, default=0)
    port.set_defaults(run=cmd_port_check)

    train = sub.add_parser(
        "train-check",
        help="K optimizer steps in every framework from the same weights and batches: losses and weight diffs to torch",
    )
    train.add_argument("model", help=f"one of: {models}")
    train.add_argument("--steps", type=int, default=6, help="optimizer steps; the rate changes after 3 (default: 6)")
    train.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    train.add_argument("--dtype", choices=DTYPES, default="float64")
    train.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    train.add_argument("--batch", type=int, default=4)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=cmd_train_check)

    ben = sub.add_parser(
        "bench",
        help="forward img/s against torch, build and first-call times, and a RegNetX-32GF conversion's time and memory",
        description="Forward throughput of every backend at batch 1 and 8 (RegNetX32 96x96, RegNetX-400MF 224x224), "
        "interleaved with a plain-PyTorch reference (torchvision's regnet_x_400mf) and reported as ratios to it; "
        "build and first-call seconds in fresh processes; parity convert of a RegNetX-32GF checkpoint into each "
        "framework: wall time and peak memory above the import baseline. Never fails on a slow result.",
    )
    ben.add_argument(
        "--rounds", type=int, default=bench.ROUNDS, help=f"interleaved forward rounds (default: {bench.ROUNDS})"
    )
    ben.add_argument("--only", action="append", choices=bench.SECTIONS, help="run this section only (repeatable)")
    ben.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    ben.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-': stdout alone)")
    ben.set_defaults(run=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()  # before anything imports TensorFlow
    args = build_parser().parse_args(argv)
    try:
        # rich assumes 80 columns when stdout is not a terminal; the side-by-side tables need more
        return args.run(args, Console(highlight=False, width=None if sys.stdout.isatty() else 132))
    except UsageError as error:
        print(f"parity: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
