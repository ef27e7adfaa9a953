"""BotTestCase tests of the cross-border redaction / pseudonymisation expert."""
import os
import unittest

from intelmq.lib.exceptions import ConfigurationError

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.policy.redact import pseudonym
from intelmq_crossborder.bots.experts.redaction.expert import CrossBorderRedactionExpertBot

KEY = "redaction-test-key-77ab1"
BASE = {"__type": "Event", "classification.type": "phishing", "source.ip": "198.51.100.7",
        "source.fqdn": "login.example.net", "source.url": "http://login.example.net/x",
        "source.account": "victim@example.org", "extra.contact": "jane", "raw": "cmF3IGxpbmU="}


class TestCrossBorderRedactionExpertBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderRedactionExpertBot
        cls.sysconfig = {"remove_fields": ["source.account", "extra.*"],
                         "pseudonymise_fields": ["source.ip", "source.fqdn", "source.url"],
                         "hmac_password": KEY}

    def test_remove_and_pseudonymise(self):
        self.input_message = dict(BASE)
        self.run_bot()
        k = KEY.encode()
        self.assertMessageEqual(0, {"__type": "Event", "classification.type": "phishing",
                                    "source.ip": pseudonym("198.51.100.7", k, "IPAddress"),
                                    "source.fqdn": pseudonym("login.example.net", k, "FQDN"),
                                    "source.url": pseudonym("http://login.example.net/x", k, "URL")})
        self.assertValidEvents()
        out = self.get_output_queue()[0]
        for clear in ("198.51.100.7", "login.example.net", "victim@example.org", "jane", "cmF3IGxpbmU="):
            self.assertNotIn(clear, out)

    def test_same_input_same_pseudonym_other_key_other_pseudonym(self):
        self.input_message = [dict(BASE), dict(BASE)]
        self.run_bot(iterations=2)
        first, second = self.output_events()
        self.assertEqual(first["source.ip"], second["source.ip"])
        self.input_message = dict(BASE)
        self.run_bot(parameters={"hmac_password": "another-key"})
        self.assertNotEqual(self.output_events()[0]["source.ip"], first["source.ip"])

    def test_untouched_event_passes_as_is(self):
        msg = {"__type": "Event", "classification.type": "scanner", "destination.port": 22, "raw": "eA=="}
        self.input_message = msg
        self.run_bot()
        self.assertMessageEqual(0, msg)

    def test_key_never_logged(self):
        self.input_message = dict(BASE)
        self.run_bot()
        self.assertNotIn(KEY, self.loglines_buffer)

    def test_key_from_environment_never_logged(self):
        os.environ["REDACTION_TEST_KEY"] = KEY
        try:
            self.input_message = dict(BASE)
            self.run_bot(parameters={"hmac_password": None, "hmac_key_env": "REDACTION_TEST_KEY"})
        finally:
            del os.environ["REDACTION_TEST_KEY"]
        self.assertEqual(self.output_events()[0]["source.ip"],
                         pseudonym("198.51.100.7", KEY.encode(), "IPAddress"))
        self.assertNotIn(KEY, self.loglines_buffer)

    def test_check(self):
        self.assertIsNone(CrossBorderRedactionExpertBot.check(self.sysconfig))
        self.assertEqual(CrossBorderRedactionExpertBot.check({"remove_fields": ["source.ipp"]}),
                         [["error", "parameter remove_fields[0]: unknown field 'source.ipp' "
                                    "(not in the harmonization)."]])
        result = CrossBorderRedactionExpertBot.check({"pseudonymise_fields": ["source.asn"]})
        self.assertIn("cannot hold a pseudonym", result[0][1])

    def test_check_refuses_label_fields(self):
        for params, name in [({"remove_fields": ["sharing.tlp"]}, "remove_fields"),
                             ({"remove_fields": ["source.ip", "tlp"]}, "remove_fields"),
                             ({"remove_fields": ["extra.misp_tags"]}, "remove_fields"),
                             ({"remove_fields": ["sharing.do_not_disclose_source"]}, "remove_fields"),
                             ({"pseudonymise_fields": ["extra.tlp"]}, "pseudonymise_fields"),
                             ({"pseudonymise_fields": ["extra.tags"]}, "pseudonymise_fields")]:
            with self.subTest(params=params):
                result = CrossBorderRedactionExpertBot.check(params)
                self.assertEqual(result[0][0], "error")
                self.assertIn(f"parameter {name}: ", result[0][1])
                self.assertIn("carries the event's TLP label or source flag", result[0][1])

    def test_label_field_refused_at_start(self):
        with self.assertRaises(ConfigurationError):
            self.prepare_bot(parameters={"remove_fields": ["tlp"]})
        self.assertIn("parameter remove_fields: tlp carries the event's TLP label", self.log_stream.getvalue())
        self.prepare_bot()
        self.input_queue = []

    def test_removing_a_field_that_carried_a_label_never_lowers_it(self):
        # extra.* takes extra.tlp (RED) and comment takes a whole-value label: the effective
        # label before the redaction is kept in sharing.tlp, the source flag in its field
        self.input_message = dict(BASE, **{"sharing.tlp": "GREEN", "extra.tlp": "RED"})
        self.run_bot()
        out = self.output_events()[0]
        self.assertEqual(out["sharing.tlp"], "RED")
        self.assertNotIn("extra.tlp", out)
        self.input_message = dict(BASE, **{"comment": "TLP:AMBER", "extra.misp_tags": "tlp:ex:chr,osint"})
        self.run_bot(parameters={"remove_fields": ["comment", "extra.*"]})
        out = self.output_events()[0]
        self.assertEqual((out["sharing.tlp"], out["sharing.do_not_disclose_source"]), ("AMBER", True))
        self.assertValidEvents()

    def test_label_fields_under_a_pseudonymised_prefix_are_removed_not_made_unreadable(self):
        self.input_message = dict(BASE, **{"extra.tlp": "tlp:amber", "extra.note": "n"})
        self.run_bot(parameters={"remove_fields": [], "pseudonymise_fields": ["extra.*"]})
        out = self.output_events()[0]
        self.assertNotIn("extra.tlp", out)
        self.assertTrue(out["extra.note"].startswith("pseudo-"))
        self.assertEqual(out["sharing.tlp"], "AMBER")

    def test_unreadable_label_is_dumped(self):
        self.input_message = dict(BASE, **{"extra.tlp": ["RED"]})
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"for key 'extra\.tlp': a TLP label must be a string, not a list.*not redacted")

    def test_missing_key_fails_at_start(self):
        with self.assertRaises(ConfigurationError):
            self.prepare_bot(parameters={"hmac_password": None, "hmac_key_env": "NO_SUCH_VARIABLE_X"})
        self.assertIn("pseudonymise_fields is set but there is no key", self.log_stream.getvalue())
        self.prepare_bot()          # a valid bot again, for IntelMQ's checks in tearDown
        self.input_queue = []


    def test_manager_empty_optional_parameters_are_the_defaults(self):
        """'' as IntelMQ Manager saves it: the key from $CROSSBORDER_HMAC_KEY, raw dropped; no fields: untouched."""
        manager = {"hmac_password": "", "hmac_key_env": "", "drop_raw": ""}
        self.assertIsNone(CrossBorderRedactionExpertBot.check({**self.sysconfig, **manager}))
        os.environ["CROSSBORDER_HMAC_KEY"] = KEY
        try:
            self.input_message = dict(BASE)
            self.run_bot(parameters=manager)
        finally:
            del os.environ["CROSSBORDER_HMAC_KEY"]
        out = self.output_events()[0]
        self.assertEqual(out["source.ip"], pseudonym("198.51.100.7", KEY.encode(), "IPAddress"))
        self.assertNotIn("raw", out)
        nothing = {"remove_fields": "", "pseudonymise_fields": ""}
        self.assertIsNone(CrossBorderRedactionExpertBot.check(nothing))
        msg = {"__type": "Event", "classification.type": "scanner", "source.ip": "192.0.2.9", "raw": "eA=="}
        self.input_message = msg
        self.run_bot(parameters={**manager, **nothing})
        self.assertMessageEqual(0, msg)


if __name__ == "__main__":
    unittest.main()
