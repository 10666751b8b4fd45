"""Charts drawn on the server: the geometry of a per-day bar or line chart, which the
`_chart.html` macro turns into inline SVG. No script and no style attribute (the console's
CSP allows neither): shapes carry a palette class (`k0`…`k5`, in console.css) and a
`<title>` a browser shows on hover.

Values are integers (paise, counts, basis points); only the drawing's coordinates are
fractional. A missing value (None: a rate of a day with nothing attempted) is a gap in a
line, and no bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 560
HEIGHT = 220
LEFT = 70  # room for the y axis' labels
RIGHT = 10
TOP = 10
BOTTOM = 26  # room for the x axis' labels
PLOT_W = WIDTH - LEFT - RIGHT
PLOT_H = HEIGHT - TOP - BOTTOM
PALETTE = 6

Format = Callable[[int], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int | None]  # one per day


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    css: str
    title: str


@dataclass(frozen=True)
class Line:
    css: str
    points: str  # an SVG polyline's points: "x,y x,y …"


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    css: str
    title: str


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    kind: str  # "bars" (stacked) or "lines"
    bars: list[Bar]
    lines: list[Line]
    dots: list[Dot]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[tuple[str, str]]  # (name, css)
    total: str  # the period's figure, shown beside the title
    empty: bool
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    baseline: int = HEIGHT - BOTTOM


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2 or 5 times a power of ten that is at least `value`: a round
    top for an axis."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _y(value: int, top: int) -> float:
    return TOP + PLOT_H - PLOT_H * value / top


def _y_ticks(top: int, axis: Format) -> list[Tick]:
    # Four or five intervals where they fall on whole numbers (a top of 1 or 2: one a unit).
    parts = next(p for p in (4, 5, 2, 1) if top % p == 0)
    values = [top * n // parts for n in range(parts + 1)]
    return [Tick(round(_y(v, top), 1), axis(v)) for v in values]


def _slot(days: Sequence[date]) -> float:
    return PLOT_W / max(len(days), 1)


def _x_ticks(days: Sequence[date]) -> list[Tick]:
    """The first day, the last, and up to four between: labels that never collide."""
    if not days:
        return []
    n = len(days)
    step = max(1, (n + 4) // 5)
    picked = list(range(0, n, step))
    if n - 1 - picked[-1] < step / 2 and len(picked) > 1:
        picked[-1] = n - 1
    elif picked[-1] != n - 1:
        picked.append(n - 1)
    slot = _slot(days)
    return [Tick(round(LEFT + slot * (i + 0.5), 1), days[i].strftime("%d %b")) for i in picked]


def _legend(series: Sequence[Series]) -> list[tuple[str, str]]:
    return [(s.name, f"k{i % PALETTE}") for i, s in enumerate(series)]


def stacked_bars(
    chart_id: str,
    title: str,
    days: Sequence[date],
    series: Sequence[Series],
    *,
    axis: Format,
    label: Format,
    total: str,
    least: int = 1,
) -> Chart:
    """One bar a day, the series stacked in their order (all values ≥ 0). `least`: the
    smallest axis top (₹1 = 100 paise for money: never a ₹0.01 axis)."""
    sums = [sum(s.values[i] or 0 for s in series) for i in range(len(days))]
    top = nice_ceiling(max([*sums, least]))
    slot = _slot(days)
    gap = min(4.0, slot * 0.2)
    bars: list[Bar] = []
    for i, day in enumerate(days):
        below = 0
        for k, s in enumerate(series):
            value = s.values[i] or 0
            if value <= 0:
                continue
            y_top, y_bottom = _y(below + value, top), _y(below, top)
            bars.append(
                Bar(
                    x=round(LEFT + slot * i + gap / 2, 2),
                    y=round(y_top, 2),
                    w=round(max(slot - gap, 1.0), 2),
                    h=round(max(y_bottom - y_top, 0.5), 2),
                    css=f"k{k % PALETTE}",
                    title=f"{day:%d %b %Y} · {s.name}: {label(value)}",
                )
            )
            below += value
    return Chart(
        id=chart_id,
        title=title,
        kind="bars",
        bars=bars,
        lines=[],
        dots=[],
        y_ticks=_y_ticks(top, axis),
        x_ticks=_x_ticks(days),
        legend=_legend(series),
        total=total,
        empty=not any(sums),
    )


def lines(
    chart_id: str,
    title: str,
    days: Sequence[date],
    series: Sequence[Series],
    *,
    axis: Format,
    label: Format,
    total: str,
    top: int | None = None,
    least: int = 1,
) -> Chart:
    """One line per series (a gap where a value is None), with a dot on each day that has
    a value (its hover title says the figure). `top`: a fixed axis top (a rate's 100 %).
    A chart with nothing but zeros draws no line: "nothing in this period" says it."""
    present = [v for s in series for v in s.values if v is not None]
    empty = not any(present)
    legend = _legend(series)
    if empty:
        series = []
    ceiling = top if top is not None else nice_ceiling(max([*present, least]))
    slot = _slot(days)
    drawn: list[Line] = []
    dots: list[Dot] = []
    for k, s in enumerate(series):
        css = f"k{k % PALETTE}"
        run: list[str] = []
        for i, value in enumerate(s.values):
            if value is None:
                if len(run) > 1:
                    drawn.append(Line(css, " ".join(run)))
                run = []
                continue
            x, y = round(LEFT + slot * (i + 0.5), 2), round(_y(max(value, 0), ceiling), 2)
            run.append(f"{x},{y}")
            if value != 0 or top is not None:  # a zero amount is the baseline; a 0 % rate is not
                dots.append(Dot(x, y, css, f"{days[i]:%d %b %Y} · {s.name}: {label(value)}"))
        if len(run) > 1:
            drawn.append(Line(css, " ".join(run)))
    return Chart(
        id=chart_id,
        title=title,
        kind="lines",
        bars=[],
        lines=drawn,
        dots=dots,
        y_ticks=_y_ticks(ceiling, axis),
        x_ticks=_x_ticks(days),
        legend=legend,
        total=total,
        empty=empty,
    )
