"""The ``parity`` command: ``parity summary MODEL`` and ``parity compare MODEL``.

Exit codes: 0 all transfers within tolerance, 1 some transfer out of tolerance,
2 a usage error (unknown model or framework, framework not installed, bad option),
reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import numpy as np
from rich.console import Console

from parity.backends import DTYPES, FRAMEWORKS, BackendUnavailable, get_backend
from parity.spec import SPECS, get_spec

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
        except BackendUnavailable as error:
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
    shape = parse_shape(args.input_shape, "--input-shape", 4) if args.input_shape else (1, spec.in_channels, 96, 96)
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
    height, width = parse_shape(args.input_size, "--input-size", 2)
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


def build_parser() -> argparse.ArgumentParser:
    models = ", ".join(sorted(SPECS))
    parser = argparse.ArgumentParser(prog="parity", description="Cross-framework CNN parity: summaries and weight-transfer checks.")
    sub = parser.add_subparsers(dest="command", required=True)

    summary = sub.add_parser("summary", help="d2l layer summaries of MODEL in each framework, side by side")
    summary.add_argument("model", help=f"one of: {models}")
    summary.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    summary.add_argument("--input-shape", help="N,C,H,W (default 1,C,96,96 as in d2l)")
    summary.set_defaults(run=cmd_summary)

    comp = sub.add_parser("compare", help="move weights between every pair of frameworks and compare logits")
    comp.add_argument("model", help=f"one of: {models}")
    comp.add_argument("--frameworks", help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all)")
    comp.add_argument("--dtype", choices=DTYPES, default="float32")
    comp.add_argument("--batch", type=int, default=2)
    comp.add_argument("--input-size", default="96,96", help="H,W of the input (default 96,96)")
    comp.add_argument("--train", action="store_true", help="compare training-mode outputs (BatchNorm on batch statistics)")
    comp.add_argument("--seed", type=int, default=0)
    comp.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    comp.set_defaults(run=cmd_compare)
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
