#!/usr/bin/env python3
"""Benchmark: CSAF advisories parsed into IntelMQ events vs. plain schema validation of the same files.

    .venv/bin/python benchmarks/bench_csaf.py            # default: ~1 minute
    .venv/bin/python benchmarks/bench_csaf.py --quick    # one round
    .venv/bin/python benchmarks/bench_csaf.py --dir DIR  # other advisories (*.json, recursive)

Both phases run in the same process on the same bytes (files are read once,
before timing). Baseline: ``json.loads`` + CSAF 2.0 schema validation with the
shipped schemas (what any validating consumer must do). Parse: the same, plus the
mapping into flat events and building each IntelMQ ``Event`` on the cross-border
harmonization (what the parser bot does per report, without the pipeline).
Peak memory is measured with tracemalloc per phase (Python allocations).
Invalid files are counted and skipped in both phases alike.
"""
import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from intelmq.lib.message import Event  # noqa: E402

from intelmq_crossborder.formats.csaf import document as csaf  # noqa: E402
from intelmq_crossborder.harmonization import merged_harmonization  # noqa: E402

DEFAULT_DIRS = [REPO / "tests" / "fixtures" / "csaf" / "advisories", REPO / "tests" / "fixtures" / "csaf" / "csaf21"]


def load_files(dirs):
    files = []
    for d in dirs:
        for path in sorted(Path(d).rglob("*.json")):
            files.append((path.name, path.read_bytes()))
    return files


def validate_only(files):
    ok = bad = 0
    for name, data in files:
        try:
            csaf.check_document(csaf.load_json(data, name), name)
            ok += 1
        except csaf.CSAFError:
            bad += 1
    return ok, bad, 0


def parse_to_events(files, harmonization):
    ok = bad = events = 0
    for name, data in files:
        try:
            result = csaf.parse_document(data, source=name)
        except csaf.CSAFError:
            bad += 1
            continue
        ok += 1
        for flat in result.events:
            event = Event(harmonization=harmonization)
            csaf.fill_event(event, flat)
            events += 1
    return ok, bad, events


def map_only(files):
    ok = bad = events = 0
    for name, data in files:
        try:
            result = csaf.parse_document(data, source=name)
        except csaf.CSAFError:
            bad += 1
            continue
        ok += 1
        events += len(result.events)
    return ok, bad, events


def measure(label, func, rounds):
    """Time ``rounds`` runs without tracing, then one more run under tracemalloc for the peak."""
    start = time.perf_counter()
    totals = [0, 0, 0]
    for _ in range(rounds):
        ok, bad, events = func()
        totals[0] += ok
        totals[1] += bad
        totals[2] += events
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"label": label, "seconds": elapsed, "advisories": totals[0], "invalid": totals[1],
            "events": totals[2], "adv_per_s": totals[0] / elapsed, "events_per_s": totals[2] / elapsed,
            "peak_mib": peak / 2**20}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round only")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over the directory (default 10)")
    ap.add_argument("--dir", action="append", help="directory of advisories (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE (for make bench / benchmarks/run_all.py)")
    args = ap.parse_args(argv)
    rounds = 1 if args.quick else (args.rounds or 10)
    files = load_files(args.dir or DEFAULT_DIRS)
    size = sum(len(d) for _, d in files)
    harmonization = merged_harmonization()
    csaf.validator()            # compile the schema once, outside the timings
    print(f"{len(files)} files, {size / 2**20:.2f} MiB, {rounds} round(s)")
    base = measure("schema validation only", lambda: validate_only(files), rounds)
    mapped = measure("validate + map (flat dicts)", lambda: map_only(files), rounds)
    full = measure("validate + map + IntelMQ events", lambda: parse_to_events(files, harmonization), rounds)
    for r in (base, mapped, full):
        print(f"{r['label']:34s} {r['adv_per_s']:8.1f} advisories/s  {r['events_per_s']:9.1f} events/s  "
              f"peak {r['peak_mib']:7.1f} MiB  ({r['advisories']} ok, {r['invalid']} invalid, "
              f"{r['seconds']:.2f} s)")
    print(f"ratio map/validation: time x{mapped['seconds'] / base['seconds']:.2f}")
    print(f"ratio parse/validation: time x{full['seconds'] / base['seconds']:.2f}, "
          f"throughput x{full['adv_per_s'] / base['adv_per_s']:.2f}, "
          f"peak memory x{full['peak_mib'] / base['peak_mib']:.2f}")
    if args.json:
        rows = [{"stage": "CSAF parse: validate + map + IntelMQ events (advisories/s)", "rate": full["adv_per_s"],
                 "unit": "advisories/s", "events_per_s": full["events_per_s"], "peak_mib": full["peak_mib"],
                 "baseline": "CSAF schema validation alone", "baseline_rate": base["adv_per_s"],
                 "ratio": full["adv_per_s"] / base["adv_per_s"]}]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
