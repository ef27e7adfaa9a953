#!/usr/bin/env python3
"""`make bench`: run every benchmarks/bench_*.py and write docs/performance.md.

    .venv/bin/python benchmarks/run_all.py            # full runs (several minutes)
    .venv/bin/python benchmarks/run_all.py --quick    # each benchmark's --quick
    .venv/bin/python benchmarks/run_all.py --only bench_csaf.py --only bench_consortium.py

Each script is run as its own process with ``--json FILE`` and returns rows
``{stage, rate, unit, events_per_s, peak_mib, baseline, baseline_rate, ratio}``; every
ratio compares a stage with its baseline measured in the same run of that script. A
script that fails is reported in the document with its exit code, never silently left
out. Scripts that take a Redis database get ``--redis-db``: BENCH_REDIS_DB, else one free
database leased for the whole run (runtime.redis_dbs; released at the end), so a benchmark
never writes into the queues of a test run or a demo on the same Redis.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from intelmq_crossborder.runtime.instance import PipelineError  # noqa: E402
from intelmq_crossborder.runtime.redis_dbs import BENCH_ENV, HeldDatabases  # noqa: E402
OUT = REPO / "docs" / "performance.md"
TAKES_REDIS_DB = {"bench_elasticsearch.py", "bench_consortium.py", "bench_router.py", "bench_analytics.py"}
#: extra arguments: the consortium run also prints each bot's CPU per event (the profile of that stage)
EXTRA_ARGS = {"bench_consortium.py": ["--cpu"]}


def run(script: Path, quick: bool, redis_db: str, show_db: bool = True) -> dict:
    """Run one script; ``show_db=False``: its command in the document leaves the leased database
    out (run alone, the script leases one of its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(script), "--json", str(rows_file)]
        if quick:
            cmd.append("--quick")
        if script.name in TAKES_REDIS_DB:
            cmd += ["--redis-db", redis_db]
        cmd += EXTRA_ARGS.get(script.name, [])
        started = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        took = time.monotonic() - started
        rows = json.loads(rows_file.read_text()) if rows_file.exists() else []
    shown = [c if not c.startswith(tempfile.gettempdir()) else "rows.json" for c in cmd]
    shown[0] = ".venv/bin/python"
    shown[1] = os.path.relpath(script, REPO)
    if not show_db and "--redis-db" in shown:
        at = shown.index("--redis-db")
        del shown[at:at + 2]
    return {"script": script.name, "command": " ".join(shown[:2] + shown[4:] + (["--json", "rows.json"])),
            "rc": proc.returncode, "rows": rows, "seconds": took, "stdout": proc.stdout,
            "stderr": proc.stderr[-2000:]}


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def write_doc(results: list, quick: bool) -> None:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Performance",
        "",
        f"Written by `make bench` (`benchmarks/run_all.py{' --quick' if quick else ''}`) on {now}, "
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        "Every ratio compares a stage with its baseline measured **in the same run** of the same "
        "script on the same machine (other jobs on this shared machine add noise: compare ratios, "
        "not absolute rates, across runs). Ratio > 1: faster than the baseline (for the bundle "
        "stages: baseline time / stage time).",
        "",
        "| Stage | Rate | Events/s | Peak memory | Baseline | Baseline rate | Ratio | Reproduce |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        if res["rc"] != 0 or not res["rows"]:
            lines.append(f"| {res['script']}: **failed (exit {res['rc']})** | | | | | | | `{res['command']}` |")
            continue
        for row in res["rows"]:
            lines.append(
                f"| {row['stage']} | {fmt(row['rate'], 1)} {row['unit']} | {fmt(row.get('events_per_s'))} | "
                f"{fmt(row.get('peak_mib'), 1)} MiB | {row.get('baseline') or '–'} | "
                f"{fmt(row.get('baseline_rate'), 1)} | {fmt(row.get('ratio'), 2)} | `{res['command']}` |")
    lines += ["", "Peak memory: tracemalloc peak of the Python allocations (CSAF, MISP), peak RSS of the process "
              "(bundle) or the largest peak RSS of a pipeline's bot processes (Elasticsearch, consortium).", ""]
    lines += ["## Raw output", ""]
    for res in results:
        lines += [f"### {res['script']} ({res['seconds']:.0f} s, exit {res['rc']})", "", "```",
                  res["stdout"].strip() or "(no output)", "```", ""]
        if res["rc"] != 0:
            lines += ["stderr (tail):", "", "```", res["stderr"].strip(), "```", ""]
    notes = HERE / "performance-notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    OUT.write_text("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument("--only", action="append", help="run only this script (repeatable)")
    args = ap.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.name in args.only]
    held = HeldDatabases(1, env=BENCH_ENV, wait=600)
    try:
        (db,) = held.acquire() if any(s.name in TAKES_REDIS_DB for s in scripts) else (0,)
    except (ValueError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = []
    try:
        if held.dbs:
            print(held.describe(), flush=True)
        for script in scripts:
            print(f"running {script.name} ...", flush=True)
            res = run(script, args.quick, str(db), show_db=held.source != "lease")
            print(f"  exit {res['rc']}, {len(res['rows'])} row(s), {res['seconds']:.0f} s", flush=True)
            results.append(res)
    finally:
        held.release()
    write_doc(results, args.quick)
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0 if all(r["rc"] == 0 and r["rows"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
