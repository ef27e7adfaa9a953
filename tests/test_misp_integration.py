"""Real IntelMQ processes: member MISP -> collector -> parser -> TLP expert -> MISP output + MISP feed.

Two fake MISP servers run in the test process (the member's and the peer hub's); the
bots are real processes started by intelmqctl on Redis database 13.  The nightly
exchange runs twice (the second time with the collector's state removed, so every
event comes again): the peer's MISP must not change the second time.
"""
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from fake_misp import FakeMISP
from intelmq_crossborder import misp, policy, tlp
from intelmq_crossborder.runner import IntelMQInstance, chown_for_intelmq

pytestmark = pytest.mark.integration

FIX = Path(__file__).resolve().parent / "fixtures" / "misp"
AGREEMENT = FIX / "agreements" / "peer-hub-de.yaml"
SOURCES = ["ours/endor-tlp-clear.json", "ours/sighting-attribute-tlp-types.json",
           "ours/regin-amber-strict-sharing-group.json", "misp-training/misp.event.flutbot.json"]
MEMBER_KEY = "member-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
PEER_KEY = "peer-key-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"


def load(path):
    return misp.load_file(FIX / path)[0]


def expected_indicators():
    """(type, value) the peer may get: converted by the library, TLP default AMBER, agreement ceiling."""
    ceiling = policy.tlp_ceiling(policy.load_agreement(AGREEMENT))
    out = set()
    for path in SOURCES:
        for fields in misp.Converter().convert_event(load(path)):
            level = tlp.Level.from_label(fields.get("sharing.tlp", "AMBER"))
            if level > ceiling or fields.get("extra.misp_type") == "url" and "://" not in fields["source.url"]:
                continue
            found = misp.indicator(fields)
            if found:
                out.add(found[:2])
    return out


def runtime(root, member_url, peer_url, feed_dir, state_file):
    common = {"enabled": True, "run_mode": "continuous"}
    return {
        "global": {"logging_level": "DEBUG", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "rate_limit": 0},
        "misp-collector": {**common, "group": "Collector", "name": "MISP", "description": "member MISP",
                           "module": "intelmq.bots.collectors.crossborder.misp.collector",
                           "parameters": {"misp_url": member_url, "misp_api_token_env": "MEMBER_MISP_KEY",
                                          "name": "member-at-misp", "page_size": 2, "state_file": state_file,
                                          "rate_limit": 3600, "retry_backoff": 0.1,
                                          "destination_queues": {"_default": ["misp-parser-queue"]}}},
        "misp-parser": {**common, "group": "Parser", "name": "MISP", "description": "parser",
                        "module": "intelmq.bots.parsers.crossborder.misp.parser",
                        "parameters": {"destination_queues": {"_default": ["tlp-expert-queue"]}}},
        "tlp-expert": {**common, "group": "Expert", "name": "TLP", "description": "tlp",
                       "module": "intelmq.bots.experts.crossborder.tlp.expert",
                       "parameters": {"default_tlp": "AMBER", "destination_queues": {
                           "_default": ["misp-output-queue", "misp-feed-queue"]}}},
        "misp-output": {**common, "group": "Output", "name": "MISP", "description": "peer hub",
                        "module": "intelmq.bots.outputs.crossborder.misp.output",
                        "parameters": {"misp_url": peer_url, "misp_api_token_env": "PEER_MISP_KEY",
                                       "agreement_file": str(AGREEMENT), "distribution": 4,
                                       "sharing_group": "7", "retry_backoff": 0.1}},
        "misp-feed": {**common, "group": "Output", "name": "MISP feed", "description": "feed",
                      "module": "intelmq.bots.outputs.crossborder.misp_feed.output",
                      "parameters": {"feed_directory": feed_dir, "agreement_file": str(AGREEMENT),
                                     "org_name": "AT hub"}},
    }


def test_nightly_exchange_twice(monkeypatch):
    work = Path(tempfile.mkdtemp(prefix="misp-integration-"))
    os.chmod(work, 0o755)
    monkeypatch.setenv("MEMBER_MISP_KEY", MEMBER_KEY)
    monkeypatch.setenv("PEER_MISP_KEY", PEER_KEY)
    try:
        with FakeMISP(MEMBER_KEY) as member, FakeMISP(PEER_KEY) as peer:
            for path in SOURCES:
                member.store(load(path))
            root = work / "intelmq"
            feed_dir, state = work / "feed", work / "state" / "collector.json"
            feed_dir.mkdir()
            state.parent.mkdir()
            inst = IntelMQInstance(root, runtime(root, member.url, peer.url, str(feed_dir), str(state)),
                                   redis_db=13).setup()
            chown_for_intelmq(work)
            inst.clear_queues()
            want = expected_indicators()

            def pushed():
                return {(a["type"], a["value"]) for e in peer.events.values() for a in e["Attribute"]}

            def dumped():
                return sum(len(v) for v in inst.dumps().values())

            refused = sum(1 for p in SOURCES[2:] for _ in misp.Converter().convert_event(load(p)))
            try:
                inst.start()
                inst.wait_until_drained(timeout=120, done=lambda: pushed() >= want and dumped() >= 2 * refused)
                first = json.loads(json.dumps(peer.events))
                writes = len(peer.writes())
                manifest = json.loads((feed_dir / "manifest.json").read_text())
                inst.stop(["misp-collector"])
                state.unlink()                       # the whole exchange comes again
                searches = len([r for r in member.requests if r[1] == "/events/restSearch"])
                inst.start(["misp-collector"])
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and state.exists() is False:
                    time.sleep(0.2)
                inst.wait_until_drained(timeout=120, done=state.exists)
            finally:
                inst.stop()
            assert len([r for r in member.requests if r[1] == "/events/restSearch"]) > searches
            assert pushed() == want
            assert len(peer.writes()) == writes, "the second run wrote to the peer's MISP"
            assert json.loads(json.dumps(peer.events)) == first
            (event,) = peer.events.values()               # one collector feed, one day: one event
            assert (str(event["distribution"]), event["SharingGroup"]["id"]) == ("4", "7")
            assert {t["name"] for t in event["Tag"]} & {"tlp:clear", "tlp:green", "tlp:amber"} == {"tlp:amber"}
            assert json.loads((feed_dir / "manifest.json").read_text()).keys() == manifest.keys()
            dumps = inst.dumps()
            reasons = [e["traceback"][-1] for e in dumps.get("misp-output", [])]
            assert len(reasons) == 2 * refused and all("forbids this event" in r for r in reasons)
            logs = "".join(p.read_text(errors="replace") for p in inst.log_dir.glob("*.log"))
            assert MEMBER_KEY not in logs and PEER_KEY not in logs
            assert "misp_api_token" not in logs or "HIDDEN" in logs
    finally:
        shutil.rmtree(work, ignore_errors=True)
