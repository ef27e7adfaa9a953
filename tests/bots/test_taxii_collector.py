"""BotTestCase tests of the cross-border TAXII collector against a real TAXII 2.1 server (medallion,
memory backend) on a free local port; its reports go through the STIX parser bot."""
import base64
import json
import unittest
import uuid

from intelmq_crossborder.bots.collectors.taxii.collector import CrossBorderTAXIICollectorBot
from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.stix import export, markings
from intelmq_crossborder.testing.taxii_server import TAXIIServer
from tests.botcase import CrossBorderBotTestCase

AMBER_REF = tlp.to_stix_marking_id(tlp.Level.AMBER)
GREEN_REF = tlp.to_stix_marking_id(tlp.Level.GREEN)


def indicators(n, prefix, marked=None, modified="2026-11-20T08:00:00.000Z"):
    out = []
    for i in range(n):
        obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}", "created": modified,
               "modified": modified, "pattern": f"[ipv4-addr:value = '{prefix}.{i}']", "pattern_type": "stix",
               "valid_from": modified, "indicator_types": ["malicious-activity"]}
        if marked:
            obj["object_marking_refs"] = [marked]
        out.append(obj)
    return out


class TestCrossBorderTAXIICollectorBot(CrossBorderBotTestCase, unittest.TestCase):
    server: TAXIIServer = None

    @classmethod
    def setUpClass(cls):
        cls.server = TAXIIServer(["partner-feed", "other"], max_page_size=2).start()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.server.stop()

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderTAXIICollectorBot
        cls.sysconfig = {"taxii_url": cls.server.discovery_url, "collection": "partner-feed",
                         "username": cls.server.user, "password": cls.server.password, "page_size": 2,
                         "name": "partner TAXII feed", "retry_backoff": 0.01, "retry_attempts": 1}

    def setUp(self):
        super().setUp()
        self.server.stop()               # a fresh memory backend per test
        self.server.start()
        self.state = f"/tmp/taxii-collector-test-{uuid.uuid4()}.json"

    def run_collector(self, **params):
        self.run_bot(parameters={"state_file": self.state, **params}, iterations=1)
        return [json.loads(base64.b64decode(r["raw"])) if not r["raw"].lstrip().startswith("{") else
                json.loads(r["raw"]) for r in self.output_events()]

    def objects_of(self, bundles, kind="indicator"):
        return [o for b in bundles for o in b.get("objects", []) if o["type"] == kind]

    def test_pages_become_reports_and_runs_are_incremental(self):
        first = indicators(5, "10.1.1", marked=GREEN_REF)
        self.server.add("partner-feed", first)
        bundles = self.run_collector()
        self.assertEqual(len(bundles), 3)                     # pages of 2, 2, 1
        self.assertEqual(sorted(o["id"] for o in self.objects_of(bundles)), sorted(o["id"] for o in first))
        for b in bundles:
            self.assertEqual(b["type"], "bundle")
            self.assertEqual(export.validation_errors(b), [])
        self.assertEqual(self.run_collector(), [])            # nothing new
        second = indicators(2, "10.2.2", marked=GREEN_REF)
        self.server.add("partner-feed", second)
        self.assertEqual(sorted(o["id"] for o in self.objects_of(self.run_collector())),
                         sorted(o["id"] for o in second))
        # the instant the last run ended at is read again (the 5 emitted then are skipped)
        self.assertRegexpMatchesLog(r"Collected 2 STIX object\(s\) in 4 page\(s\) from 'partner-feed' since "
                                    r"\S+ \(5 already emitted\); state saved\.")
        report = self.output_events()[0]
        self.assertEqual(report["feed.url"], self.server.collection_url("partner-feed") + "objects/")
        self.assertEqual(report["feed.name"], "partner TAXII feed")

    def test_collection_by_id_through_the_api_root(self):
        self.server.add("other", indicators(1, "10.3.3"))
        bundles = self.run_collector(taxii_url=self.server.api_root_url,
                                     collection=self.server.collection_id("other"))
        self.assertEqual(len(self.objects_of(bundles)), 1)

    def test_default_tlp_only_where_objects_carry_none(self):
        unmarked, marked = indicators(1, "10.4.4"), indicators(1, "10.5.5", marked=GREEN_REF)
        self.server.add("partner-feed", unmarked + marked)
        bundles = self.run_collector(default_tlp="AMBER", page_size=10)
        by_id = {o["id"]: o for o in self.objects_of(bundles)}
        self.assertEqual(by_id[unmarked[0]["id"]]["object_marking_refs"], [AMBER_REF])
        self.assertEqual(by_id[marked[0]["id"]]["object_marking_refs"], [GREEN_REF])
        defined = markings.definitions(bundles[0]["objects"])
        self.assertEqual(defined[AMBER_REF].level, tlp.Level.AMBER)
        self.assertEqual(export.validation_errors(bundles[0]), [])

    def test_reports_parse_into_events_with_the_right_labels(self):
        from intelmq_crossborder.formats.stix import parse as stix_parse
        self.server.add("partner-feed", indicators(1, "10.6.6") + indicators(1, "10.7.7", marked=GREEN_REF))
        bundles = self.run_collector(default_tlp="AMBER", page_size=10)
        converter = stix_parse.Converter(default_tlp="CLEAR")
        events = [e for b in bundles for item in converter.items(stix_parse.loads(json.dumps(b).encode(), "test"))
                  for e in item.events]
        labels = {e["source.ip"]: tlp.event_tlp(e).label for e in events}
        self.assertEqual(labels, {"10.6.6.0": "AMBER", "10.7.7.0": "GREEN"})

    def test_unknown_collection_is_an_error_naming_what_there_is(self):
        self.run_bot(parameters={"state_file": self.state, "collection": "partner feed"}, allowed_error_count=1)
        self.assertRegexpMatchesLog(r"no collection 'partner feed' in API root .*partner-feed")
        self.assertIn("has blanks around it", CrossBorderTAXIICollectorBot.check(
            {"taxii_url": "http://x.example/", "collection": "partner-feed "})[0][1])

    def test_check_names_bad_parameters(self):
        problems = CrossBorderTAXIICollectorBot.check({"taxii_url": "", "collection": "c", "page_size": 0,
                                                       "default_tlp": "PURPLE", "initial_added_after": "soon"})
        text = " ".join(p[1] for p in problems)
        for words in ("taxii_url is required", "page_size must be at least 1", "default_tlp: unknown TLP label",
                      "initial_added_after 'soon' is not a timestamp"):
            self.assertIn(words, text)
