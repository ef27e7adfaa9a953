"""A peer's HTTP endpoint is slow, answers 500 or drops the connection: real bot processes.

Each bot runs as a real IntelMQ process (intelmqctl, Redis databases 4 and 6) against a
tests/fault_server.py FaultServer standing in front of a healthy fake peer (it forwards in
``ok`` mode), so the faults are switched on and off while the bot keeps its URL. One bot
start serves all fault phases of a peer in sequence:

* MISP API output -> FaultServer -> intelmq_crossborder/testing/fake_misp.py: each fault costs the bounded number
  of attempts (retry_attempts + 1, with backoff), then the message is in the bot's dump with
  an error naming the MISP URL; the bot goes on and, once MISP answers, the next events arrive.
* CSAF collector (scheduled runs) -> FaultServer -> intelmq_crossborder/testing/csaf_provider.py: the discovery and
  single advisories fail with bounded retries; every run ends, the failure is logged with the
  URL, no partial or garbage report is sent; the next healthy run collects what is missing.
* Exchange output push -> FaultServer (HTTPS, client certificates): the bundles stay in the
  outbox while the backoff grows (logged), events keep being accepted and sealed; once the
  peer answers, every bundle is pushed in sequence order and moved to sent_dir.

Each test has a hard alarm (fuzzing.time_guard): a hang fails instead of blocking CI.
Run: .venv/bin/python -m pytest tests/test_peer_faults_integration.py  (docs/reliability.md)
"""
import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from tests import fuzzing
from intelmq_crossborder.testing.csaf_provider import Provider

CSAF_ADVISORIES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "csaf" / "advisories"
from tests.exchange_helpers import bundle_numbers, events, make_pki, wait_for, write_key, write_trust
from intelmq_crossborder.testing.fake_misp import FakeMISP
from tests.fault_server import FaultServer
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq, process_alive
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration

MISP_DB = CSAF_DB = EXCHANGE_DB = REDIS_DB
GLOBAL = {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
          "error_max_retries": 0, "error_retry_delay": 0, "rate_limit": 0}
FIX = Path(__file__).resolve().parent / "fixtures"
MISP_KEY = "peer-key-Fault0123456789abcdefghijklmnopqrstuv"


def one_bot(workdir: Path, root: Path, db: int, bot_id: str, group: str, name: str, module: str,
            parameters: dict, run_mode: str = "continuous") -> tuple:
    """An IntelMQ instance with one bot (not started), its queues cleared: (instance, Redis, bot log)."""
    runtime = {"global": GLOBAL, bot_id: {"group": group, "name": name, "module": module, "enabled": True,
                                          "run_mode": run_mode, "parameters": parameters}}
    inst = IntelMQInstance(root, runtime, redis_db=db).setup()
    chown_for_intelmq(workdir)
    inst.clear_queues()
    return inst, inst.redis(), inst.log_dir / f"{bot_id}.log"


