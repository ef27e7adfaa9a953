#!/usr/bin/env python3
"""Benchmark: IntelMQ events exported to STIX 2.1 (formats.stix.export) vs. bare stix2 indicators.

    .venv/bin/python benchmarks/bench_stix_export.py            # default: 5,000 events x 3 rounds
    .venv/bin/python benchmarks/bench_stix_export.py --quick    # 500 events, one round

Both phases run in the same process on the same events. Baseline: one ``stix2.v21.Indicator``
per event with a pattern over its IP address or URL and a fixed TLP marking (what a minimal
exporter does). Export: the full path of the TAXII output and ``export stix`` per event: the TLP
guard (``core.tlp.event_tlp``), the hidden-source copy where needed, deterministic ids, the
originator identity, markings per profile, then the bundle with its marking definitions. A
third line times ``stix2-validator`` on the exported bundle (what the tests run on every bundle;
the output does not). Peak memory is measured with tracemalloc per phase.
"""
import argparse
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import stix2  # noqa: E402

from intelmq_crossborder.core import tlp  # noqa: E402
from intelmq_crossborder.formats.stix import export  # noqa: E402


def make_events(n: int, seed: int = 15) -> list:
    rng = random.Random(seed)
    kinds = ["phishing", "scanner", "c2-server", "malware-distribution", "brute-force"]
    out = []
    for i in range(n):
        ev = {"classification.type": rng.choice(kinds), "sharing.tlp": rng.choice(["CLEAR", "GREEN", "AMBER"]),
              "time.source": "2026-11-20T08:00:00+00:00", "provenance.originator": f"CERT-{i % 7}",
              "feed.name": f"feed-{i % 5}", "source.ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"}
        if i % 3 == 0:
            ev["source.url"] = f"http://host{i}.example/path?id={i}"
        if i % 10 == 0:
            ev["sharing.do_not_disclose_source"] = True
        out.append(ev)
    return out


def baseline(events: list) -> int:
    marking = tlp.to_stix_marking_id(tlp.Level.GREEN)
    objs = []
    for ev in events:
        value = ev.get("source.url")
        pattern = f"[url:value = '{value}']" if value else f"[ipv4-addr:value = '{ev['source.ip']}']"
        objs.append(stix2.v21.Indicator(pattern=pattern, pattern_type="stix", valid_from="2026-11-20T08:00:00Z",
                                        object_marking_refs=[marking]))
    return len(objs)


def exported(events: list, profile: str) -> int:
    builder = export.BundleBuilder(export.ExportSettings("bench-hub", profile=profile))
    for ev in events:
        builder.add(ev)
    builder.bundle()
    return builder.exported


def measure(label: str, func, rounds: int, n: int) -> dict:
    start = time.perf_counter()
    for _ in range(rounds):
        func()
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    func()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"label": label, "seconds": elapsed, "events_per_s": n * rounds / elapsed, "peak_mib": peak / 2**20}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="500 events, one round")
    ap.add_argument("--events", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE (make bench)")
    args = ap.parse_args(argv)
    n = args.events or (500 if args.quick else 5000)
    rounds = args.rounds or (1 if args.quick else 3)
    events = make_events(n)
    print(f"{n} events, {rounds} round(s)")
    exported(events[:20], "oasis")          # imports and caches warmed up outside the timings
    baseline(events[:20])
    base = measure("stix2 Indicator per event (baseline)", lambda: baseline(events), rounds, n)
    oasis = measure("export, profile oasis", lambda: exported(events, "oasis"), rounds, n)
    both = measure("export, profile both", lambda: exported(events, "both"), rounds, n)
    builder = export.BundleBuilder(export.ExportSettings("bench-hub"))
    for ev in events:
        builder.add(ev)
    bundle = builder.bundle()
    validated = measure("stix2-validator on the bundle", lambda: export.validation_errors(bundle), 1, n)
    for r in (base, oasis, both, validated):
        print(f"{r['label']:40s} {r['events_per_s']:9.1f} events/s  peak {r['peak_mib']:7.1f} MiB  "
              f"({r['seconds']:.2f} s)")
    print(f"ratio export/baseline: throughput x{oasis['events_per_s'] / base['events_per_s']:.2f}")
    if args.json:
        rows = [{"stage": "STIX export: guard + ids + markings + bundle (events/s)", "rate": oasis["events_per_s"],
                 "unit": "events/s", "events_per_s": oasis["events_per_s"], "peak_mib": oasis["peak_mib"],
                 "baseline": "a bare stix2 Indicator per event", "baseline_rate": base["events_per_s"],
                 "ratio": oasis["events_per_s"] / base["events_per_s"]}]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
