"""Readable output (rich): d2l's summary lines, side-by-side summaries, the transfer matrix, and
``parity explain``'s screen."""

from __future__ import annotations

from collections.abc import Mapping

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from parity.backends import SummaryRow
from parity.harness import Report, normalised_shape, tolerance_text


def d2l_lines(rows: list[SummaryRow]) -> list[str]:
    """The lines d2l's ``layer_summary`` prints."""
    return [row.d2l_line() for row in rows]


def groups_in_order(summaries: Mapping[str, list[SummaryRow]]) -> list[str]:
    return list(dict.fromkeys(r.group for rows in summaries.values() for r in rows))


def compact(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def group_view(framework: str, rows: list[SummaryRow]) -> dict[str, tuple[tuple[int, ...], int]]:
    """{group: (NCHW shape of the group's last layer, the group's trainable parameters)}."""
    view: dict[str, tuple[tuple[int, ...], int]] = {}
    for row in rows:
        params = view.get(row.group, ((), 0))[1] + row.params
        view[row.group] = (normalised_shape(framework, row), params)
    return view


def summary_table(summaries: Mapping[str, list[SummaryRow]], title: str) -> Table:
    """One row per canonical group: each framework's native layers and shapes, then the NCHW shape and
    parameter count, in red where the frameworks disagree."""
    table = Table(title=title, box=box.SIMPLE_HEAVY, show_lines=False)
    table.add_column("group", style="bold")
    for fw in summaries:
        table.add_column(f"{fw}, native")
    table.add_column("NCHW shape")
    table.add_column("params", justify="right")
    views = {fw: group_view(fw, rows) for fw, rows in summaries.items()}
    for group in groups_in_order(summaries):
        cells = [
            "\n".join(f"{r.layer}\n{compact(r.shape)}" for r in rows if r.group == group) or "-"
            for rows in summaries.values()
        ]
        shapes = {views[fw].get(group, ((), -1))[0] for fw in summaries}
        params = {views[fw].get(group, ((), -1))[1] for fw in summaries}
        shape_cell = Text(" / ".join(map(compact, shapes)), style="" if len(shapes) == 1 else "bold red")
        param_cell = Text(
            f"{next(iter(params)):,}" if len(params) == 1 else " / ".join(f"{p:,}" for p in params),
            style="" if len(params) == 1 else "bold red",
        )
        table.add_row(group, *cells, shape_cell, param_cell)
    return table


def matrix_table(report: Report) -> Table:
    """max |logit difference| for every directed transfer, rows = source, columns = destination."""
    table = Table(
        title=f"{report.spec.name}: max |logit diff|, src (row) -> dst (column), {report.dtype}, "
        f"input {report.input_shape}" + (", train mode" if report.train else ""),
        caption=f"PASS: {tolerance_text(report.dtype)}; on "
        + ", ".join(f"{fw} {where}" for fw, where in report.placements.items()),
        box=box.SIMPLE_HEAVY,
    )
    table.add_column("src \\ dst", style="bold")
    for dst in report.frameworks:
        table.add_column(dst, justify="right")
    for src in report.frameworks:
        cells = []
        for dst in report.frameworks:
            if src == dst:
                cells.append(Text("·", style="dim"))
                continue
            t = report.transfer(src, dst)
            cells.append(
                Text(f"{t.max_abs:.2e} {'PASS' if t.passed else 'FAIL'}", style="green" if t.passed else "bold red")
            )
        table.add_row(src, *cells)
    return table


# Rows of the per-layer table shown around the first divergence.
ROWS_BEFORE, ROWS_AFTER = 3, 5
STRUCTURE_ROWS = 8


def explain_screen(result) -> list:
    """``parity explain``'s screen: header, per-layer diffs (or the structural audit), the first
    divergence's tensors on both sides, and the hint."""
    variant = f" (variant {result.variant})" if result.variant else ""
    header = (
        f"[bold]{result.spec.name}[/]: A = {result.src}, B = {result.dst}{escape(variant)}, {result.dtype}, "
        f"input {result.input_shape}\n"
        f"A's weights in B; a point diverges unless {tolerance_text(result.dtype).replace('logit', 'A')}"
    )
    screen = [header]
    if result.load_error is not None:
        audit = "structural audit instead" if result.structure else "and the structural audit finds no differing layer"
        screen.append(
            f"[bold red]B cannot take A's weights[/]: {escape(result.load_error.splitlines()[0].rstrip(':'))}; {audit}"
        )
    else:
        screen.append(points_table(result))
    if result.structure:
        screen.append(structure_table(result))
    if result.mapping:
        screen.append(mapping_table(result))
    if result.hint is not None:
        color = "yellow" if result.hint.pitfall else "red"
        fix = f"\n[dim]how the suite avoids it: {escape(result.hint.pitfall.fix)}[/]" if result.hint.pitfall else ""
        screen.append(f"[bold {color}]hint[/] at [bold]{result.first}[/]: {escape(result.hint.text)}{fix}")
        if result.causes:
            screen.append(causes_table(result))
    elif not result.diverged:
        screen.append(f"[bold green]no divergence[/]: all {len(result.points)} points within tolerance, same structure")
    return screen


# Layers listed per cause; the rest are counted.
CAUSE_POINTS = 4


def causes_table(result) -> Table:
    """Every cause from the first divergence on: the layers whose own computation differs in B (each fed
    B's own inputs), grouped by the pitfall that reproduces them."""
    layers = sum(len(cause.points) for cause in result.causes)
    table = Table(
        title=f"every cause: {layers} layers compute differently on their own inputs, {len(result.causes)} "
        f"cause{'s' if len(result.causes) > 1 else ''}",
        title_justify="left",
    )
    for column in ("cause", "layers", "where", "at the first"):
        table.add_column(column, justify="right" if column == "layers" else "left", overflow="fold")
    for cause in result.causes:
        shown = ", ".join(cause.points[:CAUSE_POINTS])
        more = len(cause.points) - CAUSE_POINTS
        where = shown + (f" and {more} more" if more > 0 else "")
        title = cause.pitfall.title if cause.pitfall else "no known pitfall"
        table.add_row(title, str(len(cause.points)), where, cause.hint.text, style="" if cause.pitfall else "red")
    return table


def shown_points(points) -> tuple[int, int, int | None]:
    """(start, stop, index of the first divergence or None): the rows around the first divergence,
    or the last rows when nothing diverges."""
    first = next((k for k, p in enumerate(points) if p.exceeds), None)
    if first is None:
        return max(len(points) - ROWS_AFTER, 0), len(points), None
    return max(first - ROWS_BEFORE, 0), first + ROWS_AFTER + 1, first


def points_table(result) -> Table:
    points = result.points
    start, stop, first = shown_points(points)
    table = Table(title=f"activations, {len(points)} points in execution order", title_justify="left")
    for column in ("#", "point", "op", "shape (NCHW)", "max |diff|", "/ max |A|", ""):
        table.add_column(column, justify="right" if column in ("#", "max |diff|", "/ max |A|") else "left")
    if start:
        table.add_row("", Text(f"... {start} earlier points, all within tolerance", style="dim"))
    for k, p in enumerate(points[start:stop], start):
        shape = str(p.shape_a) if p.shape_a == p.shape_b else f"{p.shape_a} vs {p.shape_b}"
        verdict = "FIRST" if k == first else ("exceeds" if p.exceeds else "ok")
        style = "bold red reverse" if k == first else ("red" if p.exceeds else "")
        table.add_row(str(k), p.point, p.kind, shape, f"{p.max_abs:.2e}", f"{p.max_rel:.2e}", verdict, style=style)
    rest = points[stop:]
    if rest:
        table.add_row(
            "", Text(f"... {len(rest)} later points, {sum(p.exceeds for p in rest)} exceed tolerance", style="dim")
        )
    return table


def structure_table(result) -> Table:
    shown = result.structure[:STRUCTURE_ROWS]
    table = Table(
        title=f"structural audit: {len(result.structure)} layers differ; "
        f"parameters A {result.parameters_a:,}, B {result.parameters_b:,}",
        title_justify="left",
    )
    for column in ("layer", "A params", "A groups", "B params", "B groups"):
        table.add_column(column, justify="left" if column == "layer" else "right")

    def cell(value: tuple[int, int] | None, k: int) -> str:
        return "-" if value is None else f"{value[k]:,}"

    for k, diff in enumerate(shown):
        table.add_row(
            diff.layer,
            cell(diff.a, 0),
            cell(diff.a, 1),
            cell(diff.b, 0),
            cell(diff.b, 1),
            style="bold red reverse" if k == 0 else "",
        )
    if len(result.structure) > len(shown):
        table.add_row(Text(f"... {len(result.structure) - len(shown)} more layers differ", style="dim"))
    return table


def mapping_table(result) -> Table:
    """The first divergence's canonical tensors with their native names and shapes in A and B (the
    backends' tables), and under B's shape what loading A's weights said about that tensor, if anything."""
    table = Table(title=f"tensors of {result.first}", title_justify="left")
    for column in ("canonical", f"{result.src} (A) native", "shape", f"{result.dst} (B) native", "shape"):
        table.add_column(column, overflow="fold")
    for row in result.mapping:
        table.add_row(
            row.canonical, row.name_a, str(row.shape_a), row.name_b, str(row.shape_b) + load_problem(result, row)
        )
    return table


def load_problem(result, row) -> str:
    """What loading A's weights into B said about one tensor (``expected shape ..., got ...``), as markup."""
    prefixes = (f"{row.canonical!r}: ", f"{row.name_b!r}: ")
    lines = [line.strip() for line in (result.load_error or "").splitlines()]
    return "".join(
        f"\n[red]load: {escape(line.removeprefix(p))}[/]" for line in lines for p in prefixes if line.startswith(p)
    )
