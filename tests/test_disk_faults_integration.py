"""Output disk full / read-only, with real bot processes (this run's Redis database).

* exchange (bundle) output on a small tmpfs that fills up (needs mount privileges: skipped
  without them), and with a read-only outbox (chmod, works for any user);
* IntelMQ's stock file output writing to a file that is a symlink to ``/dev/full`` (every
  write fails with ENOSPC, a real "no space left on device").

Each time: a clear error in the bot's log, no bundle file that looks valid but is not (every
``*.xbundle`` verifies; temporary files are hidden ``.*.tmp``), nothing lost, and after the
space returns / the directory is writable again and the bot is restarted, every event is
delivered (at most one at-least-once duplicate).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.exchange_helpers import wait_for
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration


def event_json(i, pad=0):
    return json.dumps({"__type": "Event", "classification.type": "scanner", "source.ip": f"10.1.{i // 250}.{i % 250}",
                       "sharing.tlp": "GREEN", "provenance.origin_hub": "de-hub", "extra.n": i,
                       "extra.pad": os.urandom(pad).hex() if pad else ""})


@pytest.fixture()
def work():
    path = Path(tempfile.mkdtemp(prefix="xb-disk-"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["umount", str(path / "fs")], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True)
    return proc.returncode == 0


def exchange_instance(work: Path, spool: Path, max_events: int):
    key = b.generate_private_key()
    key_file = work / "de.pem"
    key_file.write_bytes(b.private_key_pem(key))
    os.chmod(key_file, 0o600)
    trust = b.TrustStore.from_dict({"version": 1, "peers": {"de-hub": {"keys": [
        {"algorithm": "ed25519", "public_key": b.public_key_b64(key)}]}}})
    runtime = {
        "global": {"error_procedure": "pass", "error_max_retries": 0, "error_retry_delay": 1,
                   "error_dump_message": True},
        "disk-exchange-output": {
            "group": "Output", "name": "Exchange to fr-hub", "enabled": True, "run_mode": "continuous",
            "module": "intelmq.bots.outputs.crossborder.exchange.output",
            "parameters": {"hub_id": "de-hub", "recipient": "fr-hub", "signing_key_file": str(key_file),
                           "spool_dir": str(spool), "max_bundle_events": max_events, "max_bundle_age": 0,
                           "seal_check_interval": 0, "seal_on_shutdown": True}}}
    inst = IntelMQInstance(work / "root", runtime, redis_db=REDIS_DB).setup()
    chown_for_intelmq(work)
    inst.clear_queues()
    return inst, trust


def bundles_verify(folder: Path, trust) -> list:
    """Event numbers of every *.xbundle in folder; each must verify completely."""
    out = []
    for path in sorted(folder.glob("*" + b.BUNDLE_SUFFIX)):
        with b.open_bundle(path, trust, "fr-hub") as opened:
            opened.verify_data()
            out.extend(e["extra.n"] for _, e in b.iter_events(opened))
    return out


def log_text(inst) -> str:
    return "".join(p.read_text(errors="replace") for p in inst.log_dir.glob("*.log"))


def running(inst, bot_id) -> bool:
    pidfile = inst.root / "var" / "run" / f"{bot_id}.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def test_exchange_output_disk_full_then_space_returns(work):
    fs = work / "fs"
    if not mount_tmpfs(fs, "256k"):
        pytest.skip("no privilege to mount a small tmpfs here; the read-only test covers the error path")
    spool = fs / "spool"
    inst, trust = exchange_instance(work, spool, max_events=40)
    chown_for_intelmq(fs)
    n = 400
    r = inst.redis()
    r.lpush("disk-exchange-output-queue", *[event_json(i, pad=1000) for i in range(n)])   # ~2.2 kB each
    try:
        inst.start(check=False)   # it may fill the disk and stop before intelmqctl checks on it
        wait_for(lambda: not running(inst, "disk-exchange-output"), 60, "the bot to stop on the full disk")
        text = log_text(inst)
        assert "No space left on device" in text and "Out of disk space" in text, text[-3000:]
        # the message being written is not acknowledged: it is still in Redis, nothing is lost
        left = r.llen("disk-exchange-output-queue") + r.llen("disk-exchange-output-queue-internal")
        assert 0 < left < n
        outbox = spool / "outbox"
        sealed_before = bundles_verify(outbox, trust)       # every visible bundle is complete and valid
        # space returns: the file system grows (as when an operator frees or adds space)
        subprocess.run(["mount", "-o", "remount,size=8m", str(fs)], check=True)
        inst.start()
        wait_for(lambda: r.llen("disk-exchange-output-queue") == 0 and
                 r.llen("disk-exchange-output-queue-internal") == 0, 90, "the output to drain after recovery")
        time.sleep(1)
        inst.stop()          # seal_on_shutdown: the rest goes into a last bundle
        got = bundles_verify(outbox, trust)
        assert len(sealed_before) > 0
        assert sorted(set(got)) == list(range(n)), f"lost {sorted(set(range(n)) - set(got))[:10]}"
        assert len(got) - len(set(got)) <= 1, "more duplicates than at-least-once allows"
        assert not [p for p in outbox.iterdir() if p.name.endswith(b.BUNDLE_SUFFIX) and p.name.startswith(".")]
    finally:
        inst.stop()
        inst.clear_queues()


def test_exchange_output_read_only_outbox_then_writable(work):
    spool = work / "spool"
    inst, trust = exchange_instance(work, spool, max_events=20)
    outbox = spool / "outbox"
    outbox.mkdir(parents=True)
    chown_for_intelmq(work)
    os.chmod(outbox, 0o555)                   # the bot (intelmq user / this user) cannot create files
    n = 100
    r = inst.redis()
    r.lpush("disk-exchange-output-queue", *[event_json(i) for i in range(n)])
    try:
        inst.start(check=False)   # it may stop on the read-only outbox before intelmqctl checks
        wait_for(lambda: r.llen("disk-exchange-output-queue") == 0 or not running(inst, "disk-exchange-output"),
                 60, "the output to hit the read-only outbox")
        time.sleep(2)
        text = log_text(inst)
        assert "Permission denied" in text, text[-3000:]
        assert not list(outbox.glob("*" + b.BUNDLE_SUFFIX))
        inst.stop()
        os.chmod(outbox, 0o755)
        chown_for_intelmq(work)
        inst.start()
        wait_for(lambda: r.llen("disk-exchange-output-queue") == 0 and
                 r.llen("disk-exchange-output-queue-internal") == 0, 60, "the output to drain after recovery")
        time.sleep(1)
        inst.stop()
        got = bundles_verify(outbox, trust)
        dumped = [json.loads(e["message"])["extra.n"] for entries in inst.dumps().values() for e in entries]
        print("\nread-only outbox: bundled", len(got), "distinct", len(set(got)), "dumped", len(dumped))
        assert set(got) | set(dumped) == set(range(n)), "lost events"
        assert len(got) - len(set(got)) <= 1
    finally:
        inst.stop()
        inst.clear_queues()


def test_stock_file_output_no_space_then_space_returns(work):
    out = work / "out"
    out.mkdir()
    target = out / "events.jsonl"
    os.symlink("/dev/full", target)
    runtime = {
        "global": {"error_procedure": "pass", "error_max_retries": 0, "error_retry_delay": 1,
                   "error_dump_message": True},
        "disk-file-output": {"group": "Output", "name": "File", "enabled": True, "run_mode": "continuous",
                             "module": "intelmq.bots.outputs.file.output",
                             "parameters": {"file": str(target), "hierarchical_output": False}}}
    inst = IntelMQInstance(work / "root", runtime, redis_db=REDIS_DB).setup()
    chown_for_intelmq(work)
    inst.clear_queues()
    n = 50
    r = inst.redis()
    r.lpush("disk-file-output-queue", *[event_json(i) for i in range(n)])
    try:
        # it may stop on ENOSPC before intelmqctl's start check: that is the behaviour under test
        inst.ctl("start", "disk-file-output", check=False)
        wait_for(lambda: not running(inst, "disk-file-output"), 60, "the file output to stop on ENOSPC")
        text = log_text(inst)
        assert "Out of disk space" in text and "No space left on device" in text, text[-3000:]
        assert r.llen("disk-file-output-queue") + r.llen("disk-file-output-queue-internal") == n
        target.unlink()                        # space returns
        inst.start()
        wait_for(lambda: r.llen("disk-file-output-queue") == 0 and r.llen("disk-file-output-queue-internal") == 0,
                 60, "the file output to drain")
        time.sleep(1)
        inst.stop()
        got = [json.loads(line)["extra.n"] for line in target.read_text().splitlines() if line.strip()]
        assert sorted(set(got)) == list(range(n)) and len(got) - len(set(got)) <= 1
    finally:
        inst.stop()
        inst.clear_queues()
