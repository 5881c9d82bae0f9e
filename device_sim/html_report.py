"""A self-contained HTML page for a fleet report: inline SVG and CSS, no script, nothing fetched.

Charts: the latency distribution of each step (on a "nines" axis, so p90, p99 and p99.9 are evenly apart and
their labels never overlap), outcomes per second, latency percentiles over time, and devices in flight.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path

from device_sim.histogram import Histogram, bucket_bounds
from device_sim.report import STEPS, TOTAL, FleetStats
from device_sim.timeline import OUTCOMES

WIDTH, HEIGHT, PAD = 760, 260, 48
LEGEND_FONT = 10  # px: the legend's labels, a little smaller than the axes' 11
COLOURS = {"provisioned": "#2e7d32", "rejected": "#f9a825", "failed": "#c62828", "interrupted": "#757575"}
STEP_COLOURS = {
    TOTAL: "#1565c0",
    "claim_connect": "#6a1b9a",
    "create_certificate": "#00838f",
    "register_thing": "#ef6c00",
    "reconnect": "#558b2f",
    "first_publish": "#ad1457",
}
LEGEND_STEP = 112  # six steps across the chart, "create_certificate" included
PERCENTILE_COLOURS = {50: "#2e7d32", 90: "#ef6c00", 99: "#c62828"}
FACT_KEYS = (
    "driver",
    "target",
    "format",
    "mqtt",
    "flow",
    "concurrency",
    "rate_per_s",
    "shard",
    "workers",
    "started_at",
)
SUMMARY_COLUMNS = ("p50", "p90", "p95", "p99", "max", "mean")
# The distribution's y axis in "nines" (-log10(1 - q)): p50 0.3, p90 1, p99 2, p99.9 3; the maximum above.
NINES = 3.0
MAX_ROW = NINES + 0.6
Y_LABELS = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9"), (1.0, "max"))


def render(stats: FleetStats, title: str = "Fleet provisioning report") -> str:
    report = stats.to_json()
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{values[k]:,.1f}</td>" for k in SUMMARY_COLUMNS)
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
    facts = " · ".join(html.escape(f"{k}: {v}") for k, v in run.items() if k in FACT_KEYS and v is not None)
    if run.get("interrupted"):
        facts += " · <b>interrupted: partial report</b>"
    header = "".join(f"<th>{c}</th>" for c in SUMMARY_COLUMNS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 820px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ padding: 3px 12px; text-align: right; }}
th:first-child {{ text-align: left; }} tr:nth-child(even) {{ background: #f4f4f4; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.card {{ border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; }}
.card b {{ display: block; font-size: 1.6em; }} svg text {{ font-size: 11px; fill: #444; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{facts}</p>
<div class="cards">
{_card("devices", report["devices"])}{_card("provisioned", report["provisioned"])}
{_card("rejected", report["rejected"])}{_card("failed", report["failed"])}
{_card("interrupted", report["interrupted"])}
{_card("duration s", report["duration_s"])}{_card("provisioned / s", report["throughput_per_s"])}
{_card("retries", report["retries"]["total"])}
</div>
<h2>Latency (ms)</h2>
<table><tr><th>step</th>{header}<th>count</th></tr>{rows}</table>
<h2>Latency distribution</h2>
{_distribution_svg(stats)}
<h2>Throughput over time</h2>
{_timeline_svg(stats)}
<h2>Latency percentiles over time (total, provisioned devices)</h2>
{_percentiles_svg(stats)}
<h2>Devices in flight over time</h2>
{_in_flight_svg(stats)}
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


def _svg_open(x_label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img">',
        _axes(),
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">{html.escape(x_label)}</text>',
    ]


def nines_y(fraction: float) -> float:
    """The distribution chart's y pixel for a cumulative fraction (1.0: the maximum, on its own row)."""
    row = MAX_ROW if fraction >= 1.0 else min(-math.log10(1.0 - fraction), NINES)
    return HEIGHT - PAD - row / MAX_ROW * (HEIGHT - 2 * PAD)


def _distribution_svg(stats: FleetStats) -> str:
    """Cumulative distribution of each step's latency: log-scale x, percentile on a nines scale y."""
    series = {name: h for name, h in stats.histograms.items() if h.count}
    if not series:
        return "<p>No latencies recorded.</p>"
    low = min(bucket_bounds(min(h.counts))[0] for h in series.values())
    high = max(bucket_bounds(max(h.counts))[1] for h in series.values())
    low, high = max(low, 0.01), max(high, low * 10)
    lo_log, hi_log = math.log10(low), math.log10(high)

    def x(value: float) -> float:
        return PAD + (math.log10(max(value, low)) - lo_log) / (hi_log - lo_log) * (WIDTH - 2 * PAD)

    parts = _svg_open("latency (ms, log scale)")
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
    for fraction, label in Y_LABELS:
        y = nines_y(fraction)
        parts.append(
            f'<text class="ylabel" x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
            f'<line x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}" stroke="#eee"/>'
        )
    for n, (name, histogram) in enumerate(series.items()):
        colour = STEP_COLOURS.get(name, "#555")
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="{2.5 if name == TOTAL else 1.5}" '
            f'points="{_cdf_points(histogram, x)}"/>'
        )
        parts.append(_legend(n, name, colour, LEGEND_STEP))
    parts.append("</svg>")
    return "".join(parts)


