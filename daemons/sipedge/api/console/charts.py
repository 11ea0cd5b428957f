"""Sparklines of a gateway's buckets, drawn as inline SVG geometry on the server.

Owns: `sparkline`, which turns one window's buckets ([attempts, answered], oldest first) into
the numbers an SVG needs: a bar per bucket for its attempts and a polyline of its ASR.
Must not: do I/O or produce markup (the template does, escaped): plain numbers only.

No JavaScript chart library: a sparkline is a few rectangles and one polyline, which the
server can draw, so the console ships no third-party code, works without JavaScript and keeps
its Content-Security-Policy at `script-src 'self'`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 240.0
HEIGHT = 40.0
MAX_BUCKETS = 512  # more than any window has (24 h: 144)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Sparkline:
    width: float
    height: float
    bars: tuple[Bar, ...]
    asr_points: str  # "x,y x,y ..." of the buckets that had attempts
    peak: int  # the most attempts in one bucket (the bars' scale)
    attempts: int
    answered: int


def sparkline(buckets: Sequence[Sequence[int]]) -> Sparkline:
    """Bars scaled to the busiest bucket; the ASR line from 0 % (bottom) to 100 % (top)."""
    buckets = buckets[-MAX_BUCKETS:]
    n = max(1, len(buckets))
    step = WIDTH / n
    peak = max((int(b[0]) for b in buckets), default=0)
    bars: list[Bar] = []
    points: list[str] = []
    total = answered = 0
    for i, bucket in enumerate(buckets):
        tried, won = int(bucket[0]), int(bucket[1])
        total += tried
        answered += won
        if not tried:
            continue
        height = HEIGHT * tried / peak
        bars.append(Bar(round(i * step, 2), round(HEIGHT - height, 2), round(step, 2), height))
        asr = min(1.0, won / tried)
        points.append(f"{round(i * step + step / 2, 2)},{round(HEIGHT * (1 - asr), 2)}")
    return Sparkline(WIDTH, HEIGHT, tuple(bars), " ".join(points), peak, total, answered)
