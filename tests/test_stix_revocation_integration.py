"""Real IntelMQ processes: a revoked STIX object reaches exactly the recipient that got its events.

STIX parser (hub_id, named path ``retractions``) -> IntelMQ's stock taxonomy expert -> TLP expert ->
provenance (outbound) -> sharing router -> a CSIRT's queue; the retractions take the named path
straight to the router, as the cross-border hub wires it (docs/bots/stix.md).  The first report
holds two indicators (three events); the second the revoked version of one of them: the CSIRT
receives one withdraw per event of that indicator, naming the uuids its events arrived with, and
nothing else."""
import base64
import copy
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from intelmq_crossborder.policy.retraction import Retraction
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from intelmq_crossborder.testing.polling import wait_until
from tests.agreements import write_agreements
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration

BOTS = ("stix-parser-rv", "taxonomy-rv", "tlp-rv", "provenance-rv", "router-rv")
AGREEMENTS = {"cert-fi": """\
    recipient: cert-fi
    name: CERT-FI
    kind: csirt
    country: FI
    relation: constituent
    max_tlp: AMBER
    disclose_source: true
    """}
ONE = {"type": "indicator", "spec_version": "2.1", "id": "indicator--0b7a3a10-1f43-4c55-8d1e-6a0b9f6a1111",
       "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z",
       "pattern": "[ipv4-addr:value = '198.51.100.70'] OR [domain-name:value = 'c2.example.test']",
       "pattern_type": "stix", "valid_from": "2024-03-01T10:00:00Z", "indicator_types": ["malicious-activity"],
       "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]}
TWO = dict(ONE, id="indicator--0b7a3a10-1f43-4c55-8d1e-6a0b9f6a2222", pattern="[ipv4-addr:value = '198.51.100.71']")


def report(objects):
    raw = json.dumps({"type": "bundle", "id": "bundle--0b7a3a10-1f43-4c55-8d1e-6a0b9f6a0000", "objects": objects})
    return json.dumps({"__type": "Report", "feed.name": "partner-stix", "feed.provider": "partner-cti",
                       "time.observation": "2024-05-01T10:00:00+00:00",
                       "raw": base64.b64encode(raw.encode()).decode()})


def test_a_revoked_object_reaches_exactly_the_holder_of_its_events():
    work = Path(tempfile.mkdtemp(prefix="stix-revocation-"))
    work.chmod(0o755)
    root = work / "intelmq"
    agreements = write_agreements(root / "etc" / "agreements", AGREEMENTS)

    def bot(group, module, **params):
        return {"group": group, "name": module, "module": module, "enabled": True, "run_mode": "continuous",
                "parameters": params}
    runtime = {
        "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "rate_limit": 0},
        "stix-parser-rv": bot("Parser", "intelmq.bots.parsers.crossborder.stix.parser", hub_id="fi-hub",
                              destination_queues={"_default": ["taxonomy-rv-queue"],
                                                  "retractions": ["router-rv-queue"]}),
        "taxonomy-rv": bot("Expert", "intelmq.bots.experts.taxonomy.expert",
                           destination_queues={"_default": ["tlp-rv-queue"]}),
        "tlp-rv": bot("Expert", "intelmq.bots.experts.crossborder.tlp.expert", default_tlp="AMBER",
                      destination_queues={"_default": ["provenance-rv-queue"]}),
        "provenance-rv": bot("Expert", "intelmq.bots.experts.crossborder.provenance.expert", direction="outbound",
                             hub_id="fi-hub", dedup_window=0, destination_queues={"_default": ["router-rv-queue"]}),
        "router-rv": bot("Expert", "intelmq.bots.experts.crossborder.sharing_router.expert", hub_id="fi-hub",
                         agreements_dir=str(agreements), hmac_password="stix-revocation-test-key",
                         audit_log=str(root / "var" / "lib" / "bots" / "router-rv-audit.jsonl"),
                         destination_queues={"_default": [], "cert-fi": ["it-cert-fi-rv-queue"]}),
    }
    inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB).setup()
    chown_for_intelmq(work)
    inst.clear_queues()
    r = inst.redis()
    r.delete("it-cert-fi-rv-queue")
    try:
        inst.start(list(BOTS))
        r.lpush("stix-parser-rv-queue", report([ONE, TWO]))
        wait_until(lambda: r.llen("it-cert-fi-rv-queue") == 3, 120, "three events at the CSIRT")
        events = [json.loads(m) for m in r.lrange("it-cert-fi-rv-queue", 0, -1)]
        r.delete("it-cert-fi-rv-queue")
        revoked = copy.deepcopy(ONE)
        revoked.update(revoked=True, modified="2024-04-01T00:00:00.000Z")
        r.lpush("stix-parser-rv-queue", report([revoked]))
        wait_until(lambda: r.llen("it-cert-fi-rv-queue") == 2, 120, "two retractions at the CSIRT")
        got = [json.loads(m) for m in r.lrange("it-cert-fi-rv-queue", 0, -1)]
    finally:
        inst.stop(list(BOTS))
    try:
        assert inst.dumps() == {}
        mine = {e["provenance.event_uuid"] for e in events if e["extra.stix_id"] == ONE["id"]}
        assert len(mine) == 2
        notices = [Retraction.from_event({k: v for k, v in g.items() if k != "__type"}) for g in got]
        assert {n.target_event_uuid for n in notices} == mine
        assert all(n.action == "withdraw" and n.originator == "fi-hub" and n.hub_path == ("fi-hub",)
                   for n in notices)
        assert "198.51.100.70" not in json.dumps(got) and "c2.example.test" not in json.dumps(got)
        assert r.llen("it-cert-fi-rv-queue") == 2 and all(r.llen(f"{b}-queue") == 0 for b in BOTS)
    finally:
        inst.clear_queues()
        r.delete("it-cert-fi-rv-queue")
        shutil.rmtree(work, ignore_errors=True)
