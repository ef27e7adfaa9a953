"""The cross-border file output as a real bot process on Redis (this run's database).

Started with its class's ``BOT.run()`` as IntelMQ's entry point does (the process drops to the
intelmq user), it writes events; its file is rotated away under it (renamed, as logrotate's
``create`` does) and the next event goes to a new file; an erase then removes the target from
the file and from the rotated copy, and writing goes on into the rewritten file."""
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.policy.retraction import Retraction, new_retraction
from intelmq_crossborder.runtime.instance import IntelMQInstance
from intelmq_crossborder.testing.polling import wait_until
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration

BOT = "it-crossborder-file-output"
REPO = Path(__file__).resolve().parents[1]


def ev(ip: str, account: str) -> dict:
    out = {"__type": "Event", "classification.type": "phishing", "classification.taxonomy": "fraud",
           "source.ip": ip, "source.account": account, "sharing.tlp": "GREEN",
           "provenance.event_uuid": str(uuid.uuid4())}
    out["provenance.fingerprint"] = fingerprint(out)
    return out


@pytest.fixture
def bot():
    work = Path(tempfile.mkdtemp(prefix="xb-file-output-it-"))
    work.chmod(0o755)
    root = work / "intelmq"
    out = root / "var" / "lib" / "output"
    out.mkdir(parents=True)
    runtime = {
        "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "rate_limit": 0},
        BOT: {"group": "Output", "name": "Cross-border file", "enabled": True, "run_mode": "continuous",
              "module": "intelmq.bots.outputs.crossborder.file.output",
              "parameters": {"file": str(out / "events.jsonl"), "hierarchical_output": False, "single_key": None,
                             "fsync": True}},
    }
    inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB).setup()
    inst.clear_queues()
    proc = subprocess.Popen([sys.executable, "-c", "from intelmq_crossborder.bots.outputs.file.output import BOT; "
                             "BOT.run()", BOT], env=inst.env(), cwd=str(REPO), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    inst.file = out / "events.jsonl"
    yield inst
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:          # pragma: no cover - reported by the test run
        proc.kill()
        proc.wait(10)
    inst.clear_queues()
    r = inst.redis()
    stats = list(r.scan_iter(match=f"{BOT}.*"))
    if stats:
        r.delete(*stats)
    shutil.rmtree(work, ignore_errors=True)


def push(inst, *messages):
    r = inst.redis()
    for m in messages:
        r.lpush(f"{BOT}-queue", json.dumps(m))


def lines(path: Path) -> list:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def log(inst) -> str:
    return "".join(p.read_text()[-3000:] for p in inst.log_dir.glob("*.log"))


def test_write_rotate_erase_and_go_on(bot):
    inst, path = bot, bot.file
    target, other, later, last = (ev("198.51.100.23", "jane.doe@example.org"), ev("192.0.2.1", "a@example.net"),
                                  ev("192.0.2.2", "b@example.net"), ev("192.0.2.3", "c@example.net"))
    push(inst, target, other)
    wait_until(lambda: len(lines(path)) == 2, 60, lambda: f"two lines written; log: {log(inst)}", interval=0.2)
    rotated = path.with_name("events.jsonl.1")
    path.rename(rotated)
    push(inst, later)
    wait_until(lambda: len(lines(path)) == 1, 60, lambda: f"the line after the rotation in a new file; log: "
               f"{log(inst)}", interval=0.2)
    erase = new_retraction("erase", "personal data", "de-hub", target_event_uuid=target["provenance.event_uuid"],
                           target_fingerprint=target["provenance.fingerprint"])
    push(inst, target, dict(erase.to_event(), __type="Event"), last)
    wait_until(lambda: len(lines(path)) == 3, 60, lambda: f"the erase applied; log: {log(inst)}", interval=0.2)
    for f in (path, rotated):
        data = f.read_bytes()
        assert b"198.51.100.23" not in data and b"jane.doe" not in data, f
    assert [r.get("source.ip") for r in lines(rotated)] == ["192.0.2.1"]
    now = lines(path)
    assert [r.get("source.ip") for r in now] == ["192.0.2.2", None, "192.0.2.3"]
    assert Retraction.from_event(now[1]).id == erase.id
    assert "2 line(s) removed from 2 file(s)" in log(inst)
