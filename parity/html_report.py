"""``parity report``: one self-contained HTML page (inline CSS, the plot as an embedded PNG, no URLs).

Sections: each framework's d2l layer summary side by side, the parameter mapping
(canonical name -> each framework's native name, shape and transform), the directed
transfer matrix with PASS/FAIL, and a per-layer divergence plot: max |diff| at every
activation point of each framework against a reference (torch when it is there), with
the reference's weights in every model.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from parity.backends import SummaryRow, get_backend
from parity.divergence import PointDiff, point_diffs, tolerance_bound
from parity.harness import TOLERANCE, Report, TransferRig, compare, tolerance_text
from parity.specs import Spec
from parity.weights import schema

EXACT = 1e-18  # where the log-scale plot draws a difference of exactly 0

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, td.mono { font-family: ui-monospace, monospace; }
td { white-space: nowrap; }
.side { display: flex; gap: 16px; align-items: flex-start; flex-wrap: wrap; }
.pass { background: #dff5e1; color: #145a1e; } .fail { background: #fbdada; color: #8a1010; font-weight: bold; }
.scroll { max-height: 600px; overflow: auto; }
img { max-width: 100%; }
"""


def esc(value: object) -> str:
    return html.escape(str(value))


def shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def summary_html(framework: str, rows: list[SummaryRow]) -> str:
    body = "".join(
        f"<tr><td class=mono>{esc(r.layer)}</td><td class=mono>{esc(shape_text(r.shape))}</td>"
        f"<td class=num>{r.params:,}</td></tr>"
        for r in rows
    )
    total = sum(r.params for r in rows)
    return (
        f"<table><caption><b>{esc(framework)}</b> ({esc(get_backend(framework).layout)})</caption>"
        f"<tr><th>layer</th><th>output shape</th><th>params</th></tr>{body}"
        f"<tr><th>total</th><td></td><td class=num><b>{total:,}</b></td></tr></table>"
    )


def mapping_html(spec: Spec, frameworks: Sequence[str]) -> str:
    """One row per canonical tensor: its shape, then each framework's native name, shape and transform."""
    tables = {fw: {row[0]: row for row in get_backend(fw).table(spec).rows(spec)} for fw in frameworks}
    head = "<tr><th rowspan=2>canonical name</th><th rowspan=2>shape</th>" + "".join(
        f"<th colspan=3>{esc(fw)}</th>" for fw in frameworks
    )
    head += "</tr><tr>" + "<th>native name</th><th>shape</th><th>transform</th>" * len(frameworks) + "</tr>"
    rows = []
    for name, param in schema(spec).items():
        cells = "".join(
            f"<td class=mono>{esc(tables[fw][name][1])}</td>"
            f"<td class=mono>{esc(shape_text(tables[fw][name][2]))}</td><td>{esc(tables[fw][name][3])}</td>"
            for fw in frameworks
        )
        rows.append(
            f"<tr><td class=mono>{esc(name)}</td><td class=mono>{esc(shape_text(param.shape))}</td>{cells}</tr>"
        )
    return f"<div class=scroll><table>{head}{''.join(rows)}</table></div>"


def matrix_html(report: Report) -> str:
    head = "<tr><th>src \\ dst</th>" + "".join(f"<th>{esc(fw)}</th>" for fw in report.frameworks) + "</tr>"
    rows = []
    for src in report.frameworks:
        cells = []
        for dst in report.frameworks:
            if src == dst:
                cells.append("<td>&middot;</td>")
                continue
            t = report.transfer(src, dst)
            verdict = "PASS" if t.passed else "FAIL"
            cells.append(f"<td class='num {verdict.lower()}'>{t.max_abs:.2e} {verdict}</td>")
        rows.append(f"<tr><th>{esc(src)}</th>{''.join(cells)}</tr>")
    caption = f"max |logit diff|, source (row) -> destination (column); PASS: {esc(tolerance_text(report.dtype))}"
    return f"<table><caption>{caption}</caption>{head}{''.join(rows)}</table>"


