"""``parity train-check MODEL``: K optimizer steps in every framework, a per-step table of losses and of each
framework's largest weight/statistic difference to torch; exit 1 where a difference exceeds its bound.
``parity explain --train``: the first diverging step and tensor of B against A, and its cause."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from parity.specs import spatial_size_problem
from parity.training.core import NonFinite
from parity.training.explain import FIXES, KINDS, explain_train
from parity.training.optim import OptimizerSpec, UnsupportedOption
from parity.training.run import TOLERANCE, Verdict, diverged, train_check
from parity.training.variants import TRAIN_VARIANTS


def run_train_check(args: argparse.Namespace, spec, frameworks: list[str], console: Console) -> int:
    """Exit status: 0 within bounds, 1 diverged (or NaN/Inf), 2 an option a framework cannot express."""
    if args.steps < 1:
        raise ValueError(f"--steps: expected a positive number of steps, got {args.steps}")
    optimizer = OptimizerSpec.default(args.optimizer)
    console.print(f"{spec.name}: {optimizer.describe()}, {args.steps} steps, {args.dtype}, dropout off")
    try:
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("training", total=args.steps * len(frameworks) + len(frameworks))
            results = train_check(
                spec,
                optimizer,
                args.steps,
                args.dtype,
                frameworks,
                batch=args.batch,
                seed=args.seed,
                progress=lambda message: progress.update(task, advance=1, description=message),
            )
    except NonFinite as error:
        console.print(f"[red]non-finite[/red]: {error}")
        return 1
    except UnsupportedOption as error:
        raise ValueError(str(error)) from None
    table = Table(
        title="max |w - w_torch| / max |w_torch| after each step: the tensor furthest beyond (or nearest to) its "
        f"bound ({TOLERANCE[args.dtype]:g}; * {TOLERANCE[args.dtype]:g} + AdamW's residue bound)"
    )
    table.add_column("step")
    table.add_column("lr")
    names = list(results[0].losses)
    for fw in names:
        table.add_column(f"loss {fw}")
    for fw in names[1:]:
        table.add_column(f"diff {fw}")
    for r in results:
        cells = [f"{r.losses[fw]:.6f}" for fw in names]
        cells += [_verdict_cell(r.diffs[fw]) for fw in names[1:]]
        table.add_row(str(r.step + 1), f"{r.lr:g}", *cells)
    console.print(table)
    if any(v.derived for r in results for v in r.diffs.values()):
        console.print(
            "* a conv or dense bias feeding a BatchNorm alone (exact gradient 0) or that BatchNorm's running mean: "
            "AdamW turns each framework's gradient residue r into a step lr * r / eps, so it is judged within "
            "the bound shown, derived from AdamW's formula (parity.training.run.ResidueBound)"
        )
    return 1 if diverged(results) else 0


def _verdict_cell(verdict: Verdict) -> str:
    """``diff tensor``, red beyond its bound; a derived bound marked ``*`` and shown."""
    cell = f"{'[red]' if verdict.over else ''}{verdict.diff:.2e} {escape(verdict.tensor)}"
    return f"{cell} *≤{verdict.bound:.1e}" if verdict.derived else cell


def run_explain_train(args: argparse.Namespace, spec, src: str, dst: str, console: Console) -> int:
    """``parity explain --train``: exit 0 no divergence, 1 a divergence (or NaN/Inf); ValueError on bad usage,
    its message starting with the option's name."""
    dtype, size = args.dtype or "float64", _input_size(spec, args.input_size) if args.input_size else None
    try:
        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("training", total=None)
            result = explain_train(
                spec,
                src,
                dst,
                args.variant,
                dtype,
                size=size,
                progress=lambda message: progress.update(task, description=message),
            )
    except NonFinite as error:
        console.print(f"[red]non-finite[/red]: {error}")
        return 1
    except UnsupportedOption as error:
        raise ValueError(f"variant: {error}") from None
    for renderable in explain_train_screen(result):
        console.print(renderable)
    return 1 if result.diverged else 0


def _input_size(spec, text: str) -> tuple[int, int]:
    try:
        size = tuple(int(n) for n in text.split(","))
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"input-size: expected H,W (two positive integers), got {text!r}")
    problem = spatial_size_problem(spec, *size)
    if problem:
        raise ValueError(f"input-size: {problem}")
    return size


def explain_train_screen(result) -> list:
    """The header, the per-step table up to the first divergence, the replays and the hint."""
    bound = TOLERANCE[result.dtype]
    variant = f" (variant {result.variant})" if result.variant else ""
    screen = [
        f"[bold]{result.spec.name}[/]: A = {result.src}, B = {result.dst}{escape(variant)}, {result.dtype}, "
        f"input {result.input_shape}, {result.optimizer.describe()}, dropout off\n"
        f"same start weights and batches; a tensor diverges when max |B - A| / max |A| > {bound:g} "
        "(* AdamW's biases whose exact gradient is 0 and their running means: the bound shown, "
        "parity.training.run.ResidueBound)"
    ]
    table = Table(title="largest relative difference of B to A per step (tensor)")
    for column in ("step", "lr", f"loss {result.src}", f"loss {result.dst}", *KINDS):
        table.add_column(column)
    for s in result.steps:
        cells = [_verdict_cell(s.worst[k]) if k in s.worst else "-" for k in KINDS]
        table.add_row(str(s.step + 1), f"{s.lr:g}", f"{s.losses[0]:.6f}", f"{s.losses[1]:.6f}", *cells)
    screen.append(table)
    if not result.diverged:
        screen.append(f"[bold green]no divergence[/]: {len(result.steps)} steps within {bound:g}")
        return screen
    step, kind, tensor = result.first
    screen.append(f"[bold red]first divergence[/]: step {step + 1}, {kind} [bold]{escape(tensor)}[/]")
    if result.replays:
        what = "running statistics" if kind == "running statistic" else "weights"
        replays = Table(title=f"B's {what} after step {step + 1} against each formula replayed in numpy from A's")
        for column in ("formula", "max |replay - B| / max |replay|", "in"):
            replays.add_column(column)
        for r in result.replays:
            mark = "[green]" if r.max_rel <= bound else ""
            replays.add_row(r.formula, f"{mark}{r.max_rel:.2e}", escape(r.tensor))
        screen.append(replays)
    cause = result.cause
    if cause is None:
        why = "the train-mode forward differs" if kind == "activation" else "no replayed formula reproduces B"
        screen.append(f"[bold red]hint[/]: {why}; compare the models in eval mode with parity explain (no --train)")
    else:
        screen.append(
            f"[bold yellow]hint[/]: {escape(cause)}: {escape(TRAIN_VARIANTS[cause][1])}\n"
            f"[dim]how the suite avoids it: {escape(FIXES[cause])}[/]"
        )
    return screen
