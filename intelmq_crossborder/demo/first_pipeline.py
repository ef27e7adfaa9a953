"""``intelmq-crossborder demo``: the demo consortium (default) or the first pipeline.

``make demo`` runs the consortium (intelmq_crossborder/demo/consortium.py).

The first pipeline (intelmq_crossborder/pipelines/first-pipeline) reads the sample events
through IntelMQ's file collector and JSON parser, normalises TLP with the
cross-border TLP expert and writes them with IntelMQ's file output.  It runs on
Redis under a scratch INTELMQ_ROOT_DIR, waits until the queues drain, prints
the events out per TLP label and what was dumped, and stops the bots.
"""
from __future__ import annotations

import collections
import json
import shutil
import tempfile
from pathlib import Path

from intelmq_crossborder.runtime.instance import PIPELINES_DIR, IntelMQInstance, chown_for_intelmq, load_runtime

FIRST_PIPELINE = PIPELINES_DIR / "first-pipeline" / "runtime.yaml"
FIRST_SAMPLE = PIPELINES_DIR / "samples" / "first-pipeline.jsonl"


def run_first_pipeline(workdir: Path, sample: Path = FIRST_SAMPLE, redis_db: int = 10,
                       timeout: float = 90, broker: str = "redis") -> dict:
    """Run the first pipeline on ``sample``; returns the output events and the dumps."""
    root = Path(workdir) / "intelmq"
    runtime = load_runtime(FIRST_PIPELINE, root)
    inst = IntelMQInstance(root, runtime, redis_db=redis_db, broker=broker).setup()
    inst.clear_queues()
    spool = root / "var" / "spool" / "input"
    spool.mkdir(parents=True, exist_ok=True)
    out_file = Path(runtime["file-output"]["parameters"]["file"])
    out_file.parent.mkdir(parents=True, exist_ok=True)
    chown_for_intelmq(root / "var")
    expected = sum(1 for line in open(sample, encoding="utf-8") if line.strip())

    def lines_out() -> list:
        if not out_file.exists():
            return []
        return [json.loads(l) for l in out_file.read_text("utf-8").splitlines() if l.strip()]

    def dumped() -> int:
        return sum(len(v) for v in inst.dumps().values())

    try:
        inst.start()
        # The collector deletes the file after reading it: copy it in last, owned by intelmq.
        target = spool / (sample.stem + ".jsonl")
        shutil.copy(sample, target)
        chown_for_intelmq(spool)
        inst.wait_until_drained(timeout=timeout,
                                done=lambda: not target.exists() and len(lines_out()) + dumped() >= expected)
    finally:
        inst.stop()
    return {"events": lines_out(), "dumps": inst.dumps(), "input_count": expected, "root": root}


def summarise(result: dict) -> str:
    """Events out per effective TLP (the TLP core's reader: the most restrictive label an
    event carries; ``(unreadable)`` for labels it cannot read), and what was dumped."""
    from intelmq_crossborder.demo.consortium import effective_label

    per_tlp = collections.Counter(effective_label(ev) for ev in result["events"])
    lines = [f"First pipeline: {result['input_count']} events in, {len(result['events'])} out, "
             f"{sum(len(v) for v in result['dumps'].values())} dumped."]
    order = ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]
    for label in order + sorted(set(per_tlp) - set(order)):
        if per_tlp.get(label):
            lines.append(f"  TLP:{label:<13} {per_tlp[label]}")
    for bot, entries in sorted(result["dumps"].items()):
        for entry in entries:
            reason = entry["traceback"][-1].strip() if entry.get("traceback") else "?"
            lines.append(f"  dumped by {bot}: {reason}")
    return "\n".join(lines)


def _add_arguments(parser) -> None:
    parser.add_argument("--workdir", help="scratch directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis",
                        help="IntelMQ pipeline broker (amqp: RabbitMQ on 127.0.0.1:5672)")
    parser.add_argument("--first-pipeline", action="store_true",
                        help="run only the first pipeline (file collector, JSON parser, TLP expert, file output)")
    parser.add_argument("--small", action="store_true",
                        help="consortium with the sensor feeds and one CSAF advisory only")
    parser.add_argument("--redis-dbs", default="1,5,7,8", metavar="A,B,C,D",
                        help="Redis databases of at-hub, de-hub, fi-hub, at-csirt (default: 1,5,7,8)")


def _run(args) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="intelmq-crossborder-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # bots run as the intelmq user when started by root
    if not args.first_pipeline:
        from intelmq_crossborder.demo import consortium
        try:
            dbs = [int(x) for x in args.redis_dbs.split(",")]
        except ValueError:
            print("--redis-dbs must be four integers, e.g. 1,5,7,8")
            return 2
        return consortium.run_demo(workdir, keep=args.keep, broker=args.broker, small=args.small, dbs=dbs)
    try:
        result = run_first_pipeline(workdir, broker=args.broker)
        print(summarise(result))
        if result["input_count"] != len(result["events"]) + sum(len(v) for v in result["dumps"].values()):
            print("ERROR: events were lost between input and output")
            return 1
    finally:
        if args.keep:
            print(f"Scratch directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="intelmq-crossborder demo", description=__doc__)
    _add_arguments(parser)
    return _run(parser.parse_args(argv))


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the demo consortium (three hubs, one CSIRT) and report",
                       description="Run the demo consortium: three national hubs (AT, DE, FI) and one CSIRT as "
                                   "separate IntelMQ instances with real bots on the shipped sample data, one "
                                   "nightly signed exchange and an early warning; print what each recipient "
                                   "received, what was withheld and why, the early warnings and the leak count; "
                                   "stop all bots and clean up. Exit 1 on a leak or a lost event. "
                                   "--first-pipeline runs the first single-instance pipeline instead.")
    _add_arguments(p)
    p.set_defaults(func=_run)
