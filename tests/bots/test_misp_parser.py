"""BotTestCase tests of the cross-border MISP parser, on real MISP events and our variants."""
import base64
import json
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.parsers.misp.parser import CrossBorderMISPParserBot

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "misp"


def report(path, **fields):
    raw = (FIX / path).read_bytes()
    out = {"__type": "Report", "feed.name": "member-misp", "raw": base64.b64encode(raw).decode(),
           "time.observation": "2024-05-01T10:00:00+00:00"}
    out.update(fields)
    return out


class TestCrossBorderMISPParserBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPParserBot
        cls.sysconfig = {}

    def parse(self, path, allowed_error_count=0, **params):
        self.input_message = report(path)
        self.run_bot(parameters=params, allowed_error_count=allowed_error_count)
        return self.output_events()

    def by_uuid(self, events):
        return {e["misp.attribute_uuid"]: e for e in events}

    def test_event_wrapper_and_attribute_types(self):
        events = self.parse("ours/sighting-attribute-tlp-types.json")
        by_type = {}
        for e in events:
            by_type.setdefault(e["extra.misp_type"], []).append(e)
        self.assertEqual(by_type["ip-dst|port"][0]["destination.ip"], "198.51.100.7")
        self.assertEqual(by_type["ip-dst|port"][0]["destination.port"], 8443)
        self.assertEqual(by_type["ip-src"][0]["source.ip"], "203.0.113.9")
        self.assertEqual(by_type["AS"][0]["source.asn"], 64500)
        self.assertEqual((by_type["domain|ip"][0]["source.fqdn"], by_type["domain|ip"][0]["source.ip"]),
                         ("c2.example.net", "192.0.2.55"))
        self.assertEqual(by_type["email-src"][0]["source.account"], "phish@example.org")
        self.assertEqual(by_type["filename|sha256"][0]["malware.hash.sha256"], "a" * 64)
        self.assertEqual(by_type["filename|sha256"][0]["extra.file_name"], "dropper.exe")
        vuln = by_type["vulnerability"][0]
        self.assertEqual((vuln["classification.identifier"], vuln["product.vulnerabilities"]),
                         ("cve-2021-44228", "cve-2021-44228"))
        self.assertEqual(vuln["classification.type"], "vulnerable-system")
        self.assertEqual(by_type["url"][0]["source.url"], "http://sistemait.it/softaculous/backup/client.rar")
        self.assertNotIn("regkey", by_type)       # counted, not emitted
        self.assertRegexpMatchesLog(r"1 attribute\(s\) without an IntelMQ field not converted: regkey=1\.")
        self.assertEqual(len(events), 12)
        for e in events:
            self.assertEqual(e["misp.event_uuid"], "5b646415-7b48-40d5-86b4-c0070acd0835")
            self.assertEqual(e["provenance.originator"], "Synovus Financial")
            self.assertEqual(e["feed.name"], "member-misp")

    def test_attribute_tag_wins_only_when_more_restrictive(self):
        events = self.by_uuid(self.parse("ours/sighting-attribute-tlp-types.json"))
        self.assertEqual(events["5b6464ca-e73c-4707-9b8a-d0350acd0835"]["sharing.tlp"], "AMBER")   # tlp:amber on attr
        self.assertEqual(events["5b6464ca-45f8-43d0-8b78-d0350acd0835"]["sharing.tlp"], "GREEN")   # tlp:clear on attr
        self.assertEqual(events["5b6464ca-45f8-43d0-8b78-d0350acd0835"]["classification.type"], "c2-server")
        self.assertEqual(events["5b6464ca-8c84-4c2d-95d9-d0350acd0835"]["sharing.tlp"], "GREEN")   # event tag

    def test_to_ids_false_kept_or_dropped(self):
        kept = self.by_uuid(self.parse("ours/sighting-attribute-tlp-types.json"))
        self.assertIs(kept["5b6464ca-8c84-4c2d-95d9-d0350acd0835"]["extra.misp_to_ids"], False)
        dropped = self.by_uuid(self.parse("ours/sighting-attribute-tlp-types.json", keep_non_ids=False))
        self.assertNotIn("5b6464ca-8c84-4c2d-95d9-d0350acd0835", dropped)
        self.assertEqual(len(dropped), len(kept) - 1)

    def test_tlp_clear_and_rsit_event_tag(self):
        events = self.parse("ours/endor-tlp-clear.json")
        self.assertEqual(len(events), 11)
        self.assertEqual({e["sharing.tlp"] for e in events}, {"CLEAR"})
        self.assertEqual({e["classification.type"] for e in events}, {"malware-distribution"})
        self.assertEqual({e["misp.distribution"] for e in events}, {3})

    def test_amber_strict_chr_and_distribution_levels(self):
        events = self.parse("ours/regin-amber-strict-sharing-group.json")
        self.assertEqual(len(events), 27)
        self.assertEqual({e["sharing.tlp"] for e in events}, {"AMBER+STRICT"})
        self.assertTrue(all(e["sharing.do_not_disclose_source"] is True for e in events))
        source = json.loads((FIX / "ours/regin-amber-strict-sharing-group.json").read_text())["Event"]
        own = {a["uuid"]: a["distribution"] for a in source["Attribute"]}
        expected = {"0": 0, "1": 1, "2": 2, "3": 3, "5": 3, "4": 4}   # 5 inherits the event's 3
        for e in events:
            self.assertEqual(e["misp.distribution"], expected[own[e["misp.attribute_uuid"]]])
            if e["misp.distribution"] == 4:
                self.assertEqual(e["misp.sharing_group_uuid"], "5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10")
            else:
                self.assertNotIn("misp.sharing_group_uuid", e)
        self.assertEqual({e["misp.distribution"] for e in events}, {0, 1, 2, 3, 4})

    def test_response_wrapper_objects_and_galaxies_tlp_red(self):
        events = self.parse("misp-training/misp.event.flutbot.json")
        self.assertEqual({e["sharing.tlp"] for e in events}, {"RED"})
        self.assertEqual({e["misp.distribution"] for e in events}, {0})
        objects = [e for e in events if "extra.misp_object_name" in e]
        self.assertTrue(objects)
        self.assertIn("url", {e["extra.misp_object_name"] for e in objects})
        self.assertTrue(all(e["extra.misp_galaxies"] for e in events))
        self.assertIn("vulnerability", {e["extra.misp_type"] for e in events})

    def test_large_event_with_attachment(self):
        events = self.parse("eset/ebury.misp.json")
        self.assertEqual(len(events), 191)
        self.assertNotIn("sharing.tlp", events[0])      # no TLP tag: left to the TLP expert's default
        self.assertRegexpMatchesLog(r"text=165.*attachment=1")
        self.assertEqual({e["extra.misp_object_name"] for e in events} >= {"file"}, True)

    def test_tlp_white_and_amber_real_events(self):
        # long_event has 11 "url" attributes without a scheme: 7 are hosts (kept, http:// added), 4 are
        # no URLs ('igfxtray.exe', 'Data/dtl.dat', 'Data/glp.uin', '107.183.86'): each of those is dumped
        events = self.parse("pymisp/long_event.json", 4)
        self.assertEqual({e["sharing.tlp"] for e in events}, {"CLEAR"})
        self.assertRegexpMatchesLog(r"field Attribute\[[0-9a-f-]+\]\.value: value 'igfxtray\.exe' does not fit type "
                                    r"url: no scheme, and 'igfxtray\.exe' looks like a file name, not a host")
        kept = {e["source.url"] for e in events if e.get("extra.misp_url_scheme_added")}
        self.assertEqual(len(kept), 7)
        self.assertIn("http://www.kcico.com.tw/data/openwebmail/doc/wthk.txt", kept)
        self.assertIn("http://www.whitewall.top", kept)
        self.assertEqual({e["sharing.tlp"] for e in self.parse("misp-training/2856-ransomware-exercice.json")},
                         {"AMBER"})

    def test_type_classification_parameter(self):
        events = self.parse("pymisp/long_event.json", 4, type_classification={"md5": "infected-system"})
        md5 = [e for e in events if e["extra.misp_type"] == "md5"]
        self.assertEqual({e["classification.type"] for e in md5}, {"infected-system"})

    def url_event(self, *values):
        event = {"Event": {"uuid": "5b646415-7b48-40d5-86b4-c0070acd0835", "info": "urls", "Tag": [{"name": "tlp:green"}],
                           "Attribute": [{"type": "url", "value": v, "to_ids": True,
                                          "uuid": f"00000000-0000-4000-8000-{i:012d}"} for i, v in enumerate(values)]}}
        return {"__type": "Report", "feed.name": "member-misp", "time.observation": "2024-05-01T10:00:00+00:00",
                "raw": base64.b64encode(json.dumps(event, ensure_ascii=False).encode()).decode()}

    def test_url_without_scheme_is_kept(self):
        # issue 14: real MISP url attributes often have no scheme; http:// is added and flagged
        self.input_message = self.url_event("evil.example/login?id=42", "evil.example/x\n", " 192.0.2.7:8080/a ",
                                            "\u0435vil.example/login", "https://ok.example/")
        self.run_bot()
        got = [(e["source.url"], e.get("extra.misp_url_scheme_added")) for e in self.output_events()]
        self.assertEqual(got, [("http://evil.example/login?id=42", True), ("http://evil.example/x", True),
                               ("http://192.0.2.7:8080/a", True), ("http://\u0435vil.example/login", True),
                               ("https://ok.example/", None)])

    def test_url_without_scheme_that_is_no_url_is_dumped(self):
        # white space inside, a look-alike separator, no host: each dumped alone with the reason, never dropped
        self.input_message = self.url_event("evil.example/a b", "evil .example/x", "evil\u3002example/x",
                                            "evil.example\uff0flogin", "Data/dtl.dat", "evil.example/ok")
        self.run_bot(allowed_error_count=5)
        self.assertEqual([e["source.url"] for e in self.output_events()], ["http://evil.example/ok"])
        self.assertRegexpMatchesLog(r"value 'evil\.example/a b' does not fit type url: no scheme, and white space")
        self.assertRegexpMatchesLog("value 'evil\u3002example/x' does not fit type url: no scheme, and "
                                    "'evil\u3002example' is not a host")
        self.assertEqual(self.loglines_buffer.count("does not fit type url"), 5)

    def test_manager_empty_values_for_every_optional_parameter(self):
        empty = {"keep_non_ids": "", "type_classification": "", "default_classification": "", "include_tags": ""}
        self.assertIsNone(CrossBorderMISPParserBot.check(empty))
        events = self.parse("ours/sighting-attribute-tlp-types.json", **empty)
        self.assertEqual(len(events), 12)                    # keep_non_ids: default true
        self.assertTrue(all("extra.misp_tags" in e for e in events if e["extra.misp_type"] == "ip-src"))

    def test_not_misp_json_is_dumped(self):
        self.input_message = report("ours/malformed-not-misp.json")
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"not MISP event JSON")

    def test_truncated_json_is_dumped(self):
        self.input_message = report("ours/malformed-truncated.json")
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"report of feed member-misp:1: not valid JSON")

    def test_bad_tlp_tag_dumps_the_event_once(self):
        self.input_message = report("ours/malformed-bad-tlp-tag.json")
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"field Event\.Tag\[2\]\.name: 'tlp:purple' is not a TLP label")

    def test_hostile_reports_and_tags_dumped_naming_the_field_bot_goes_on(self):
        uuid = "5f6e7d8c-0000-4000-8000-000000000001"

        def doc(event_tags=(), attr_tags=()):
            return {"Event": {"uuid": uuid, "info": "test", "Tag": list(event_tags), "Attribute": [
                {"uuid": "5f6e7d8c-0000-4000-8000-00000000000a", "type": "ip-src", "value": "192.0.2.1",
                 "to_ids": True, "Tag": list(attr_tags)}]}}

        good = json.dumps(doc(event_tags=[{"name": "tlp:green"}])).encode()
        cases = {
            "look-alike event tag": (json.dumps(doc(event_tags=[{"name": "tlp\u200b:red"}])).encode(),
                                     r"field Event\.Tag\[0\]\.name: look-alike"),
            "look-alike attribute tag": (json.dumps(doc(attr_tags=[{"name": "tlp\uff1ared"}])).encode(),
                                         r"Attribute\[5f6e7d8c-0000-4000-8000-00000000000a\]\.Tag\[0\]\.name: "
                                         r"look-alike"),
            "bare string tag": (json.dumps(doc(event_tags=["tlp:red"])).encode(),
                                r"field Event\.Tag\[0\]: a tag must be MISP's"),
            "duplicate key": (good.replace(b'"info"', b'"info": "x", "info"', 1), r"duplicate key 'info'"),
            "not UTF-8": (good.replace(b"test", b"te\xffst", 1), r"member-misp: not UTF-8"),
        }
        for name, (raw, pattern) in cases.items():
            with self.subTest(name=name):
                bad = report("ours/malformed-bad-tlp-tag.json")
                bad["raw"] = base64.b64encode(raw).decode()
                ok = report("ours/malformed-bad-tlp-tag.json")
                ok["raw"] = base64.b64encode(good).decode()
                self.input_message = [bad, ok]
                self.run_bot(iterations=2, allowed_error_count=1)
                out = self.output_events()
                self.assertEqual([e["sharing.tlp"] for e in out], ["GREEN"])
                self.assertRegexpMatchesLog(pattern)

    def test_feed_labels_of_the_report_count(self):
        """A report labelled RED (the feed's label) never gives GREEN events because the tags say GREEN."""
        doc = {"Event": {"uuid": "5f6e7d8c-0000-4000-8000-000000000001", "info": "t", "Tag": [{"name": "tlp:green"}],
                         "Attribute": [{"type": "ip-src", "value": "192.0.2.1", "to_ids": True}]}}
        message = report("ours/malformed-bad-tlp-tag.json", **{"sharing.tlp": "RED",
                                                                 "sharing.do_not_disclose_source": True})
        message["raw"] = base64.b64encode(json.dumps(doc).encode()).decode()
        self.input_message = message
        self.run_bot()
        out, = self.output_events()
        self.assertEqual((out["sharing.tlp"], out["sharing.do_not_disclose_source"]), ("RED", True))

    def test_check(self):
        self.assertIsNone(CrossBorderMISPParserBot.check({"type_classification": {"md5": "malware"}}))
        self.assertEqual(CrossBorderMISPParserBot.check({"type_classification": {"md5": "evil"}}),
                         [["error", "'evil' is not an IntelMQ classification.type."]])


if __name__ == "__main__":
    unittest.main()
