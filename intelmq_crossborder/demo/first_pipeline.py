"""The first pipeline, run by ``intelmq-crossborder demo --first-pipeline`` (cli/demo.py).

The first pipeline (intelmq_crossborder/pipelines/first-pipeline) reads the sample events
through IntelMQ's file collector and JSON parser, normalises TLP with the
cross-border TLP expert and writes them with IntelMQ's file output.  It runs on
Redis under a scratch INTELMQ_ROOT_DIR, waits until the queues drain, prints
the events out per TLP label and what was dumped, and stops the bots.
"""
from __future__ import annotations

import collections
import shutil
from pathlib import Path

from intelmq_crossborder.demo.consortium import effective_label, read_jsonl
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
        return read_jsonl(out_file)

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
