"""The scenarios of issue 5, each returning an Outcome (runs per contender, targets)."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bench_data
from app.serve.sample_data import dataset_name
from bench_contenders import Context, Sample, Sync, aria2_unzip, curl_unzip, download_only, settle
from bench_report import Outcome, Target
from bench_servers import Nginx, ProductServe

CURL = "curl + unzip"


@dataclass
class Settings:
    repo: Path
    work: Path
    runs: int
    size_mb: float
    small_mb: float
    large_mb: float
    connections: int
    rate: str
    timeout: float
    sha256: bool
    sync_missing: str | None  # why `sync` cannot run, or None

    def context(self, scenario: str, need: float = 0) -> Context:
        """The scenario's scratch space; `need`: bytes its runs write in all, kept until it ends if they fit."""
        settle()
        work = self.work / "runs" / scenario
        work.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(work).free
        keep = free > need + 2e9
        if not keep:
            _say(f"only {free / 1e9:.0f} GB free for {need / 1e9:.0f} GB of output: "
                 "each round's output is deleted before the next round, which slows the next round's files")
        return Context(repo=self.repo, work=work, connections=self.connections, timeout=self.timeout, keep=keep)

    def package(self, size_mb: float, seed: int = 1, name: str = "stock-trading-data-pro") -> bench_data.Package:
        return bench_data.package(self.work / "data", name, n_files=bench_data.files_for(size_mb), seed=seed)


def _say(text: str) -> None:
    print(f"  {text}", flush=True)


def _brief(label: str, sample: Sample) -> str:
    state = "ok" if sample.ok else f"FAILED ({sample.note})"
    sent = f", {sample.bytes / 1e6:.0f} MB sent" if sample.bytes is not None else ""
    return f"{label}: {sample.wall:.2f} s wall, {sample.cpu:.2f} s CPU, {sample.peak_rss_mb:.0f} MB RSS{sent} {state}"


def _record(outcome: Outcome, label: str, sample: Sample) -> Sample:
    outcome.rows.setdefault(label, []).append(sample)
    _say(_brief(label, sample))
    return sample


def _ratio_target(outcome: Outcome, text: str, label: str, base: str, test: Callable[[float], bool]) -> None:
    mine, theirs = outcome.median(label, lambda s: s.wall), outcome.median(base, lambda s: s.wall)
    if mine is None or not theirs:
        outcome.targets.append(Target(text, "—", None))
        return
    ratio = mine / theirs
    outcome.targets.append(Target(text, f"{ratio:.2f} × ({mine:.2f} s vs {theirs:.2f} s)", test(ratio)))


def _rate(nginx_rate: str) -> str:
    """nginx's `20m` is 20 MiB/s."""
    units = {"k": "KiB/s", "m": "MiB/s", "g": "GiB/s"}
    suffix = nginx_rate[-1:].lower()
    return f"{nginx_rate[:-1]} {units[suffix]}" if suffix in units else f"{nginx_rate} B/s"


def _package_line(pkg: bench_data.Package) -> str:
    return (f"{pkg.files} files, {pkg.raw_bytes / 1e6:.0f} MB unpacked, {pkg.size / 1e6:.0f} MB zipped "
            f"(ratio {pkg.raw_bytes / pkg.size:.2f})")


