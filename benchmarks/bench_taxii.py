#!/usr/bin/env python3
"""Benchmark: events pushed over TAXII 2.1 (formats.stix.taxii) at batch sizes 1, 100 and 1000 vs.
taxii2-client's own add_objects, against a local TAXII 2.1 server (medallion, memory backend).

    .venv/bin/python benchmarks/bench_taxii.py            # 2,000 events per measurement
    .venv/bin/python benchmarks/bench_taxii.py --quick    # 200 events

Per batch size, in the same run, each on a fresh server: the hub's push (``push_batch``: the
envelope with the marking definitions and identities, the status resource followed until every
object is final, refusals checked against the collection) and the baseline, taxii2-client's
``Collection.add_objects`` of the same objects in envelopes of the same size (it waits for the
status too). The events are exported to STIX once, before timing. medallion's memory backend
compares each new object with every object of the collection, so the rates fall as it fills;
both sides pay that alike.
"""
import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from intelmq_crossborder.formats.stix import export, taxii  # noqa: E402
from intelmq_crossborder.testing.taxii_server import TAXIIServer  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from bench_stix_export import make_events  # noqa: E402


def items_of(events: list) -> tuple:
    settings = export.ExportSettings("bench-hub")
    items, levels = [], set()
    for ev in events:
        try:
            copy, level = export.admit(ev, settings)
            out = export.event_objects(copy, level, settings)
        except export.ExportRefused:
            continue
        items.append(taxii.Outgoing(out.objects, out.level, [out.identity] if out.identity else []))
        levels.add(out.level)
    return items, export.definitions("oasis", levels)


def ours(server: TAXIIServer, items: list, definitions: list, batch: int) -> int:
    conn = taxii.Connection(server.discovery_url, user=server.user, password=server.password)
    pusher = taxii.Pusher(conn, conn.collection("bench"), poll_interval=0.05)
    known: set = set()
    done = 0
    for i in range(0, len(items), batch):
        outcome = taxii.push_batch(pusher, items[i:i + batch], definitions, known)
        if outcome.refused or outcome.pending:
            raise SystemExit(f"push failed: {outcome.refused[:1]} {outcome.error}")
        done += len(outcome.done)
    return done


def baseline(server: TAXIIServer, items: list, definitions: list, batch: int) -> int:
    from taxii2client.v21 import Collection
    col = Collection(server.collection_url("bench"), user=server.user, password=server.password)
    sent = 0
    for i in range(0, len(items), batch):
        objects = (definitions if i == 0 else []) + [o for it in items[i:i + batch] for o in it.support + it.objects]
        status = col.add_objects({"objects": objects}, wait_for_completion=True, poll_interval=0.05)
        if status.status != "complete":
            raise SystemExit("baseline push did not complete")
        sent += len(items[i:i + batch])
    return sent


def measure(func, items, definitions, batch) -> dict:
    with TAXIIServer(["bench"], max_page_size=1000) as server:
        start = time.perf_counter()
        n = func(server, items, definitions, batch)
        elapsed = time.perf_counter() - start
        held = len([o for o in server.objects("bench") if o["type"] == "indicator"])
    if held != len(items):
        raise SystemExit(f"the collection holds {held} indicators, {len(items)} were pushed")
    return {"seconds": elapsed, "events_per_s": n / elapsed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 events")
    ap.add_argument("--events", type=int, default=None)
    ap.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE (make bench)")
    args = ap.parse_args(argv)
    n = args.events or (200 if args.quick else 2000)
    items, definitions = items_of(make_events(n))
    print(f"{len(items)} events exported, pushed per batch size to a fresh local medallion")
    rows = []
    for batch in (1, 100, 1000):
        count = min(len(items), 200) if batch == 1 else len(items)    # batch size 1: one request per event
        mine = measure(ours, items[:count], definitions, batch)
        base = measure(baseline, items[:count], definitions, batch)
        ratio = mine["events_per_s"] / base["events_per_s"]
        print(f"batch {batch:5d}: hub push {mine['events_per_s']:8.1f} events/s, taxii2-client add_objects "
              f"{base['events_per_s']:8.1f} events/s, ratio x{ratio:.2f} ({count} events)")
        rows.append({"stage": f"TAXII push, batch size {batch} (events/s)", "rate": mine["events_per_s"],
                     "unit": "events/s", "events_per_s": mine["events_per_s"], "peak_mib": None,
                     "baseline": f"taxii2-client add_objects, batch size {batch}",
                     "baseline_rate": base["events_per_s"], "ratio": ratio})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
