"""Geometry for the dashboard's small bar charts, drawn by the templates as inline SVG."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Marker:
    x: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    markers: list[Marker]
    peak: int


def bar_chart(values: list[int], labels: list[str], *, width: int = 600, height: int = 160,
              markers: list[tuple[float, str]] = (), log_scale: bool = False) -> BarChart:  # fmt: skip
    """Bars for `values` filling width x height (bottom-aligned); markers at fractions 0..1 of the width.

    On a log scale a bin of a few links still shows beside one of thousands.
    """
    peak = max(values, default=0)
    scale = (lambda v: math.log1p(v)) if log_scale else (lambda v: v)
    slot = width / max(len(values), 1)
    bars = []
    for i, (value, label) in enumerate(zip(values, labels, strict=True)):
        bar_height = (scale(value) / scale(peak)) * (height - 4) if peak else 0
        bars.append(Bar(i * slot + 1, height - bar_height, max(slot - 2, 1), bar_height, label, value))
    return BarChart(width, height, bars, [Marker(fraction * width, text) for fraction, text in markers], peak)
