"""Charts drawn on the server as SVG: no JavaScript, no chart library, nothing fetched — the page
works offline and under a strict Content-Security-Policy (colours are SVG presentation
attributes, never inline `style`). Each chart also has its figures in a table on the page."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 36


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]
    colour: str


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10ⁿ at or above value (an axis's top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def chart(
    *,
    title: str,
    labels: Sequence[str],
    bars: Sequence[Series] = (),
    lines: Sequence[Series] = (),
    fmt: Callable[[float], str] | None = None,
) -> SafeString:
    """Grouped bars and lines over the same periods, with a zero line, 4 grid steps, a legend,
    and a tooltip (<title>) on every bar and point. Without `fmt` the values are counts, and the
    grid steps whole numbers."""
    values = [v for s in (*bars, *lines) for v in s.values] or [0]
    if fmt is None:
        fmt = "{:,.0f}".format
        step = max(1, math.ceil(nice_ceiling(max(max(values), 0) / 4)))
        top, bottom = 4.0 * step, -4.0 * step if min(values) < 0 else 0.0
    else:
        top = nice_ceiling(max(max(values), 0))
        bottom = -nice_ceiling(-min(values)) if min(values) < 0 else 0.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(len(labels), 1)
    slot = plot_w / count

    def y(value: float) -> float:
        return TOP + plot_h * (top - value) / (top - bottom)

    out = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold" fill="#333">{escape(title)}</text>',
    ]
    for i in range(5):
        value = bottom + (top - bottom) * i / 4
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="{"#999" if value == 0 else "#e4e4e4"}" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" font-size="10" fill="#666" '
            f'text-anchor="end">{escape(fmt(value))}</text>'
        )
    if bars:
        bar_w = slot * 0.8 / len(bars)
        for b, series in enumerate(bars):
            for i, value in enumerate(series.values):
                x = LEFT + slot * i + slot * 0.1 + bar_w * b
                y0, y1 = sorted((y(0), y(value)))
                out.append(
                    f'<rect x="{x:.1f}" y="{y0:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                    f'height="{max(y1 - y0, 0):.1f}" fill="{series.colour}">'
                    f"<title>{escape(labels[i])} — {escape(series.name)}: {escape(fmt(value))}"
                    "</title></rect>"
                )
    for series in lines:
        points = [
            (LEFT + slot * i + slot / 2, y(value), value) for i, value in enumerate(series.values)
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{series.colour}" stroke-width="2"/>'
        )
        for (px, py, value), label in zip(points, labels, strict=True):
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{series.colour}">'
                f"<title>{escape(label)} — {escape(series.name)}: {escape(fmt(value))}</title>"
                "</circle>"
            )
    step = max(1, math.ceil(count / 12))  # at most ~12 labels under the axis
    for i in range(0, len(labels), step):
        out.append(
            f'<text x="{LEFT + slot * i + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" '
            f'fill="#666" text-anchor="middle">{escape(labels[i])}</text>'
        )
    x = LEFT
    for series in (*bars, *lines):
        out.append(
            f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{series.colour}"/>'
            f'<text x="{x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#333">'
            f"{escape(series.name)}</text>"
        )
        x += 24 + 7 * len(series.name)
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 — every text above is escaped
