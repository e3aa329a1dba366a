"""Draw the start-latency table of docs/benchmarks.md as an SVG bar chart.

    python benchmarks/plot.py            # writes docs/benchmarks-start.svg
    python benchmarks/plot.py --check    # fails if that file is not what the table gives

The figures come from the Markdown table that ``benchmarks/run.py`` writes, so rerun this
after it. Pure Python: the SVG is written by hand, so the docs need no plotting library.
The output depends only on the table (no date, no random ids), so that an unchanged table
gives an unchanged file. The time axis is logarithmic: the cases span two orders of
magnitude (a few milliseconds in-process, a couple of hundred for a whole CLI process),
and on a linear axis the fast ones would be slivers.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

__all__ = ["Bar", "parse_table", "render_svg"]

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "docs" / "benchmarks.md"
SVG = REPO / "docs" / "benchmarks-start.svg"

_UNITS = {"s": 1000.0, "ms": 1.0, "us": 0.001, "µs": 0.001}
_DURATION = re.compile(r"^(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>s|ms|us|µs)$")

# Layout, in SVG user units (pixels).
_WIDTH = 800
_LABEL_WIDTH = 360
_RIGHT = 70
_TOP = 54
_ROW = 26
_BAR = 16
_BOTTOM = 58
_OURS = "#3f51b5"
_PEER = "#9e9e9e"


@dataclass(frozen=True)
class Bar:
    """One case of the table: its label, median and 90th percentile in milliseconds."""

    label: str
    median_ms: float
    p90_ms: float

    @property
    def ours(self) -> bool:
        """A containerlib case (drawn in the accent colour)."""
        return "containerlib" in self.label


def _milliseconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (expected a number and s, ms or us)")
    return float(match["value"]) * _UNITS[match["unit"]]


def parse_table(markdown: str) -> list[Bar]:
    """The rows of the first table of ``markdown`` that has ``case``, ``median`` and
    ``p90`` columns.

    Raises:
        ValueError: there is no such table, or a cell is not a duration.
    """
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        cells = _cells(line)
        if {"case", "median", "p90"} <= set(cells) and i + 1 < len(lines):
            case, median, p90 = (cells.index(c) for c in ("case", "median", "p90"))
            bars = []
            for row in lines[i + 2 :]:
                values = _cells(row)
                if not values:
                    break
                figures = _milliseconds(values[median]), _milliseconds(values[p90])
                bars.append(Bar(values[case], *figures))
            if bars:
                return bars
    raise ValueError("no table with the columns case, median and p90")


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|")):
        return []
    return [cell.strip() for cell in line[1:-1].split("|")]


def _ticks(low: float, high: float) -> list[float]:
    """1-2-5 steps from below ``low`` to above ``high``."""
    ticks = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for step in (1, 2, 5):
            ticks.append(step * 10.0**exponent)
    below = max(t for t in ticks if t <= low)
    above = min(t for t in ticks if t >= high)
    return [t for t in ticks if below <= t <= above]


def _number(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def _tick_text(ms: float) -> str:
    return f"{ms:g}"


def render_svg(bars: Sequence[Bar], title: str) -> str:
    """The chart: one horizontal bar a case (its median), a whisker to its p90, the median
    written beside it, on a logarithmic millisecond axis."""
    if not bars:
        raise ValueError("nothing to plot")
    ticks = _ticks(min(b.median_ms for b in bars), max(b.p90_ms for b in bars))
    low, high = math.log10(ticks[0]), math.log10(ticks[-1])
    plot_width = _WIDTH - _LABEL_WIDTH - _RIGHT
    height = _TOP + _ROW * len(bars) + _BOTTOM

    def x(ms: float) -> float:
        return _LABEL_WIDTH + (math.log10(ms) - low) / (high - low) * plot_width

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="12" '
        f'role="img" aria-labelledby="title">',
        f'<title id="title">{escape(title)}</title>',
        f'<rect width="{_WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{_WIDTH / 2:.1f}" y="24" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    axis_y = _TOP + _ROW * len(bars)
    for tick in ticks:
        tx = x(tick)
        out.append(
            f'<line x1="{tx:.1f}" y1="{_TOP - 6}" x2="{tx:.1f}" y2="{axis_y}" stroke="#e0e0e0"/>'
        )
        out.append(
            f'<text x="{tx:.1f}" y="{axis_y + 16}" text-anchor="middle" '
            f'fill="#424242">{_tick_text(tick)}</text>'
        )
    out.append(
        f'<text x="{_LABEL_WIDTH + plot_width / 2:.1f}" y="{axis_y + 36}" '
        f'text-anchor="middle" fill="#424242">milliseconds, median (bar) and p90 (whisker), '
        f"logarithmic scale</text>"
    )
    for i, bar in enumerate(bars):
        top = _TOP + i * _ROW + (_ROW - _BAR) / 2
        middle = top + _BAR / 2
        colour = _OURS if bar.ours else _PEER
        end, whisker = x(bar.median_ms), x(bar.p90_ms)
        out.append(
            f'<text x="{_LABEL_WIDTH - 8}" y="{middle + 4:.1f}" text-anchor="end">'
            f"{escape(bar.label)}</text>"
        )
        out.append(
            f'<rect x="{_LABEL_WIDTH}" y="{top:.1f}" width="{end - _LABEL_WIDTH:.1f}" '
            f'height="{_BAR}" fill="{colour}"/>'
        )
        out.append(
            f'<line x1="{end:.1f}" y1="{middle:.1f}" x2="{whisker:.1f}" y2="{middle:.1f}" '
            f'stroke="#212121"/>'
        )
        out.append(
            f'<line x1="{whisker:.1f}" y1="{top + 3:.1f}" x2="{whisker:.1f}" '
            f'y2="{top + _BAR - 3:.1f}" stroke="#212121"/>'
        )
        out.append(
            f'<text x="{whisker + 5:.1f}" y="{middle + 4:.1f}" fill="#212121">'
            f"{_number(bar.median_ms)} ms</text>"
        )
    out.append(
        f'<line x1="{_LABEL_WIDTH}" y1="{_TOP - 6}" x2="{_LABEL_WIDTH}" y2="{axis_y}" '
        f'stroke="#616161"/>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


TITLE = "Start and wait for /bin/true: containerlib and its peers"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE, help="the Markdown page to read")
    parser.add_argument("--out", type=Path, default=SVG, help="the SVG file to write")
    parser.add_argument(
        "--check", action="store_true", help="fail if --out differs from what the table gives"
    )
    args = parser.parse_args(argv)
    svg = render_svg(parse_table(args.table.read_text()), TITLE)
    if args.check:
        if not args.out.exists() or args.out.read_text() != svg:
            print(f"{args.out} is out of date: run python benchmarks/plot.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(svg)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
