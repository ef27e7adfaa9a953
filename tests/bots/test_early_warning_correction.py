"""BotTestCase tests: a warning raised on data that is later retracted is followed by a correction to
EU-CyCLONe and the CSIRTs Network (the warning path), once, naming the warning and the retraction by
id and repeating nothing of the warning's content."""
import unittest
import uuid

import redis

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.bots.experts.early_warning.expert import CrossBorderEarlyWarningExpertBot
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.policy.retraction import confirmation, new_retraction
from tests.isolation import REDIS_DB

PATHS = ["_default", "early-warning"]


def ev(hub, country, ip="192.0.2.1", tlp="GREEN", **extra):
    out = {"__type": "Event", "classification.type": "scanner", "classification.taxonomy": "information-gathering",
           "source.ip": ip, "sharing.tlp": tlp, "provenance.origin_hub": hub, "provenance.origin_country": country,
           "provenance.event_uuid": str(uuid.uuid4())}
    out.update({k.replace("__", "."): v for k, v in extra.items()})
    out["provenance.fingerprint"] = fingerprint(out)
    return out


def retraction(target, action="withdraw", scope="event", **kwargs) -> dict:
    r = new_retraction(action, "false positive", "de-hub", scope=scope,
                       target_event_uuid=None if scope == "indicator" else target["provenance.event_uuid"],
                       target_fingerprint=target["provenance.fingerprint"], **kwargs)
    return dict(r.to_event(), __type="Event")


class TestEarlyWarningCorrection(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderEarlyWarningExpertBot
        cls.sysconfig = {"min_hubs": 3, "min_countries": 0, "window": 3600, "redis_cache_db": REDIS_DB,
                         "hub_id": "eu-hub", "country": "BE"}

    def setUp(self):
        super().setUp()
        self.prefix = f"test-ew-corr-{uuid.uuid4().hex}:"

    def tearDown(self):
        client = redis.Redis(db=REDIS_DB)
        for key in client.scan_iter(self.prefix + "*"):
            client.delete(key)
        super().tearDown()

    def run_events(self, events, **params):
        allowed = {k: params.pop(k) for k in ("allowed_error_count",) if k in params}
        self.input_message = events
        self.prepare_bot(parameters={"redis_key_prefix": self.prefix, **params}, destination_queues=PATHS)
        self.run_bot(iterations=len(events), prepare=False, **allowed)
        return self.output_events("early-warning")

    def three(self, **kwargs):
        return [ev("de-hub", "DE", **kwargs), ev("fr-hub", "FR", **kwargs), ev("at-hub", "AT", **kwargs)]

    def test_a_withdrawn_input_is_followed_by_a_correction(self):
        events = self.three()
        (warning,) = self.run_events(events)
        r = retraction(events[0])
        (correction,) = self.run_events([r])
        self.assertEqual(self.output_events(), [r])                       # the retraction goes on unchanged
        self.assertEqual(correction["classification.identifier"], ew.CORRECTION_IDENTIFIER)
        self.assertEqual(correction["extra.corrects_early_warning"], warning["extra.early_warning_id"])
        self.assertEqual(correction["extra.retraction_id"], r["retraction.id"])
        self.assertEqual(correction["sharing.tlp"], warning["sharing.tlp"])
        self.assertNotIn("source.ip", correction)
        self.assertNotIn("192.0.2.1", str(correction))
        self.assertValidEvents("early-warning")
        self.assertEqual(self.run_events([r]), [])                       # once per warning and retraction

    def test_erase_and_indicator_scope(self):
        events = self.three()
        self.run_events(events)
        (correction,) = self.run_events([retraction(events[1], "erase", scope="indicator")])
        self.assertIn("erased (personal data)", correction["comment"])

    def test_no_correction_for_data_no_warning_used(self):
        self.run_events(self.three())
        other = ev("de-hub", "DE", ip="198.51.100.7")
        self.run_events([other])
        self.assertEqual(self.run_events([retraction(other)]), [])

    def test_a_relabel_within_max_tlp_corrects_nothing_above_it_does(self):
        events = self.three()
        self.run_events(events)
        self.assertEqual(self.run_events([retraction(events[0], "relabel", new_tlp="AMBER")]), [])
        (correction,) = self.run_events([retraction(events[0], "relabel", new_tlp="RED")])
        self.assertIn("relabelled above", correction["comment"])

    def test_a_flag_warning_is_corrected_too(self):
        flagged = ev("de-hub", "DE", extra__large_scale=True)
        (warning,) = self.run_events([flagged])
        (correction,) = self.run_events([retraction(flagged)])
        self.assertEqual(correction["extra.corrects_early_warning"], warning["extra.early_warning_id"])

    def test_a_confirmation_corrects_nothing_and_goes_on(self):
        events = self.three()
        self.run_events(events)
        r = new_retraction("withdraw", "x", "de-hub", target_event_uuid=events[0]["provenance.event_uuid"])
        message = dict(confirmation(r, "fr-hub", 1).to_event(), __type="Event")
        self.assertEqual(self.run_events([message]), [])
        self.assertEqual(self.output_events(), [message])


if __name__ == "__main__":
    unittest.main()
