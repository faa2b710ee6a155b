#!/usr/bin/env python3
"""Benchmark DataHubSync against curl + unzip and aria2c + unzip (issue 5).

    python bench/run.py [--size-mb 1000] [--runs 3] [--scenarios loopback,capped,many,large,serve]

Prints a table of medians per scenario and writes it to bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO)]

import bench_report  # noqa: E402
import bench_scenarios  # noqa: E402
from bench_contenders import sync_available  # noqa: E402

SCENARIOS = ("loopback", "capped", "many", "large", "serve")
TOOLS = ("nginx", "curl", "unzip", "aria2c", "ss", "/usr/bin/time")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)")
    parser.add_argument("--size-mb", type=float, default=1000, help="unpacked size of the main package (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender; the table shows medians")
    parser.add_argument("--small-mb", type=float, default=200, help="small package of the memory scenario")
    parser.add_argument("--large-mb", type=float, default=2200, help="large package of the memory scenario")
    parser.add_argument("--connections", type=int, default=4, help="aria2c -x and hub.connections (default 4)")
    parser.add_argument("--rate", default="20m", help="nginx limit_rate per connection in `capped` (default 20m)")
    parser.add_argument("--no-sha256", action="store_true",
                        help="publish no sha256 in the listing (like the original hub)")
    parser.add_argument("--baselines-only", action="store_true", help="skip the product (sync and serve)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before one run is killed")
    parser.add_argument("--work", type=Path, default=BENCH / "work", help="scratch space (default bench/work)")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="where the Markdown goes")
    parser.add_argument("--no-write", action="store_true", help="print only; write nothing to results/")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        print(f"run.py: unknown scenario {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return 2
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        print(f"run.py: {', '.join(missing)} not found; run bench/setup.sh first", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    sync_missing = "--baselines-only" if args.baselines_only else sync_available(REPO)
    if sync_missing:
        print(f"note: the product is not measured ({sync_missing})", flush=True)
    settings = bench_scenarios.Settings(
        repo=REPO, work=args.work.resolve(), runs=args.runs, size_mb=args.size_mb, small_mb=args.small_mb,
        large_mb=args.large_mb, connections=args.connections, rate=args.rate, timeout=args.timeout,
        sha256=not args.no_sha256, sync_missing=sync_missing,
    )
    env = bench_report.environment(REPO)
    failed: list[str] = []
    for name in (s for s in SCENARIOS if s in chosen):  # always in the canonical order
        started = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        try:
            if name in ("loopback", "capped"):
                outcome = bench_scenarios.download(settings, name)
            else:
                outcome = getattr(bench_scenarios, name)(settings)
        except Exception as exc:  # one broken scenario must not lose the others' results
            print(f"scenario {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        print()
        print(bench_report.markdown(outcome, {}).split("<details>")[0].rstrip())
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
        if not args.no_write:
            print(f"wrote {os.path.relpath(bench_report.write(args.results, outcome, env))}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
