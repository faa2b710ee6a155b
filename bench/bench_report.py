"""Medians, ratios and targets of a scenario as a Markdown table; results/ files and LATEST.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench_contenders import Sample


@dataclass
class Target:
    text: str  # the target, in words
    value: str  # what was measured
    met: bool | None  # None: could not be measured


@dataclass
class Outcome:
    scenario: str
    title: str
    params: dict[str, str]
    rows: dict[str, list[Sample]]  # contender label -> runs, in table order
    ratios: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # column -> {row: baseline row}
    extra_columns: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ok(self, label: str) -> list[Sample]:
        return [s for s in self.rows.get(label, []) if s.ok]

    def median(self, label: str, metric: Callable[[Sample], float | None]) -> float | None:
        values = [v for v in (metric(s) for s in self.ok(label)) if v is not None]
        return statistics.median(values) if values else None


def wall(s: Sample) -> float:
    return s.wall


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(outcome: Outcome) -> str:
    head = ["contender", "ok/runs", "wall s"] + [title for title, _ in outcome.ratios]
    head += ["CPU s", "peak RSS MB", "MB sent", "requests"] + outcome.extra_columns + ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, samples in outcome.rows.items():
        median_wall = outcome.median(label, wall)
        cells = [label, f"{len(outcome.ok(label))}/{len(samples)}", _num(median_wall)]
        for _, baselines in outcome.ratios:
            base = outcome.median(baselines[label], wall) if label in baselines else None
            cells.append(_num(median_wall / base) if median_wall is not None and base else "—")
        sent = outcome.median(label, lambda s: s.bytes)
        requests = outcome.median(label, lambda s: s.requests)
        cells += [
            _num(outcome.median(label, lambda s: s.cpu)),
            _num(outcome.median(label, lambda s: s.peak_rss_mb), 0),
            _num(None if sent is None else sent / 1e6, 1),
            _num(requests, 0),
        ]
        cells += [_num(outcome.median(label, lambda s, k=k: s.extra.get(k)), 0) for k in outcome.extra_columns]
        notes = sorted({s.note for s in samples if s.note})
        cells.append("; ".join(notes)[:160].replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(outcome: Outcome) -> str:
    if not outcome.targets:
        return ""
    mark = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["| target (issue 5) | measured | |", "|---|---|---|"]
    lines += [f"| {t.text} | {t.value} | {mark[t.met]} |" for t in outcome.targets]
    return "\n".join(lines)


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else f"exit {done.returncode}"


def environment(repo: Path) -> dict[str, str]:
    cpu = "unknown"
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1) if found else cpu
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z"),
        "cores": f"{os.cpu_count()} ({cpu})",
        "memory": f"{memory:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "product": _first_line([sys.executable, str(repo / "entrypoint.py"), "--version"]),
        "commit": commit + (" + uncommitted changes" if dirty else ""),
        "nginx": _first_line(["nginx", "-v"]),
        "curl": _first_line(["curl", "--version"]).split(" (")[0],
        "aria2c": _first_line(["aria2c", "--version"]),
        "unzip": _first_line(["unzip", "-v"]).split(" of ")[0],
    }


def markdown(outcome: Outcome, env: dict[str, str]) -> str:
    parts = [f"## {outcome.title}", ""]
    parts.append(" · ".join(f"{k}: {v}" for k, v in outcome.params.items()))
    parts += ["", table(outcome), ""]
    if outcome.targets:
        parts += [targets_table(outcome), ""]
    parts += [f"- {note}" for note in outcome.notes]
    parts += ["", "<details><summary>machine and versions</summary>", ""]
    parts += [f"- {k}: {v}" for k, v in env.items()]
    parts += ["", "</details>", ""]
    return "\n".join(parts)


def write(results: Path, outcome: Outcome, env: dict[str, str]) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{dt.date.today().isoformat()}-{outcome.scenario}.md"
    path.write_text(f"# Benchmark: {outcome.scenario}\n\n" + markdown(outcome, env))
    write_latest(results)
    return path


ORDER = ("loopback", "capped", "many", "large", "serve")


def _rank(scenario: str) -> tuple[int, str]:
    return (ORDER.index(scenario) if scenario in ORDER else len(ORDER), scenario)


def write_latest(results: Path) -> Path:
    """LATEST.md: the newest result of every scenario, one after another."""
    newest: dict[str, Path] = {}
    for path in sorted(results.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]-*.md")):
        newest[path.stem[11:]] = path  # sorted by date, so the last one wins
    parts = ["# Latest benchmark results", "",
             "Medians of each scenario's newest run; see the README in bench/ for what each column means.", ""]
    parts += [f"- [{name}]({path.name})" for name, path in sorted(newest.items(), key=lambda i: _rank(i[0]))]
    for path in sorted(newest.values(), key=lambda p: _rank(p.stem[11:])):
        body = path.read_text().split("\n", 2)[2]  # drop the per-file title
        parts += ["", body.rstrip()]
    latest = results / "LATEST.md"
    latest.write_text("\n".join(parts) + "\n")
    return latest
