"""Benchmark: the sharing router as a real IntelMQ bot vs IntelMQ's stock filter expert.

Both run as real bot processes started by intelmqctl, on the same Redis
database (default 11), in the same run, on the same events:

- baseline: ``intelmq.bots.experts.filter.expert`` keeping events whose
  ``sharing.tlp`` is CLEAR, GREEN or AMBER (receive, one send, acknowledge);
- router: ``intelmq.bots.experts.crossborder.sharing_router.expert`` with 20
  agreements mixed so that an event goes to about 3 recipients on average,
  each copy transformed for its recipient, every decision in the audit trail.

For each bot: start it, wait until it is initialised, push all events into its
source queue in one Redis pipeline, and time until its source and internal
queues are empty.  Prints events/s for each, the ratio router/filter, the peak
memory (VmHWM) of each bot process and the average number of copies per event.

    python benchmarks/bench_router.py            # 20,000 events
    python benchmarks/bench_router.py --quick    # 3,000 events
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from intelmq_crossborder.policy import audit  # noqa: E402
from intelmq_crossborder.policy.agreements import load_agreements  # noqa: E402
from intelmq_crossborder.policy.decide import decide_all  # noqa: E402
from intelmq_crossborder.runtime.instance import IntelMQInstance  # noqa: E402
from intelmq_crossborder.runtime.redis_dbs import run_on_bench_database  # noqa: E402

TYPES = [("malicious-code", "infected-system"), ("malicious-code", "c2-server"),
         ("information-gathering", "scanner"), ("vulnerable", "vulnerable-system"),
         ("fraud", "phishing"), ("intrusion-attempts", "brute-force"), ("availability", "ddos"),
         ("intrusions", "system-compromise")]
TLP_WEIGHTS = [("CLEAR", 25), ("GREEN", 35), ("AMBER", 25), ("AMBER+STRICT", 10), ("RED", 5)]
COUNTRIES = ["AT", "DE", "FR", "IT", "NL", "PL", "SE", "ES"]


def make_agreements(directory: Path) -> None:
    """20 agreements: hubs, CSIRTs, ISACs, operators, EU bodies, with filters and redaction."""
    rnd = random.Random(7)
    specs = []
    for country in COUNTRIES:                                             # 8 national hubs
        specs.append(dict(recipient=f"{country.lower()}-hub", kind="national-hub", country=country,
                          relation="community", max_tlp="GREEN", hub_id=f"{country.lower()}-hub",
                          taxonomies=sorted({t for t, _ in rnd.sample(TYPES, 2)}),
                          pseudonymise_fields=["source.account"], retention_days=365))
    for country in COUNTRIES[:4]:                                         # 4 constituent CSIRTs
        specs.append(dict(recipient=f"csirt-{country.lower()}", kind="csirt", country=country,
                          relation="constituent", max_tlp="AMBER", origin_countries=[country],
                          unknown_origin="deny", disclose_source=True))
    for i, sector in enumerate(["energy", "finance", "health"]):         # 3 ISACs
        specs.append(dict(recipient=f"{sector}-isac", kind="isac", country="EU", relation="community",
                          max_tlp="GREEN", types=[t for _, t in TYPES[i * 2:i * 2 + 3]],
                          remove_fields=["source.account", "extra.*"], pseudonymise_fields=["source.ip"],
                          hide_source="pseudonymise", max_pap="GREEN"))
    for i in range(3):                                                  # 3 operators
        specs.append(dict(recipient=f"operator-{i}", kind="critical-infrastructure", country=COUNTRIES[i],
                          relation="constituent", max_tlp="AMBER", types=[TYPES[i + 3][1]],
                          origin_countries=[COUNTRIES[i]], unknown_origin="allow"))
    specs.append(dict(recipient="eu-cyclone", kind="eu-cyclone", country="EU", relation="community",
                      max_tlp="GREEN", taxonomies=["availability", "intrusions"], disclose_source=True))
    specs.append(dict(recipient="hub-soc", kind="csirt", country="AT", relation="same-organisation",
                      max_tlp="AMBER+STRICT", types=["c2-server", "system-compromise"], disclose_source=True))
    assert len(specs) == 20
    for spec in specs:
        spec.setdefault("name", spec["recipient"])
        import yaml
        (directory / f"{spec['recipient']}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def make_events(n: int) -> list:
    rnd = random.Random(42)
    labels = [l for l, w in TLP_WEIGHTS for _ in range(w)]
    out = []
    for i in range(n):
        taxonomy, ctype = rnd.choice(TYPES)
        ev = {"__type": "Event", "classification.taxonomy": taxonomy, "classification.type": ctype,
              "source.ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "source.port": rnd.randint(1, 65535),
              "source.account": f"user{rnd.randint(1, 5000)}", "feed.name": "Benchmark feed",
              "feed.provider": "intelmq-crossborder", "provenance.originator": rnd.choice(["CERT.at", "CERT-Bund"]),
              "provenance.origin_country": rnd.choice(COUNTRIES + [None, None]),
              "provenance.event_uuid": f"00000000-0000-4000-8000-{i:012d}",
              "time.observation": "2026-11-23T00:00:00+00:00", "time.source": "2026-11-22T12:00:00+00:00",
              "sharing.tlp": rnd.choice(labels), "extra.note": "benchmark",
              "raw": "YmVuY2htYXJrIHJhdyBsaW5l"}
        if rnd.random() < 0.3:
            ev["sharing.pap"] = rnd.choice(["CLEAR", "GREEN", "AMBER"])
        out.append({k: v for k, v in ev.items() if v is not None})
    return out


def bot_pid(inst: IntelMQInstance, bot_id: str) -> int:
    return int((inst.root / "var" / "run" / f"{bot_id}.pid").read_text().strip())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (less sensitive than wall time to a busy machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_kb(inst: IntelMQInstance, bot_id: str) -> int:
    pid = bot_pid(inst, bot_id)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def started_count(inst: IntelMQInstance, bot_id: str) -> int:
    log = inst.log_dir / f"{bot_id}.log"
    return log.read_text().count("Bot initialization completed.") if log.exists() else 0


def wait_started(inst: IntelMQInstance, bot_id: str, before: int, timeout: float = 60) -> None:
    log = inst.log_dir / f"{bot_id}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if started_count(inst, bot_id) > before:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{bot_id} did not start; see {log}")


def run_bot(inst: IntelMQInstance, bot_id: str, raw_events: list, timeout: float) -> dict:
    r = inst.redis()
    queue, internal = f"{bot_id}-queue", f"{bot_id}-queue-internal"
    if r.llen(queue) or r.llen(internal):
        raise RuntimeError(f"{queue} is not empty before the run")
    before = started_count(inst, bot_id)
    inst.start([bot_id])
    try:
        wait_started(inst, bot_id, before)
        pid = bot_pid(inst, bot_id)
        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        pipe = r.pipeline(transaction=False)
        for i in range(0, len(raw_events), 1000):
            pipe.lpush(queue, *raw_events[i:i + 1000])
        pipe.execute()
        deadline = time.monotonic() + timeout
        while r.llen(queue) + r.llen(internal):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{bot_id} did not drain in {timeout}s; logs in {inst.log_dir}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
        memory = peak_memory_kb(inst, bot_id)
    finally:
        inst.stop([bot_id])
    return {"seconds": elapsed, "events_per_s": len(raw_events) / elapsed, "peak_kb": memory,
            "cpu_us_per_event": cpu / len(raw_events) * 1e6}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="number of events (default 20000)")
    parser.add_argument("--quick", action="store_true", help="3000 events")
    parser.add_argument("--redis-db", type=int, help="Redis database (default: BENCH_REDIS_DB, else a free one "
                                                      "leased for the run)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternating rounds filter, router, filter, router, ...; the best of each and the "
                             "median of the per-round ratios are reported (default 3, --quick 1): on a shared "
                             "machine one round is noisy")
    parser.add_argument("--audit-dir", help="directory of the router's audit trail (default: under the scratch "
                                            "root; e.g. /dev/shm to leave the disk out of the measurement)")
    parser.add_argument("--fanout", choices=["script", "pipeline", "transaction"], default="pipeline",
                        help="the router's fanout_mode (default: pipeline, the router's default)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--json", metavar="FILE", help="also write the result rows for benchmarks/run_all.py")
    args = parser.parse_args(argv)
    n = 3000 if args.quick else args.events
    return run_on_bench_database(args.redis_db, lambda db: bench(args, n, db))


def bench(args, n: int, db: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-router-"))
    work.chmod(0o755)
    root = work / "intelmq"
    agreements_dir = root / "etc" / "agreements"
    agreements_dir.mkdir(parents=True)
    make_agreements(agreements_dir)
    agreements = load_agreements(agreements_dir)
    key = "benchmark-key-not-a-secret"
    events = make_events(n)
    raw = [json.dumps(e) for e in events]

    sample = events[:2000]
    copies = sum(d.allowed for e in sample for d in decide_all(
        {k: v for k, v in e.items() if k != "__type"}, agreements.values(), hmac_key=key.encode()))
    audit_dir = Path(args.audit_dir) if args.audit_dir else root / "var" / "lib" / "bots"
    audit_path = audit_dir / f"bench-router-audit-{work.name}.jsonl"
    runtime = {
        "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "rate_limit": 0},
        "bench-stock-filter": {"group": "Expert", "name": "Filter", "enabled": True, "run_mode": "continuous",
                         "module": "intelmq.bots.experts.filter.expert",
                         "parameters": {"filter_key": "sharing.tlp", "filter_value": "^(CLEAR|GREEN|AMBER)$",
                                        "filter_regex": True, "filter_action": "keep",
                                        "destination_queues": {"_default": ["bench-filter-out"]}}},
        "bench-sharing-router": {"group": "Expert", "name": "Sharing router", "enabled": True, "run_mode": "continuous",
                           "module": "intelmq.bots.experts.crossborder.sharing_router.expert",
                           "parameters": {"agreements_dir": str(agreements_dir), "hmac_password": key,
                                          "audit_log": str(audit_path),
                                          "fanout_mode": args.fanout,
                                          "destination_queues": {r: [f"bench-{r}"] for r in agreements}}},
    }
    inst = IntelMQInstance(root, runtime, redis_db=db).setup()
    inst.clear_queues()
    r = inst.redis()
    try:
        timeout = max(120.0, n / 50)
        rounds = args.rounds or (1 if args.quick else 3)
        bases, routers = [], []
        r = inst.redis()
        for _ in range(rounds):
            r.delete("bench-filter-out", *[f"bench-{rid}" for rid in agreements])
            bases.append(run_bot(inst, "bench-stock-filter", raw, timeout))
            r.delete("bench-filter-out", *[f"bench-{rid}" for rid in agreements])
            routers.append(run_bot(inst, "bench-sharing-router", raw, timeout))
        sent = sum(r.llen(f"bench-{rid}") for rid in agreements)
        base = max(bases, key=lambda x: x["events_per_s"])
        router = max(routers, key=lambda x: x["events_per_s"])
        audit_lines = sum(1 for piece in audit.rotated_files(audit_path) for _ in open(piece, "rb"))
    finally:
        inst.clear_queues()
        stats = [k for bot in ("bench-stock-filter", "bench-sharing-router")
                 for k in r.scan_iter(match=f"{bot}.*")] if "r" in locals() else []
        if stats:
            r.delete(*stats)           # IntelMQ's statistics keys of the two bots
        if args.audit_dir and not args.keep:
            for piece in audit.rotated_files(audit_path):
                piece.unlink()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    import statistics
    ratios = [rt["events_per_s"] / b["events_per_s"] for b, rt in zip(bases, routers)]
    cpu_base = min(x["cpu_us_per_event"] for x in bases)
    cpu_router = min(x["cpu_us_per_event"] for x in routers)
    print(textwrap.dedent(f"""\
        Sharing router benchmark: {n} events, {len(agreements)} agreements, Redis db {db}, {rounds} round(s), fan-out {args.fanout}
          copies per event (router output):  {sent / n:.2f}   (policy on a 2000-event sample: {copies / len(sample):.2f})
          audit trail records:               {audit_lines} ({rounds} round(s) x {n} events, one record per event listing its {len(agreements)} decisions)
          per round, events/s:  filter {", ".join(f"{x['events_per_s']:.0f}" for x in bases)};  router {", ".join(f"{x['events_per_s']:.0f}" for x in routers)}
          stock filter expert:  {base['events_per_s']:8.0f} events/s (best)  peak memory {base['peak_kb'] / 1024:.1f} MiB  bot CPU {cpu_base:.0f} us/event
          sharing router:       {router['events_per_s']:8.0f} events/s (best)  peak memory {router['peak_kb'] / 1024:.1f} MiB  bot CPU {cpu_router:.0f} us/event
          ratio router/filter:  {router['events_per_s'] / base['events_per_s']:.2f}x best vs best, {statistics.median(ratios):.2f}x median of rounds  (target >= 1.00x)
          bot CPU ratio filter/router: {cpu_base / cpu_router:.2f}x"""))
    if args.json:
        rows = [{"stage": f"Sharing router, {len(agreements)} agreements, {sent / n:.2f} copies/event "
                          f"(median of {rounds} round(s))",
                 "rate": statistics.median(x["events_per_s"] for x in routers), "unit": "events/s",
                 "events_per_s": statistics.median(x["events_per_s"] for x in routers),
                 "peak_mib": router["peak_kb"] / 1024,
                 "baseline": "IntelMQ stock filter expert, same events and Redis",
                 "baseline_rate": statistics.median(x["events_per_s"] for x in bases),
                 "ratio": statistics.median(ratios)}]
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
