"""Figures, targets and the Markdown report (docs/benchmarks.md) from the raw timings."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CaseResult", "Stats", "Target", "evaluate_targets", "render_markdown", "table"]

BASELINE = "containerlib"


@dataclass(frozen=True)
class Stats:
    """Summary of one case's run times, in seconds."""

    runs: int
    median: float
    p90: float
    min: float
    max: float
    mean: float

    @classmethod
    def of(cls, times: Sequence[float]) -> Stats:
        # quantiles() needs two points; with one, every figure is that point.
        p90 = statistics.quantiles(times, n=10)[-1] if len(times) > 1 else times[0]
        return cls(
            runs=len(times),
            median=statistics.median(times),
            p90=p90,
            min=min(times),
            max=max(times),
            mean=statistics.fmean(times),
        )


@dataclass
class CaseResult:
    """What happened to one case: ``status`` is ``ok``, ``skipped`` or ``failed``."""

    number: str
    key: str
    title: str
    command: str
    context: str = ""
    status: str = "ok"
    note: str = ""
    times: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def stats(self) -> Stats | None:
        return Stats.of(self.times) if self.status == "ok" and self.times else None


@dataclass(frozen=True)
class Target:
    """A goal from the issue, and whether this run met it (None: not measured)."""

    goal: str
    met: bool | None
    detail: str

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


def evaluate_targets(results: Sequence[CaseResult]) -> list[Target]:
    """The three targets of the issue, each judged on medians."""
    median = {r.key: s.median for r in results if (s := r.stats) is not None}

    def judge(goal: str, slow: str, fast: str, passes: Any, how: str) -> Target:
        if slow not in median or fast not in median:
            missing = ", ".join(k for k in (slow, fast) if k not in median)
            return Target(goal, None, f"no figures for {missing}")
        ratio = median[slow] / median[fast]
        figures = f"{slow} {_ms(median[slow])} / {fast} {_ms(median[fast])}"
        detail = f"{figures} = {_ratio(ratio)}; {how}"
        return Target(goal, bool(passes(ratio)), detail)

    return [
        judge(
            "in-process containerlib no slower than bwrap",
            "bwrap",
            "containerlib",
            lambda r: r >= 1.0,
            "needs >= 1.00x (both without resource limits)",
        ),
        judge(
            "in-process containerlib at least 4x faster than `runc run`",
            "runc",
            "containerlib-limits",
            lambda r: r >= 4.0,
            "needs >= 4x (containerlib with a cgroup and limits, as runc makes one)",
        ),
        judge(
            "at most 1.5x slower with a 1 GiB caller than without",
            "containerlib-1g",
            "containerlib",
            lambda r: r <= 1.5,
            "needs <= 1.5x",
        ),
    ]


