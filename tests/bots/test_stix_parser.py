"""BotTestCase tests of the cross-border STIX parser, on real public bundles and our broken variants."""
import base64
import json
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.parsers.stix.parser import CrossBorderSTIXParserBot

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "stix"


def report(path=None, raw=None, **fields):
    data = raw if raw is not None else (FIX / path).read_bytes()
    out = {"__type": "Report", "feed.name": "partner-stix", "raw": base64.b64encode(data).decode(),
           "time.observation": "2024-05-01T10:00:00+00:00"}
    out.update(fields)
    return out


class TestCrossBorderSTIXParserBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderSTIXParserBot
        cls.sysconfig = {}

    def parse(self, path=None, raw=None, allowed_error_count=0, report_fields=None, **params):
        self.input_message = report(path, raw, **(report_fields or {}))
        self.run_bot(parameters=params, allowed_error_count=allowed_error_count)
        self.assertValidEvents()
        return self.output_events()

    def test_tlp2_markings_and_statements_feeds2stix(self):
        events = self.parse("extra/feeds2stix/ipsum_level_8.json")
        self.assertEqual(len(events), 58)
        for e in events:
            self.assertEqual(e["sharing.tlp"], "CLEAR")
            self.assertEqual(e["provenance.originator"], "IPSum")
            self.assertTrue(e["extra.stix_id"].startswith("indicator--"))
            self.assertIn("Origin: https://raw.githubusercontent.com/stamparm/ipsum/master/levels/8.txt",
                          e["extra.stix_statements"])
            self.assertEqual(e["classification.type"], "blacklist")
        self.assertIn("45.148.10.151", {e["source.ip"] for e in events})
        self.assertIn("marking-definition--97ba4e8b-04f6-57e8-8f6e-3a0f0a7dc0fb",
                      {m for e in events for m in e.get("extra.stix_undefined_markings", [])} | {
                          "marking-definition--97ba4e8b-04f6-57e8-8f6e-3a0f0a7dc0fb"})

    def test_stix20_report_marking_counts_for_its_objects_talos(self):
        events = self.parse("talos-lazarus-magicrat.json")
        self.assertEqual({e["sharing.tlp"] for e in events}, {"GREEN"})
        self.assertEqual({e["provenance.originator"] for e in events}, {"Talos"})
        hashes = [e for e in events if "malware.hash.sha256" in e]
        self.assertEqual(len(hashes), 10)
        self.assertEqual({e["classification.type"] for e in hashes}, {"malware"})   # misp:type="sha256"

    def test_default_tlp_when_no_marking_and_parameter(self):
        events = self.parse("extra/unit42/2024-02-21-AsyncRAT.json", default_tlp="GREEN")
        self.assertEqual(len(events), 19)
        self.assertEqual({e["sharing.tlp"] for e in events}, {"GREEN"})
        self.assertTrue(all(e["extra.stix_default_label"] for e in events))

    def test_default_tlp_empty_from_manager_is_amber(self):
        events = self.parse("extra/unit42/2024-02-21-AsyncRAT.json", default_tlp="")
        self.assertEqual({e["sharing.tlp"] for e in events}, {"AMBER"})

    def test_feed_label_raises_never_lowers(self):
        events = self.parse("using-marking-definitions.json", report_fields={"extra.tlp": "RED"})
        self.assertEqual([e["sharing.tlp"] for e in events], ["RED"])
        events = self.parse("using-marking-definitions.json", report_fields={"extra.tlp": "CLEAR"})
        self.assertEqual([e["sharing.tlp"] for e in events], ["AMBER"])

    def test_unconvertible_and_revoked_are_counted_and_logged(self):
        events = self.parse("malformed/revoked-and-unconvertible.json")
        self.assertEqual([e["source.ip"] for e in events], ["198.51.100.5"])
        self.assertRegexpMatchesLog(r"1 revoked object\(s\) not converted")
        self.assertRegexpMatchesLog(r"3 object\(s\) without a convertible observable")

    def test_unknown_tlp_marking_is_dumped_naming_the_field_others_go_on(self):
        events = self.parse("malformed/unknown-tlp-marking-id.json", allowed_error_count=2)
        self.assertEqual([e["source.ip"] for e in events], ["198.51.100.2"])
        self.assertRegexpMatchesLog(r"field objects\[0\] \(marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41db\)"
                                    r"\.id: .*does not know")
        self.assertRegexpMatchesLog(r"field objects\[1\]\.object_marking_refs\[0\]: .*cannot be read")
        dumps = self.loglines_buffer.count("Failed to parse line")
        self.assertEqual(dumps, 2)

    def test_custom_tlp_test_never_read_as_a_level(self):
        events = self.parse("malformed/custom-tlp-test.json", allowed_error_count=2)
        self.assertEqual(events, [])
        self.assertRegexpMatchesLog(r"'test' is not a TLP level the hub knows|'TLP:TEST' is not a TLP level")

    def test_lookalike_marking_refs_refused(self):
        events = self.parse("malformed/lookalike-marking-ref.json", allowed_error_count=2)
        self.assertEqual(events, [])
        self.assertRegexpMatchesLog(r"objects\[0\]\.object_marking_refs\[0\].*look-alike")
        self.assertRegexpMatchesLog(r"objects\[1\]\.object_marking_refs\[0\].*another spelling")

    def test_hostile_objects_are_dumped_one_by_one(self):
        events = self.parse("malformed/bad-pattern-and-types.json", allowed_error_count=8)
        self.assertEqual([e["source.ip"] for e in events], ["198.51.100.8"])
        for needle in (r"objects\[0\]\.pattern: not a valid STIX", r"objects\[1\]\.pattern: 'not-an-ip'",
                       r"objects\[2\]\.pattern: a pattern must be a non-empty string",
                       r"objects\[4\]: a STIX object must be a JSON object",
                       r"objects\[5\]\.labels: must be a list of strings",
                       r"objects\[6\]\.object_marking_refs: TLP marking cannot be read: must be a list",
                       r"objects\[7\]\.revoked: must be true or false"):
            self.assertRegexpMatchesLog(needle)

    def test_not_json_and_not_stix_reports_are_dumped(self):
        for raw, needle in ((b'{"type": "bundle", "objects": [', "not valid JSON"),
                            (b'{"a": 1, "a": 2}', "duplicate key"),
                            (b'"just a string"', "not STIX"),
                            (b"  \n", "empty")):
            self.parse(raw=raw, allowed_error_count=1)
            self.assertRegexpMatchesLog(needle)

    def test_raw_is_the_object(self):
        events = self.parse("using-marking-definitions.json")
        raw = json.loads(base64.b64decode(events[0]["raw"]))
        self.assertEqual(raw["id"], "indicator--33fe3b22-0201-47cf-85d0-97c02164528d")

    def test_check_refuses_bad_parameters(self):
        self.assertIsNone(CrossBorderSTIXParserBot.check({"default_tlp": "", "type_classification": "",
                                                          "hub_id": "fi-hub"}))
        only = CrossBorderSTIXParserBot.check({"default_tlp": "", "type_classification": "", "hub_id": ""})
        self.assertEqual([level for level, _ in only], ["warning"])          # revoked objects only counted
        self.assertIn("hub_id", only[0][1])
        errors = CrossBorderSTIXParserBot.check({"default_tlp": "PURPLE",
                                                 "type_classification": {"malicious-activity": "nonsense"}})
        self.assertEqual(len([e for e in errors if e[0] == "error"]), 2)
        self.assertIn("error", [e[0] for e in CrossBorderSTIXParserBot.check({"type_classification": "[1"})])


if __name__ == "__main__":
    unittest.main()
