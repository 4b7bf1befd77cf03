"""``parity port-check``'s output: the pairs it matched, then ``parity explain``'s screen; and the HTML page."""

from __future__ import annotations

import base64
from pathlib import Path

from rich.table import Table

from parity.html_report import CSS, divergence_png, esc, shape_text
from parity.port_check.check import PortCheck
from parity.port_check.match import transform_text
from parity.report import explain_screen


def pair_rows(check: PortCheck) -> list[tuple[str, str, str, str, str, str]]:
    """(A's tensor, its shape, B's tensor, its shape, transform, how matched) for every tensor moved."""
    return [
        (
            t.name,
            str(t.array.shape),
            p.b.tensors[role].name,
            str(p.b.tensors[role].array.shape),
            transform_text(p, role, check.a.layout, check.b.layout),
            p.how,
        )
        for p in check.pairs
        for role, t in p.a.tensors.items()
    ]


def mismatch_table(check: PortCheck) -> Table:
    table = Table(title=f"structure: {len(check.mismatches)} layers do not line up", title_justify="left")
    for column in ("A layer", "B layer", "what differs"):
        table.add_column(column, overflow="fold")
    for m in check.mismatches:
        table.add_row(m.a.name if m.a else "-", m.b.name if m.b else "-", m.why, style="red")
    return table


def pairs_table(check: PortCheck) -> Table:
    table = Table(
        title=f"{len(check.pairs)} layers matched, {sum(len(p.a.tensors) for p in check.pairs)} tensors A -> B",
        title_justify="left",
    )
    for column in (f"{check.a.framework} (A)", "shape", f"{check.b.framework} (B)", "shape", "transform", "matched by"):
        table.add_column(column, overflow="fold")
    for row in pair_rows(check):
        table.add_row(*row)
    return table


def screen(check: PortCheck) -> list:
    parts = [pairs_table(check)] if check.pairs else []
    if check.mismatches:
        parts.append(mismatch_table(check))
    return parts + explain_screen(check.divergence)


def write_html(check: PortCheck, out: Path) -> None:
    """One self-contained page: the pairs and transforms, the per-layer table and plot, the hint and causes."""
    result = check.divergence
    verdict = "PASS" if check.agree else "FAIL"
    pairs = "".join(
        "<tr>" + "".join(f"<td class=mono>{esc(c)}</td>" for c in row) + "</tr>" for row in pair_rows(check)
    )
    mismatches = "".join(
        f"<tr class=fail><td class=mono>{esc(m.a.name if m.a else '-')}</td>"
        f"<td class=mono>{esc(m.b.name if m.b else '-')}</td><td>{esc(m.why)}</td></tr>"
        for m in check.mismatches
    )
    points = "".join(
        f"<tr class={'fail' if p.exceeds else ''}><td class=mono>{esc(p.point)}</td><td>{esc(p.kind)}</td>"
        f"<td class=mono>{esc(shape_text(p.shape_a))}</td><td class=num>{p.max_abs:.2e}</td>"
        f"<td class=num>{p.max_rel:.2e}</td></tr>"
        for p in result.points
    )
    image = ""
    if result.points:
        png = divergence_png({"B": result.points}, "A", result.dtype, f"{result.spec.name}: max |diff| per layer")
        image = f"<img alt='per-layer max |diff|' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
    hint = ""
    if result.hint is not None:
        hint = f"<p><b>first divergence</b> at <code>{esc(result.first)}</code>: {esc(result.hint.text)}</p>"
        hint += "".join(
            f"<p>cause: {esc(c.pitfall.title if c.pitfall else 'no known pitfall')} at {esc(', '.join(c.points))}</p>"
            for c in result.causes
        )
    structure = (
        f"<h2>Structure</h2><table><tr><th>A</th><th>B</th><th>what differs</th></tr>{mismatches}</table>"
        if mismatches
        else ""
    )
    out.write_text(
        f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(result.spec.name)}: port check</title>
<style>{CSS}</style></head>
<body>
<h1>{esc(result.spec.name)}: port check <span class={verdict.lower()}>{verdict}</span></h1>
<p>A = {esc(result.src)} (reference), B = {esc(result.dst)}; {esc(result.dtype)}; input (NCHW)
{esc(shape_text(result.input_shape))}.</p>
{hint}
<h2>Matched tensors</h2>
<table><tr><th>A</th><th>shape</th><th>B</th><th>shape</th><th>transform</th><th>matched by</th></tr>{pairs}</table>
{structure}
<h2>Per-layer divergence</h2>
<table><tr><th>layer (A)</th><th>op</th><th>shape</th><th>max |diff|</th><th>/ max |A|</th></tr>{points}</table>
{image}
</body></html>
""",
        encoding="utf-8",
    )
