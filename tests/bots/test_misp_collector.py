"""BotTestCase tests of the cross-border MISP collector against a local fake MISP server."""
import base64
import copy
import io
import json
import logging
import os
import shutil
import tempfile
import unittest
import uuid
from pathlib import Path
from unittest import mock

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.testing.fake_misp import FakeMISP

from intelmq_crossborder.bots.collectors.misp.collector import CrossBorderMISPCollectorBot

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "misp"
KEY = "collector-Key-9876543210zyxwvutsrqponmlkjihgf"


def real_event(path):
    data = json.loads((FIX / path).read_text())
    return data["response"][0]["Event"] if "response" in data else data["Event"]


class TestCrossBorderMISPCollectorBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPCollectorBot
        cls.sysconfig = {"misp_url": "http://127.0.0.1:9/", "misp_api_token": KEY, "retry_backoff": 0.001,
                         "name": "member-misp"}

    def setUp(self):
        super().setUp()
        self.srv = FakeMISP(key=KEY).__enter__()
        self.addCleanup(self.srv.__exit__)
        self.tmp = Path(tempfile.mkdtemp(prefix="misp-collector-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.state = str(self.tmp / "state.json")
        base = real_event("pymisp/sighting_1.json")
        self.uuids = []
        for i in range(7):                       # 7 events: pages of 3 -> 3, 3, 1
            ev = copy.deepcopy(base)
            ev["uuid"] = str(uuid.UUID(int=i + 1))
            ev["timestamp"] = str(1_700_000_000 + i)
            ev["Tag"] = ev["Tag"] + ([{"name": "hub:share"}] if i % 2 == 0 else [])
            self.srv.store(ev, published=(i != 6))
            self.uuids.append(ev["uuid"])

    def collect(self, allowed_error_count=0, allowed_warning_count=0, **params):
        params.setdefault("misp_url", self.srv.url)
        params.setdefault("state_file", self.state)
        params.setdefault("page_size", 3)
        self.run_bot(parameters=params, allowed_error_count=allowed_error_count,
                     allowed_warning_count=allowed_warning_count)
        return [json.loads(base64.b64decode(r["raw"]))["Event"]["uuid"] for r in self.output_reports()]

    def output_reports(self):
        return self.output_events()

    def searches(self):
        return [r[2] for r in self.srv.requests if r[1] == "/events/restSearch"]

    def test_pages_and_one_report_per_event(self):
        got = self.collect(published_only=False)
        self.assertEqual(got, self.uuids)
        self.assertEqual([(q["page"], q["limit"]) for q in self.searches()], [(1, 3), (2, 3), (3, 3)])
        report = self.output_reports()[0]
        self.assertEqual(report["feed.name"], "member-misp")
        self.assertEqual(report["feed.url"], f"{self.srv.url}events/view/{self.uuids[0]}")
        self.assertEqual(report["provenance.originator"], "Synovus Financial")
        self.assertEqual(json.loads(base64.b64decode(report["raw"]))["Event"]["info"], "Ursnif, MALWAREMESSIAGH")

    def test_filters_tags_org_published(self):
        got = self.collect(search_tags=["hub:share"], search_org="Synovus Financial")
        self.assertEqual(got, [self.uuids[i] for i in (0, 2, 4)])     # 6 is tagged but not published
        query = self.searches()[0]
        self.assertEqual((query["tags"], query["org"], query["published"]),
                         (["hub:share"], "Synovus Financial", True))
        self.assertEqual(self.collect(search_org="Someone else"), [])

    def test_incremental_across_runs(self):
        self.assertEqual(len(self.collect()), 6)
        saved = json.loads(Path(self.state).read_text())
        self.assertEqual(saved["timestamp"], 1_700_000_005)
        self.assertEqual(self.collect(), [])                          # nothing changed: nothing emitted
        self.assertEqual(self.searches()[-1]["timestamp"], "1700000005")
        changed = self.srv.events[self.uuids[1]]
        changed["timestamp"] = "1700000100"                          # edited on the member's MISP
        new = copy.deepcopy(changed)
        new["uuid"], new["timestamp"], new["id"] = str(uuid.UUID(int=99)), "1700000100", "99"
        self.srv.events[new["uuid"]] = new
        self.assertEqual(self.collect(), [self.uuids[1], new["uuid"]])
        self.assertEqual(self.collect(), [])

    def test_failed_run_does_not_advance_state(self):
        self.srv.fail("/events/restSearch", 500, times=100)
        self.input_message = None
        self.run_bot(parameters={"misp_url": self.srv.url, "state_file": self.state, "page_size": 3,
                                 "retry_attempts": 1},
                     allowed_error_count=1, allowed_warning_count=1)
        self.assertFalse(Path(self.state).exists())
        self.srv.failures.clear()
        self.assertEqual(len(self.collect()), 6)

    def test_initial_since(self):
        self.assertEqual(self.collect(initial_since="1700000004", published_only=False), self.uuids[4:])

    def test_key_from_environment_never_logged(self):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        pymisp_logger = logging.getLogger("pymisp")
        old = pymisp_logger.level
        pymisp_logger.addHandler(handler)
        pymisp_logger.setLevel(logging.DEBUG)
        try:
            with mock.patch.dict(os.environ, {"HUB_MISP_KEY": KEY}):
                got = self.collect(misp_api_token="", misp_api_token_env="HUB_MISP_KEY", logging_level="DEBUG")
        finally:
            pymisp_logger.removeHandler(handler)
            pymisp_logger.setLevel(old)
        self.assertEqual(len(got), 6)
        self.assertIn("Authorization", stream.getvalue())
        self.assertNotIn(KEY, stream.getvalue() + self.loglines_buffer)

    def test_wrong_key_is_a_clear_error(self):
        self.run_bot(parameters={"misp_url": self.srv.url, "state_file": self.state,
                                 "misp_api_token": "wrong-key"}, allowed_error_count=1)
        self.assertRegexpMatchesLog(r"Unable to get the user settings: \(403, .*Authentication failed")
        self.assertNotIn("wrong-key", self.loglines_buffer)

    def test_manager_empty_values_for_every_optional_parameter(self):
        empty = {name: "" for name in ("misp_api_token", "misp_api_token_env", "misp_verify_ssl", "http_timeout_sec",
                                       "search_tags", "search_org", "published_only", "page_size", "state_file",
                                       "initial_since", "overlap_seconds", "with_attachments", "retry_attempts",
                                       "retry_backoff")}
        self.assertIsNone(CrossBorderMISPCollectorBot.check(dict(self.sysconfig, **empty)))
        with mock.patch.dict(os.environ, {"MISP_API_KEY": KEY}), \
                mock.patch("intelmq_crossborder.bots.collectors.misp.collector.VAR_STATE_PATH", str(self.tmp)):
            got = self.collect(**empty)
        self.assertEqual(got, self.uuids[:6])                      # published only, by default
        self.assertEqual([(q["page"], q["limit"]) for q in self.searches()], [(1, 50)])
        self.assertTrue((self.tmp / "test-bot.misp-state.json").exists())

    def test_check(self):
        self.assertIsNone(CrossBorderMISPCollectorBot.check(self.sysconfig))
        self.assertEqual(CrossBorderMISPCollectorBot.check({"misp_url": "x", "page_size": 0})[0][0], "error")


if __name__ == "__main__":
    unittest.main()
