"""BotTestCase tests of the cross-border analytics expert (surge + campaign detectors)."""
import datetime as dt
import json
import os
import tempfile
import time
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.analytics import stage as analytics_stage
from intelmq_crossborder.bots.experts.analytics.expert import CrossBorderAnalyticsExpertBot

PATHS = ["_default", "early-warning"]
HOUR = 3600


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(microsecond=0).isoformat()


def ev(country, ip, when=None, tlp="GREEN", ctype="phishing", **extra):
    out = {"__type": "Event", "classification.taxonomy": "fraud", "classification.type": ctype,
           "source.ip": ip, "source.asn": 64500, "source.geolocation.cc": country, "sharing.tlp": tlp,
           "provenance.origin_hub": f"hub-{country.lower()}", "provenance.origin_country": country,
           "provenance.originator": f"secret-constituent-{country.lower()}", "comment": "internal note",
           "time.source": iso(time.time() - 600 if when is None else when)}
    out.update({k.replace("__", "."): v for k, v in extra.items()})
    return out


class AnalyticsBotCase(CrossBorderBotTestCase):
    sysconfig_extra: dict = {}

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderAnalyticsExpertBot
        cls.sysconfig = {"campaign_warmup": 0, "hub_id": "eu-hub", "country": "BE", "surge_warmup": 3600,
                         "state_interval": 0, "campaign_min_countries": 3, "campaign_min_hubs": 3}

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.state = self.dir / "state.json"
        self.journal = self.dir / "alerts.jsonl"

    def tearDown(self):
        self.tmp.cleanup()
        super().tearDown()

    def run_events(self, events, **params):
        allowed = {k: params.pop(k) for k in ("allowed_error_count", "allowed_warning_count") if k in params}
        self.input_message = events
        self.prepare_bot(parameters={"state_file": str(self.state), "alerts_file": str(self.journal), **params},
                         destination_queues=PATHS)
        self.run_bot(iterations=len(events), prepare=False, **allowed)
        return self.output_events(), self.output_events("early-warning")


