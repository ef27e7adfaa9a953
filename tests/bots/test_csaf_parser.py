"""BotTestCase tests of the cross-border CSAF parser, on real advisories (tests/fixtures/csaf)."""
import base64
import json
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.parsers.csaf.parser import CrossBorderCSAFParserBot
from intelmq_crossborder.formats.csaf import document as csaf

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "csaf"


def report(path, **fields):
    raw = (FIX / path).read_bytes()
    msg = {"__type": "Report", "raw": base64.b64encode(raw).decode(),
           "feed.name": "CSAF test feed", "time.observation": "2024-01-01T00:00:00+00:00"}
    msg.update({k.replace("__", "."): v for k, v in fields.items()})
    return msg


class TestCrossBorderCSAFParserBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderCSAFParserBot
        cls.sysconfig = {"default_tlp": "AMBER"}

    def test_bsi_security_advisory(self):
        self.input_message = report("advisories/bsi-2022-0001.json")
        self.run_bot()
        events = self.output_events()
        self.assertEqual(len(events), 5)
        first = events[0]
        self.assertEqual(first["classification.taxonomy"], "vulnerable")
        self.assertEqual(first["classification.type"], "vulnerable-system")
        self.assertEqual(first["classification.identifier"], "CVE-2022-27193")
        self.assertEqual(first["product.vulnerabilities"], "cve-2022-27193")
        self.assertEqual(first["vulnerability.cwe"], "CWE-611")
        self.assertEqual(first["vulnerability.cvss_base_score"], 6.1)
        self.assertTrue(first["vulnerability.cvss_vector"].startswith("CVSS:3.1/AV:L/AC:L/PR:N/UI:R"))
        self.assertEqual(first["severity"], "medium")
        self.assertEqual(first["product.vendor"], "csaf tools")
        self.assertEqual(first["product.name"], "cvrf-csaf-converter")
        self.assertEqual(first["product.version"], "1.0.0-alpha")
        self.assertEqual(first["vulnerability.product_status"], "known_affected")
        self.assertTrue(first["vulnerability.remediation"].startswith("vendor_fix: Update to the latest"))
        self.assertEqual(first["csaf.tracking_id"], "BSI-2022-0001")
        self.assertEqual(first["csaf.tracking_version"], "1")
        self.assertEqual(first["csaf.category"], "csaf_security_advisory")
        self.assertEqual(first["csaf.publisher"], "Bundesamt für Sicherheit in der Informationstechnik")
        self.assertEqual(first["csaf.initial_release_date"], "2022-03-17T13:03:42.105000+00:00")
        self.assertEqual(first["sharing.tlp"], "CLEAR")
        self.assertEqual(first["tlp"], "WHITE")
        self.assertEqual(first["feed.name"], "CSAF test feed")
        self.assertEqual({e["product.version"] for e in events},
                         {"1.0.0-alpha", "1.0.0-dev1", "1.0.0-dev2", "1.0.0-dev3", "1.0.0-rc1"})
        self.assertValidEvents()

    def test_document_url_from_report(self):
        url = "https://example.org/.well-known/csaf/white/2022/bsi-2022-0001.json"
        self.input_message = report("advisories/bsi-2022-0001.json", feed__url=url)
        self.run_bot()
        self.assertEqual({e["csaf.document_url"] for e in self.output_events()}, {url})

    def test_large_cisa_advisory(self):
        """icsa-23-348-10: 705 KB, 404 vulnerabilities, every one affects the same 5 products."""
        self.input_message = report("advisories/icsa-23-348-10.json")
        self.run_bot()
        events = self.output_events()
        self.assertEqual(len(events), 2020)
        self.assertEqual(len({e["product.vulnerabilities"] for e in events}), 404)
        self.assertTrue(all(e["csaf.tracking_id"] == "ICSA-23-348-10" for e in events))
        raw = json.loads(base64.b64decode(events[0]["raw"]))
        self.assertEqual(raw["cve"], events[0]["classification.identifier"])

    def test_vex_relationships_red_hat(self):
        """Red Hat per-CVE VEX, 761 products: statuses per product, names through relationships."""
        self.input_message = report("advisories/cve-2023-33201.json")
        self.run_bot()
        events = self.output_events()
        statuses = {e["vulnerability.product_status"] for e in events}
        self.assertIn("known_not_affected", statuses)
        affected = [e for e in events if e["vulnerability.product_status"] == "known_affected"]
        self.assertTrue(affected)
        self.assertTrue(all(e["classification.type"] == "vulnerable-system" for e in affected))
        not_affected = [e for e in events if e["vulnerability.product_status"] == "known_not_affected"]
        self.assertTrue(all(e["classification.type"] == "other" for e in not_affected))
        sample = next(e for e in affected if e["extra.csaf_product_id"] == "cryostat_2:bouncycastle")
        self.assertEqual(sample["product.full_name"], "bouncycastle as a component of Cryostat 2")
        self.assertEqual(sample["extra.product_platform"], "Cryostat 2")
        self.assertEqual(sample["product.vendor"], "red hat")

    def test_vex_profile_cisa(self):
        self.input_message = report("advisories/va-24-201-01.json")
        self.run_bot()
        events = self.output_events()
        self.assertEqual({e["csaf.category"] for e in events}, {"csaf_vex"})
        self.assertIn("fixed", {e["vulnerability.product_status"] for e in events})

    def test_vex_statuses_parameter(self):
        self.input_message = report("advisories/va-24-201-01.json")
        self.run_bot(parameters={"vex_statuses": ["known_affected"]})
        self.assertEqual({e["vulnerability.product_status"] for e in self.output_events()}, {"known_affected"})

    def test_informational_advisory_one_event(self):
        self.input_message = report("advisories/rhsa-2019_1862.json")
        self.run_bot()
        events = self.output_events()
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["csaf.category"], "csaf_informational_advisory")
        self.assertEqual(events[0]["classification.type"], "other")
        self.assertEqual(events[0]["severity"], "info")
        self.assertEqual(events[0]["csaf.tracking_id"], "RHSA-2019:1862")

    def test_text_severity_without_cvss(self):
        """RHSA-2022:0011 lists only fixed packages and rates the impact 'Important' (no CVSS)."""
        self.input_message = report("advisories/rhsa-2022_0011.json")
        self.run_bot()
        events = self.output_events()
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]["severity"], "high")
        self.assertNotIn("vulnerability.product_status", events[0])

    def test_absent_tlp_gets_default_and_logs(self):
        self.input_message = report("advisories/2022-evd-uc-01-a-001.json")
        self.run_bot(parameters={"default_tlp": "RED"})
        events = self.output_events()
        self.assertEqual({e["sharing.tlp"] for e in events}, {"RED"})
        self.assertRegexpMatchesLog(r"Advisory 2022-EVD-UC-01-A-001 \(CSAF test feed\) has no TLP label, "
                                    r"default RED applied\.")

    def test_feed_tlp_more_restrictive_wins(self):
        self.input_message = report("advisories/bsi-2022-0001.json", sharing__tlp="AMBER")
        self.run_bot()
        self.assertEqual({e["sharing.tlp"] for e in self.output_events()}, {"AMBER"})

    def test_feed_tlp_used_when_document_has_none(self):
        self.input_message = report("advisories/2022-evd-uc-01-a-001.json", sharing__tlp="GREEN")
        self.run_bot()
        self.assertEqual({e["sharing.tlp"] for e in self.output_events()}, {"GREEN"})

    def test_csaf21_labels(self):
        for path, label, stock in (("csaf21/oasis_csaf_tc-csaf_2_1-2024-6-1-38-11.json", "RED", "RED"),
                                   ("csaf21/oasis_csaf_tc-csaf_2_1-2024-6-1-38-12.json", "AMBER+STRICT", "RED"),
                                   ("csaf21/bsi-2022-0001.json", "CLEAR", "WHITE")):
            with self.subTest(path=path):
                self.input_message = report(path)
                self.run_bot()
                events = self.output_events()
                self.assertTrue(events)
                self.assertEqual({e["sharing.tlp"] for e in events}, {label})
                self.assertEqual({e["tlp"] for e in events}, {stock})

    def test_schema_invalid_real_document_is_dumped(self):
        """rhba-2023_0564 (real): empty tracking.id and publisher.name fail the schema."""
        self.input_message = report("advisories/rhba-2023_0564.json")
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"not a valid CSAF 2\.0 document \(tracking id ''\): "
                                    r"\$\.document\.publisher\.name: '' should be non-empty")

    def test_malformed_documents_are_dumped_not_crashed(self):
        cases = {
            "malformed-cvss-score.json": r"tracking id 'ICSMA-17-009-01A'\): \$\.vulnerabilities\[0\]\.scores\[0\]\.cvss_v3",
            "malformed-tlp-label.json": r"\$\.document\.distribution\.tlp\.label: 'PURPLE' is not one of",
            "malformed-no-tracking.json": r"tracking id \(none\)\): \$\.document: 'tracking' is a required property",
            "malformed-truncated.json": r"CSAF test feed:103: not valid JSON",
            "malformed-array.json": r"a CSAF document is a JSON object, not list",
        }
        for name, pattern in cases.items():
            with self.subTest(name=name):
                self.input_message = report(f"advisories/{name}")
                self.run_bot(allowed_error_count=1)
                self.assertOutputQueueLen(0)
                self.assertRegexpMatchesLog(pattern)

    def test_bot_goes_on_after_invalid_document(self):
        self.input_message = [report("advisories/malformed-truncated.json"),
                              report("advisories/icsma-17-009-01a.json")]
        self.run_bot(iterations=2, allowed_error_count=1)
        events = self.output_events()
        self.assertEqual({e["csaf.tracking_id"] for e in events}, {"ICSMA-17-009-01A"})

    def test_every_feed_label_counts(self):
        """The report's labels are read with the TLP core's reader: an extra.tlp RED beside a
        sharing.tlp GREEN feed label is RED (only sharing.tlp was read before)."""
        self.input_message = report("advisories/bsi-2022-0001.json", sharing__tlp="GREEN", extra__tlp="RED")
        self.run_bot()
        self.assertEqual({e["sharing.tlp"] for e in self.output_events()}, {"RED"})

    def test_feed_hide_flag_reaches_the_events(self):
        self.input_message = report("advisories/bsi-2022-0001.json", sharing__do_not_disclose_source=True)
        self.run_bot()
        self.assertEqual({e.get("sharing.do_not_disclose_source") for e in self.output_events()}, {True})

    def test_hostile_reports_dumped_naming_the_problem_bot_goes_on(self):
        bsi = (FIX / "advisories" / "bsi-2022-0001.json").read_bytes()
        cases = {
            "duplicate key": (bsi.replace(b'"category"', b'"category": "x", "category"', 1),
                              r"CSAF test feed: not accepted JSON: duplicate key 'category'"),
            "not UTF-8": (bsi.replace(b"CVRF", b"CV\xffRF", 1), r"CSAF test feed: not UTF-8"),
            "huge number": (bsi[:-2] + b', "x": 1' + b"0" * 5000 + b"}", r"a number of 5001 characters"),
            "look-alike feed label": (bsi, r"report field extra\.tlp_label: look-alike"),
        }
        for name, (raw, pattern) in cases.items():
            with self.subTest(name=name):
                bad = report("advisories/bsi-2022-0001.json")
                bad["raw"] = base64.b64encode(raw).decode()
                if name == "look-alike feed label":
                    bad["extra.tlp_label"] = "TLP:\u0280ED"
                self.input_message = [bad, report("advisories/icsma-17-009-01a.json")]
                self.run_bot(iterations=2, allowed_error_count=1)
                self.assertEqual({e["csaf.tracking_id"] for e in self.output_events()}, {"ICSMA-17-009-01A"})
                self.assertRegexpMatchesLog(pattern)

    def test_check(self):
        self.assertIsNone(CrossBorderCSAFParserBot.check({"default_tlp": "amber", "statuses": ["fixed"]}))
        self.assertEqual(CrossBorderCSAFParserBot.check({"default_tlp": "BLUE"})[0][0], "error")
        self.assertIn("unknown product status(es) affected",
                      CrossBorderCSAFParserBot.check({"statuses": "affected"})[0][1])

    def test_manager_empty_optional_parameters_mean_the_defaults(self):
        # IntelMQ Manager saves an untouched optional field as '': every optional parameter
        empty = {"default_tlp": "", "statuses": "", "vex_statuses": ""}
        self.assertIsNone(CrossBorderCSAFParserBot.check(empty))
        self.input_message = report("advisories/2022-evd-uc-01-a-001.json")
        self.run_bot(parameters=empty)
        events = self.output_events()
        self.assertTrue(events)
        self.assertEqual({e["sharing.tlp"] for e in events}, {"AMBER"})           # default_tlp's default
        self.assertEqual(self.bot.statuses, list(csaf.AFFECTED_STATUSES))
        self.assertEqual(self.bot.vex_statuses, list(csaf.ALL_STATUSES))


if __name__ == "__main__":
    unittest.main()
