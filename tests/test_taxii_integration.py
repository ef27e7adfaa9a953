"""Real IntelMQ processes: a partner's TAXII collection -> TAXII collector -> STIX parser -> TAXII
output -> another partner's collection, on a real TAXII 2.1 server (medallion) in the test process.

The source collection holds indicators marked CLEAR, GREEN, AMBER and RED and one without a
marking (the collector's default_tlp GREEN applies).  The output (max_tlp GREEN, OpenCTI profile)
must push exactly the CLEAR and GREEN ones and dump the AMBER and RED events; the password never
appears in a log.
"""
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.stix import export, markings
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from intelmq_crossborder.testing.polling import wait_until
from intelmq_crossborder.testing.taxii_server import TAXIIServer
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration

PASSWORD = "integration-" + uuid.uuid4().hex


def indicator(ip, level=None):
    obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
           "created": "2026-11-20T08:00:00.000Z", "modified": "2026-11-20T08:00:00.000Z",
           "pattern": f"[ipv4-addr:value = '{ip}']", "pattern_type": "stix", "valid_from": "2026-11-20T08:00:00Z",
           "indicator_types": ["malicious-activity"]}
    if level is not None:
        obj["object_marking_refs"] = [tlp.to_stix_marking_id(level)]
    return obj


def runtime(server: TAXIIServer, root: Path) -> dict:
    common = {"taxii_url": server.discovery_url, "username": server.user, "password_env": "XB_TAXII_PASSWORD",
              "retry_backoff": 0.2}
    return {
        "global": {"logging_level": "DEBUG", "error_dump_message": True, "error_max_retries": 0,
                   "error_procedure": "pass"},
        "taxii-collector": {
            "group": "Collector", "module": "intelmq.bots.collectors.crossborder.taxii.collector",
            "enabled": True, "run_mode": "continuous",
            "parameters": {**common, "collection": "partner-feed", "page_size": 2, "default_tlp": "GREEN",
                           "name": "partner feed", "rate_limit": 3600,
                           "state_file": str(root / "var" / "lib" / "bots" / "taxii-state.json"),
                           "destination_queues": {"_default": ["stix-parser-queue"]}}},
        "stix-parser": {
            "group": "Parser", "module": "intelmq.bots.parsers.crossborder.stix.parser",
            "enabled": True, "run_mode": "continuous",
            "parameters": {"default_tlp": "AMBER", "destination_queues": {"_default": ["taxii-output-queue"]}}},
        "taxii-output": {
            "group": "Output", "module": "intelmq.bots.outputs.crossborder.taxii.output",
            "enabled": True, "run_mode": "continuous",
            "parameters": {**common, "collection": "opencti-partner", "hub_id": "fi-hub",
                           "recipient_profile": "opencti", "max_tlp": "GREEN", "batch_size": 10,
                           "batch_max_seconds": 1, "poll_interval": 0.1, "redis_db": REDIS_DB}},
    }


def test_collector_parser_output_against_medallion(monkeypatch):
    work = Path(tempfile.mkdtemp(prefix="taxii-integration-"))
    os.chmod(work, 0o755)
    monkeypatch.setenv("XB_TAXII_PASSWORD", PASSWORD)
    try:
        with TAXIIServer(["partner-feed", "opencti-partner"], password=PASSWORD) as server:
            source = [indicator("203.0.113.1", tlp.Level.CLEAR), indicator("203.0.113.2", tlp.Level.GREEN),
                      indicator("203.0.113.3", tlp.Level.GREEN), indicator("203.0.113.4", tlp.Level.AMBER),
                      indicator("203.0.113.5", tlp.Level.RED), indicator("203.0.113.6")]
            server.add("partner-feed", markings.bundle_objects(list(tlp.Level)) + source)
            root = work / "intelmq"
            inst = IntelMQInstance(root, runtime(server, root), redis_db=REDIS_DB).setup()
            chown_for_intelmq(work)
            inst.clear_queues()

            def pushed():
                return {o["pattern"].split("'")[1]: o for o in server.objects("opencti-partner")
                        if o["type"] == "indicator"}

            def dumped():
                return len(inst.dumps().get("taxii-output", []))

            try:
                inst.start()
                wait_until(lambda: len(pushed()) >= 4 and dumped() >= 2, 120,
                           "the output to push 4 indicators and dump 2 events", interval=0.5)
                inst.wait_until_drained(timeout=60)
            finally:
                inst.stop()
            got = pushed()
            assert sorted(got) == ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.6"]
            opencti = {tlp.Level.CLEAR: "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
                       tlp.Level.GREEN: "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"}
            assert got["203.0.113.1"]["object_marking_refs"] == [opencti[tlp.Level.CLEAR]]
            for ip in ("203.0.113.2", "203.0.113.3", "203.0.113.6"):        # .6: the collection's default
                assert got[ip]["object_marking_refs"] == [opencti[tlp.Level.GREEN]], ip
            assert export.validation_errors(export.make_bundle(server.objects("opencti-partner"), "x")) == []
            reasons = [e["traceback"][-1] for e in inst.dumps()["taxii-output"]]
            assert len(reasons) == 2
            assert any("above max_tlp GREEN" in r for r in reasons), reasons
            assert any("TLP:RED is never forwarded automatically" in r for r in reasons), reasons
            logs = "".join(p.read_text(errors="replace") for p in inst.log_dir.glob("*.log"))
            assert PASSWORD not in logs
            assert "Collected 12 STIX object(s) in 6 page(s)" in logs    # 6 definitions, 6 indicators
    finally:
        shutil.rmtree(work, ignore_errors=True)