class TestCampaigns(AnalyticsBotCase, unittest.TestCase):
    def test_three_countries_sharing_a_network_raise_one_candidate_and_tag_events(self):
        events = [ev("DE", "185.220.101.1"), ev("FR", "185.220.101.2"), ev("IT", "185.220.101.3"),
                  ev("AT", "185.220.101.4"), ev("PL", "45.33.32.1")]
        out, warnings = self.run_events(events)
        self.assertEqual(len(out), 5, "every event goes on")
        self.assertValidEvents()
        self.assertValidEvents("early-warning")
        ids = [e.get("extra.campaign_id") for e in out]
        self.assertIsNone(ids[0])
        self.assertIsNone(ids[1])
        self.assertTrue(ids[2] and ids[2].startswith("campaign-"))
        self.assertEqual(ids[3], ids[2], "the id is stable")
        self.assertIsNone(ids[4], "an event of another network is not part of it")
        self.assertEqual(len(warnings), 1, "one candidate per campaign")
        w = warnings[0]
        self.assertEqual(w["extra.early_warning_trigger"], "campaign")
        self.assertEqual(w["classification.identifier"], "crossborder-early-warning")
        self.assertEqual(w["sharing.tlp"], "GREEN")
        self.assertEqual(w["extra.contributing_countries"], ["DE", "FR", "IT"])
        self.assertEqual(w["extra.hub_count"], 3)
        self.assertEqual(w["extra.campaign_id"], ids[2])
        self.assertEqual(w["extra.reported_classification_type"], "phishing")
        self.assertEqual(w["provenance.origin_hub"], "eu-hub")
        text = json.dumps(w)
        for secret in ("185.220.101", "hub-de", "secret-constituent", "internal note", "64500"):
            self.assertNotIn(secret, text, "a candidate carries evidence only")
        records = [r for r, problem in analytics_stage.read_journal(self.journal)]
        self.assertEqual(len(records), 1)
        self.assertEqual(records[0]["alert"]["kind"], "campaign")

    def test_a_journal_that_cannot_be_written_does_not_cost_an_event(self):
        self.journal.mkdir()
        events = [ev("DE", "185.220.101.1"), ev("FR", "185.220.101.2"), ev("IT", "185.220.101.3")]
        out, warnings = self.run_events(events, allowed_error_count=1)
        self.assertEqual(len(out), 3)
        self.assertEqual(len(warnings), 1, "the candidate is sent all the same")
        self.assertIn("Could not write the alert to the journal", "\n".join(self.loglines))

    def test_a_retraction_passes_unchanged_and_is_never_observed(self):
        """A relabel carries retraction.new_tlp, which the label reader refuses: the expert passes
        retractions on to the router untouched (they are routed by the holdings, docs/retraction.md)."""
        from intelmq_crossborder.policy.retraction import new_retraction
        retraction = new_retraction("relabel", originator="hub-de", target_event_uuid="6c3b1f0e-5d4a-4c1b-9e8f-0a1b2c3d4e5f",
                                    reason="label too low", new_tlp="AMBER").to_event()
        message = {"__type": "Event", **retraction}
        out, warnings = self.run_events([message, ev("DE", "185.220.101.9")])
        self.assertEqual(warnings, [])
        self.assertEqual(len(out), 2)
        self.assertEqual({k: v for k, v in out[0].items() if k != "__type"}, retraction)
        self.assertNotIn("extra.campaign_id", out[0])

    def test_red_events_neither_count_nor_get_an_id(self):
        events = [ev("DE", "185.220.101.1", tlp="RED"), ev("FR", "185.220.101.2", tlp="RED"),
                  ev("IT", "185.220.101.3", tlp="RED")]
        out, warnings = self.run_events(events)
        self.assertEqual(warnings, [])
        self.assertEqual([e.get("extra.campaign_id") for e in out], [None] * 3)

    def test_a_green_event_never_carries_an_id_built_from_amber_events(self):
        events = [ev("DE", "185.220.101.1", tlp="AMBER"), ev("FR", "185.220.101.2"), ev("IT", "185.220.101.3"),
                  ev("AT", "185.220.101.4", tlp="AMBER"), ev("PL", "185.220.101.5")]
        out, warnings = self.run_events(events)
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["sharing.tlp"], "AMBER", "the candidate's TLP is its most restrictive input")
        ids = [e.get("extra.campaign_id") for e in out]
        self.assertIsNone(ids[2], "GREEN event, campaign built with an AMBER event")
        self.assertIsNone(ids[4])
        self.assertTrue(ids[3])

    def test_hidden_sources_are_counted_not_named(self):
        events = [ev("DE", "185.220.101.1"), ev("FR", "185.220.101.2", sharing__do_not_disclose_source=True),
                  ev("IT", "185.220.101.3")]
        _, warnings = self.run_events(events)
        self.assertEqual(len(warnings), 1)
        w = warnings[0]
        self.assertEqual(w["extra.contributing_countries"], ["DE", "IT"])
        self.assertEqual(w["extra.undisclosed_contributors"], 1)
        self.assertEqual(w["extra.country_count"], 3)
        self.assertNotIn("FR", w["comment"])

    def test_unreadable_label_and_bad_fields_are_dumped_and_the_bot_carries_on(self):
        events = [ev("DE", "185.220.101.1", extra__tlp="PURPLE"),
                  ev("FR", "185.220.101.2", time__source=iso(time.time() + 10 * 86400)),
                  ev("IT", "185.220.101.3")]
        out, warnings = self.run_events(events, allowed_error_count=2)
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0]["source.geolocation.cc"], "IT")
        dumped = "\n".join(self.loglines)
        self.assertIn("extra.tlp", dumped)
        self.assertIn("time.source", dumped)

    def test_state_survives_a_restart(self):
        self.run_events([ev("DE", "185.220.101.1"), ev("FR", "185.220.101.2")])
        self.assertTrue(self.state.exists())
        self.assertEqual(os.stat(self.state).st_mode & 0o777, 0o600, "the state holds indicators: owner only")
        _, warnings = self.run_events([ev("IT", "185.220.101.3")])
        self.assertEqual(len(warnings), 1, "the first two events were remembered")
        self.assertEqual(warnings[0]["extra.country_count"], 3)

    def test_a_state_file_that_cannot_be_opened_stops_the_bot_at_init(self):
        """A deployment error (a directory, no permission), not a bad state: the bot does not start."""
        from intelmq.lib.exceptions import ConfigurationError
        self.state.mkdir()
        with self.assertRaises(ConfigurationError) as info:
            self.prepare_bot(parameters={"state_file": str(self.state), "alerts_file": str(self.journal)},
                             destination_queues=PATHS, prepare_source_queue=False)
        self.assertIn(f"state_file {self.state}: is a directory", str(info.exception))
        self.assertTrue(self.state.is_dir() and not list(self.dir.glob("state.json.bad-*")), "nothing moved aside")
        self.log_stream.truncate(0)

    def test_changed_parameters_start_afresh(self):
        self.run_events([ev("DE", "185.220.101.1"), ev("FR", "185.220.101.2")])
        _, warnings = self.run_events([ev("IT", "185.220.101.3")], campaign_window=7200)
        self.assertEqual(warnings, [])
        self.assertIn("changed since its state was saved", "\n".join(self.loglines))

    def test_hostile_state_files_are_kept_aside_and_named(self):
        self.run_events([ev("DE", "185.220.101.1")])
        good = json.loads(self.state.read_text())
        bad_states = {
            "not json": b"{not json",
            "not utf-8": b"\xff\xfe{}",
            "a list": b"[]",
            "duplicate key": b'{"name": "analytics-stage", "name": "x"}',
            "deep": b"[" * 5000 + b"]" * 5000,
            "huge number": json.dumps({**good, "version": int("9" * 100)}).encode(),
        }
        campaign = good["detectors"]["campaign"]
        for field, value in (("keys", []), ("salt", 5), ("clock", "soon"), ("edges", [["x", "y", 1]]),
                             ("campaigns", {"c": {"first": "x"}})):
            bad_states[f"campaign {field}"] = json.dumps(
                {**good, "detectors": {**good["detectors"], "campaign": {**campaign, field: value}}}).encode()
        one_key = next(iter(campaign["keys"]))
        broken_member = {**campaign, "keys": {one_key: {**campaign["keys"][one_key], "members": [["[1,2]", 0]]}}}
        bad_states["campaign member"] = json.dumps(
            {**good, "detectors": {**good["detectors"], "campaign": broken_member}}).encode()
        bad_states["surge keys"] = json.dumps(
            {**good, "detectors": {**good["detectors"], "surge": {**good["detectors"]["surge"], "keys": {}}}}).encode()
        for name, raw in bad_states.items():
            with self.subTest(name):
                for old in self.dir.glob("state.json.bad-*"):
                    old.unlink()
                self.state.write_bytes(raw)
                out, _ = self.run_events([ev("IT", "185.220.101.3")], allowed_error_count=1)
                self.assertEqual(len(out), 1, "the bot runs on")
                log = "\n".join(self.loglines)
                self.assertIn(f"Analytics state {self.state} not usable", log)
                self.assertNotIn("Traceback", log)
                aside = list(self.dir.glob("state.json.bad-*"))
                self.assertEqual(len(aside), 1)
                self.assertEqual(aside[0].read_bytes(), raw, "the bad file is kept for a person to look at")
                if name.startswith("campaign "):
                    self.assertIn("field detectors.campaign.", log, "the field is named")