def download(settings: Settings, scenario: str) -> Outcome:
    """`loopback` (unthrottled) or `capped` (nginx limit_rate per connection)."""
    capped = scenario == "capped"
    n = settings.connections
    aria = f"aria2c -x{n} + unzip"
    cold, noop, resume = "sync (cold)", "sync (no-op)", "sync (killed ~50%, rerun)"
    pkg = settings.package(settings.size_mb)
    root = bench_data.build_hub(settings.work / "hubs" / scenario, [pkg], with_sha256=settings.sha256)
    bench_data.warm_cache([pkg])
    params = {"package": _package_line(pkg), "runs": str(settings.runs), "connections": str(n),
              "limit_rate": f"{_rate(settings.rate)} per connection" if capped else "none",
              "sha256 in listing": "yes" if settings.sha256 else "no"}
    title = f"Per-connection limit ({_rate(settings.rate)} per connection)" if capped else "Unthrottled loopback"
    outcome = Outcome(scenario, title, params, rows={})
    # per round: curl and aria2c keep package + tree, two syncs a tree each (the package is deleted)
    ctx = settings.context(scenario, need=settings.runs * (2 * pkg.size + 4 * pkg.raw_bytes))
    with Nginx(root, limit_rate=settings.rate if capped else None) as hub:
        url = f"{hub.url}/package/{pkg.name}.zip"
        for round_ in range(1, settings.runs + 1):
            _say(f"round {round_}/{settings.runs}")
            _record(outcome, CURL, curl_unzip(ctx, hub, url, pkg))
            _record(outcome, aria, aria2_unzip(ctx, hub, url, pkg))
            if settings.sync_missing:
                continue
            sync = Sync(ctx, hub, [pkg])
            if _record(outcome, cold, sync.cold()).ok:
                _record(outcome, noop, sync.again())
            _record(outcome, resume, sync.resume())
            ctx.round_done()
    ctx.clear()
    labels = list(outcome.rows)
    outcome.ratios = [("÷ curl", {label: CURL for label in labels}), ("÷ aria2c", {label: aria for label in labels})]
    if settings.sync_missing:
        outcome.notes.append(f"`sync` not measured: {settings.sync_missing}")
    if capped:
        _ratio_target(outcome, "cold sync ≥ 3 × faster than curl + unzip (ratio ≤ 0.33)", cold, CURL,
                      lambda r: r <= 1 / 3)
        _ratio_target(outcome, f"cold sync ≤ 1.1 × aria2c -x{n} + unzip", cold, aria, lambda r: r <= 1.1)
    else:
        _ratio_target(outcome, "cold sync ≤ 0.7 × curl + unzip", cold, CURL, lambda r: r <= 0.7)
    rss = outcome.median(cold, lambda s: s.peak_rss_mb)
    outcome.targets.append(Target("peak RSS of sync < 100 MB", "—" if rss is None else f"{rss:.0f} MB",
                                  None if rss is None else rss < 100))
    sent = outcome.median(resume, lambda s: s.bytes)
    received = outcome.median(resume, lambda s: s.extra.get("_received"))
    outcome.targets.append(Target(
        "killed at ~50 % and rerun: bytes ≤ 1.05 × package (judged on bytes the client received)",
        "—" if sent is None or received is None else
        f"{received / pkg.size:.3f} × received; {sent / pkg.size:.3f} × sent by nginx",
        None if received is None else received <= 1.05 * pkg.size,
    ))
    resumed = outcome.ok(resume)
    if resumed:
        points = ", ".join(f"{s.extra.get('_killed_at', 0):.0%}" for s in resumed)
        unread = ", ".join(f"{s.extra.get('_unread', 0) / 1e6:.1f}" for s in resumed)
        outcome.notes.append(f"resume runs: killed when the client had read {points} of the package; "
                             f"MB nginx had sent that the client never read (socket buffers): {unread}")
    return outcome


def many(settings: Settings) -> Outcome:
    """50 small datasets, all up to date: the cost of a run that has nothing to do."""
    count = 50
    pkgs = [bench_data.package(settings.work / "data", dataset_name(i), n_files=20, rows=250, seed=100 + i)
            for i in range(count)]
    root = bench_data.build_hub(settings.work / "hubs" / "many", pkgs, with_sha256=settings.sha256)
    size = sum(p.size for p in pkgs)
    params = {"datasets": f"{count} × 20 files ({size / 1e6:.0f} MB zipped in all)", "runs": str(settings.runs),
              "sha256 in listing": "yes" if settings.sha256 else "no"}
    outcome = Outcome("many", f"Many datasets ({count} small ones, all up to date)", params, rows={})
    ctx = settings.context("many", need=2 * size)
    listing, noop = "curl /api/datasets (floor)", f"sync (no-op, {count} datasets)"
    startup = "python start-up + import requests, yaml"
    with Nginx(root) as hub:
        if not settings.sync_missing:
            sync = Sync(ctx, hub, pkgs)
            _record(outcome, f"sync (cold, {count} datasets)", sync.cold())
        for round_ in range(1, settings.runs + 1):
            _say(f"round {round_}/{settings.runs}")
            _record(outcome, listing, download_only(ctx, "list", ["curl", "-sS", "--fail", "-o", "/dev/null",
                                                                  f"{hub.url}/api/datasets"], 0))
            _record(outcome, startup, download_only(ctx, "python", [sys.executable, "-c", "import requests, yaml"], 0))
            if not settings.sync_missing and outcome.ok(f"sync (cold, {count} datasets)"):
                _record(outcome, noop, sync.again())
    ctx.clear()
    for label in (listing, startup):
        for sample in outcome.rows[label]:
            sample.bytes, sample.extra = None, {}
    if settings.sync_missing:
        outcome.notes.append(f"`sync` not measured: {settings.sync_missing}")
    wall = outcome.median(noop, lambda s: s.wall)
    requests = outcome.median(noop, lambda s: s.requests)
    outcome.targets.append(Target("no-op sync of 50 up-to-date datasets < 1.5 s wall",
                                  "—" if wall is None else f"{wall:.2f} s", None if wall is None else wall < 1.5))
    outcome.targets.append(Target("no-op sync makes exactly one HTTP request",
                                  "—" if requests is None else f"{requests:.0f}",
                                  None if requests is None else requests == 1))
    return outcome


