"""BotTestCase tests: the cross-border MISP feed output applies retractions (withdraw, relabel, erase):
the attribute leaves the feed event, the manifest and hashes.csv are rewritten, an emptied event goes."""
import hashlib
import json
import shutil
import sqlite3
import tempfile
import unittest
import uuid
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase
from pymisp import MISPEvent

from intelmq_crossborder.bots.outputs.misp_feed.output import CrossBorderMISPFeedOutputBot
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.policy.retraction import new_retraction

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "misp"
PEER = str(FIX / "agreements" / "peer-hub-de.yaml")              # AMBER, discloses the source
ISAC = str(FIX / "agreements" / "community-isac.yaml")           # GREEN, source hidden


def ev(ip="192.0.2.1", tlp="GREEN", day="2024-05-01", **fields):
    out = {"__type": "Event", "feed.name": "member-misp", "classification.type": "c2-server",
           "source.ip": ip, "sharing.tlp": tlp, "time.observation": f"{day}T10:00:00+00:00",
           "provenance.event_uuid": str(uuid.uuid4())}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    out["provenance.fingerprint"] = fingerprint(out)
    return out


def retraction(target: dict, action="withdraw", **kwargs) -> dict:
    r = new_retraction(action, "personal data" if action == "erase" else "false positive", "at-hub",
                       target_event_uuid=target["provenance.event_uuid"],
                       target_fingerprint=target["provenance.fingerprint"], **kwargs)
    return dict(r.to_event(), __type="Event")


class TestMISPFeedOutputRetraction(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPFeedOutputBot
        cls.sysconfig = {"feed_directory": "/tmp/unused-feed", "agreement_file": PEER, "org_name": "Hub AT"}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="misp-feed-"))
        self.state = Path(tempfile.mkdtemp(prefix="misp-feed-state-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.addCleanup(shutil.rmtree, self.state, True)

    def write(self, events, allowed_error_count=0, **params):
        self.input_message = events
        params.setdefault("feed_directory", str(self.dir))
        params.setdefault("holdings_file", str(self.state / "holdings.sqlite"))
        self.run_bot(iterations=len(events), parameters=params, allowed_error_count=allowed_error_count)

    def feed_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.dir.iterdir()))

    def feed_events(self) -> dict:
        manifest = json.loads((self.dir / "manifest.json").read_text())
        out = {}
        for event_uuid in manifest:
            event = MISPEvent()
            event.load_file(str(self.dir / f"{event_uuid}.json"))
            out[event_uuid] = event
        return out

    def test_withdraw_removes_the_attribute_and_rewrites_manifest_and_hashes(self):
        one, two = ev("192.0.2.1"), ev("192.0.2.2")
        self.write([one, two])
        before = json.loads((self.dir / "manifest.json").read_text())
        self.write([retraction(one)])
        (event,) = self.feed_events().values()
        self.assertEqual([a.value for a in event.attributes], ["192.0.2.2"])
        self.assertNotIn("192.0.2.1", self.feed_text())
        hashes = (self.dir / "hashes.csv").read_text().splitlines()
        self.assertEqual(len(hashes), 1)                                   # the withdrawn value's hash went
        self.assertNotIn(hashlib.md5(b"192.0.2.1").hexdigest(), self.feed_text())
        self.assertIn(hashlib.md5(b"192.0.2.2").hexdigest(), self.feed_text())
        after = json.loads((self.dir / "manifest.json").read_text())
        self.assertEqual(list(after), list(before))
        self.write([one])                                                  # replayed: not written again
        self.assertNotIn("192.0.2.1", self.feed_text())

    def test_an_emptied_event_leaves_the_feed_and_the_manifest(self):
        one, other_day = ev("192.0.2.1"), ev("203.0.113.5", day="2024-05-02")
        self.write([one, other_day])
        self.assertEqual(len(self.feed_events()), 2)
        self.write([retraction(one, "erase")])
        events = self.feed_events()
        self.assertEqual([a.value for e in events.values() for a in e.attributes], ["203.0.113.5"])
        self.assertEqual(len(list(self.dir.glob("*-*-*-*-*.json"))), 1)    # the emptied event's file went
        self.assertNotIn("192.0.2.1", self.feed_text())

    def test_erase_keeps_only_ids_in_the_holdings(self):
        one = ev("192.0.2.1", comment="contact jane.doe@example.org")
        self.write([one])
        self.write([retraction(one, "erase")])
        self.assertNotIn("jane.doe", self.feed_text())
        dump = "\n".join(sqlite3.connect(self.state / "holdings.sqlite").iterdump())
        for value in ("192.0.2.1", "jane.doe", "member-misp"):
            self.assertNotIn(value, dump)
        self.assertIn(one["provenance.event_uuid"], dump)                  # the tombstone of ids

    def test_relabel_within_the_entitlement_retags(self):
        one = ev("192.0.2.1")
        self.write([one])
        self.write([retraction(one, "relabel", new_tlp="AMBER")])
        (event,) = self.feed_events().values()
        (attr,) = event.attributes
        self.assertEqual({t.name for t in attr.tags} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})
        self.assertEqual({t.name for t in event.tags} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})

    def test_relabel_above_the_entitlement_removes(self):
        one = ev("192.0.2.1")
        self.write([one], agreement_file=ISAC)
        self.write([retraction(one, "relabel", new_tlp="AMBER")], agreement_file=ISAC)
        self.assertEqual(json.loads((self.dir / "manifest.json").read_text()), {})
        self.assertNotIn("192.0.2.1", self.feed_text())

    def test_relabel_hiding_the_source_where_it_is_hidden_already_adds_the_flag(self):
        one = ev("192.0.2.1")
        self.write([one], agreement_file=ISAC)
        self.write([retraction(one, "relabel", new_do_not_disclose_source=True)], agreement_file=ISAC)
        (event,) = self.feed_events().values()
        self.assertIn("tlp:ex:chr", {t.name for t in event.attributes[0].tags})
        self.assertIn("tlp:ex:chr", {t.name for t in event.tags})


if __name__ == "__main__":
    unittest.main()
