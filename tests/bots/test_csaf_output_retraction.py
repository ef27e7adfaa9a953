"""BotTestCase tests: the CSAF output applies retractions as CSAF 2.0 provides: a new revision of the
advisory without the retracted event (or with its higher label), or, when no event is left, a
withdrawn last revision; the spool keeps nothing of a removed event."""
import json
import shutil
import tempfile
import unittest
import uuid
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.outputs.csaf.output import CrossBorderCSAFOutputBot
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.policy.retraction import new_retraction

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "csaf" / "advisories"


def events(name="avendor-advisory-0004.json", **overrides) -> list:
    """The events the parser maps from a real advisory, each with its provenance ids."""
    out = []
    for flat in csaf.parse_document((FIX / name).read_bytes(), include_raw=False).events:
        msg = {"__type": "Event", **flat, **overrides, "provenance.event_uuid": str(uuid.uuid4())}
        msg["provenance.fingerprint"] = fingerprint(msg)
        out.append(msg)
    return out


def retraction(target: dict, action="withdraw", **kwargs) -> dict:
    r = new_retraction(action, "wrong product", "at-hub", target_event_uuid=target["provenance.event_uuid"],
                       target_fingerprint=target["provenance.fingerprint"], **kwargs)
    return dict(r.to_event(), __type="Event")


class TestCSAFOutputRetraction(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderCSAFOutputBot
        cls.sysconfig = {"output_dir": "/nonexistent", "publisher_name": "Example Hub",
                         "publisher_namespace": "https://hub.example.org"}

    def setUp(self):
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix="csaf-retraction-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.out, self.spool = self.tmp / "csaf", self.tmp / "spool"

    def run_output(self, messages, errors=0, **params):
        self.input_message = messages
        self.run_bot(iterations=len(messages), parameters={"output_dir": str(self.out), "state_dir": str(self.spool),
                                                           **params}, allowed_error_count=errors)

    def advisory(self, folder="white") -> dict:
        (path,) = sorted((self.out / folder).rglob("*.json"))
        doc = json.loads(path.read_text())
        self.assertEqual(csaf.validate(doc)[0], [])
        return doc

    def state_text(self) -> str:
        return "".join(p.read_text() for p in sorted(self.spool.iterdir()))

    def test_withdraw_of_one_event_writes_a_new_revision_without_it(self):
        one, two = events()
        self.run_output([one, two])
        cves = {v["cve"] for v in self.advisory()["vulnerabilities"]}
        self.assertEqual(cves, {"CVE-2020-1234", "CVE-2020-9876"})
        self.run_output([retraction(one)])
        doc = self.advisory()
        self.assertEqual([v["cve"] for v in doc["vulnerabilities"]], ["CVE-2020-9876"])
        tracking = doc["document"]["tracking"]
        self.assertEqual(tracking["version"], "3")                         # one per event, then the retraction
        self.assertRegex(tracking["revision_history"][-1]["summary"], r"Update 3: 1 event\(s\) withdrawn \(retraction ")
        self.assertEqual([r["number"] for r in tracking["revision_history"]], ["1", "2", "3"])
        self.assertNotIn("2020-1234", self.state_text())
        self.assertLogMatches(r".*advisory .* revised as version 3 \(1 event\(s\) removed, 0 relabelled\)", "INFO")

    def test_retracting_every_event_withdraws_the_advisory(self):
        one, two = events()
        self.run_output([one, two])
        before = self.advisory()
        self.run_output([retraction(one, "erase"), retraction(two, "erase")])
        doc = self.advisory()
        self.assertEqual(doc["document"]["category"], "csaf_base")
        self.assertEqual(doc["document"]["tracking"]["id"], before["document"]["tracking"]["id"])
        self.assertEqual(doc["document"]["notes"][0]["title"], "Reasoning for Withdrawal")
        self.assertNotIn("vulnerabilities", doc)
        self.assertNotIn("product_tree", doc)
        published = "".join(p.read_text() for p in self.out.rglob("*") if p.is_file())
        self.assertNotIn("2020-1234", published)
        self.assertNotIn("2020-9876", published)
        self.assertFalse(list(self.spool.glob("*.jsonl")))                 # no spooled value left
        self.assertNotIn("2020-1234", self.state_text())

    def test_relabel_within_max_tlp_moves_the_advisory_to_the_higher_folder(self):
        one, two = events()
        self.run_output([one, two])
        self.run_output([retraction(one, "relabel", new_tlp="AMBER")])
        doc = self.advisory("amber")
        self.assertEqual(doc["document"]["distribution"]["tlp"]["label"], "AMBER")
        self.assertEqual(len(doc["vulnerabilities"]), 2)
        self.assertFalse(list((self.out / "white").rglob("*.json")))        # not left in the lower folder

    def test_relabel_above_max_tlp_takes_the_event_out(self):
        one, two = events()
        self.run_output([one, two], max_tlp="GREEN")
        self.run_output([retraction(one, "relabel", new_tlp="AMBER")], max_tlp="GREEN")
        doc = self.advisory()
        self.assertEqual([v["cve"] for v in doc["vulnerabilities"]], ["CVE-2020-9876"])

    def test_retraction_not_held_writes_nothing(self):
        one, two = events()
        self.run_output([one])
        before = self.advisory()
        self.run_output([retraction(two)])
        self.assertEqual(self.advisory(), before)
        self.assertLogMatches(r".*no advisory holds its target", "INFO")

    def test_new_events_after_a_withdrawal_publish_the_advisory_again(self):
        one, two = events()
        self.run_output([one])
        self.run_output([retraction(one)])
        self.assertEqual(self.advisory()["document"]["category"], "csaf_base")
        self.run_output([two])
        doc = self.advisory()
        self.assertEqual(doc["document"]["category"], "csaf_security_advisory")
        self.assertEqual(doc["document"]["tracking"]["version"], "3")


if __name__ == "__main__":
    unittest.main()
