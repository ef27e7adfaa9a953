"""Real IntelMQ processes: the MISP output (fake MISP), the MISP feed, the Elasticsearch output (fake
Elasticsearch) and the CSAF output write events, then apply a withdraw and an erase that arrive on
their queues, as the router sends them (docs/retraction.md, "What each output does")."""
import json
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.policy.retraction import new_retraction
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from intelmq_crossborder.testing.fake_misp import FakeMISP
from intelmq_crossborder.testing.polling import wait_until
from tests.isolation import REDIS_DB

FIX = Path(__file__).resolve().parent / "fixtures" / "misp" / "agreements" / "peer-hub-de.yaml"
KEY = "it-Key-0123456789abcdefghijklmnopqrstuvwxyz"
BOTS = ("misp-output-rt", "misp-feed-rt", "es-output-rt", "csaf-output-rt")


def event(ip, **extra):
    ev = {"__type": "Event", "classification.type": "c2-server", "classification.taxonomy": "malicious-code",
          "source.ip": ip, "feed.name": "member-feed", "sharing.tlp": "GREEN",
          "time.observation": "2026-11-20T10:00:00+00:00", "time.source": "2026-11-20T09:00:00+00:00",
          "provenance.event_uuid": str(uuid.uuid4())}
    ev.update(extra)
    ev["provenance.fingerprint"] = fingerprint(ev)
    return ev


def vuln(cve, ip):
    return event(ip, **{"classification.type": "vulnerable-system", "classification.taxonomy": "vulnerable",
                        "product.vulnerabilities": cve, "product.name": "Widget", "product.vendor": "ACME"})


def retraction(target, action):
    r = new_retraction(action, "integration test", "at-hub", target_event_uuid=target["provenance.event_uuid"],
                       target_fingerprint=target["provenance.fingerprint"])
    return json.dumps(dict(r.to_event(), __type="Event"))


@pytest.mark.integration
def test_real_processes_apply_withdraw_and_erase():
    with FakeMISP(key=KEY) as misp, FakeElasticsearch() as es, tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        root = Path(tmp) / "intelmq"
        state = Path(tmp) / "state"
        state.mkdir()
        shutil.copy(FIX, state / "peer.yaml")
        common = {"agreement_file": str(state / "peer.yaml"), "destination_queues": {}}
        runtime = {
            "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                       "error_max_retries": 0, "error_retry_delay": 1},
            "misp-output-rt": {"group": "Output", "name": "MISP", "module": "intelmq.bots.outputs.crossborder.misp.output",
                               "enabled": True, "run_mode": "continuous",
                               "parameters": {**common, "misp_url": misp.url, "misp_api_token": KEY,
                                              "holdings_file": str(state / "misp.sqlite"), "retry_backoff": 0.01}},
            "misp-feed-rt": {"group": "Output", "name": "Feed", "module": "intelmq.bots.outputs.crossborder.misp_feed.output",
                             "enabled": True, "run_mode": "continuous",
                             "parameters": {**common, "feed_directory": str(state / "feed"),
                                            "holdings_file": str(state / "feed.sqlite")}},
            "es-output-rt": {"group": "Output", "name": "ES", "module": "intelmq.bots.outputs.crossborder.elasticsearch.output",
                             "enabled": True, "run_mode": "continuous",
                             "parameters": {"hosts": [es.url], "bulk_size": 1, "tlp_ceiling": "AMBER",
                                            "retraction_ids_file": str(state / "lake-ids.sqlite"),
                                            "destination_queues": {}}},
            "csaf-output-rt": {"group": "Output", "name": "CSAF", "module": "intelmq.bots.outputs.crossborder.csaf.output",
                               "enabled": True, "run_mode": "continuous",
                               "parameters": {"output_dir": str(state / "csaf"), "state_dir": str(state / "spool"),
                                              "publisher_name": "Hub", "publisher_namespace": "https://hub.example",
                                              "group_by": ["product.vulnerabilities"], "destination_queues": {}}},
        }
        inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB).setup()
        chown_for_intelmq(Path(tmp))
        r = inst.redis()
        for bot in BOTS:
            r.delete(f"{bot}-queue", f"{bot}-queue-internal")
        kept, withdrawn, erased = event("192.0.2.1"), event("192.0.2.2"), event("192.0.2.3")
        v_kept, v_erased = vuln("CVE-2024-1111", "192.0.2.10"), vuln("CVE-2024-1111", "192.0.2.11")
        for bot in BOTS[:3]:
            r.lpush(f"{bot}-queue", *[json.dumps(e) for e in (kept, withdrawn, erased)])
        r.lpush("csaf-output-rt-queue", json.dumps(v_kept), json.dumps(v_erased))
        inst.start(list(BOTS))
        try:
            wait_until(lambda: all(r.llen(f"{b}-queue") == 0 for b in BOTS) and len(es.all_docs()) == 3
                       and list((state / "csaf").rglob("*.json")), 120, "events written by every output")
            for bot in BOTS[:3]:
                r.lpush(f"{bot}-queue", retraction(withdrawn, "withdraw"), retraction(erased, "erase"))
            r.lpush("csaf-output-rt-queue", retraction(v_erased, "erase"))
            wait_until(lambda: all(r.llen(f"{b}-queue") == 0 for b in BOTS)
                       and len([d for i, (idx, d) in es.all_docs().items() if idx == "crossborder-events.retractions"]) == 2
                       and "192.0.2.11" not in "".join(p.read_text() for p in (state / "csaf").rglob("*.json")),
                       120, "retractions applied")
        finally:
            inst.stop(list(BOTS))
        assert inst.dumps() == {}
        # MISP: withdrawn soft-deleted, erased gone (hard), kept untouched
        attrs = {a["value"]: a for e in misp.events.values() for a in e["Attribute"]}
        assert set(attrs) == {"192.0.2.1", "192.0.2.2"} and attrs["192.0.2.2"]["deleted"]
        assert not attrs["192.0.2.1"]["deleted"]
        # feed: only the kept value left
        feed_text = "".join(p.read_text() for p in (state / "feed").iterdir())
        assert "192.0.2.1" in feed_text and "192.0.2.2" not in feed_text and "192.0.2.3" not in feed_text
        # lake: one event document left, two tombstones
        docs = {i: d for i, (idx, d) in es.all_docs().items() if idx != "crossborder-events.retractions"}
        assert list(docs) == [kept["provenance.fingerprint"]]
        # CSAF: a new revision without the erased event, nothing of it in the spool
        (path,) = (state / "csaf").rglob("*.json")
        doc = json.loads(path.read_text())
        assert doc["document"]["tracking"]["version"] == "3" and "erased" in \
            doc["document"]["tracking"]["revision_history"][-1]["summary"]
        assert "192.0.2.11" not in "".join(p.read_text() for p in (state / "spool").iterdir())
