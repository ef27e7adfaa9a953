"""BotTestCase tests of the cross-border CSAF output: documents pass the shipped CSAF 2.0 schema."""
import csv
import hashlib
import json
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path
from unittest import mock

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.bots.outputs.csaf.output import CrossBorderCSAFOutputBot

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "csaf" / "advisories"
#: Added to the source's own csaf.* fields (tlp.SOURCE_FIELDS): values to search for in the output.
HIDDEN_SOURCE = {"feed.url": "https://feeds.secret-originator.example/csaf", "feed.name": "Secret Originator CSAF",
                 "misp.event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
                 "provenance.originator": "psirt-secret-originator"}


def parsed_events(name, **overrides):
    """Events the parser maps from a real advisory, as messages for the output bot."""
    result = csaf.parse_document((FIX / name).read_bytes(), include_raw=False)
    out = []
    for flat in result.events:
        msg = {"__type": "Event", **flat}
        msg.update(overrides)
        out.append(msg)
    return out


class TestCrossBorderCSAFOutputBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderCSAFOutputBot
        cls.sysconfig = {"output_dir": "/nonexistent", "publisher_name": "Example Hub",
                         "publisher_namespace": "https://hub.example.org"}

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory()
        self.out = Path(self.tmp.name) / "csaf"
        self.spool = Path(self.tmp.name) / "spool"

    def tearDown(self):
        self.tmp.cleanup()
        super().tearDown()

    def run_output(self, messages, errors=0, **params):
        self.input_message = messages
        parameters = {"output_dir": str(self.out), "state_dir": str(self.spool)}
        parameters.update(params)
        self.run_bot(iterations=len(messages), parameters=parameters, allowed_error_count=errors)

    def documents(self, folder="white"):
        return sorted((self.out / folder).rglob("*.json"))

    def test_cisa_events_give_a_valid_advisory(self):
        events = parsed_events("icsa-19-344-03.json")
        self.run_output(events)
        docs = self.documents()
        self.assertEqual([d.name for d in docs], ["hub-icsa-19-344-03.json"])
        doc = json.loads(docs[0].read_text())
        problems, total = csaf.validate(doc)
        self.assertEqual(problems, [])
        self.assertEqual(doc["document"]["category"], "csaf_security_advisory")
        self.assertEqual(doc["document"]["distribution"]["tlp"]["label"], "WHITE")
        self.assertEqual(doc["document"]["tracking"]["id"], "HUB-ICSA-19-344-03")
        self.assertEqual(doc["document"]["tracking"]["version"], str(len(events)))
        self.assertEqual({v["cve"] for v in doc["vulnerabilities"]}, {"CVE-2018-18440", "CVE-2019-13103"})
        self.assertTrue(all(v["scores"] for v in doc["vulnerabilities"]))
        # round trip: the parser reads our document back into the same (CVE, product) pairs
        back = csaf.parse_document(docs[0].read_bytes())
        self.assertEqual({(e["product.vulnerabilities"], e["product.full_name"]) for e in back.events},
                         {(e["product.vulnerabilities"], e["product.full_name"]) for e in events})
        # provider layout: year folder, hashes, index.txt, changes.csv
        body = docs[0].read_bytes()
        year = doc["document"]["tracking"]["initial_release_date"][:4]   # of our advisory, not the source's
        self.assertEqual(docs[0].parent.name, year)
        self.assertEqual(Path(str(docs[0]) + ".sha512").read_text().split()[0], hashlib.sha512(body).hexdigest())
        self.assertEqual(Path(str(docs[0]) + ".sha256").read_text().split()[0], hashlib.sha256(body).hexdigest())
        self.assertEqual((self.out / "white" / "index.txt").read_text(), f"{year}/hub-icsa-19-344-03.json\n")
        rows = list(csv.reader((self.out / "white" / "changes.csv").open()))
        self.assertEqual(rows, [[f"{year}/hub-icsa-19-344-03.json", doc["document"]["tracking"]["current_release_date"]]])
        self.assertIn(f'"{year}/hub-icsa-19-344-03.json"', (self.out / "white" / "changes.csv").read_text())

    def test_grouping_by_cve_and_tlp_mapped_back(self):
        events = parsed_events("bsi-2022-0001.json", **{"sharing.tlp": "AMBER", "tlp": "AMBER"})
        events += parsed_events("icsma-17-009-01a.json", **{"sharing.tlp": "GREEN", "tlp": "GREEN"})
        self.run_output(events, group_by=["product.vulnerabilities"])
        amber, green = self.documents("amber"), self.documents("green")
        self.assertEqual([d.name for d in amber], ["hub-cve-2022-27193.json"])
        self.assertEqual(len(green), 1)
        for path in amber + green:
            doc = json.loads(path.read_text())
            self.assertEqual(csaf.validate(doc)[0], [])
        self.assertEqual(json.loads(amber[0].read_text())["document"]["distribution"]["tlp"]["label"], "AMBER")

    def test_amber_strict_and_red_are_never_published(self):
        # AMBER+STRICT never leaves the organisation and RED is never forwarded automatically,
        # whatever max_tlp says (check() refuses such a max_tlp; the bot refuses such events anyway)
        for label, spelled in (("AMBER+STRICT", "RED"), ("RED", "RED")):
            events = parsed_events("bsi-2022-0001.json", **{"sharing.tlp": label, "tlp": spelled})
            self.run_output(events[:1], errors=1, max_tlp="RED")
            self.assertRegexpMatchesLog(r"TLP:RED is never published automatically" if label == "RED" else
                                        r"TLP:AMBER\+STRICT never leaves the organisation")
        self.assertFalse(self.out.exists() and any(self.out.rglob("*.json")))
        for level in ("AMBER+STRICT", "RED"):
            self.assertIn("never published", CrossBorderCSAFOutputBot.check(dict(self.sysconfig, max_tlp=level))[0][1])

    def test_fallback_grouping_for_events_without_tracking_id(self):
        event = {"__type": "Event", "classification.type": "vulnerable-system", "sharing.tlp": "GREEN",
                 "product.vulnerabilities": "cve-2024-3094", "product.vendor": "tukaani",
                 "product.name": "xz", "product.version": "5.6.0", "vulnerability.cvss_base_score": 10.0,
                 "vulnerability.cvss_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}
        self.run_output([event])
        docs = self.documents("green")
        self.assertEqual([d.name for d in docs], ["hub-cve-2024-3094.json"])
        doc = json.loads(docs[0].read_text())
        self.assertEqual(csaf.validate(doc)[0], [])
        self.assertEqual(doc["vulnerabilities"][0]["scores"][0]["cvss_v3"]["baseSeverity"], "CRITICAL")

    def test_write_every_and_shutdown_flush(self):
        events = parsed_events("bsi-2022-0001.json")
        self.run_output(events, write_every=100)
        doc = json.loads(self.documents()[0].read_text())
        self.assertEqual(doc["document"]["tracking"]["version"], "1")
        self.assertEqual(len(doc["product_tree"]["branches"][0]["branches"][0]["branches"]), 5)

    def test_above_max_tlp_is_dumped(self):
        events = parsed_events("icsma-17-009-01a.json", **{"sharing.tlp": "RED", "tlp": "RED"})
        self.run_output(events[:1], errors=1)
        self.assertEqual(self.documents("red"), [])
        self.assertRegexpMatchesLog(r"TLP:RED is never published automatically; not written")
        events = parsed_events("icsma-17-009-01a.json", **{"sharing.tlp": "AMBER", "tlp": "AMBER"})
        self.run_output(events[:1], errors=1, max_tlp="GREEN")
        self.assertRegexpMatchesLog(r"TLP:AMBER is above max_tlp GREEN; not written")
        self.assertFalse(self.out.exists() and any(self.out.rglob("*.json")))

    def test_event_without_tlp_is_dumped(self):
        event = parsed_events("icsma-17-009-01a.json")[0]
        del event["sharing.tlp"], event["tlp"]        # every label counts: the stock tlp field too
        self.run_output([event], errors=1)
        self.assertFalse(self.out.exists() and any(self.out.rglob("*.json")))
        self.assertRegexpMatchesLog(r"no TLP label")

    def test_effective_tlp_is_the_most_restrictive_label(self):
        # issue 12: sharing.tlp GREEN does not lower a tlp:red MISP tag; an AMBER label in extra.tlp
        # makes the advisory AMBER
        red = parsed_events("icsma-17-009-01a.json", **{"sharing.tlp": "GREEN", "tlp": "GREEN",
                                                         "extra.misp_tags": [{"name": "tlp:red"}]})[0]
        self.run_output([red], errors=1)
        self.assertRegexpMatchesLog(r"for key 'extra\.misp_tags\[0\]\.name': TLP:RED is never published")
        self.assertFalse(self.out.exists() and any(self.out.rglob("*.json")))
        amber = parsed_events("icsma-17-009-01a.json", **{"sharing.tlp": "GREEN", "tlp": "GREEN",
                                                           "extra.tlp": "TLP:AMBER"})
        self.run_output(amber)
        (doc,) = self.documents("amber")
        self.assertEqual(json.loads(doc.read_text())["document"]["distribution"]["tlp"]["label"], "AMBER")
        self.assertEqual(self.documents("green"), [])

    def test_hostile_labels_are_dumped_with_the_field_named(self):
        for base, value, field in (("extra.tlp", ["RED"], r"extra\.tlp"),
                                   ("extra.misp_tags", [{"name": "tlp\u200b:red"}], r"extra\.misp_tags\[0\]\.name"),
                                   ("extra.misp_tags", [{"colour": "#cc0033"}], r"extra\.misp_tags\[0\]")):
            event = parsed_events("icsma-17-009-01a.json", **{base: value})[0]
            self.run_output([event], errors=1)
            self.assertRegexpMatchesLog(f"for key '{field}'")
        self.assertFalse(self.out.exists() and any(self.out.rglob("*.json")))

    def test_hidden_source_never_in_the_advisory(self):
        # the advisory id, title, references and tracking come from the hub, never from a hidden source
        source = parsed_events("icsma-17-009-01a.json")[0]
        hidden = {name: source[name] for name in ("csaf.tracking_id", "csaf.publisher", "csaf.document_url",
                                                  "event_description.url")}
        hidden.update(HIDDEN_SOURCE)
        flagged = parsed_events("icsma-17-009-01a.json", **HIDDEN_SOURCE, **{"sharing.do_not_disclose_source": True})
        chr_tag = parsed_events("icsa-19-344-03.json", **HIDDEN_SOURCE, **{"extra.tags": "tlp:ex:chr,osint"})
        self.run_output(flagged + chr_tag)
        docs = self.documents()
        self.assertEqual({d.name for d in docs}, {"hub-cve-2017-5149.json", "hub-cve-2018-18440.json",
                                                  "hub-cve-2019-13103.json"})   # grouped by CVE instead
        written = "".join(p.read_text(errors="replace") for p in Path(self.tmp.name).rglob("*") if p.is_file())
        for field, value in hidden.items():
            self.assertNotIn(value.lower(), written.lower(), field)
        for word in ("icsma-17-009-01a", "icsa-19-344-03", "secret-originator", "cisa"):
            self.assertNotIn(word, written.lower())
        for doc in docs:
            self.assertEqual(csaf.validate(json.loads(doc.read_text()))[0], [])

    def test_non_vulnerability_event_is_dumped(self):
        event = {"__type": "Event", "classification.type": "scanner", "source.ip": "192.0.2.1",
                 "sharing.tlp": "GREEN", "csaf.tracking_id": "X-1"}
        self.run_output([event], errors=1)
        self.assertRegexpMatchesLog(r"not a vulnerability event")

    @unittest.skipUnless(shutil.which("gpg"), "gpg not installed")
    def test_openpgp_signature(self):
        home = Path(self.tmp.name) / "gnupg"
        home.mkdir(mode=0o700)
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-gen-key",
                        "Hub CSAF <csaf@hub.example.org>", "ed25519", "sign", "never"],
                       check=True, capture_output=True)
        self.run_output(parsed_events("icsma-17-009-01a.json"), signing_key="csaf@hub.example.org",
                        gpg_home=str(home))
        doc = self.documents()[0]
        check = subprocess.run(["gpg", "--homedir", str(home), "--verify", str(doc) + ".asc", str(doc)],
                               capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stderr)
        self.assertIn("Good signature", check.stderr)

    def test_check(self):
        self.assertEqual(len(CrossBorderCSAFOutputBot.check({})), 3)
        self.assertEqual(CrossBorderCSAFOutputBot.check({"output_dir": "x", "publisher_name": "y",
                                                         "publisher_namespace": "https://z",
                                                         "max_tlp": "PINK"})[0][0], "error")

    def test_manager_empty_optional_parameters_mean_the_defaults(self):
        # IntelMQ Manager saves an untouched optional field as '': every optional parameter
        required = {"output_dir": str(self.out), "publisher_name": "Example Hub",
                    "publisher_namespace": "https://hub.example.org"}
        empty = {name: "" for name in ("state_dir", "group_by", "fallback_group_by", "tracking_prefix",
                                       "publisher_category", "max_tlp", "write_every", "signing_key",
                                       "signing_key_password", "gpg_binary", "gpg_home")}
        self.assertIsNone(CrossBorderCSAFOutputBot.check({**required, **empty}))
        events = parsed_events("icsa-19-344-03.json")
        fallback = {k: v for k, v in events[0].items() if k != "csaf.tracking_id"}
        self.input_message = events + [fallback]
        state = Path(self.tmp.name) / "var-state"
        with mock.patch("intelmq_crossborder.bots.outputs.csaf.output.VAR_STATE_PATH", str(state)):
            self.run_bot(iterations=len(events) + 1, parameters={**required, **empty})
        docs = {d.name: d for d in self.documents()}
        self.assertEqual(sorted(docs), ["hub-cve-2018-18440.json", "hub-icsa-19-344-03.json"])  # group_by, fallback
        doc = json.loads(docs["hub-icsa-19-344-03.json"].read_text())
        self.assertEqual(doc["document"]["publisher"]["category"], "coordinator")
        self.assertEqual(doc["document"]["tracking"]["version"], str(len(events)))   # written every event
        self.assertFalse(list(self.out.rglob("*.asc")))                               # not signed
        self.assertTrue((state / f"{self.bot_id}.csaf-spool" / "hub-icsa-19-344-03.jsonl").exists())
        self.assertEqual(self.bot._spool.max_level.label, "AMBER")


if __name__ == "__main__":
    unittest.main()
