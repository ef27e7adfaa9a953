#!/usr/bin/env python3
"""Benchmark: STIX bundles parsed into IntelMQ events vs. ``stix2.parse`` of the same bundles.

    .venv/bin/python benchmarks/bench_stix_parse.py            # default: ~1 minute
    .venv/bin/python benchmarks/bench_stix_parse.py --quick    # one round
    .venv/bin/python benchmarks/bench_stix_parse.py --dir DIR  # other bundles (*.json, recursive)

Both phases run in the same process on the same bytes (files are read once, before timing).
Baseline: ``json.loads`` + ``stix2.parse(bundle, allow_custom=True)``, what a consumer built on the
OASIS library does to get STIX objects (no patterns parsed, no events). Parse: the hub's strict
JSON reading (``core.inputs``), the conversion of every object (patterns parsed with the official
grammar, markings resolved, TLP read) and an IntelMQ ``Event`` built for each event on the
cross-border harmonization (what the parser bot does per report, without the pipeline). Rates
are STIX objects per second, so the two phases compare; events/s is the parser's output. Peak
memory is measured with tracemalloc per phase. A bundle that either side refuses is counted and
left out of both phases alike.
"""
import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import stix2  # noqa: E402
from intelmq.lib.exceptions import InvalidValue  # noqa: E402
from intelmq.lib.message import Event  # noqa: E402

from intelmq_crossborder.formats.stix import parse as stix  # noqa: E402
from intelmq_crossborder.harmonization import merged_harmonization  # noqa: E402

DEFAULT_DIRS = [REPO / "tests" / "fixtures" / "stix"]


def load_files(dirs):
    files = []
    for d in dirs:
        for path in sorted(Path(d).rglob("*.json")):
            if "malformed" in path.parts:
                continue
            files.append((str(path.relative_to(d)), path.read_bytes()))
    return files


def baseline_parse(data: bytes) -> int:
    doc = json.loads(data)
    if isinstance(doc, list):
        doc = {"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": doc}
    bundle = stix2.parse(doc, allow_custom=True)
    return len(bundle.get("objects", []))


def usable(files):
    """The files both sides read; the others are reported and left out of both phases."""
    keep, skipped = [], []
    for name, data in files:
        try:
            baseline_parse(data)
            stix.Converter(where=name).convert(stix.loads(data, name))
        except Exception as exc:            # noqa: BLE001 - a benchmark reports, it does not judge
            skipped.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
            continue
        keep.append((name, data))
    return keep, skipped


def stix2_only(files):
    objects = 0
    for _name, data in files:
        objects += baseline_parse(data)
    return objects, 0


def to_events(files, harmonization):
    objects = events = 0
    for name, data in files:
        converter = stix.Converter(default_tlp="AMBER", where=name)
        for item in converter.items(stix.loads(data, name)):
            objects += 1
            for fields in item.events:
                event = Event(harmonization=harmonization)
                for key, value in fields.items():
                    try:
                        event.add(key, value, overwrite=True)
                    except InvalidValue:
                        pass
                events += 1
    return objects, events


def measure(label, func, rounds):
    """Time ``rounds`` runs without tracing, then one more run under tracemalloc for the peak."""
    start = time.perf_counter()
    objects = events = 0
    for _ in range(rounds):
        o, e = func()
        objects += o
        events += e
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"label": label, "seconds": elapsed, "objects": objects, "events": events,
            "objects_per_s": objects / elapsed, "events_per_s": events / elapsed, "peak_mib": peak / 2**20}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round only")
    ap.add_argument("--rounds", type=int, default=None, help="rounds over the files (default 20)")
    ap.add_argument("--dir", action="append", help="directory of STIX bundles (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE (for make bench)")
    args = ap.parse_args(argv)
    rounds = 1 if args.quick else (args.rounds or 20)
    files, skipped = usable(load_files([Path(d) for d in args.dir] if args.dir else DEFAULT_DIRS))
    size = sum(len(d) for _, d in files)
    harmonization = merged_harmonization()
    print(f"{len(files)} bundles, {size / 2**20:.2f} MiB, {rounds} round(s)")
    for line in skipped:
        print(f"  left out (refused by one side): {line}")
    base = measure("stix2.parse", lambda: stix2_only(files), rounds)
    full = measure("STIX parser: events + IntelMQ Event", lambda: to_events(files, harmonization), rounds)
    for r in (base, full):
        print(f"{r['label']:38s} {r['objects_per_s']:9.1f} objects/s  {r['events_per_s']:9.1f} events/s  "
              f"peak {r['peak_mib']:6.1f} MiB  ({r['objects']} objects, {r['seconds']:.2f} s)")
    ratio = full["objects_per_s"] / base["objects_per_s"]
    print(f"ratio parser/stix2.parse: throughput x{ratio:.2f}, peak memory x{full['peak_mib'] / base['peak_mib']:.2f}")
    if args.json:
        rows = [{"stage": "STIX parse: bundles -> IntelMQ events (objects/s)", "rate": full["objects_per_s"],
                 "unit": "objects/s", "events_per_s": full["events_per_s"], "peak_mib": full["peak_mib"],
                 "baseline": "stix2.parse of the same bundles", "baseline_rate": base["objects_per_s"],
                 "ratio": ratio}]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
