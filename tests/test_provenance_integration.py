"""The TLP expert and the two provenance experts as real IntelMQ bot processes on Redis.

hub A's TLP expert -> hub A's provenance expert (outbound) -> hub B's provenance expert
(inbound) -> a queue read by the test.  The bots receive with ``runtime.fanout.EventReader``
(values IntelMQ already accepted are not validated again; one Redis round trip per event).
What reaches the end must be exactly what IntelMQ's own path makes of each input (an oracle
in this process: ``Event`` + ``add`` + the same policy functions), key order included; a
value IntelMQ sanitises is sanitised; duplicates, loops and unreadable labels are dropped or
dumped as before; and the memo path was really taken.
"""
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from intelmq.lib.exceptions import InvalidValue
from intelmq.lib.message import MessageFactory

from intelmq_crossborder.core import tlp
from intelmq_crossborder.harmonization import merged_harmonization
from intelmq_crossborder.policy.provenance import ProvenanceGuard
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from intelmq_crossborder.testing.polling import wait_until
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration

PREFIX = "test-prov-int:"
HARM = merged_harmonization()


def inputs() -> list:
    base = {"feed.name": "sensor", "classification.taxonomy": "malicious-code",
            "classification.type": "infected-system", "time.observation": "2026-11-20T01:02:03+00:00"}
    out = []
    for i in range(240):
        ev = dict(base, **{"source.ip": f"198.51.{i // 200}.{i % 200}", "extra.n": i})
        if i % 3 == 0:
            ev["sharing.tlp"] = "GREEN"
        out.append(ev)
    for i in range(20):      # the same events again, observed later: duplicates by fingerprint
        out.append(dict(base, **{"source.ip": f"198.51.0.{i}", "time.observation": "2026-11-21T00:00:00+00:00"}))
    for i in range(6):       # values IntelMQ sanitises: IntelMQ's own receive path
        out.append(dict(base, **{"source.fqdn": f"Host{i}.Example.ORG", "source.ip": f"203.0.113.{i}"}))
    for i in range(4):       # passed through hub B already: a loop at hub B
        out.append(dict(base, **{"source.ip": f"192.0.2.{i}", "provenance.hub_path": "hub-b",
                                 "provenance.origin_hub": "hub-b"}))
    for i in range(3):       # an unreadable label: dumped by the TLP expert, the field named
        out.append(dict(base, **{"source.ip": f"192.0.2.{100 + i}", "sharing.tlp": "TLP:PURPLE"}))
    return [dict(ev, __type="Event") for ev in out]


def oracle(raws: list) -> list:
    """IntelMQ's own path: Event(...) on receive, event.add(...) for what the bots set."""
    guards = [ProvenanceGuard("outbound", "hub-a", "hub-a", "DE", dedup_key_prefix="x"),
              ProvenanceGuard("inbound", "hub-b", dedup_key_prefix="y")]
    seen = [set(), set()]
    out = []
    for raw in raws:
        try:
            event = MessageFactory.unserialize(raw, harmonization=HARM)
            labels = tlp.event_tlp(event)
        except (InvalidValue, tlp.LabelError):         # dumped
            continue
        level = labels.level or tlp.parse_level("AMBER", "default")
        event.add("sharing.tlp", level.label, overwrite=True)
        event.add("tlp", tlp.to_intelmq_stock(level), overwrite=True)
        if labels.hide_source:
            event.add(tlp.HIDE_SOURCE_FIELD, True, overwrite=True)
        kept = True
        for guard, fingerprints in zip(guards, seen):
            event = MessageFactory.unserialize(event.serialize(), harmonization=HARM)
            admission = guard.admit(event)
            if admission.drop or (admission.claim and admission.claim.key in fingerprints):
                kept = False
                break
            if admission.claim:
                fingerprints.add(admission.claim.key)
        if kept:
            out.append(json.loads(event.serialize()))
    return out


