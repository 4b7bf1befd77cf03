"""Readable output: d2l's summary lines, side-by-side summaries and the transfer matrix (rich)."""

from __future__ import annotations

from typing import Mapping

from rich import box
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
        cells = ["\n".join(f"{r.layer}\n{compact(r.shape)}" for r in rows if r.group == group) or "-" for rows in summaries.values()]
        shapes = {views[fw].get(group, ((), -1))[0] for fw in summaries}
        params = {views[fw].get(group, ((), -1))[1] for fw in summaries}
        shape_cell = Text(" / ".join(map(compact, shapes)), style="" if len(shapes) == 1 else "bold red")
        param_cell = Text(f"{next(iter(params)):,}" if len(params) == 1 else " / ".join(f"{p:,}" for p in params), style="" if len(params) == 1 else "bold red")
        table.add_row(group, *cells, shape_cell, param_cell)
    return table


def matrix_table(report: Report) -> Table:
    """max |logit difference| for every directed transfer, rows = source, columns = destination."""
    table = Table(
        title=f"{report.spec.name}: max |logit diff|, src (row) -> dst (column), {report.dtype}, input {report.input_shape}"
        + (", train mode" if report.train else ""),
        caption=f"PASS: {tolerance_text(report.dtype)}",
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
            cells.append(Text(f"{t.max_abs:.2e} {'PASS' if t.passed else 'FAIL'}", style="green" if t.passed else "bold red"))
        table.add_row(src, *cells)
    return table
