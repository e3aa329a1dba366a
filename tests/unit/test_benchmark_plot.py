"""benchmarks/plot.py: the start-latency chart of docs/benchmarks.md."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit import benchmark_scripts

ROOT = Path(__file__).resolve().parent.parent.parent
SVG_NS = "{http://www.w3.org/2000/svg}"


def _load_plot() -> ModuleType:
    return benchmark_scripts.load("plot")


plot = _load_plot()

TABLE = """\
Some text.

| # | case | runs | median | p90 | ratio |
|---|---|---:|---:|---:|---:|
| 1 | containerlib, in-process | 200 | 4.31 ms | 5.97 ms | 1.00x |
| 4 | runc run | 200 | 27.27 ms | 37.44 ms | 6.33x |
| 8 | podman run | 200 | 0.153 s | 184 ms | 35.6x |

After the table.
"""


def test_the_table_is_read_in_milliseconds() -> None:
    bars = plot.parse_table(TABLE)
    assert [(b.label, b.median_ms, b.p90_ms) for b in bars] == [
        ("containerlib, in-process", 4.31, 5.97),
        ("runc run", 27.27, 37.44),
        ("podman run", 153.0, 184.0),
    ]
    assert [b.ours for b in bars] == [True, False, False]


def test_a_page_without_the_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="case, median and p90"):
        plot.parse_table("| how | seconds |\n|---|---|\n| tar | 13.07 |\n")


def test_a_cell_that_is_not_a_duration_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a duration: 'fast'"):
        plot.parse_table(TABLE.replace("27.27 ms", "fast"))


def test_the_chart_has_a_bar_and_a_label_for_every_case() -> None:
    svg = ET.fromstring(plot.render_svg(plot.parse_table(TABLE), "Start & stop"))
    texts = [t.text for t in svg.iter(f"{SVG_NS}text")]
    assert "Start & stop" in texts  # escaped in the file, read back as written
    for label in ("containerlib, in-process", "runc run", "podman run"):
        assert label in texts
    assert {"4.31 ms", "27.3 ms", "153 ms"} <= set(texts)
    bars = [r for r in svg.iter(f"{SVG_NS}rect") if r.get("height") == str(plot._BAR)]
    widths = [float(r.get("width", "0")) for r in bars]
    # One bar a case, longer for a slower case.
    assert len(widths) == 3
    assert widths == sorted(widths)
    assert widths[0] > 0


def test_the_committed_chart_is_that_of_the_committed_table() -> None:
    table = (ROOT / "docs" / "benchmarks.md").read_text()
    expected = plot.render_svg(plot.parse_table(table), plot.TITLE)
    committed = (ROOT / "docs" / "benchmarks-start.svg").read_text()
    assert committed == expected, (
        "docs/benchmarks-start.svg is not the chart of docs/benchmarks.md: "
        "run python benchmarks/plot.py"
    )
    assert "(benchmarks-start.svg)" in table, "docs/benchmarks.md does not show the chart"