@pytest.fixture
def instance():
    work = Path(tempfile.mkdtemp(prefix="xb-prov-int-"))
    work.chmod(0o755)
    runtime = {"global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                          "error_max_retries": 0, "rate_limit": 0}}
    chain = [("a-tlp", "intelmq.bots.experts.crossborder.tlp.expert", {"default_tlp": "AMBER"}),
             ("a-provenance", "intelmq.bots.experts.crossborder.provenance.expert",
              {"direction": "outbound", "hub_id": "hub-a", "originator": "hub-a", "origin_country": "DE",
               "redis_cache_db": REDIS_DB, "dedup_key_prefix": PREFIX + "a:"}),
             ("b-provenance", "intelmq.bots.experts.crossborder.provenance.expert",
              {"direction": "inbound", "hub_id": "hub-b", "redis_cache_db": REDIS_DB,
               "dedup_key_prefix": PREFIX + "b:"})]
    for i, (bot_id, module, params) in enumerate(chain):
        following = chain[i + 1][0] + "-queue" if i + 1 < len(chain) else "prov-int-sink"
        runtime[bot_id] = {"group": "Expert", "name": bot_id, "enabled": True, "run_mode": "continuous",
                           "module": module, "parameters": dict(params, destination_queues={"_default": [following]})}
    inst = IntelMQInstance(work / "intelmq", runtime, redis_db=REDIS_DB).setup()
    chown_for_intelmq(work)
    r = inst.redis()

    def clean():
        inst.clear_queues()
        r.delete("prov-int-sink")
        for key in r.scan_iter(match=PREFIX + "*"):
            r.delete(key)
    clean()
    yield inst, r
    try:
        inst.stop()
    finally:
        clean()
        shutil.rmtree(work, ignore_errors=True)


def test_the_experts_forward_exactly_what_intelmqs_own_path_makes(instance):
    inst, r = instance
    raws = [json.dumps(ev) for ev in inputs()]
    expected = oracle(raws)
    assert len(expected) == 240 + 6         # the duplicates, loops and unreadable labels are gone
    inst.start(["a-tlp", "a-provenance"])
    r.lpush("a-tlp-queue", *raws)
    # hub B's expert starts when its input is waiting: then it takes every event after the first
    # from the internal queue, as under load (not one by one as they trickle in)
    wait_until(lambda: r.llen("b-provenance-queue") == 250, 120,
               message=lambda: f"hub A's output; queues {inst.queue_lengths()}; logs in {inst.log_dir}")
    inst.start(["b-provenance"])
    wait_until(lambda: r.llen("prov-int-sink") >= len(expected)
               and not any(n for q, n in inst.queue_lengths().items() if q != "prov-int-sink"),
               120, message=lambda: f"{r.llen('prov-int-sink')} of {len(expected)} events; queues "
                                    f"{inst.queue_lengths()}; logs in {inst.log_dir}")
    inst.stop()
    got = [json.loads(x) for x in reversed(r.lrange("prov-int-sink", 0, -1))]
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        uuid = mine.pop("provenance.event_uuid")
        assert len(uuid) == 36 and theirs.pop("provenance.event_uuid") != uuid
        assert list(mine.items()) == list(theirs.items())         # fields, values and their order
    assert {e["source.fqdn"] for e in got if "source.fqdn" in e} == {f"host{i}.example.org" for i in range(6)}
    dumps = inst.dumps()
    assert list(dumps) == ["a-tlp"] and len(dumps["a-tlp"]) == 3
    assert all("sharing.tlp" in str(d["traceback"]) for d in dumps["a-tlp"])
    log = (inst.log_dir / "b-provenance.log").read_text()
    assert "Provenance inbound: passed 246 " in log and "dropped loop 4." in log
    counts = log.split("Received ")[-1].split(" through IntelMQ's own receive")[0]
    fast, slow = int(counts.split()[0]), int(counts.split()[-1])
    # the first receive and the last (still waiting) are IntelMQ's; every other one the memo's
    assert fast + slow in (250, 251) and slow <= 2, log[-2000:]
    log = (inst.log_dir / "a-provenance.log").read_text()
    assert "Provenance outbound: passed 250 " in log and "dropped duplicate 20." in log
