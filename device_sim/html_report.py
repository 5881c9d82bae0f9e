"""A self-contained HTML page for a fleet report: inline SVG and CSS, no script, nothing fetched."""

from __future__ import annotations

import html
import math
from pathlib import Path

from device_sim.histogram import Histogram, bucket_bounds
from device_sim.report import OUTCOMES, STEPS, TOTAL, FleetStats

WIDTH, HEIGHT, PAD = 760, 260, 48
COLOURS = {"provisioned": "#2e7d32", "rejected": "#f9a825", "failed": "#c62828"}
STEP_COLOURS = {
    TOTAL: "#1565c0",
    "claim_connect": "#6a1b9a",
    "create_certificate": "#00838f",
    "register_thing": "#ef6c00",
    "reconnect": "#558b2f",
    "first_publish": "#ad1457",
}


def render(stats: FleetStats, title: str = "Fleet provisioning report") -> str:
    report = stats.to_json()
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{values[k]:,.1f}</td>" for k in ("p50", "p90", "p99", "max"))
        + f"<td>{stats.histograms[name].count:,}</td></tr>"
        for name, values in report["latency_ms"].items()
    )
    codes = "".join(
        f"<li>rejected <b>{html.escape(code)}</b>: {n:,}</li>" for code, n in report["rejections"].items()
    )
    codes += "".join(
        f"<li>failed <b>{html.escape(kind)}</b>: {n:,}</li>" for kind, n in report["failures"].items()
    )
    run = report["run"]
    facts = " · ".join(
        html.escape(f"{k}: {v}")
        for k, v in run.items()
        if k in ("target", "format", "flow", "concurrency", "rate_per_s", "shard", "started_at")
        and v is not None
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ padding: 3px 12px; text-align: right; }}
th:first-child {{ text-align: left; }} tr:nth-child(even) {{ background: #f4f4f4; }}
.cards {{ display: flex; gap: 1em; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; }}
.card b {{ display: block; font-size: 1.6em; }} svg text {{ font-size: 11px; fill: #444; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{facts}</p>
<div class="cards">
{_card("devices", report["devices"])}{_card("provisioned", report["provisioned"])}
{_card("rejected", report["rejected"])}{_card("failed", report["failed"])}
{_card("duration s", report["duration_s"])}{_card("provisioned / s", report["throughput_per_s"])}
{_card("retries", report["retries"]["total"])}
</div>
<h2>Latency (ms)</h2>
<table><tr><th>step</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>count</th></tr>{rows}</table>
<h2>Latency distribution</h2>
{_distribution_svg(stats)}
<h2>Throughput over time</h2>
{_timeline_svg(stats)}
<h2>Rejections and failures</h2>
<ul>{codes or "<li>none</li>"}</ul>
</body></html>
"""


def write_html(stats: FleetStats, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(stats))


def _card(label: str, value: float) -> str:
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    return f'<div class="card">{html.escape(label)}<b>{text}</b></div>'


def _distribution_svg(stats: FleetStats) -> str:
    """Cumulative distribution of each step's latency on a log-scale x axis, from the histogram buckets."""
    series = {name: h for name, h in stats.histograms.items() if h.count}
    if not series:
        return "<p>No latencies recorded.</p>"
    low = min(bucket_bounds(min(h.counts))[0] for h in series.values())
    high = max(bucket_bounds(max(h.counts))[1] for h in series.values())
    low, high = max(low, 0.01), max(high, low * 10)
    lo_log, hi_log = math.log10(low), math.log10(high)

    def x(value: float) -> float:
        return PAD + (math.log10(max(value, low)) - lo_log) / (hi_log - lo_log) * (WIDTH - 2 * PAD)

    def y(fraction: float) -> float:
        return HEIGHT - PAD + 0 - fraction * (HEIGHT - 2 * PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">',
        _axes(),
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">latency (ms, log scale)</text>',
    ]
    decade = math.floor(lo_log)
    while decade <= math.ceil(hi_log):
        value = 10.0**decade
        if low <= value <= high:
            parts.append(
                f'<line x1="{x(value):.1f}" y1="{PAD}" x2="{x(value):.1f}" y2="{HEIGHT - PAD}" '
                f'stroke="#eee"/><text x="{x(value):.1f}" y="{HEIGHT - PAD + 14}" '
                f'text-anchor="middle">{value:g}</text>'
            )
        decade += 1
    for fraction in (0.5, 0.9, 0.99, 1.0):
        parts.append(
            f'<text x="{PAD - 4}" y="{y(fraction) + 4:.1f}" text-anchor="end">p{fraction * 100:g}</text>'
            f'<line x1="{PAD}" y1="{y(fraction):.1f}" x2="{WIDTH - PAD}" y2="{y(fraction):.1f}" '
            f'stroke="#eee"/>'
        )
    legend_y = PAD - 30
    for n, (name, histogram) in enumerate(series.items()):
        colour = STEP_COLOURS.get(name, "#555")
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="{2.5 if name == TOTAL else 1.5}" '
            f'points="{_cdf_points(histogram, x, y)}"/>'
        )
        parts.append(
            f'<rect x="{PAD + n * 118}" y="{legend_y}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{PAD + n * 118 + 14}" y="{legend_y + 9}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _cdf_points(histogram: Histogram, x, y) -> str:  # type: ignore[no-untyped-def]
    seen = 0
    points = []
    for index in sorted(histogram.counts):
        lower, upper = bucket_bounds(index)
        points.append(f"{x(lower):.1f},{y(seen / histogram.count):.1f}")
        seen += histogram.counts[index]
        points.append(f"{x(upper):.1f},{y(seen / histogram.count):.1f}")
    return " ".join(points)


def _timeline_svg(stats: FleetStats) -> str:
    """Outcomes per second, stacked bars."""
    assert stats.timeline is not None
    counts = stats.timeline.counts
    seconds = max((len(s) for s in counts.values()), default=0)
    if not seconds:
        return "<p>No devices finished.</p>"
    totals = [sum(counts[o][i] if i < len(counts[o]) else 0 for o in OUTCOMES) for i in range(seconds)]
    peak = max(totals) or 1
    bar = (WIDTH - 2 * PAD) / seconds
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">',
        _axes(),
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">seconds since start</text>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{peak}/s</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">0</text>',
    ]
    scale = (HEIGHT - 2 * PAD) / peak
    for i in range(seconds):
        base = float(HEIGHT - PAD)
        for outcome in OUTCOMES:
            n = counts[outcome][i] if i < len(counts[outcome]) else 0
            if n:
                h = n * scale
                base -= h
                parts.append(
                    f'<rect x="{PAD + i * bar:.1f}" y="{base:.1f}" width="{max(bar - 1, 0.5):.1f}" '
                    f'height="{h:.1f}" fill="{COLOURS[outcome]}"><title>second {i}: {n} {outcome}'
                    f"</title></rect>"
                )
    step = max(1, seconds // 10)
    for i in range(0, seconds + 1, step):
        parts.append(f'<text x="{PAD + i * bar:.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{i}</text>')
    for n, outcome in enumerate(OUTCOMES):
        parts.append(
            f'<rect x="{PAD + n * 110}" y="{PAD - 30}" width="10" height="10" fill="{COLOURS[outcome]}"/>'
            f'<text x="{PAD + n * 110 + 14}" y="{PAD - 21}">{outcome}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _axes() -> str:
    return (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
    )


__all__ = ["render", "write_html", "STEPS"]