def _cdf_points(histogram: Histogram, x: Callable[[float], float]) -> str:
    seen = 0
    points = []
    for index in sorted(histogram.counts):
        lower, upper = bucket_bounds(index)
        points.append(f"{x(lower):.1f},{nines_y(seen / histogram.count):.1f}")
        seen += histogram.counts[index]
        points.append(f"{x(upper):.1f},{nines_y(seen / histogram.count):.1f}")
    return " ".join(points)


def _time_axis(parts: list[str], slots: int, interval_s: int) -> float:
    """Ticks of seconds since start under a chart of `slots` slots; the width of one slot in pixels."""
    bar = (WIDTH - 2 * PAD) / max(slots, 1)
    step = max(1, slots // 10)
    for i in range(0, slots + 1, step):
        x, y = PAD + i * bar, HEIGHT - PAD + 14
        parts.append(f'<text x="{x:.1f}" y="{y}" text-anchor="middle">{i * interval_s}</text>')
    return bar


def _y_scale(parts: list[str], peak: float, unit: str) -> float:
    # Inside the plot, left-aligned: "4,870 ms" is wider than the margin.
    parts.append(f'<text x="{PAD + 4}" y="{PAD + 10}">{peak:,.4g}{unit}</text>')
    parts.append(f'<line x1="{PAD}" y1="{PAD}" x2="{WIDTH - PAD}" y2="{PAD}" stroke="#eee"/>')
    parts.append(f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">0</text>')
    return (HEIGHT - 2 * PAD) / (peak or 1)


def _timeline_svg(stats: FleetStats) -> str:
    """Outcomes per second, stacked bars, one per timeline slot."""
    assert stats.timeline is not None
    timeline = stats.timeline
    counts, slots, interval = timeline.counts, timeline.width, timeline.interval_s
    ended = [sum(_at(counts.get(o, []), i) for o in OUTCOMES) for i in range(slots)]
    if not any(ended):
        return "<p>No devices finished.</p>"
    parts = _svg_open(f"seconds since start ({interval} s per bar)")
    scale = _y_scale(parts, max(ended) / interval, "/s")
    bar = _time_axis(parts, slots, interval)
    for i in range(slots):
        base = float(HEIGHT - PAD)
        for outcome in OUTCOMES:
            n = _at(counts.get(outcome, []), i)
            if n:
                h = n / interval * scale
                base -= h
                parts.append(
                    f'<rect x="{PAD + i * bar:.1f}" y="{base:.1f}" width="{max(bar - 1, 0.5):.1f}" '
                    f'height="{h:.1f}" fill="{COLOURS[outcome]}"><title>{i * interval} s: {n} {outcome}'
                    f"</title></rect>"
                )
    parts += [_legend(n, outcome, COLOURS[outcome], 110) for n, outcome in enumerate(OUTCOMES)]
    parts.append("</svg>")
    return "".join(parts)


def _percentiles_svg(stats: FleetStats) -> str:
    """p50, p90 and p99 of the total latency of the devices provisioned in each slot."""
    assert stats.timeline is not None
    timeline = stats.timeline
    slots = timeline.width
    values: dict[int, list[tuple[int, float]]] = {p: [] for p in PERCENTILE_COLOURS}
    for i in range(slots):
        histogram = timeline.latency_histogram(i)
        if histogram.count:
            for p in PERCENTILE_COLOURS:
                values[p].append((i, histogram.percentile(p)))
    if not values[50]:
        return "<p>No device provisioned.</p>"
    parts = _svg_open(f"seconds since start ({timeline.interval_s} s per point)")
    scale = _y_scale(parts, max(v for _, v in values[99]), " ms")
    bar = _time_axis(parts, slots, timeline.interval_s)
    for n, (p, colour) in enumerate(PERCENTILE_COLOURS.items()):
        points = " ".join(f"{PAD + (i + 0.5) * bar:.1f},{HEIGHT - PAD - v * scale:.1f}" for i, v in values[p])
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        parts.append(_legend(n, f"p{p}", colour, 80))
    parts.append("</svg>")
    return "".join(parts)


def _in_flight_svg(stats: FleetStats) -> str:
    """Devices started and not finished at the end of each slot."""
    assert stats.timeline is not None
    timeline = stats.timeline
    flight = timeline.in_flight()
    if not any(timeline.counts.get("started", [])):
        return "<p>No device starts recorded.</p>"
    parts = _svg_open(f"seconds since start ({timeline.interval_s} s per point)")
    scale = _y_scale(parts, max(max(flight), 1), "")
    bar = _time_axis(parts, len(flight), timeline.interval_s)
    points = " ".join(
        f"{PAD + (i + 1) * bar:.1f},{HEIGHT - PAD - n * scale:.1f}" for i, n in enumerate(flight)
    )
    parts.append(
        f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{PAD},{HEIGHT - PAD} {points}"/>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _legend(n: int, label: str, colour: str, spacing: int) -> str:
    """The n-th legend entry, `spacing` pixels after the previous one."""
    return (
        f'<rect x="{PAD + n * spacing}" y="{PAD - 30}" width="10" height="10" fill="{colour}"/>'
        f'<text x="{PAD + n * spacing + 14}" y="{PAD - 21}" style="font-size:{LEGEND_FONT}px">'
        f"{html.escape(label)}</text>"
    )


def _at(values: list[int], index: int) -> int:
    return values[index] if index < len(values) else 0


def _axes() -> str:
    return (
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
    )


__all__ = ["render", "write_html", "STEPS"]
