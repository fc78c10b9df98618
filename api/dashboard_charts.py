"""Geometry of the home page's charts, drawn as inline SVG by the templates: ingests per
minute as bars, each projection's lag as a line, over the same time window."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.lag_samples import LagSample

WIDTH, HEIGHT = 720, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 28, 12, 24  # margins for the axis labels
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Line:
    name: str
    segments: list[str]  # SVG "points" lists; a gap in the samples starts a new one
    dots: list[tuple[float, float]]  # lone samples between gaps (a one-point line shows nothing)
    latest: int
    index: int  # picks the line's colour class


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    bars: list[Bar]
    lines: list[Line]
    empty: bool


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def y_ticks(top: float) -> list[Tick]:
    return [Tick(TOP + PLOT_H * (1 - f), f"{top * f:g}") for f in (0, 0.5, 1)]


def x_ticks(start: datetime, end: datetime) -> list[Tick]:
    """A label every quarter of the window."""
    span = (end - start).total_seconds()
    return [Tick(LEFT + PLOT_W * f, (start + timedelta(seconds=span * f)).strftime("%H:%M"))
            for f in (0, 0.25, 0.5, 0.75, 1)]


def chart(y_top: float, start: datetime, end: datetime, *, bars: list[Bar] | None = None,
          lines: list[Line] | None = None, empty: bool) -> Chart:
    return Chart(WIDTH, HEIGHT, LEFT, TOP, PLOT_W, PLOT_H, y_ticks(y_top),
                 x_ticks(start, end), bars or [], lines or [], empty)


def ingest_chart(per_minute: Sequence[tuple[datetime, int]]) -> Chart:
    """One bar per minute; the window runs from the first minute to the end of the last."""
    if not per_minute:
        now = datetime.now().astimezone()
        return chart(1, now - timedelta(hours=1), now, empty=True)
    top = nice_ceiling(max(n for _, n in per_minute))
    slot = PLOT_W / len(per_minute)
    bars = []
    for i, (minute, n) in enumerate(per_minute):
        height = PLOT_H * n / top
        bars.append(Bar(LEFT + i * slot + 0.5, TOP + PLOT_H - height, max(slot - 1, 0.5),
                        height, f"{minute:%H:%M} UTC: {n} ingest{'s' if n != 1 else ''}"))
    start, end = per_minute[0][0], per_minute[-1][0] + timedelta(minutes=1)
    return chart(top, start, end, bars=bars, empty=all(n == 0 for _, n in per_minute))


def lag_chart(samples: Sequence[LagSample], start: datetime, end: datetime, *,
              gap: timedelta = timedelta(seconds=45)) -> Chart:
    """One line per projection of its lag in events; samples further apart than ``gap``
    (the sampler was down) leave the line broken there rather than bridged."""
    by_projection: dict[str, list[LagSample]] = defaultdict(list)
    for sample in samples:
        if start <= sample.sampled_at <= end:
            by_projection[sample.projection].append(sample)
    top = nice_ceiling(max((s.lag_events for s in samples), default=0))
    span = max((end - start).total_seconds(), 1.0)
    lines = []
    for index, (name, points) in enumerate(sorted(by_projection.items())):
        segments: list[list[tuple[float, float]]] = []
        previous: datetime | None = None
        for s in points:
            if previous is None or s.sampled_at - previous > gap:
                segments.append([])
            segments[-1].append((
                round(LEFT + PLOT_W * (s.sampled_at - start).total_seconds() / span, 1),
                round(TOP + PLOT_H * (1 - s.lag_events / top), 1)))
            previous = s.sampled_at
        lines.append(Line(
            name, [" ".join(f"{x},{y}" for x, y in seg) for seg in segments if len(seg) > 1],
            [seg[0] for seg in segments if len(seg) == 1], points[-1].lag_events, index))
    return chart(top, start, end, lines=lines, empty=not lines)

