"""Retractions through the exchange bots: the output applies them to what it has not sealed yet
and bundles them; the parser passes a peer's retraction on the `retractions` path, checked."""
import shutil
import tempfile
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase
from tests.bots.test_exchange_output import KEY_DIR, TRUST, ev
from tests.bots.test_exchange_parser import report

from intelmq_crossborder.bots.outputs.exchange.output import CrossBorderExchangeOutputBot
from intelmq_crossborder.bots.parsers.exchange.parser import CrossBorderExchangeParserBot
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.policy.retraction import Retraction, confirmation, new_retraction

U1 = "11111111-1111-4111-8111-111111111111"
U2 = "22222222-2222-4222-8222-222222222222"


def retraction(msg, path="de-hub", agreement="fr-hub"):
    out = {"__type": "Event", **msg.to_event(), "provenance.hub_path": path}
    if agreement:
        out["sharing.agreement"] = agreement
    return out


class TestExchangeOutputRetractions(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeOutputBot
        cls.sysconfig = {"hub_id": "de-hub", "recipient": "fr-hub", "signing_key_file": str(KEY_DIR / "de.pem"),
                         "seal_check_interval": 0, "max_bundle_events": 100, "max_bundle_age": 0,
                         "max_tlp": "AMBER"}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="xb-retraction-"))
        self.params = {"spool_dir": str(self.dir / "spool"), "outbox_dir": str(self.dir / "outbox")}

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def run_with(self, messages, **params):
        allowed = {k: params.pop(k) for k in ("allowed_error_count", "allowed_warning_count") if k in params}
        self.input_message = messages
        self.run_bot(parameters={**self.params, **params}, iterations=len(messages), **allowed)

    def bundle_events(self):
        out = []
        for path in sorted((self.dir / "outbox").glob("*.xbundle")):
            with b.open_bundle(path, TRUST, "fr-hub") as opened:
                opened.verify_data()
                out.extend(e for _, e in b.iter_events(opened))
        return out

    def test_erase_deletes_the_spooled_event_and_bundles_the_retraction(self):
        self.run_with([ev(1, **{"provenance.event_uuid": U1}), ev(2, **{"provenance.event_uuid": U2})])
        msg = new_retraction("erase", "personal data", "de-hub", target_event_uuid=U1)
        self.run_with([retraction(msg)])
        spool = (self.dir / "spool" / "spool.jsonl").read_text()
        self.assertNotIn("192.0.2.1\"", spool)          # the value is gone from the file
        self.assertIn("192.0.2.2", spool)
        self.assertLogMatches(r".*Retraction erase .* spooled for fr-hub; events not sealed yet: 1 deleted, "
                              r"0 relabelled\.", "INFO")
        self.run_with([ev(3)], seal_on_shutdown=True)
        events = self.bundle_events()
        self.assertEqual([e.get("source.ip") for e in events], ["192.0.2.2", None, "192.0.2.3"])
        bundled = Retraction.from_event(events[1])
        self.assertEqual((bundled.id, bundled.action, bundled.hub_path), (msg.id, "erase", ("de-hub",)))
        self.assertEqual(events[1]["sharing.agreement"], "fr-hub")

    def test_relabel_rewrites_or_deletes_by_max_tlp(self):
        self.run_with([ev(1, **{"provenance.event_uuid": U1}), ev(2, **{"provenance.event_uuid": U2})])
        self.run_with([retraction(new_retraction("relabel", "too low", "de-hub", target_event_uuid=U1,
                                                 new_tlp="AMBER", new_pap="AMBER"))])
        self.run_with([retraction(new_retraction("relabel", "much too low", "de-hub", target_event_uuid=U2,
                                                 new_tlp="RED"))], seal_on_shutdown=True)
        events = [e for e in self.bundle_events() if "source.ip" in e]
        self.assertEqual([(e["source.ip"], e["sharing.tlp"], e.get("sharing.pap")) for e in events],
                         [("192.0.2.1", "AMBER", "AMBER")])

    def test_withdraw_of_something_already_sealed_only_bundles_the_retraction(self):
        self.run_with([ev(1, **{"provenance.event_uuid": U1})], seal_on_shutdown=True)
        msg = new_retraction("withdraw", "false positive", "de-hub", target_event_uuid=U1)
        self.run_with([retraction(msg)], seal_on_shutdown=True)
        events = self.bundle_events()
        self.assertEqual(len(events), 2)
        self.assertEqual(events[1]["retraction.id"], msg.id)

    def test_a_retraction_with_content_is_dumped_not_bundled(self):
        msg = new_retraction("withdraw", "x", "de-hub", target_event_uuid=U1)
        self.run_with([{**retraction(msg), "source.ip": "192.0.2.9"}], allowed_error_count=1, seal_on_shutdown=True)
        self.assertEqual(self.bundle_events(), [])
        self.assertLogMatches(r".*for key 'source\.ip'.*carries no event content.*not bundled for fr-hub.*", "ERROR")


class TestExchangeParserRetractions(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeParserBot
        cls.sysconfig = {}

    def test_a_peers_retraction_takes_the_retractions_path_as_it_came(self):
        msg = new_retraction("relabel", "too low", "at-hub", target_event_uuid=U1, new_tlp="AMBER")
        line = {**msg.to_event(), "provenance.hub_path": "at-hub,de-hub", "sharing.agreement": "fr-hub"}
        self.input_message = report([line, {"source.ip": "192.0.2.1", "classification.type": "scanner",
                                            "sharing.tlp": "GREEN"}])
        self.prepare_bot(destination_queues=["_default", "retractions"])
        self.run_bot(prepare=False)
        got, = self.output_events("retractions")
        expected = {"__type": "Event", **msg.to_event(), "provenance.hub_path": "at-hub,de-hub"}
        self.assertEqual(got, expected)                 # no raw, no classification, no origin filled in
        self.assertEqual(len(self.output_events("_default")), 1)

    def test_a_retraction_must_come_from_the_bundles_sender(self):
        msg = new_retraction("withdraw", "x", "at-hub", target_event_uuid=U1)
        conf = confirmation(msg, "at-hub", 1)
        self.input_message = report([{**msg.to_event(), "provenance.hub_path": "de-hub,at-hub"},
                                     {**conf.to_event(), "provenance.hub_path": "de-hub"}])
        self.prepare_bot(destination_queues=["_default", "retractions"])
        self.run_bot(prepare=False, allowed_error_count=2)
        self.assertEqual(self.output_events("retractions"), [])
        self.assertLogMatches(r".*path ends at 'at-hub', not at the bundle's sender 'de-hub'.*", "ERROR")
        self.assertLogMatches(r".*a confirmation by 'at-hub' in a bundle of 'de-hub'.*", "ERROR")

    def test_without_the_path_it_goes_to_the_default_path_with_a_warning(self):
        msg = new_retraction("withdraw", "x", "at-hub", target_event_uuid=U1)
        self.input_message = report([{**msg.to_event(), "provenance.hub_path": "de-hub"}])
        # (IntelMQ's harness asserts classification.type on a parser's default path: a retraction has none)
        self.prepare_bot()
        self.bot_type, saved = "expert", self.bot_type
        try:
            self.run_bot(prepare=False, allowed_warning_count=1)
        finally:
            self.bot_type = saved
        got, = self.output_events()
        self.assertEqual(got["retraction.id"], msg.id)
        self.assertNotIn("raw", got)
        self.assertLogMatches(r".*No named path 'retractions'.*", "WARNING")

if __name__ == "__main__":
    unittest.main()
