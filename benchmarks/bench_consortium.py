#!/usr/bin/env python3
"""Benchmark: end-to-end consortium throughput, one hub's input to another hub's output.

    .venv/bin/python benchmarks/bench_consortium.py            # 10,000 events per pipeline
    .venv/bin/python benchmarks/bench_consortium.py --quick    # 2,000 events
    .venv/bin/python benchmarks/bench_consortium.py --json rows.json

Two real IntelMQ pipelines of the same length on the same Redis, in the same run:

* **ours** (5 bots): hub A's TLP expert -> sharing router (agreement for hub B) -> provenance
  expert (outbound stamp) -> hub B's provenance expert (inbound: loop guard + fingerprint
  de-duplication in Redis) -> IntelMQ's stock file output;
* **baseline** (5 bots): four stock pass-through experts (``intelmq.bots.experts.taxonomy``) ->
  the same stock file output.

The bots are started first; then N events are pushed into the first queue in one LPUSH and the
clock runs until the output file holds N lines. events/s = N / that time. Peak memory: the
largest peak RSS (VmHWM) of the pipeline's bot processes. Target: ours >= 1.0 x baseline.
With --cpu, each round also prints the CPU time per event of every bot process and of the
Redis server (from /proc and INFO cpu): on this 2-core machine the pipeline's rate is bounded
by the sum, so it shows which stage to profile: ``--profile BOT_ID`` runs that bot under
cProfile (CPU time) and prints where it spends it.  The Redis database: ``--redis-db``, else
``BENCH_REDIS_DB``, else a free one leased for the run (runtime.redis_dbs).
The hub-to-hub hop here is a Redis queue; the signed nightly bundle is measured separately
(bench_bundle.py: write/verify/import).
"""
from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq  # noqa: E402
from intelmq_crossborder.runtime.redis_dbs import run_on_bench_database  # noqa: E402

AGREEMENT = """\
    recipient: hub-b
    name: Hub B
    kind: national-hub
    country: FR
    relation: constituent
    max_tlp: AMBER
    hub_id: hub-b
    disclose_source: true
    """


def events(n: int) -> list:
    return [json.dumps({"__type": "Event", "feed.name": "bench", "classification.type": "infected-system",
                        "classification.taxonomy": "malicious-code",
                        "source.ip": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                        "time.observation": "2026-11-20T01:02:03+00:00",
                        "sharing.tlp": "GREEN" if i % 3 else "AMBER", "extra.n": i}) for i in range(n)]


def chain(names: list, modules: list, params: list, out_file: Path) -> dict:
    runtime = {"global": {"logging_level": "WARNING", "error_procedure": "pass", "error_dump_message": True,
                          "error_max_retries": 0, "rate_limit": 0}}
    ids = names + ["output"]
    for i, (name, module, p) in enumerate(zip(names, modules, params)):
        p = dict(p)
        p.setdefault("destination_queues", {"_default": [f"{ids[i + 1]}-queue"]})
        runtime[name] = {"group": "Expert", "name": name, "enabled": True, "run_mode": "continuous",
                         "module": module, "parameters": p}
    runtime["output"] = {"group": "Output", "name": "File output", "enabled": True, "run_mode": "continuous",
                         "module": "intelmq.bots.outputs.file.output",
                         "parameters": {"file": str(out_file), "hierarchical_output": False}}
    return runtime


