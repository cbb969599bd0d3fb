"""Server-side SVG: the throughput and failure charts and the run timelines.

Plain strings of SVG, escaped here, drawn in a fixed ``viewBox`` that scales to the
page's width. Colours come from CSS classes (``st-complete``, ``st-failed`` ...), so the
charts follow the console's light and dark themes. Time labels are written in UTC and
carry ``data-ts`` so that the page's script can show them in the browser's zone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup

from conveyor.admin.models import RunSummary, ThroughputBucket

WIDTH = 640
HEIGHT = 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 8, 10, 26


def nice_ceiling(value: float) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5, 10, 20, 50 ...)."""
    if value <= 1:
        return 1
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * exponent:
            return int(step * exponent)
    return int(10 * exponent)


def _label(ts: float, bucket_s: float) -> tuple[str, str]:
    moment = datetime.fromtimestamp(ts, UTC)
    if bucket_s >= 86400:
        return moment.strftime("%b %d"), "day"
    if bucket_s >= 3600 * 3:
        return moment.strftime("%a %H:%M"), "weekday"
    return moment.strftime("%H:%M"), "time"


def _grid(top: int, plot_h: float) -> list[str]:
    """Horizontal grid lines with their values: 0, half-way and the top."""
    lines = []
    for fraction in (0.0, 0.5, 1.0) if top > 1 else (0.0, 1.0):
        y = _TOP + plot_h * (1 - fraction)
        value = top * fraction
        text = f"{value:g}" if value == int(value) else f"{value:.1f}"
        lines.append(
            f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>'
        )
    return lines


def bar_chart(
    buckets: Sequence[ThroughputBucket],
    series: Sequence[tuple[str, Sequence[str]]],
    *,
    bucket_s: float,
    title: str,
) -> Markup:
    """A stacked bar chart of run counts per time bucket.

    Args:
        buckets: The buckets, oldest first.
        series: ``(css status class, statuses counted)`` per stacked layer, bottom first.
        bucket_s: The bucket width (chooses the time label format).
        title: The accessible title.
    """
    plot_w = WIDTH - _LEFT - _RIGHT
    plot_h = HEIGHT - _TOP - _BOTTOM
    totals = [sum(b.counts.get(s, 0) for _, statuses in series for s in statuses) for b in buckets]
    top = nice_ceiling(max(totals, default=0))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    if top > 1 and top % 2:
        top += 1  # an even maximum gives a whole number half-way
    parts.extend(_grid(top, plot_h))
    count = max(len(buckets), 1)
    slot = plot_w / count
    bar_w = max(slot * 0.8, 1.0)
    label_every = max(math.ceil(count / 6), 1)
    for index, bucket in enumerate(buckets):
        x = _LEFT + index * slot + (slot - bar_w) / 2
        y = float(_TOP + plot_h)
        label, fmt = _label(bucket.start, bucket_s)
        described = []
        layers = []
        for css, statuses in series:
            value = sum(bucket.counts.get(s, 0) for s in statuses)
            described.append(f"{value} {css}")
            if value:
                h = plot_h * value / top
                y -= h
                layers.append(
                    f'<rect class="st-{escape(css)}" x="{x:.1f}" y="{y:.1f}" '
                    f'width="{bar_w:.1f}" height="{h:.1f}"/>'
                )
        tip = f"{label} UTC: {', '.join(described)}"
        parts.append(
            f'<g class="bar"><title data-ts="{bucket.start:.0f}">{escape(tip)}</title>'
            f'<rect class="hit" x="{_LEFT + index * slot:.1f}" y="{_TOP}" '
            f'width="{slot:.1f}" height="{plot_h}"/>{"".join(layers)}</g>'
        )
        if index % label_every == 0:
            parts.append(
                f'<text class="axis" data-ts="{bucket.start:.0f}" data-fmt="{fmt}" '
                f'x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{label}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def timeline(
    runs: Sequence[RunSummary],
    start: float,
    end: float,
    href: Callable[[RunSummary], str],
) -> Markup:
    """One task's runs as marks on a time axis: position by start, width by duration.

    Args:
        runs: The runs to draw.
        start: The axis's left edge (epoch seconds).
        end: Its right edge.
        href: The link of a run's mark.
    """
    width, height = 1000, 24
    span = max(end - start, 1e-3)
    parts = [
        f'<svg class="timeline" viewBox="0 0 {width} {height}" preserveAspectRatio="none" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="runs over time">',
        f'<line class="grid" x1="0" x2="{width}" y1="{height / 2}" y2="{height / 2}"/>',
    ]
    for run in runs:
        began = run.started or start
        finished = run.finished or end if run.status == "running" else run.finished or began
        x = (began - start) / span * width
        w = max((finished - began) / span * width, 4.0)
        x = min(max(x, 0.0), width - w)
        duration = f"{run.duration_s:.2f}s" if run.duration_s is not None else "running"
        tip = f"{run.function} #{run.attempt}: {run.status}, {duration}"
        if run.error:
            tip += f" ({run.error[:120]})"
        parts.append(
            f'<a href="{escape(href(run))}"><rect class="st-{escape(run.status)}" '
            f'x="{x:.1f}" y="3" width="{w:.1f}" height="{height - 6}" rx="2">'
            f"<title>{escape(tip)}</title></rect></a>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = ["bar_chart", "nice_ceiling", "timeline"]
