"""Benchmark: the analytics expert (surge + campaign detectors) as a real IntelMQ bot vs the stock filter expert.

Both run as real bot processes started by intelmqctl, on the same Redis database (default 11), in
the same run, on the same events (pooled events of 8 countries and 8 hubs: public addresses with
ASNs, domains, hashes, CVEs and malware families, so that every infrastructure key is computed and
clusters form; TLP mixed, some above the detectors' ceiling):

- baseline: ``intelmq.bots.experts.filter.expert`` keeping events by their ``sharing.tlp``
  (a regex every label of the events matches: the analytics expert forwards every event, so
  both do the same Redis work per event: receive, one send, acknowledge; a filter dropping
  the 10 % AMBER+STRICT and RED events would save a tenth of the sends and measure that);
- analytics: ``intelmq.bots.experts.crossborder.analytics.expert`` with both detectors at their
  defaults (warm-up and all), the state saved every ``state_interval`` (300 s: not in a run
  this short, and once at the stop).

The timing is that of benchmarks/bench_router.py (start, wait for the initialisation, push all
events in one Redis pipeline, time until the queues are empty), in alternating rounds; events/s
of each, the ratio analytics/filter (target >= 0.90x), peak memory and bot CPU per event.

    python benchmarks/bench_analytics.py            # 20,000 events, 3 rounds
    python benchmarks/bench_analytics.py --quick    # 3,000 events, 1 round
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_router import run_bot  # noqa: E402
from intelmq_crossborder.runtime.instance import IntelMQInstance  # noqa: E402

COUNTRIES = ["AT", "DE", "FR", "IT", "NL", "PL", "SE", "ES"]
TYPES = [("fraud", "phishing"), ("malicious-code", "malware-distribution"), ("malicious-code", "infected-system"),
         ("intrusion-attempts", "exploit"), ("vulnerable", "vulnerable-system"), ("availability", "ddos"),
         ("information-gathering", "scanner")]
FAMILIES = ["mirai", "emotet", "qakbot", "lokibot", "agenttesla", "formbook", "redline", "gafgyt"]
CVES = ["CVE-2021-44228", "CVE-2023-4966", "CVE-2024-3400", "CVE-2023-34362", "CVE-2022-1388"]
TLP_WEIGHTS = [("CLEAR", 20), ("GREEN", 45), ("AMBER", 25), ("AMBER+STRICT", 5), ("RED", 5)]


def make_events(n: int) -> list:
    rnd = random.Random(17)
    labels = [label for label, w in TLP_WEIGHTS for _ in range(w)]
    now = time.time()
    out = []
    for i in range(n):
        taxonomy, ctype = rnd.choice(TYPES)
        cc = rnd.choice(COUNTRIES)
        octet = 20 + 7 * COUNTRIES.index(cc)
        ev = {"__type": "Event", "classification.taxonomy": taxonomy, "classification.type": ctype,
              "source.ip": f"{octet}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
              "source.asn": 64512 + 100 * COUNTRIES.index(cc) + rnd.randrange(12),
              "source.geolocation.cc": cc, "provenance.origin_hub": f"hub-{cc.lower()}",
              "provenance.origin_country": cc, "feed.name": "Benchmark feed", "feed.provider": "intelmq-crossborder",
              "provenance.event_uuid": f"00000000-0000-4000-8000-{i:012d}",
              "time.observation": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
              "time.source": dt.datetime.fromtimestamp(now - 3600 + i * 3600 / n,
                                                       dt.timezone.utc).isoformat(timespec="seconds"),
              "sharing.tlp": rnd.choice(labels), "raw": "YmVuY2htYXJrIHJhdyBsaW5l"}
        if ctype in ("phishing", "malware-distribution"):
            host = f"h{rnd.randrange(5000)}.site{rnd.randrange(300)}.example-{cc.lower()}.com"
            ev["source.url"] = f"http://{host}/{rnd.randrange(10 ** 6)}"
            ev["source.fqdn"] = host
        if ctype == "malware-distribution":
            ev["malware.hash.sha256"] = hashlib.sha256(str(rnd.randrange(2000)).encode()).hexdigest()
        if ctype == "infected-system":
            ev["malware.name"] = rnd.choice(FAMILIES)
        if ctype in ("exploit", "vulnerable-system"):
            ev["product.vulnerabilities"] = rnd.choice(CVES)
        if rnd.random() < 0.05:
            ev["sharing.do_not_disclose_source"] = True
        out.append(ev)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="number of events (default 20000)")
    parser.add_argument("--quick", action="store_true", help="3000 events, 1 round")
    parser.add_argument("--redis-db", type=int, default=11, help="Redis database (default 11)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternating rounds filter, analytics, ...; the best of each and the median of the "
                             "per-round ratios are reported (default 3, --quick 1)")
    parser.add_argument("--detectors", default="surge,campaign",
                        help="the expert's detectors parameter (default surge,campaign): where the time goes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--json", metavar="FILE", help="also write the result rows for benchmarks/run_all.py")
    args = parser.parse_args(argv)
    n = 3000 if args.quick else args.events
    rounds = args.rounds or (1 if args.quick else 3)

    work = Path(tempfile.mkdtemp(prefix="bench-analytics-"))
    work.chmod(0o755)
    root = work / "intelmq"
    state_dir = root / "var" / "lib" / "bots"
    events = make_events(n)
    raw = [json.dumps(e) for e in events]
    runtime = {
        "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "rate_limit": 0},
        "bench-stock-filter": {"group": "Expert", "name": "Filter", "enabled": True, "run_mode": "continuous",
                               "module": "intelmq.bots.experts.filter.expert",
                               "parameters": {"filter_key": "sharing.tlp",
                                              "filter_value": "^(CLEAR|GREEN|AMBER|AMBER\\+STRICT|RED)$",
                                              "filter_regex": True, "filter_action": "keep",
                                              "destination_queues": {"_default": ["bench-filter-out"]}}},
        "bench-analytics": {"group": "Expert", "name": "Analytics", "enabled": True, "run_mode": "continuous",
                            "module": "intelmq.bots.experts.crossborder.analytics.expert",
                            "parameters": {"state_file": str(state_dir / "bench-analytics.state.json"),
                                           "alerts_file": str(state_dir / "bench-analytics-alerts.jsonl"),
                                           "hub_id": "bench-hub", "country": "BE", "detectors": args.detectors,
                                           "destination_queues": {"_default": ["bench-analytics-out"],
                                                                  "early-warning": ["bench-analytics-warnings"]}}},
    }
    inst = IntelMQInstance(root, runtime, redis_db=args.redis_db).setup()
    state_dir.mkdir(parents=True, exist_ok=True)
    inst.clear_queues()
    r = inst.redis()
    outputs = ("bench-filter-out", "bench-analytics-out", "bench-analytics-warnings")
    try:
        timeout = max(120.0, n / 50)
        bases, stages = [], []
        for _ in range(rounds):
            r.delete(*outputs)
            bases.append(run_bot(inst, "bench-stock-filter", raw, timeout))
            r.delete(*outputs[1:])
            (state_dir / "bench-analytics.state.json").unlink(missing_ok=True)      # each round from a cold start
            stages.append(run_bot(inst, "bench-analytics", raw, timeout))
        filtered = r.llen("bench-filter-out")
        forwarded = r.llen("bench-analytics-out")
        warnings = r.llen("bench-analytics-warnings")
        dumped = (inst.log_dir / "bench-analytics.dump").exists()
        state_bytes = (state_dir / "bench-analytics.state.json").stat().st_size \
            if (state_dir / "bench-analytics.state.json").exists() else 0
    finally:
        inst.clear_queues()
        stats = [k for bot in ("bench-stock-filter", "bench-analytics") for k in r.scan_iter(match=f"{bot}.*")]
        if stats:
            r.delete(*stats)
        r.delete(*outputs)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ratios = [s["events_per_s"] / b["events_per_s"] for b, s in zip(bases, stages)]
    base = max(bases, key=lambda x: x["events_per_s"])
    stage = max(stages, key=lambda x: x["events_per_s"])
    cpu_base = min(x["cpu_us_per_event"] for x in bases)
    cpu_stage = min(x["cpu_us_per_event"] for x in stages)
    print(textwrap.dedent(f"""\
        Analytics expert benchmark: {n} events, Redis db {args.redis_db}, {rounds} round(s), detectors {args.detectors}
          filter output (last round): {filtered} forwarded;  analytics output (last round): {forwarded} forwarded, {warnings} early-warning candidates, dump file: {'yes' if dumped else 'no'}, state file {state_bytes / 1024:.0f} KiB
          per round, events/s:  filter {", ".join(f"{x['events_per_s']:.0f}" for x in bases)};  analytics {", ".join(f"{x['events_per_s']:.0f}" for x in stages)}
          stock filter expert:  {base['events_per_s']:8.0f} events/s (best)  peak memory {base['peak_kb'] / 1024:.1f} MiB  bot CPU {cpu_base:.0f} us/event
          analytics expert:     {stage['events_per_s']:8.0f} events/s (best)  peak memory {stage['peak_kb'] / 1024:.1f} MiB  bot CPU {cpu_stage:.0f} us/event
          ratio analytics/filter: {stage['events_per_s'] / base['events_per_s']:.2f}x best vs best, {statistics.median(ratios):.2f}x median of rounds  (target >= 0.90x)"""))
    if forwarded != n:
        print(f"ERROR: the analytics expert forwarded {forwarded} of {n} events", file=sys.stderr)
        return 1
    if args.json:
        rows = [{"stage": f"Analytics expert (surge + campaign detectors), median of {rounds} round(s)",
                 "rate": statistics.median(x["events_per_s"] for x in stages), "unit": "events/s",
                 "events_per_s": statistics.median(x["events_per_s"] for x in stages),
                 "peak_mib": stage["peak_kb"] / 1024,
                 "baseline": "IntelMQ stock filter expert (forwarding every event), same events and Redis",
                 "baseline_rate": statistics.median(x["events_per_s"] for x in bases),
                 "ratio": statistics.median(ratios)}]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