def ours(root: Path, out_file: Path, db: int) -> dict:
    agreements = root / "etc" / "agreements"
    agreements.mkdir(parents=True, exist_ok=True)
    (agreements / "hub-b.yaml").write_text(textwrap.dedent(AGREEMENT))
    names = ["a-tlp", "a-router", "a-provenance", "b-provenance"]
    modules = ["intelmq.bots.experts.crossborder.tlp.expert",
               "intelmq.bots.experts.crossborder.sharing_router.expert",
               "intelmq.bots.experts.crossborder.provenance.expert",
               "intelmq.bots.experts.crossborder.provenance.expert"]
    params = [{"default_tlp": "AMBER"},
              {"agreements_dir": str(agreements), "destination_queues": {"hub-b": ["a-provenance-queue"]}},
              {"direction": "outbound", "hub_id": "hub-a", "originator": "hub-a", "origin_country": "DE",
               "redis_cache_db": db, "dedup_key_prefix": "bench:fp:hub-a:"},
              # hub B has its own Redis in a real consortium: its own key prefix here
              {"direction": "inbound", "hub_id": "hub-b", "redis_cache_db": db, "dedup_key_prefix": "bench:fp:hub-b:"}]
    return chain(names, modules, params, out_file)


def baseline(root: Path, out_file: Path, db: int) -> dict:
    names = [f"stock-{i}" for i in range(4)]
    return chain(names, ["intelmq.bots.experts.taxonomy.expert"] * 4, [{}] * 4, out_file)


def lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def peak_rss_mib(inst) -> float:
    peak = 0
    for pidfile in (inst.root / "var" / "run").glob("*.pid"):
        try:
            status = Path(f"/proc/{int(pidfile.read_text().strip())}/status").read_text()
        except (OSError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024)
    return peak


def cpu_seconds(inst) -> dict:
    """CPU seconds (user + system) used so far by each bot process, and by the Redis server."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pidfile in (inst.root / "var" / "run").glob("*.pid"):
        try:
            fields = Path(f"/proc/{int(pidfile.read_text().strip())}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        out[pidfile.stem] = (int(fields[11]) + int(fields[12])) / tick
    info = inst.redis().info("cpu")
    out["(redis-server)"] = info["used_cpu_user"] + info["used_cpu_sys"]
    return out


#: Run a bot's executable under cProfile counting CPU time (process_time), not wall-clock time: a
#: bot waits for Redis most of the time, and that wait is not its cost on a shared machine.
_PROFILE = """\
import cProfile, runpy, sys, time
out = sys.argv[1]
sys.argv = sys.argv[2:]
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_path, sys.argv[0], run_name="__main__")
except SystemExit:
    pass
finally:
    profile.dump_stats(out)
