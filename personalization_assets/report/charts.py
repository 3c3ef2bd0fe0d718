"""Charts as a short list of drawing primitives, rendered as inline SVG or drawn into the PDF.

One description of each chart serves both report formats, so the HTML page and the PDF show the
same picture. The SVG has no external reference (no fonts, images or stylesheets to fetch).
Coordinates are in pixels, y pointing down; a Text's y is the vertical middle of the line.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

RAW_COLOR = "#1f4e79"
CUPED_COLOR = "#d9822b"
AXIS_COLOR = "#52606d"
GRID_COLOR = "#d9e2ec"
TARGET_COLOR = "#0c6b58"
# Relative lifts outside this range are drawn clipped, with an arrow, so one tiny segment's
# huge interval does not squash every other row.
DOMAIN_LIMITS = (-1.0, 2.0)


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    color: str = AXIS_COLOR
    width: float = 1.0
    dash: bool = False


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str | None = None
    stroke: str | None = None


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str | None
    stroke: str


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]
    fill: str


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    size: float = 11.0
    anchor: str = "start"  # start | middle | end
    color: str = "#1f2933"
    bold: bool = False


@dataclass
class Figure:
    width: float
    height: float
    title: str
    items: list = field(default_factory=list)

    def to_svg(self) -> str:
        parts = [
            f'<svg class="chart" viewBox="0 0 {self.width:g} {self.height:g}" width="{self.width:g}" '
            f'role="img" aria-label="{html.escape(self.title)}" '
            'style="max-width:100%;height:auto;font-family:system-ui,-apple-system,Segoe UI,sans-serif">',
            f"<title>{html.escape(self.title)}</title>",
        ]
        for item in self.items:
            parts.append(_svg_item(item))
        parts.append("</svg>")
        return "".join(parts)


def _svg_item(item) -> str:
    if isinstance(item, Line):
        dash = ' stroke-dasharray="4 3"' if item.dash else ""
        return (f'<line x1="{item.x1:.1f}" y1="{item.y1:.1f}" x2="{item.x2:.1f}" y2="{item.y2:.1f}" '
                f'stroke="{item.color}" stroke-width="{item.width:g}"{dash}/>')
    if isinstance(item, Rect):
        return (f'<rect x="{item.x:.1f}" y="{item.y:.1f}" width="{item.w:.1f}" height="{item.h:.1f}" '
                f'fill="{item.fill or "none"}" stroke="{item.stroke or "none"}"/>')
    if isinstance(item, Circle):
        return (f'<circle cx="{item.cx:.1f}" cy="{item.cy:.1f}" r="{item.r:g}" fill="{item.fill or "#ffffff"}" '
                f'stroke="{item.stroke}" stroke-width="1.5"/>')
    if isinstance(item, Polygon):
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in item.points)
        return f'<polygon points="{points}" fill="{item.fill}"/>'
    if isinstance(item, Text):
        weight = ' font-weight="600"' if item.bold else ""
        return (f'<text x="{item.x:.1f}" y="{item.y:.1f}" font-size="{item.size:g}" text-anchor="{item.anchor}" '
                f'dominant-baseline="central" fill="{item.color}"{weight}>{html.escape(item.text)}</text>')
    raise TypeError(f"unknown chart item {item!r}")


@dataclass(frozen=True)
class Estimate:
    """One point estimate with its interval, as a fraction (0.12 = +12%)."""

    series: str  # "raw" or "CUPED"
    value: float
    low: float
    high: float
    significant: bool | None = None


@dataclass(frozen=True)
class ForestRow:
    group: str
    label: str
    estimates: tuple[Estimate, ...]


def _finite(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def signed_pct(value: float, digits: int = 1) -> str:
    return "–" if not _finite(value) else f"{value * 100:+.{digits}f}%"


def _nice_step(span: float) -> float:
    for step in (0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
        if span / step <= 8:
            return step
    return 1.0


def _domain(rows: Sequence[ForestRow], references: Sequence[float]) -> tuple[float, float]:
    values = [v for row in rows for e in row.estimates for v in (e.value, e.low, e.high) if _finite(v)]
    values += [0.0, *references]
    low = max(min(values), DOMAIN_LIMITS[0])
    high = min(max(values), DOMAIN_LIMITS[1])
    pad = max(high - low, 0.02) * 0.05
    return low - pad, high + pad


def forest_plot(
    rows: Sequence[ForestRow],
    *,
    title: str,
    references: Sequence[tuple[float, str]] = (),
    width: float = 1100.0,
) -> Figure:
    """Relative lift with its CI per row; raw (circles: filled when significant after Holm) and
    CUPED (squares) estimates side by side; vertical lines at 0 and at the reference values."""
    label_w, value_w, row_h, group_h, top, bottom = 190.0, 250.0, 34.0, 24.0, 56.0, 40.0
    groups = list(dict.fromkeys(row.group for row in rows))
    height = top + bottom + len(rows) * row_h + len(groups) * group_h
    fig = Figure(width, height, title)
    x0, x1 = label_w, width - value_w
    lo, hi = _domain(rows, [value for value, _ in references])

    def x(value: float) -> float:
        return x0 + (min(max(value, lo), hi) - lo) / (hi - lo) * (x1 - x0)

    fig.items.append(Text(0, 14, title, 14, bold=True))
    # Legend.
    fig.items += [
        Circle(8, 38, 4.5, RAW_COLOR, RAW_COLOR), Text(18, 38, "raw, significant after Holm", 11),
        Circle(208, 38, 4.5, None, RAW_COLOR), Text(218, 38, "raw, not significant", 11),
        Rect(382, 33.5, 9, 9, CUPED_COLOR, CUPED_COLOR), Text(396, 38, "CUPED (adjusted for historical rates)", 11),
        Text(width, 38, "relative lift vs control, 95% CI", 11, "end", AXIS_COLOR),
    ]
    plot_top, plot_bottom = top, height - bottom
    step = _nice_step(hi - lo)
    tick = math.ceil(lo / step - 1e-9) * step
    while tick <= hi + 1e-9:
        tick = round(tick, 6)
        label = "0%" if tick == 0 else signed_pct(tick, 0 if step >= 0.01 else 1)
        fig.items.append(Line(x(tick), plot_top, x(tick), plot_bottom, GRID_COLOR, 1))
        fig.items.append(Text(x(tick), plot_bottom + 14, label, 10, "middle", AXIS_COLOR))
        tick += step
    fig.items.append(Line(x(0), plot_top, x(0), plot_bottom, AXIS_COLOR, 1.5))
    for value, label in references:
        if lo <= value <= hi:
            fig.items.append(Line(x(value), plot_top, x(value), plot_bottom, TARGET_COLOR, 1.2, dash=True))
            fig.items.append(Text(x(value), plot_bottom + 28, label, 10, "middle", TARGET_COLOR))

    y = plot_top
    for group in groups:
        fig.items.append(Text(0, y + group_h / 2 + 2, group, 12, bold=True))
        y += group_h
        for row in (r for r in rows if r.group == group):
            fig.items.append(Text(14, y + row_h / 2, row.label, 11))
            offsets = [(-6.0 if i == 0 else 6.0) if len(row.estimates) > 1 else 0.0 for i in range(len(row.estimates))]
            for estimate, offset in zip(row.estimates, offsets):
                cy = y + row_h / 2 + offset
                color = CUPED_COLOR if estimate.series == "CUPED" else RAW_COLOR
                text = "no estimate"
                if _finite(estimate.value, estimate.low, estimate.high):
                    fig.items.append(Line(x(estimate.low), cy, x(estimate.high), cy, color, 2))
                    for end, clipped, sign in ((estimate.low, estimate.low < lo, -1), (estimate.high, estimate.high > hi, 1)):
                        if clipped:
                            tip = x(end)
                            fig.items.append(Polygon(((tip + 6 * sign, cy), (tip, cy - 4), (tip, cy + 4)), color))
                    cx = x(estimate.value)
                    if estimate.series == "CUPED":
                        fig.items.append(Rect(cx - 4.5, cy - 4.5, 9, 9, color, color))
                    else:
                        fig.items.append(Circle(cx, cy, 4.5, color if estimate.significant else None, color))
                    text = f"{signed_pct(estimate.value)} [{signed_pct(estimate.low)}, {signed_pct(estimate.high)}]"
                elif _finite(estimate.value):
                    text = f"{signed_pct(estimate.value)} (no interval)"
                fig.items.append(Text(x1 + 12, cy, f"{estimate.series}: {text}", 10.5, color=color))
            fig.items.append(Line(0, y + row_h, width, y + row_h, GRID_COLOR, 0.6))
            y += row_h
    return fig


@dataclass(frozen=True)
class Series:
    """One line of a line chart: its label, colour, points (x, y) and whether it is dashed."""

    label: str
    color: str
    points: tuple[tuple[float, float], ...]
    dash: bool = False


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str, width: float = 720.0,
               height: float = 360.0, x_percent: bool = True) -> Figure:
    """Lines over a shared x axis (e.g. a Qini curve and its random line), with a legend."""
    fig = Figure(width, height, title)
    left, right, top, bottom = 64.0, 16.0, 72.0, 48.0
    xs = [x for s in series for x, _ in s.points if _finite(x)] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points if _finite(y)] + [0.0]
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y_lo, y_hi = min(ys), max(ys)
    pad = max(y_hi - y_lo, 1e-9) * 0.08
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def x(value: float) -> float:
        return left + (value - x_lo) / (x_hi - x_lo) * (width - left - right)

    def y(value: float) -> float:
        return top + (y_hi - value) / (y_hi - y_lo) * (height - top - bottom)

    fig.items.append(Text(0, 14, title, 14, bold=True))
    legend_x = 0.0
    for s in series:
        fig.items += [Line(legend_x, 34, legend_x + 18, 34, s.color, 2, s.dash), Text(legend_x + 24, 34, s.label, 11)]
        legend_x += 34 + 6.5 * len(s.label)
    for i in range(5):
        value = y_lo + (y_hi - y_lo) * i / 4
        fig.items += [Line(left, y(value), width - right, y(value), GRID_COLOR, 1),
                      Text(left - 6, y(value), f"{value:.3f}", 10, "end", AXIS_COLOR)]
    for i in range(6):
        value = x_lo + (x_hi - x_lo) * i / 5
        fig.items.append(Text(x(value), height - bottom + 14, f"{value:.0%}" if x_percent else f"{value:g}", 10, "middle", AXIS_COLOR))
    fig.items += [Line(left, y(0), width - right, y(0), AXIS_COLOR, 1.2),
                  Text((left + width - right) / 2, height - 12, x_label, 11, "middle", AXIS_COLOR),
                  Text(0, top - 16, y_label, 11, "start", AXIS_COLOR)]
    for s in series:
        points = [(px, py) for px, py in s.points if _finite(px, py)]
        fig.items += [Line(x(a), y(b), x(c), y(d), s.color, 2, s.dash) for (a, b), (c, d) in zip(points, points[1:])]
    return fig