def large(settings: Settings) -> Outcome:
    """Peak RSS for a small and a large package: memory must not grow with the package."""
    sizes = {"small": settings.small_mb, "large": settings.large_mb}
    pkgs = {key: settings.package(mb, seed=2 if key == "small" else 3) for key, mb in sizes.items()}
    params = {key: _package_line(pkg) for key, pkg in pkgs.items()}
    params.update(runs=str(settings.runs), connections=str(settings.connections))
    outcome = Outcome("large", f"Memory: {settings.small_mb:.0f} MB vs {settings.large_mb:.0f} MB package",
                      params, rows={})
    ctx = settings.context("large", need=settings.runs * sum(pkg.size + 2 * pkg.raw_bytes for pkg in pkgs.values()))
    for key, pkg in pkgs.items():
        root = bench_data.build_hub(settings.work / "hubs" / f"large-{key}", [pkg], with_sha256=settings.sha256)
        bench_data.warm_cache([pkg])
        mb = f"{pkg.raw_bytes / 1e6:.0f} MB"
        with Nginx(root) as hub:
            url = f"{hub.url}/package/{pkg.name}.zip"
            for round_ in range(1, settings.runs + 1):
                _say(f"{key} package, round {round_}/{settings.runs}")
                _record(outcome, f"{CURL} ({mb})", curl_unzip(ctx, hub, url, pkg))
                if not settings.sync_missing:
                    _record(outcome, f"sync cold ({mb})", Sync(ctx, hub, [pkg]).cold())
                ctx.round_done()
    ctx.clear()
    labels = list(outcome.rows)
    outcome.ratios = [("÷ curl (same package)", {label: label.replace("sync cold", CURL) for label in labels})]
    if settings.sync_missing:
        outcome.notes.append(f"`sync` not measured: {settings.sync_missing}")
    rss = [outcome.median(label, lambda s: s.peak_rss_mb) for label in labels if label.startswith("sync")]
    if len(rss) == 2 and None not in rss:
        small, big = rss
        outcome.targets.append(Target("peak RSS of sync < 100 MB (both packages)", f"{small:.0f} MB, {big:.0f} MB",
                                      max(small, big) < 100))
        outcome.targets.append(Target("same peak RSS (± 10 %) for both packages", f"{big / small:.2f} ×",
                                      abs(big / small - 1) <= 0.10))
    else:
        outcome.targets.append(Target("peak RSS of sync flat across package sizes", "—", None))
    return outcome


def serve(settings: Settings) -> Outcome:
    """The product's `serve` against nginx: same file, same clients."""
    pkg = settings.package(settings.size_mb)
    root = bench_data.build_hub(settings.work / "hubs" / "serve", [pkg], with_sha256=settings.sha256)
    bench_data.warm_cache([pkg])
    n = settings.connections
    params = {"package": _package_line(pkg), "runs": str(settings.runs)}
    outcome = Outcome("serve", "`serve` throughput vs nginx (same file, same client)", params, rows={},
                      extra_columns=["MB/s"])
    if settings.sync_missing:
        outcome.notes.append(f"`serve` not measured: {settings.sync_missing}")
    ctx = settings.context("serve", need=settings.runs * 4 * pkg.size)
    # Repeat the download so that each measurement lasts seconds, not a fraction of one.
    repeats = max(1, math.ceil(2e9 / pkg.size))
    params["downloads per run"] = f"{repeats} (one after another)"
    aria = f"aria2c -q -x{n} -s{n} --allow-overwrite=true --auto-file-renaming=false -o pkg.zip"
    clients: dict[str, Callable[[str], str]] = {
        "curl -o /dev/null": lambda url: f"curl -sS --fail -o /dev/null {shlex.quote(url)}",
        f"aria2c -x{n}": lambda url: f"{aria} {shlex.quote(url)} && rm -f pkg.zip",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAHUB")} | {"DATAHUB_LOG_LEVEL": "INFO"}
    with Nginx(root) as nginx:
        product = None if settings.sync_missing else ProductServe(settings.repo, root / "package", env).start()
        try:
            servers = {"nginx": nginx.url} | ({"serve": product.url} if product else {})
            for round_ in range(1, settings.runs + 1):
                _say(f"round {round_}/{settings.runs}")
                for client, command in clients.items():
                    for server, base in servers.items():
                        label = f"{server} ← {client}"
                        url = f"{base}/package/{pkg.name}.zip"
                        script = f"set -e; for _ in $(seq {repeats}); do {command(url)}; done"
                        _record(outcome, label, download_only(ctx, "client", ["bash", "-c", script],
                                                              repeats * pkg.size))
        finally:
            if product:
                product.stop()
    ctx.clear()
    labels = list(outcome.rows)
    outcome.ratios = [("÷ nginx (same client)",
                       {label: "nginx ← " + label.split(" ← ", 1)[1] for label in labels})]
    for client in clients:
        mine = outcome.median(f"serve ← {client}", lambda s: s.extra.get("MB/s"))
        theirs = outcome.median(f"nginx ← {client}", lambda s: s.extra.get("MB/s"))
        text = f"serve throughput ≥ 0.8 × nginx ({client})"
        if mine is None or not theirs:
            outcome.targets.append(Target(text, "—", None))
        else:
            outcome.targets.append(Target(text, f"{mine / theirs:.2f} × ({mine:.0f} vs {theirs:.0f} MB/s)",
                                          mine / theirs >= 0.8))
    return outcome
