#!/usr/bin/env python3
"""Benchmark: cross-border Elasticsearch output, events/s against the local fake REST API.

Runs the output bot as a real IntelMQ process (started by intelmqctl, Redis
pipeline, Redis journal) in one run with bulk_size 1, 500 and 5000, and once more
with 500 and no journal (what the journal costs), against intelmq_crossborder.testing.fake_elasticsearch in this process. The events are
put into the bot's source queue before it starts; the clock runs from the moment
the bot takes its first message until the fake server holds every document.
bulk_size 1 (index and acknowledge each event, as IntelMQ's stock output does
minus the document id) is the baseline of the ratios. Peak memory is the bot
process's VmHWM.

    .venv/bin/python benchmarks/bench_elasticsearch.py [--quick] [--redis-db 15]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq

BOT_ID = "es-output"


def events(n: int) -> list:
    out = []
    for i in range(n):
        out.append(json.dumps({
            "__type": "Event", "feed.name": "bench", "classification.type": "scanner",
            "classification.taxonomy": "information-gathering",
            "source.ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", "source.port": 443,
            "source.geolocation.cc": "AT", "source.geolocation.latitude": 48.2, "source.geolocation.longitude": 16.37,
            "time.source": "2026-11-20T09:00:00+00:00", "time.observation": "2026-11-20T10:00:00+00:00",
            "sharing.tlp": "GREEN", "sharing.retention_days": 30, "provenance.originator": "cert-bench",
            "provenance.fingerprint": f"{i:064x}"}))
    return out


def peak_kib(root: Path) -> int:
    try:
        pid = int((root / "var" / "run" / f"{BOT_ID}.pid").read_text().strip())
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def run_one(bulk_size: int, n: int, redis_db: int, journal: bool = True) -> dict:
    with FakeElasticsearch(store_documents=False, record_exchanges=False) as es, tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        root = Path(tmp) / "intelmq"
        runtime = {
            "global": {"logging_level": "WARNING", "error_procedure": "pass", "error_dump_message": True,
                       "error_max_retries": 0, "error_retry_delay": 1, "rate_limit": 0},
            BOT_ID: {"group": "Output", "name": "ES", "module": "intelmq.bots.outputs.crossborder.elasticsearch.output",
                     "enabled": True, "run_mode": "continuous",
                     "parameters": {"hosts": [es.url], "bulk_size": bulk_size, "bulk_max_seconds": 60,
                                    "journal": journal,
                                    "journal_redis_db": redis_db, "tlp_ceiling": "AMBER",
                                    "destination_queues": {}}},
        }
        inst = IntelMQInstance(root, runtime, redis_db=redis_db).setup()
        chown_for_intelmq(root)
        r = inst.redis()
        queue = f"{BOT_ID}-queue"
        r.delete(queue, f"{queue}-internal", f"intelmq-crossborder:es-journal:{BOT_ID}")
        batch = events(n)
        for i in range(0, n, 5000):
            r.lpush(queue, *batch[i:i + 5000])
        inst.start([BOT_ID])
        try:
            deadline = time.monotonic() + 600
            t0 = None
            while time.monotonic() < deadline:
                if t0 is None and r.llen(queue) < n:
                    t0 = time.perf_counter()
                if sum(len(d) for d in es.docs.values()) >= n:
                    break
                time.sleep(0.005)
            t1 = time.perf_counter()
            indexed = sum(len(d) for d in es.docs.values())
            peak = peak_kib(root)
        finally:
            inst.stop([BOT_ID])
            r.delete(queue, f"{queue}-internal", f"intelmq-crossborder:es-journal:{BOT_ID}")
        if indexed < n:
            raise SystemExit(f"bulk_size {bulk_size}: only {indexed} of {n} indexed; see {root}/var/log")
        return {"bulk_size": bulk_size, "journal": journal, "events": n, "seconds": t1 - t0, "eps": n / (t1 - t0),
                "bulk_requests": es.bulk_requests, "peak_kib": peak}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer events (about 20 s)")
    ap.add_argument("--redis-db", type=int, default=15, help="Redis database for queues and journal (15)")
    ap.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE (for make bench / benchmarks/run_all.py)")
    args = ap.parse_args(argv)
    n_base, n_bulk = (500, 5000) if args.quick else (2000, 20000)
    results = [run_one(1, n_base, args.redis_db), run_one(500, n_bulk, args.redis_db),
               run_one(5000, n_bulk, args.redis_db),
               # what the journal costs (acknowledged-but-unindexed events lost on a crash without it)
               run_one(500, n_bulk, args.redis_db, journal=False)]
    base = results[0]["eps"]
    print(f"{'bulk_size':>9} {'journal':>7} {'events':>7} {'seconds':>8} {'events/s':>9} {'ratio':>6} {'_bulk calls':>11} "
          f"{'bot peak RSS':>12}")
    for res in results:
        print(f"{res['bulk_size']:>9} {('yes' if res['journal'] else 'no'):>7} {res['events']:>7} {res['seconds']:>8.2f} {res['eps']:>9.0f} "
              f"{res['eps'] / base:>5.1f}x {res['bulk_requests']:>11} {res['peak_kib'] / 1024:>9.1f} MiB")
    if args.json:
        import json
        rows = [{"stage": f"Elasticsearch output, bulk_size {res['bulk_size']}"
                          f"{'' if res['journal'] else ', no journal'}", "rate": res["eps"], "unit": "events/s",
                 "events_per_s": res["eps"], "peak_mib": res["peak_kib"] / 1024,
                 "baseline": "the same output with bulk_size 1 (one request per event)", "baseline_rate": base,
                 "ratio": res["eps"] / base} for res in results[1:]]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
