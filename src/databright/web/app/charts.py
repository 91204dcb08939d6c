"""Server-side SVG charts (no JavaScript, CSP-safe: presentation attributes, no ``style``).

Each function returns :class:`markupsafe.Markup` built here with every piece of text (model
names, sources, labels: untrusted) passed through :func:`markupsafe.escape`, so a page can
place the chart inline without ``|safe``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from markupsafe import Markup, escape

#: line colours, one per model (cycled)
PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83")
W, H = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


@dataclass(frozen=True)
class Point:
    """A point of a series; ``filled`` False draws it hollow (a self-reported metric)."""

    x: float
    y: float
    tip: str
    filled: bool = True


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[Point, ...]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / (n - 1)
    return [lo + i * step for i in range(n)]


def number_text(v: float) -> str:
    """An axis label: whole numbers as they are, small ones with two significant digits."""
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.2g}"


Label = Callable[[float], str]


def _frame(title: str, x_label: str, y_label: str, xs: tuple[float, float],
           ys: tuple[float, float], x_text: Label, y_text: Label) -> list[str]:
    (x0, x1), (y0, y1) = xs, ys
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" class="chart" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'),
           (f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
            f'height="{H - TOP - BOTTOM}" fill="#f6f8fa" stroke="#d0d7de"/>')]
    for t in _ticks(y0, y1):
        y = _sy(t, ys)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#d0d7de" stroke-dasharray="2 3"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="#656d76">{escape(y_text(t))}</text>')
    for t in _ticks(x0, x1):
        x = _sx(t, xs)
        out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" '
                   f'font-size="11" fill="#656d76">{escape(x_text(t))}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 6}" text-anchor="middle" '
               f'font-size="12" fill="#1f2328">{escape(x_label)}</text>'
               f'<text x="14" y="{(TOP + H - BOTTOM) / 2:.0f}" text-anchor="middle" '
               f'font-size="12" fill="#1f2328" transform="rotate(-90 14 '
               f'{(TOP + H - BOTTOM) / 2:.0f})">{escape(y_label)}</text>')
    return out


def _sx(v: float, xs: tuple[float, float]) -> float:
    lo, hi = xs
    return LEFT + (v - lo) / (hi - lo) * (W - LEFT - RIGHT) if hi > lo else (LEFT + W - RIGHT) / 2


def _sy(v: float, ys: tuple[float, float]) -> float:
    lo, hi = ys
    return H - BOTTOM - (v - lo) / (hi - lo) * (H - TOP - BOTTOM) if hi > lo \
        else (TOP + H - BOTTOM) / 2


def _empty(title: str, message: str) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} 80" class="chart" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<rect x="1" y="1" width="{W - 2}" height="78" fill="#f6f8fa" stroke="#d0d7de"/>'
        f'<text x="{W / 2:.0f}" y="45" text-anchor="middle" font-size="13" fill="#656d76">'
        f'{escape(message)}</text></svg>')


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               empty: str = "nothing to plot yet", y_range: tuple[float, float] | None = None,
               x_text: Label = number_text, y_text: Label = number_text,
               step: bool = False) -> Markup:
    """A line chart of ``series`` (hover a point for its ``tip``); ``step`` draws a staircase
    (a running total)."""
    pts = [p for s in series for p in s.points]
    if not pts:
        return _empty(title, empty)
    xs = (min(p.x for p in pts), max(p.x for p in pts))
    ys = y_range or (min(0.0, min(p.y for p in pts)), max(p.y for p in pts))
    if ys[1] <= ys[0]:
        ys = (ys[0], ys[0] + 1)
    out = _frame(title, x_label, y_label, xs, ys, x_text, y_text)
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        coords = [(_sx(p.x, xs), _sy(p.y, ys)) for p in s.points]
        if step and coords:
            path = [coords[0]]
            for x, y in coords[1:]:
                path += [(x, path[-1][1]), (x, y)]
            coords_line = path
        else:
            coords_line = coords
        if len(coords_line) > 1:
            joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords_line)
            out.append(f'<polyline points="{joined}" fill="none" stroke="{colour}" '
                       'stroke-width="2"/>')
        for p, (x, y) in zip(s.points, coords, strict=True):
            fill = colour if p.filled else "#ffffff"
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" '
                       f'stroke="{colour}" stroke-width="2"><title>{escape(p.tip)}</title>'
                       '</circle>')
    if len(series) > 1 or (series and series[0].name):
        for n, s in enumerate(series):
            y = TOP + 14 + 16 * n
            colour = PALETTE[n % len(PALETTE)]
            out.append(f'<rect x="{LEFT + 8}" y="{y - 9}" width="10" height="10" '
                       f'fill="{colour}"/><text x="{LEFT + 22}" y="{y}" font-size="11" '
                       f'fill="#1f2328">{escape(s.name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def progress_bar(fraction: float | None, *, target: float | None = None, label: str = "",
                 width: int = 240) -> Markup:
    """A horizontal bar filled to ``fraction`` (clipped to [0, 1]) with an optional tick at
    ``target`` (the rule to reach)."""
    f = 0.0 if fraction is None else min(max(fraction, 0.0), 1.0)
    done = fraction is not None and target is not None and fraction >= target
    colour = "#1a7f37" if done else "#ff9d00"
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 12" '
              f'width="{width}" height="12" class="bar" role="img" '
              f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
              f'<rect x="0.5" y="0.5" width="{width - 1}" height="11" rx="4" fill="#f6f8fa" '
              'stroke="#d0d7de"/>')]
    if f > 0:
        parts.append(f'<rect x="0.5" y="0.5" width="{max(f * (width - 1), 2):.1f}" height="11" '
                     f'rx="4" fill="{colour}"/>')
    if target is not None:
        x = min(max(target, 0.0), 1.0) * (width - 1)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="12" stroke="#1f2328" '
                     'stroke-width="2"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def eth_text(wei: float) -> str:
    """An axis label of wei in ETH (``0.25``)."""
    value = Decimal(int(wei)) / Decimal(10**18)
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def date_text(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%m-%d %H:%M")
