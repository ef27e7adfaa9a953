"""The sharing router as a real IntelMQ bot process on Redis (this run's database), with three recipients.

Events are pushed into the router's source queue; each recipient's destination
queue must then hold exactly the copies its agreement admits, transformed for
it.  Then the agreements change, ``intelmqctl reload`` is run, and the new
agreements must apply.  The audit trail must hold one line per decision.
"""
import json
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

from intelmq_crossborder.policy import audit
from intelmq_crossborder.policy.redact import pseudonym
from intelmq_crossborder.runtime.instance import IntelMQInstance
from tests.agreements import write_agreements
from tests.isolation import REDIS_DB
from intelmq_crossborder.testing.polling import wait_until

pytestmark = pytest.mark.integration

KEY = "integration-test-key-1f3a"
AGREEMENTS = {
    "hub-soc": """\
        recipient: hub-soc
        name: Hub SOC
        kind: csirt
        country: AT
        relation: same-organisation
        max_tlp: AMBER+STRICT
        disclose_source: true
        """,
    "cert-at": """\
        recipient: cert-at
        name: CERT.at
        kind: csirt
        country: AT
        relation: constituent
        max_tlp: AMBER
        types: [infected-system, c2-server]
        retention_days: 730
        """,
    "ee-isac": """\
        recipient: ee-isac
        name: Energy ISAC
        kind: isac
        country: EU
        relation: community
        max_tlp: GREEN
        remove_fields: [source.account]
        pseudonymise_fields: [source.ip]
        """,
}
RECIPIENTS = sorted(AGREEMENTS)


def ev(n, tlp_label, ctype="infected-system", **extra):
    out = {"classification.type": ctype, "source.ip": f"192.0.2.{n}", "source.account": f"user{n}",
           "feed.name": "Peer feed", "provenance.originator": "CERT.at",
           "provenance.event_uuid": f"00000000-0000-4000-8000-{n:012d}", "sharing.tlp": tlp_label}
    out.update(extra)
    return out


def for_soc(e):
    return dict(e, **{"sharing.agreement": "hub-soc"})


def for_cert(e):
    out = {k: v for k, v in e.items() if k not in ("feed.name", "provenance.originator")}
    out.update({"sharing.agreement": "cert-at", "sharing.retention_days": 730})
    return out


def for_isac(e):
    out = {k: v for k, v in e.items() if k not in ("feed.name", "provenance.originator", "source.account")}
    out["source.ip"] = pseudonym(e["source.ip"], KEY.encode(), "IPAddress")
    out["sharing.agreement"] = "ee-isac"
    return out


@pytest.fixture
def instance():
    work = Path(tempfile.mkdtemp(prefix="router-integration-"))
    work.chmod(0o755)
    root = work / "intelmq"
    agreements = write_agreements(root / "etc" / "agreements", AGREEMENTS)
    audit_path = root / "var" / "lib" / "bots" / "router-audit.jsonl"
    runtime = {
        "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "rate_limit": 0},
        "sharing-router": {
            "group": "Expert", "name": "Sharing router", "enabled": True, "run_mode": "continuous",
            "module": "intelmq.bots.experts.crossborder.sharing_router.expert",
            "parameters": {"agreements_dir": str(agreements), "hmac_password": KEY, "audit_log": str(audit_path),
                           "destination_queues": {r: [f"it-{r}-queue"] for r in RECIPIENTS}},
        },
    }
    inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB).setup()
    inst.clear_queues()
    inst.agreements = agreements
    inst.audit_path = audit_path
    yield inst
    inst.stop()
    inst.clear_queues()
    stats = list(inst.redis().scan_iter(match="sharing-router.*"))     # IntelMQ's statistics keys
    if stats:
        inst.redis().delete(*stats)
    shutil.rmtree(work, ignore_errors=True)


def push(inst, events):
    r = inst.redis()
    for e in events:
        r.lpush("sharing-router-queue", json.dumps(dict(e, __type="Event")))


def wait_processed(inst, expected_decisions, timeout=60):
    r = inst.redis()

    def processed():
        busy = r.llen("sharing-router-queue") + r.llen("sharing-router-queue-internal")
        decisions = len(list(audit.read_records(inst.audit_path))) if inst.audit_path.exists() else 0
        return not busy and decisions >= expected_decisions

    wait_until(processed, timeout, lambda: f"the router to process the events; logs in {inst.log_dir}: "
               + "".join(p.read_text()[-2000:] for p in inst.log_dir.glob("*.log")), interval=0.2)


def queue_content(inst, recipient):
    raw = inst.redis().lrange(f"it-{recipient}-queue", 0, -1)
    out = []
    for item in reversed(raw):        # LPUSH: newest first
        msg = json.loads(item)
        assert msg.pop("__type") == "Event"
        out.append(msg)
    return out


def test_router_process_three_recipients_and_reload(instance):
    inst = instance
    batch = [ev(1, "GREEN"), ev(2, "AMBER"), ev(3, "AMBER+STRICT"), ev(4, "RED"), ev(5, "CLEAR", "scanner"),
             ev(6, "AMBER", "c2-server", **{"sharing.do_not_disclose_source": True})]
    inst.start()
    push(inst, batch)
    wait_processed(inst, len(batch) * 3)
    green, amber, strict, red, clear, chr_amber = batch
    chr_soc = for_soc(chr_amber)
    del chr_soc["feed.name"], chr_soc["provenance.originator"]
    assert queue_content(inst, "hub-soc") == [for_soc(green), for_soc(amber), for_soc(strict), for_soc(clear),
                                              chr_soc]
    assert queue_content(inst, "cert-at") == [for_cert(green), for_cert(amber), for_cert(chr_amber)]
    assert queue_content(inst, "ee-isac") == [for_isac(green), for_isac(clear)]
    records = list(audit.read_records(inst.audit_path))
    assert len(records) == 18
    assert sum(r["allowed"] for r in records) == 10
    red_records = [r for r in records if r["event_uuid"] == red["provenance.event_uuid"]]
    assert [(r["recipient"], r["allowed"]) for r in red_records] == [(x, False) for x in RECIPIENTS]
    assert all(r["reasons"][0].startswith("tlp-red:") for r in red_records)
    assert inst.dumps() == {}

    # change the agreements and reload: the ISAC is disabled, CERT.at takes every type
    (inst.agreements / "ee-isac.yaml").write_text(textwrap.dedent(AGREEMENTS["ee-isac"]) + "enabled: false\n")
    (inst.agreements / "cert-at.yaml").write_text(
        textwrap.dedent(AGREEMENTS["cert-at"]).replace("types: [infected-system, c2-server]\n", ""))
    inst.redis().delete(*[f"it-{r}-queue" for r in RECIPIENTS])
    inst.ctl("reload", "sharing-router")
    second = [ev(7, "CLEAR", "scanner")]
    push(inst, second)
    wait_processed(inst, 18 + 2)       # two agreements remain
    assert queue_content(inst, "ee-isac") == []
    assert queue_content(inst, "cert-at") == [for_cert(second[0])]
    assert queue_content(inst, "hub-soc") == [for_soc(second[0])]
    log = "".join(p.read_text() for p in inst.log_dir.glob("*.log"))
    assert "Loaded 2 sharing agreement(s)" in log
    assert "Fan-out: all copies and the acknowledgement in one Redis round trip per event (pipeline)." in log
    inst.stop()
    log = "".join(p.read_text() for p in inst.log_dir.glob("*.log"))
    assert "events fanned out in one Redis transaction 1, through send_message 0." in log
    assert KEY not in log