def table(results: Sequence[CaseResult]) -> str:
    """The results as a Markdown table; ratios are to containerlib in-process."""
    base = next((r.stats for r in results if r.key == BASELINE), None)
    lines = [
        "| # | case | runs | median | p90 | ratio to containerlib in-process |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r.stats
        if s is None:
            lines.append(f"| {r.number} | {r.title} | - | - | - | {r.status} |")
            continue
        ratio = _ratio(s.median / base.median) if base is not None else "-"
        lines.append(
            f"| {r.number} | {r.title} | {s.runs} | {_ms(s.median)} | {_ms(s.p90)} | {ratio} |"
        )
    return "\n".join(lines)


def render_markdown(
    meta: dict[str, Any], results: Sequence[CaseResult], targets: Sequence[Target]
) -> str:
    """The whole of docs/benchmarks.md."""
    skipped = [r for r in results if r.status != "ok"]
    infos = [
        f"- {r.title}: the caller's resident set was {r.info['caller_rss_kib'] / 1024:.0f} MiB"
        for r in results
        if r.status == "ok" and r.key.startswith("containerlib") and "caller_rss_kib" in r.info
    ]
    out = [
        "# Container start latency",
        "",
        "<!-- Written by `python benchmarks/run.py`: rerun it rather than edit this file. -->",
        "",
        "How long it takes to start a container that runs `/bin/true` and to see it exit, "
        "for containerlib and for the tools it stands in for. Every case uses the same "
        "busybox root file system; the time of one run is the wall time, measured with "
        "`time.perf_counter`, around one call that starts the container and returns once it "
        "has exited (for outside programs: the whole process, from spawn to exit).",
        "",
        "Run it as root from the repository: `python benchmarks/run.py` (or `nox -s bench`). "
        "`--quick` times 30 runs a case instead of 200, `--runs N` any number, `--cases` a "
        "subset. It needs `apt-get install -y runc crun bubblewrap busybox-static` (podman "
        "optional); peers that are missing are skipped with a note. Raw timings go to "
        "`benchmarks/results/` (not in git).",
        "",
        "The figures depend on how busy the machine is: on a shared host, compare the ratios "
        "within one run (the cases are interleaved, so they share its conditions) rather "
        "than milliseconds across runs, and look at the load figures below.",
        "",
        "## Last run",
        "",
        f"- Date: {meta['date']}",
        f"- Host: Linux {meta['kernel']} ({meta['machine']}), {meta['cpu']}, "
        f"{meta['cpus']} CPUs, cgroups {meta['cgroups']}; load average "
        f"{meta['load_start']} at start, {meta['load_end']} at end; the CPUs were "
        f"{meta['cpu_busy']} busy during the run, the benchmark's own work included",
        f"- Software: {'; '.join(meta['versions'])}",
        f"- Root file system: {meta['rootfs']}",
        f"- Method: {meta['runs']} timed runs a case after one untimed warm-up run, "
        f"interleaved in {meta['rounds']} rounds of at most {meta['batch']} runs a case (the "
        "order rotating every round) so that all cases share the machine's conditions; one "
        "process run "
        f"(`{meta['argv']}`), {meta['elapsed_s']:.0f} s in all.",
        "",
        table(results),
        "",
        "![Median and p90 start latency of each case, on a logarithmic millisecond axis]"
        "(benchmarks-start.svg)",
        "",
        "Targets (on medians):",
        "",
        *(f"- **{t.verdict}**: {t.goal} ({t.detail})" for t in targets),
        "",
        *([*infos, ""] if infos else []),
        "## What each case runs",
        "",
        "`ROOT` is the busybox root file system; `BUNDLE` an OCI bundle whose config.json "
        "is the output of `runc spec` with root.path = ROOT, root.readonly = false, "
        'process.args = ["/bin/true"] and process.terminal = false; `WORK` a fresh scratch '
        "directory; `ID` a container id unique to the run.",
        "",
        *(f"- ({r.number}) {r.title}: `{r.command}`{r.context}" for r in results),
        "",
    ]
    if skipped:
        out += [
            "## Not measured",
            "",
            *(f"- {r.title}: {r.status}: {r.note}" for r in skipped),
            "",
        ]
    return "\n".join(out)


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def _ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


# -- the pages of the single-topic benchmarks (exec.py, detached.py, cgroups.py, images.py) --


def page_header(title: str, script: str, doc: str, started: Any, detail: str) -> list[str]:
    """The top of a benchmark's docs page: its title, a note not to edit it, what it
    measures (the script's docstring, up to "Run as root") and when it last ran."""
    import os
    import platform

    return [
        f"# {title}",
        "",
        f"<!-- Written by `python benchmarks/{script}`: rerun it rather than edit. -->",
        "",
        doc.split("\n\n", 1)[1].split("Run as root", maxsplit=1)[0].strip(),
        "",
        f"Last run: {started:%Y-%m-%d %H:%M} UTC, Linux {platform.release()}, "
        f"{os.cpu_count()} CPUs, {detail} (`python benchmarks/{script}`).",
        "",
    ]


def latency_rows(
    results: dict[str, list[float] | str], *, digits: int = 2, ratio: bool = True
) -> list[str]:
    """A table of run times (seconds), one row a way of doing it: runs, median and p90 in
    ms and, with ``ratio``, the median against the first row's. A row whose value is a
    string says why it did not run."""
    head = "| how | runs | median | p90 |" + (" ratio |" if ratio else "")
    lines = [head, "|---|---:|---:|---:|" + ("---:|" if ratio else "")]
    base = None
    for name, times in results.items():
        if isinstance(times, str):
            lines.append(f"| {name} | - | {times} | |" + (" |" if ratio else ""))
            continue
        med = statistics.median(times) * 1e3
        p90 = sorted(times)[int(len(times) * 0.9)] * 1e3
        base = base or med
        row = f"| {name} | {len(times)} | {med:.{digits}f} ms | {p90:.{digits}f} ms |"
        lines.append(row + (f" {med / base:.2f}x |" if ratio else ""))
    return lines


def throughput_rows(results: dict[str, list[float] | str], *, mib: int) -> list[str]:
    """A table of transfer rates from the times (seconds) of ``mib`` MiB transfers, one
    row a path: runs, the median rate and the rate of the slow end (the p90 time) in MB/s
    (10^6 bytes a second), and the median against the first row's. A row whose value is
    a string says why it did not run."""
    lines = ["| path | runs | median | slow end (p90 time) | ratio |", "|---|---:|---:|---:|---:|"]
    size = mib * 2**20 / 1e6
    base = None
    for name, times in results.items():
        if isinstance(times, str):
            lines.append(f"| {name} | - | {times} | | |")
            continue
        rate = size / statistics.median(times)
        slow = size / sorted(times)[int(len(times) * 0.9)]
        base = base or rate
        lines.append(
            f"| {name} | {len(times)} | {rate:.0f} MB/s | {slow:.0f} MB/s | {rate / base:.2f}x |"
        )
    return lines


def write_page(lines: Sequence[str], path: Any, *, write: bool = True) -> None:
    """Print the page and, with ``write``, put it at ``path``."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        path.write_text(text)