class TestSurge(AnalyticsBotCase, unittest.TestCase):
    def test_a_surge_in_two_countries_is_a_candidate_with_its_evidence_and_series(self):
        start = (int(time.time()) // 60) * 60 - 30 * 60
        events, n = [], 0
        for bucket in range(22):
            for country in ("DE", "FR"):
                for j in range(1 if bucket < 15 else 12):
                    n += 1
                    events.append(ev(country, f"185.{n // 65536}.{n // 256 % 256}.{n % 256}",
                                     when=start + 60 * bucket + j, ctype="ddos", classification__taxonomy="availability"))
        params = {"detectors": "surge", "surge_bucket": 60, "surge_warmup": 600, "surge_model": "seasonal",
                  "surge_sensitivity": 3, "surge_window": 600}
        out, warnings = self.run_events(events, **params)
        self.assertEqual(len(out), len(events))
        self.assertEqual(len(warnings), 1)
        w = warnings[0]
        self.assertEqual(w["extra.early_warning_trigger"], "surge")
        self.assertEqual(w["extra.reported_classification_type"], "ddos")
        self.assertEqual(w["extra.contributing_countries"], ["DE", "FR"])
        self.assertGreater(w["extra.observed_count"], w["extra.expected_count"])
        self.assertGreaterEqual(w["extra.detection_delay_seconds"], 0)
        self.assertNotIn("185.", json.dumps(w))
        records = [r for r, _ in analytics_stage.read_journal(self.journal)]
        self.assertEqual(records[0]["alert"]["kind"], "surge")
        self.assertEqual(sorted(records[0]["series"]), ["DE", "FR"], "the plot's series per country")


class TestCheck(unittest.TestCase):
    def problems(self, **params):
        return CrossBorderAnalyticsExpertBot.check(params) or []

    def test_defaults_and_manager_empty_values_pass(self):
        self.assertEqual(self.problems(), [])
        self.assertEqual(self.problems(**{name: "" for name in ("max_tlp", "surge_bucket", "campaign_window",
                                                                 "campaign_link_keys", "detectors",
                                                                 "state_interval", "surge_sensitivity")}), [])

    def test_bad_parameters_are_named(self):
        cases = {"campaign_min_countries": ("x", "campaign_min_countries"),
                 "campaign_link_keys": (["net", "asn"], "campaign_link_keys"),
                 "surge_bucket": (5, "surge_bucket"), "surge_model": ("prophet", "model"),
                 "max_tlp": ("RED", "max_tlp"), "detectors": (["surge", "magic"], "detectors"),
                 "state_interval": (-1, "state_interval"), "campaign_field": ("campaign_id", "campaign_field"),
                 "campaign_window": (10 ** 20, "campaign_window")}
        for name, (value, named) in cases.items():
            with self.subTest(name):
                errors = [t for level, t in self.problems(**{name: value}) if level == "error"]
                self.assertTrue(errors, f"{name}={value!r} passed")
                self.assertIn(named, errors[0])

    def test_max_tlp_said_once(self):
        errors = [t for level, t in self.problems(max_tlp="AMBER+STRICT") if level == "error"]
        self.assertEqual(len(errors), len(set(errors)))
