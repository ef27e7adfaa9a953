"""Real IntelMQ processes: member MISP -> collector -> parser -> TLP expert -> MISP output + MISP feed.

Runs intelmq_crossborder/pipelines/misp-exchange/runtime.yaml as shipped.
Two fake MISP servers run in the test process (the member's and the peer hub's); the
bots are real processes started by intelmqctl on Redis database 13.  The nightly
exchange runs twice (the second time with the collector's state removed, so every
event comes again): the peer's MISP must not change the second time.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from intelmq_crossborder.testing.fake_misp import FakeMISP
from intelmq_crossborder.formats.misp import convert as misp
from intelmq_crossborder.policy.agreements import load_agreement, tlp_ceiling
from intelmq_crossborder.core import tlp
from intelmq_crossborder.runtime.instance import PIPELINES_DIR, IntelMQInstance, chown_for_intelmq, load_runtime
from tests.isolation import REDIS_DB
from intelmq_crossborder.testing.polling import wait_until

pytestmark = pytest.mark.integration

FIX = Path(__file__).resolve().parent / "fixtures" / "misp"
AGREEMENT = FIX / "agreements" / "peer-hub-de.yaml"
RUNTIME = PIPELINES_DIR / "misp-exchange" / "runtime.yaml"
SOURCES = ["ours/endor-tlp-clear.json", "ours/sighting-attribute-tlp-types.json",
           "ours/regin-amber-strict-sharing-group.json", "misp-training/misp.event.flutbot.json"]
MEMBER_KEY = "member-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
PEER_KEY = "peer-key-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"


def load(path):
    return misp.load_file(FIX / path)[0]


def expected_indicators():
    """(type, value) the peer may get: converted by the library, TLP default AMBER, agreement ceiling."""
    ceiling = tlp_ceiling(load_agreement(AGREEMENT))
    out = set()
    for path in SOURCES:
        for fields in misp.Converter().convert_event(load(path)):
            level = tlp.Level.from_label(fields.get("sharing.tlp", "AMBER"))
            if level > ceiling:           # a url without scheme is kept, and goes back without one
                continue
            found = misp.indicator(fields)
            if found:
                out.add(found[:2])
    return out


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
            runtime = load_runtime(RUNTIME, root, {"MEMBER_MISP_URL": member.url, "PEER_MISP_URL": peer.url})
            runtime["global"]["logging_level"] = "DEBUG"        # the keys must not show even at DEBUG
            feed_dir = Path(runtime["misp-feed"]["parameters"]["feed_directory"])
            state = Path(runtime["misp-collector"]["parameters"]["state_file"])
            inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB).setup()
            (root / "etc" / "agreements").mkdir()
            shutil.copy(AGREEMENT, root / "etc" / "agreements" / "peer-hub-de.yaml")
            feed_dir.mkdir(parents=True)
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
                wait_until(state.exists, 60, "the collector to write its state again", interval=0.2)
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
            assert len(reasons) == 2 * refused and all(
                    any(why in r for why in ("forbids this event", "never leaves the organisation",
                                             "never forwarded automatically")) for r in reasons)
            logs = "".join(p.read_text(errors="replace") for p in inst.log_dir.glob("*.log"))
            assert MEMBER_KEY not in logs and PEER_KEY not in logs
            assert "misp_api_token" not in logs or "HIDDEN" in logs
    finally:
        shutil.rmtree(work, ignore_errors=True)