def new_log(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with open(path, encoding="utf-8", errors="replace") as fh:
        fh.seek(offset)
        return fh.read()


def log_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def alive(inst, bot_id) -> bool:
    pid = inst.pid(bot_id)
    return bool(pid) and process_alive(pid)


# --- MISP API output ----------------------------------------------------------------------

def misp_event(ip):
    return json.dumps({"__type": "Event", "feed.name": "member-misp", "classification.type": "c2-server",
                       "classification.taxonomy": "malicious-code", "source.ip": ip, "sharing.tlp": "GREEN",
                       "time.observation": "2024-05-01T10:00:00+00:00", "time.source": "2024-05-01T09:00:00+00:00"})


def test_misp_output_slow_500_dropped_then_back(intelmq_workdir):
    root = intelmq_workdir / "intelmq"
    (root / "etc" / "agreements").mkdir(parents=True)
    agreement = root / "etc" / "agreements" / "peer-hub-de.yaml"
    shutil.copy(FIX / "misp" / "agreements" / "peer-hub-de.yaml", agreement)
    with FakeMISP(MISP_KEY) as misp, FaultServer(forward=misp.url) as fault:
        url = fault.url + "/"
        inst, r, log = one_bot(
            intelmq_workdir, root, MISP_DB, "misp-output", "Output", "MISP output",
            "intelmq.bots.outputs.crossborder.misp.output",
            {"misp_url": url, "misp_api_token": MISP_KEY, "agreement_file": str(agreement),
             "http_timeout_sec": 1, "retry_attempts": 2, "retry_backoff": 0.2})

        def in_misp():
            return {a["value"] for e in list(misp.events.values()) for a in e["Attribute"]}

        def dumped():
            return inst.dumps().get("misp-output", [])
        try:
            with fuzzing.time_guard(120):
                inst.start()
                r.lpush("misp-output-queue", misp_event("192.0.2.1"))
                wait_for(lambda: "192.0.2.1" in in_misp(), 60, "the first event in MISP")
                fault.delay = 3.0                  # slow: beyond http_timeout_sec (1 s)
                for n, mode in enumerate(["slow", "error", "drop"], start=2):
                    fault.mode, ip = mode, f"192.0.2.{n}"
                    before, offset = len(fault.requests), log_size(log)
                    r.lpush("misp-output-queue", misp_event(ip))
                    wait_for(lambda n=n: len(dumped()) == n - 1, 30, f"the message to be dumped ({mode})")
                    during = fault.requests[before:]
                    # retry_attempts 2: three attempts of the same call, all of them faulty
                    assert len(during) == 3 and {m for _, _, m in during} == {mode}, during
                    assert len({p for _, p, _ in during}) == 1
                    entry = dumped()[-1]
                    assert json.loads(entry["message"])["source.ip"] == ip
                    error = entry["traceback"][-1]
                    assert f"failed after 3 attempt(s) at {url}" in error, error
                    text = new_log(log, offset)
                    assert f"retry 1 of 2 in 0.20 s ({url})" in text and f"retry 2 of 2 in 0.40 s ({url})" in text
                    assert alive(inst, "misp-output")
                fault.mode = "ok"                  # MISP answers again: the next events arrive
                r.lpush("misp-output-queue", misp_event("192.0.2.5"), misp_event("192.0.2.6"))
                wait_for(lambda: {"192.0.2.5", "192.0.2.6"} <= in_misp(), 30, "the events after the outage in MISP")
                assert r.llen("misp-output-queue") == 0 and alive(inst, "misp-output")
        finally:
            inst.stop()
            inst.clear_queues()
        assert [json.loads(e["message"])["source.ip"] for e in dumped()] == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
        # Dumped for a 500 or a dropped connection: never written. (The slow write may have been done
        # by MISP after the bot gave up; a re-injected dump then changes nothing, the push is idempotent.)
        assert not {"192.0.2.3", "192.0.2.4"} & in_misp()
        logs = "".join(p.read_text(errors="replace") for p in inst.log_dir.glob("*.log"))
        assert MISP_KEY not in logs


# --- CSAF collector -----------------------------------------------------------------------

FAULTY = ["bsi-2022-0001.json", "icsa-19-344-03.json"]


def test_csaf_collector_provider_faults_then_healthy(intelmq_workdir):
    root = intelmq_workdir / "intelmq"
    with Provider(CSAF_ADVISORIES) as provider, FaultServer(forward=provider.own_base) as fault:
        provider.public_base = fault.url      # every URL the provider publishes goes through the fault server
        inst, r, log = one_bot(
            intelmq_workdir, root, CSAF_DB, "csaf-collector", "Collector", "CSAF",
            "intelmq.bots.collectors.crossborder.csaf.collector",
            {"csaf_source": provider.metadata_url, "name": "Test CSAF", "provider": "Test provider",
             "state_file": str(root / "var/lib/bots/csaf-collector.json"),
             "http_timeout_sec": 1, "http_timeout_max_tries": 2, "http_retry_backoff": 0.2,
             "destination_queues": {"_default": ["csaf-reports"]}}, run_mode="scheduled")

        def run():
            """One scheduled run; it must end (the process exits) within the bound."""
            offset = log_size(log)
            inst.ctl("start", "csaf-collector", check=False)
            wait_for(lambda: "Bot stopped." in new_log(log, offset), 45, "the CSAF run to end")
            wait_for(lambda: not alive(inst, "csaf-collector"), 10, "the CSAF collector process to exit")
            return new_log(log, offset)

        def reports():
            return [json.loads(m) for m in reversed(r.lrange("csaf-reports", 0, -1))]
        try:
            with fuzzing.time_guard(150):
                # 1. the provider answers 500 to everything: discovery fails after 2 attempts
                fault.mode = "error"
                text = run()
                assert f"GET {provider.metadata_url}: HTTP 500; retry 1 of 1 in 0.20 s." in text
                assert f"CSAF discovery from {provider.metadata_url} failed: HTTP 500, 2 attempts." in text
                assert fault.count(path="provider-metadata.json") == 2 and reports() == []
                # 2. two advisories misbehave, the rest of the provider is fine
                fault.only = r"/(" + "|".join(re.escape(n) for n in FAULTY) + r")$"
                reasons = {"slow": "request failed (ReadTimeout)", "drop": "request failed (ConnectionError)",
                           "cut": "download interrupted", "stall": "download interrupted", "error": "HTTP 500"}
                for run_no, mode in enumerate(["slow", "drop", "cut", "stall", "error"]):
                    fault.mode = "trickle" if mode == "stall" else mode
                    fault.delay = 3.0              # slow: 3 s > timeout; stall: headers, then 3 s of silence
                    text = run()
                    emitted = 3 if run_no == 0 else 0
                    assert f"5 listed, {emitted} emitted, 2 failed" in text, text
                    for name in FAULTY:
                        advisory = next(u for u in provider.files if u.endswith("/" + name))
                        pattern = (rf"Advisory {re.escape(fault.url + advisory)} not emitted: "
                                   rf"{re.escape(reasons[mode])}[^\n]*, 2 attempts\.")
                        assert re.search(pattern, text), (pattern, text)
                        assert fault.count(mode=fault.mode, path=name) == 2
                    got = reports()
                    assert len(got) == 3 and not any(u.endswith(tuple(FAULTY)) for u in (g["feed.url"] for g in got))
                # 3. healthy again: the next run collects exactly what is missing
                fault.mode = "ok"
                text = run()
                assert "5 listed, 2 emitted, 0 failed" in text
        finally:
            inst.stop()
        got = reports()
        inst.clear_queues()
        assert sorted(g["feed.url"] for g in got) == sorted(fault.url + p for p in provider.files)
        for report in got:                         # every report is a complete advisory, byte for byte
            path = report["feed.url"][len(fault.url):]
            assert base64.b64decode(report["raw"]) == provider.files[path]
        assert inst.dumps() == {}


# --- exchange output push -------------------------------------------------------------------

def test_exchange_push_backs_off_while_the_peer_fails_then_pushes_all_in_order(intelmq_workdir):
    work = intelmq_workdir
    pki = make_pki(work)
    key = write_key(work / "de.pem")
    (work / "de.pem").chmod(0o600)
    trust = write_trust(work / "trust.yaml", {"de-hub": key})
    spool, sent = work / "spool", work / "sent"
    with FaultServer(tls=pki) as fault:
        inst, r, log = one_bot(
            work, work / "root", EXCHANGE_DB, "exchange-output", "Output", "Exchange to fr-hub",
            "intelmq.bots.outputs.crossborder.exchange.output",
            {"hub_id": "de-hub", "recipient": "fr-hub", "signing_key_file": str(work / "de.pem"),
             "spool_dir": str(spool), "sent_dir": str(sent), "max_bundle_events": 5,
             "max_bundle_age": 0, "seal_check_interval": 1,
             "push_url": fault.url + "/exchange", "client_cert": pki["client_cert"],
             "client_key": pki["client_key"], "ca_bundle": pki["ca"], "push_timeout": 1,
             "push_retry_backoff": 1, "push_retry_max_backoff": 4})
        outbox = spool / "outbox"

        def feed(start, n=10):
            r.lpush("exchange-output-queue", *[json.dumps(dict(e, __type="Event")) for e in events(n, start)])

        def accepted():
            return r.llen("exchange-output-queue") == 0 and r.llen("exchange-output-queue-internal") == 0

        def failures():
            return [int(n) for n in re.findall(r"Failure (\d+) in a row", new_log(log, 0))]

        def waiting():
            return sorted(p.name for p in outbox.glob("*.xbundle"))
        try:
            with fuzzing.time_guard(120):
                fault.mode = "error"
                inst.start()
                fault.delay = 3.0                  # slow: 3 s > push_timeout (1 s)
                for phase, mode in enumerate(["error", "slow", "drop"]):
                    fault.mode = mode
                    seen = len(failures())
                    feed(10 * phase)               # 10 events: 2 more bundles, sealed while the peer fails
                    wait_for(accepted, 30, f"the output to accept the events ({mode})")
                    wait_for(lambda phase=phase: len(waiting()) == 2 * (phase + 1), 30, "the bundles to be sealed")
                    need = 3 if mode == "error" else 1
                    wait_for(lambda seen=seen, need=need, mode=mode: len(failures()) >= seen + need
                             and fault.count(mode=mode) >= need, 30,
                             f"failed pushes while the peer is {mode}")
                    assert alive(inst, "exchange-output") and not list(sent.glob("*.xbundle"))
                names = waiting()
                assert len(names) == 6
                fault.mode = "ok"                  # the peer is back
                wait_for(lambda: not waiting() and len(list(sent.glob("*.xbundle"))) == 6, 30,
                         "every bundle pushed once the peer answers")
                assert alive(inst, "exchange-output")
        finally:
            inst.stop()
            inst.clear_queues()
        text = new_log(log, 0)
        # the backoff grows (1, 2, 4 s) and stays at the maximum (4 s) while the peer keeps failing
        waits = [float(w) for w in re.findall(r"next attempt in ([\d.]+) s", text)]
        assert waits[:3] == [1, 2, 4] and set(waits[3:]) == {4} and len(waits) >= 5, waits
        failed = [(t, req) for t, req in zip(fault.arrivals, fault.requests) if req[2] != "ok"]
        assert len(failed) == len(waits)
        # no attempt while backing off: each failed attempt waited at least the backoff of the one before
        for (t0, _), (t1, _), wait in zip(failed, failed[1:], waits):
            assert t1 - t0 >= wait - 0.05, (t1 - t0, wait)
        # the first bundle is always the one tried: the peer never sees a later sequence first
        assert {req[1] for _, req in failed} == {f"/exchange/{names[0]}"}
        assert f"Push of {names[0]} to {fault.url}/exchange failed, kept in the outbox" in text
        assert re.search(r"next attempt in 4 s, at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\.", text)
        assert f"Push to {fault.url}/exchange works again after {len(waits)} failed attempt(s)." in text
        pushed = [p for _, p, m in fault.requests if m == "ok"]
        assert pushed == [f"/exchange/{n}" for n in names]                    # in sequence order, each once
        assert sorted(p.name for p in sent.glob("*.xbundle")) == names
        for name in names:                                                     # the peer got the signed files
            assert fault.received[f"/exchange/{name}"] == (sent / name).read_bytes()
        assert bundle_numbers(sent, trust, "fr-hub") == list(range(30))       # nothing lost, nothing twice
        assert inst.dumps() == {}                                              # bundles are not messages