"""


def start_profiled(inst, bot_id: str, out: Path) -> subprocess.Popen:
    """Start ``bot_id`` under cProfile, CPU time (its stats go to ``out`` when it stops)."""
    module = inst.runtime[bot_id]["module"]
    exe = shutil.which(module, path=str(Path(sys.executable).parent))
    if exe is None:
        raise RuntimeError(f"no executable for bot module {module}")
    return subprocess.Popen([sys.executable, "-c", _PROFILE, str(out), exe, bot_id], env=inst.env(),
                            cwd=str(inst.root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(path: Path, n: int, limit: int = 25) -> None:
    stats = pstats.Stats(str(path))
    total = stats.total_tt
    print(f"    cProfile: {1e6 * total / n:.0f} us CPU/event in the profiled process (profiler overhead included)")
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


def run_pipeline(name: str, build, n: int, db: int, cpu: bool = False, profile: str = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"xb-bench-{name}-"))
    work.chmod(0o755)
    try:
        root = work / "intelmq"
        out_file = work / "out" / "events.jsonl"
        out_file.parent.mkdir(parents=True)
        runtime = build(root, out_file, db)
        inst = IntelMQInstance(root, runtime, redis_db=db).setup()
        chown_for_intelmq(work)
        inst.clear_queues()
        r = inst.redis()
        for key in r.scan_iter("bench:fp:*"):
            r.delete(key)
        first = f"{inst.bot_ids()[0]}-queue"
        payload = events(n)
        profiled = None
        profile_out = work / "profile.out"
        try:
            if profile in inst.bot_ids():
                inst.start([b for b in inst.bot_ids() if b != profile])
                profiled = start_profiled(inst, profile, profile_out)
            else:
                inst.start()
            time.sleep(2)
            cpu_before = cpu_seconds(inst) if cpu else {}
            started = time.perf_counter()
            r.lpush(first, *payload)
            deadline = time.monotonic() + 600
            while lines(out_file) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: only {lines(out_file)} of {n} events arrived; logs in {inst.log_dir}")
                time.sleep(0.05)
            seconds = time.perf_counter() - started
            peak = peak_rss_mib(inst)
            cpu_used = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds(inst).items()} if cpu else {}
        finally:
            if profiled is not None:
                profiled.send_signal(signal.SIGTERM)
                profiled.wait(timeout=60)
            inst.stop([b for b in inst.bot_ids() if b != profile])
            inst.clear_queues()
            for key in r.scan_iter("bench:fp:*"):
                r.delete(key)
        if profiled is not None:
            print_profile(profile_out, n)
        return {"name": name, "events": n, "seconds": seconds, "eps": n / seconds, "peak_mib": peak,
                "bots": len(inst.bot_ids()), "cpu_us": {k: 1e6 * v / n for k, v in cpu_used.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 events per pipeline")
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, help="alternating rounds of both pipelines (default 3)")
    ap.add_argument("--redis-db", type=int, help="Redis database for queues and de-duplication (default: "
                                                  "BENCH_REDIS_DB, else a free one leased for the run)")
    ap.add_argument("--json", metavar="FILE", help="write the result rows as JSON to FILE")
    ap.add_argument("--cpu", action="store_true", help="print CPU microseconds per event of every bot and Redis")
    ap.add_argument("--profile", metavar="BOT_ID",
                    help="run this bot (e.g. b-provenance, a-tlp, stock-1) under cProfile and print where its time goes")
    args = ap.parse_args(argv)
    n = 2_000 if args.quick else args.events
    return run_on_bench_database(args.redis_db, lambda db: bench(args, n, db))


def bench(args, n: int, db: int) -> int:
    rounds = args.rounds or 3
    # Alternate the two pipelines, several rounds: on a shared 2-core machine one run of each is
    # at the mercy of whatever else runs at that moment; the median ratio of the pairs is robust.
    pairs = []
    for i in range(rounds):
        base = run_pipeline("baseline", baseline, n, db, args.cpu, args.profile)
        mine = run_pipeline("ours", ours, n, db, args.cpu, args.profile)
        pairs.append((base, mine))
        for res in (base, mine):
            print(f"round {i + 1} {res['name']:9} {res['bots']} bots {res['events']:>7,} events "
                  f"{res['seconds']:7.2f} s {res['eps']:8.0f} events/s  peak RSS per bot {res['peak_mib']:6.1f} MiB")
            if res["cpu_us"]:
                print("    CPU us/event: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(res["cpu_us"].items()))
                      + f"; sum {sum(res['cpu_us'].values()):.0f}")
    ratios = sorted(m["eps"] / b["eps"] for b, m in pairs)
    ratio = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:len(ratios) // 2 + 1]) / 2
    base = {"eps": sorted(b["eps"] for b, _ in pairs)[len(pairs) // 2]}
    mine = {"eps": sorted(m["eps"] for _, m in pairs)[len(pairs) // 2],
            "peak_mib": max(m["peak_mib"] for _, m in pairs)}
    print(f"ratios per round: {', '.join(f'{r:.2f}' for r in ratios)}; median ratio ours/baseline: {ratio:.2f} "
          "(target >= 1.00)")
    if args.json:
        Path(args.json).write_text(json.dumps([{
            "stage": f"end-to-end consortium: hub A input -> hub B output (5 bots; median of {rounds} rounds)",
            "rate": mine["eps"],
            "unit": "events/s", "events_per_s": mine["eps"], "peak_mib": mine["peak_mib"],
            "baseline": "5 bots: 4 stock taxonomy experts + the same file output", "baseline_rate": base["eps"],
            "ratio": ratio}], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