def layer_profiles(
    spec: Spec, frameworks: Sequence[str], reference: str, x: np.ndarray, dtype: str
) -> dict[str, list[PointDiff]]:
    """Per activation point, each other framework against ``reference``, all with the reference's
    weights (randomised BatchNorm and biases, as in the transfer matrix)."""
    rig = TransferRig(spec, frameworks, dtype)
    weights, _ = rig.source(reference, x)
    expected = rig.backends[reference].activations(rig.models[reference], x)
    profiles = {}
    for fw in frameworks:
        if fw != reference:
            rig.destination(fw, weights, x)
            profiles[fw] = point_diffs(spec, expected, rig.backends[fw].activations(rig.models[fw], x), dtype)
    return profiles


def divergence_png(profiles: Mapping[str, list[PointDiff]], reference: str, dtype: str, title: str) -> bytes:
    """Log-scale max |diff| per activation point for each framework, and the tolerance at each point."""
    from matplotlib.figure import Figure

    points = next(iter(profiles.values()))
    fig = Figure(figsize=(14, 5), layout="constrained")
    ax = fig.add_subplot()
    for fw, diffs in profiles.items():
        ax.semilogy(
            [max(d.max_abs, EXACT) for d in diffs], marker="o", markersize=3, linewidth=1, label=f"{fw} vs {reference}"
        )
    kind, bound = TOLERANCE[dtype]
    allowed = f"{bound:g}" if kind == "abs" else f"{bound:g} x max |{reference}| at the point"
    ax.semilogy([tolerance_bound(dtype, d.scale) for d in points], "k--", linewidth=1, label=f"tolerance: {allowed}")
    ax.set_xticks(range(len(points)), [d.point for d in points], rotation=90, fontsize=6)
    ax.set_ylabel(f"max |diff| ({dtype}; exactly 0 drawn at {EXACT:g})")
    ax.set_title(title)
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def page(report: Report, frameworks: Sequence[str], mapping: str, png: bytes, reference: str) -> str:
    spec = report.spec
    verdict = "PASS" if report.passed else "FAIL"
    summaries = "".join(summary_html(fw, report.summaries[fw]) for fw in frameworks)
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(spec.name)}: parity report</title><style>{CSS}</style></head>
<body>
<h1>{esc(spec.name)}: parity report <span class={verdict.lower()}>{verdict}</span></h1>
<p>Frameworks {esc(", ".join(frameworks))}; {esc(report.dtype)};
input (NCHW) {esc(shape_text(report.input_shape))}; eval mode;
tolerance {esc(tolerance_text(report.dtype))}. BatchNorm tensors and biases are randomised in every source.</p>
<h2>Layer summaries</h2>
<p>d2l's <code>layer_summary</code> in each framework: native layer classes, native output shapes,
trainable parameters.</p>
<div class=side>{summaries}</div>
<h2>Parameter mapping</h2>
<p>Every canonical tensor (PyTorch layout) and where it lives in each framework.</p>
{mapping}
<h2>Transfer matrix</h2>
{matrix_html(report)}
<h2>Per-layer divergence</h2>
<p>Each framework against {esc(reference)}, with {esc(reference)}'s weights,
at every activation point in execution order.</p>
<img alt="per-layer max |diff| against {esc(reference)}" src="data:image/png;base64,{image}">
</body></html>
"""


def write_report(
    spec: Spec, frameworks: Sequence[str], x: np.ndarray, dtype: str, out: Path, progress: Callable[[str], None]
) -> Report:
    """Run everything the page shows, write it to ``out`` and return the transfer report."""
    report = compare(spec, frameworks, x, dtype, progress=progress)
    reference = "torch" if "torch" in frameworks else frameworks[0]
    progress(f"per-layer diffs against {reference}")
    profiles = layer_profiles(spec, frameworks, reference, x, dtype)
    progress("plot and page")
    title = f"{spec.name}: max |diff| per activation point against {reference}, {dtype}, input {shape_text(x.shape)}"
    png = divergence_png(profiles, reference, dtype, title)
    out.write_text(page(report, frameworks, mapping_html(spec, frameworks), png, reference), encoding="utf-8")
    progress(f"wrote {out}")
    return report
