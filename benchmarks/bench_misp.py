"""Benchmark of the MISP parser library on the largest real MISP events.

Compares, in the same run and on the same bytes:

- ours: ``json.loads`` + :class:`intelmq_crossborder.formats.misp.convert.Converter` (what the parser
  bot and ``convert misp`` run), emitting IntelMQ field dicts;
- ours + IntelMQ Event: the same plus building validated ``intelmq.lib.message.Event``
  objects with the cross-border harmonization and the per-event ``raw`` (the parser
  bot's full per-event work, without the pipeline);
- baseline: ``json.loads`` + ``pymisp.MISPEvent().load()`` (only loading the event into
  PyMISP's object model, no conversion at all).

Prints MISP documents/s, IntelMQ events/s, peak Python memory (tracemalloc) and the
ratios against the baseline.  Usage: ``python benchmarks/bench_misp.py [--quick]``.
"""
import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIX = REPO / "tests" / "fixtures" / "misp"
FILES = ["eset/ebury.misp.json", "misp-training/misp.event.flutbot.json",
         "misp-training/2856-ransomware-exercice.json", "pymisp/galaxy_1.json", "pymisp/long_event.json"]


def _data(blob, preparsed):
    return blob if preparsed else json.loads(blob)


def ours(blobs, preparsed=False):
    from intelmq_crossborder.formats.misp import convert as misp
    emitted = 0
    for blob in blobs:
        conv = misp.Converter()
        for event in misp.load_events(_data(blob, preparsed)):
            for row in conv.rows(event):
                try:
                    if conv.convert(row) is not None:
                        emitted += 1
                except misp.MISPFormatError:
                    pass
    return emitted


def ours_with_intelmq(blobs, harmonization, preparsed=False):
    from intelmq.lib.exceptions import InvalidValue
    from intelmq.lib.message import Event
    from intelmq_crossborder.formats.misp import convert as misp
    emitted = 0
    for blob in blobs:
        conv = misp.Converter()
        for event in misp.load_events(_data(blob, preparsed)):
            for row in conv.rows(event):
                try:
                    fields = conv.convert(row)
                    if fields is None:
                        continue
                    ev = Event(harmonization=harmonization)
                    for key, value in fields.items():
                        ev.add(key, value)
                    ev.add("raw", row.raw())
                    emitted += 1
                except (misp.MISPFormatError, InvalidValue):
                    pass
    return emitted


def pymisp_load(blobs, preparsed=False):
    from pymisp import MISPEvent
    n = 0
    for blob in blobs:
        data = _data(blob, preparsed)
        for item in (data["response"] if "response" in data else [data]):
            event = MISPEvent()
            event.load(item)
            n += len(event.attributes) + sum(len(o.attributes) for o in event.objects)
    return n


def work_peak(func, blobs, *args):
    """Largest extra memory the work on one document needs beyond its parsed JSON.

    ``json.loads`` of the 1.85 MB event dominates the plain peak for every
    variant alike, so the per-document work is also measured on its own: the
    document is parsed first, then the variant runs on the pre-parsed data."""
    worst = 0
    for blob in blobs:
        data = json.loads(blob)
        fake = json.dumps(data).encode()      # same bytes, so func() re-parses identically
        tracemalloc.start()
        parsed = json.loads(fake)
        base_now, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        func([parsed], *args, preparsed=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del parsed
        worst = max(worst, peak - base_now)
    return worst


def measure(name, func, blobs, rounds, *args):
    func(blobs[:1], *args)                                   # warm up imports and caches
    gc.collect()
    start = time.perf_counter()
    for _ in range(rounds):
        result = func(blobs, *args)
    elapsed = time.perf_counter() - start
    gc.collect()
    tracemalloc.start()
    func(blobs, *args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"name": name, "seconds": elapsed / rounds, "result": result, "peak": peak,
            "work_peak": work_peak(func, blobs, *args)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (a smoke run, seconds)")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 20, quick 2)")
    parser.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE (for make bench / benchmarks/run_all.py)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 20)
    sys.path.insert(0, str(REPO))
    from intelmq_crossborder.harmonization import merged_harmonization
    harmonization = merged_harmonization()

    blobs = [(FIX / f).read_bytes() for f in FILES]
    size = sum(len(b) for b in blobs)
    print(f"MISP parser benchmark: {len(blobs)} real MISP documents, {size / 1e6:.2f} MB, {rounds} round(s)")
    for f, b in zip(FILES, blobs):
        print(f"  {f}: {len(b) / 1e6:.2f} MB")
    results = [measure("baseline: json + pymisp.MISPEvent.load", pymisp_load, blobs, rounds),
               measure("ours: json + misp.Converter", ours, blobs, rounds),
               measure("ours + IntelMQ Event objects + raw", ours_with_intelmq, blobs, rounds, harmonization)]
    base = results[0]
    print(f"\n{'variant':40} {'docs/s':>8} {'events/s':>9} {'MB/s':>6} {'peak MiB':>9} {'work MiB':>9} "
          f"{'speed x':>8} {'work mem x':>10}")
    for r in results:
        docs = len(blobs) / r["seconds"]
        events = f"{r['result'] / r['seconds']:9.0f}" if r is not base else f"{'-':>9}"
        print(f"{r['name']:40} {docs:8.1f} {events} {size / 1e6 / r['seconds']:6.1f} "
              f"{r['peak'] / 2**20:9.2f} {r['work_peak'] / 2**20:9.2f} {base['seconds'] / r['seconds']:8.2f} "
              f"{r['work_peak'] / base['work_peak']:10.2f}")
    print(f"\nIntelMQ events emitted per pass: {results[1]['result']} "
          f"(baseline loaded {base['result']} attributes into PyMISP objects without converting them).")
    print("peak MiB: whole pass incl. json.loads (the same for all: the 1.85 MB document's JSON dominates);")
    print("work MiB: largest extra memory of the work on one already parsed document.")
    print("speed x = baseline time / variant time (higher is faster); work mem x = variant / baseline.")
    if args.json:
        import json
        rows = [{"stage": "MISP parse: " + r["name"].replace("ours: ", "").replace("ours + ", "json + misp.Converter + "), "rate": len(blobs) / r["seconds"], "unit": "documents/s",
                 "events_per_s": r["result"] / r["seconds"], "peak_mib": r["peak"] / 2**20,
                 "baseline": base["name"].replace("baseline: ", ""), "baseline_rate": len(blobs) / base["seconds"],
                 "ratio": base["seconds"] / r["seconds"]} for r in results[1:]]
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
