"""BotTestCase tests of the cross-border TLP expert."""
import re
import unittest

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.experts.tlp.expert import CrossBorderTLPExpertBot

BASE = {"__type": "Event", "classification.type": "scanner", "source.ip": "192.0.2.1"}


def ev(**fields):
    out = dict(BASE)
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


class TestCrossBorderTLPExpertBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderTLPExpertBot
        cls.sysconfig = {"default_tlp": "AMBER"}

    def run_one(self, event, expected, **params):
        self.input_message = event
        self.run_bot(parameters=params)
        self.assertMessageEqual(0, expected)
        self.assertValidEvents()

    def test_a_retraction_passes_unchanged(self):
        """A retraction carries no label of its own; a relabel's retraction.new_tlp is not an
        event label to read (the label reader refuses that field), so it is passed on as it is."""
        from intelmq_crossborder.policy.retraction import new_retraction
        retraction = {"__type": "Event", **new_retraction(
            "relabel", "label too low", "de-hub", target_event_uuid="6c3b1f0e-5d4a-4c1b-9e8f-0a1b2c3d4e5f",
            new_tlp="AMBER").to_event()}
        self.run_one(retraction, retraction)

    def test_stock_field(self):
        self.run_one(ev(tlp="GREEN"), ev(tlp="GREEN", sharing__tlp="GREEN"))

    def test_white_becomes_clear(self):
        self.run_one(ev(tlp="WHITE"), ev(tlp="WHITE", sharing__tlp="CLEAR"))

    def test_extra_amber_strict_sets_stock_red(self):
        self.run_one(ev(extra__tlp="tlp:amber+strict"),
                     ev(extra__tlp="tlp:amber+strict", tlp="RED", sharing__tlp="AMBER+STRICT"))

    def test_most_restrictive_wins(self):
        self.run_one(ev(tlp="AMBER", extra__tlp="RED"),
                     ev(tlp="RED", extra__tlp="RED", sharing__tlp="RED"))

    def test_misp_tags_and_chatham_house(self):
        tags = 'tlp:green,osint:source-type="blog-post",tlp:ex:chr'
        self.run_one(ev(extra__misp_tags=tags),
                     ev(extra__misp_tags=tags, tlp="GREEN", sharing__tlp="GREEN",
                        sharing__do_not_disclose_source=True))

    def test_misp_tag_list(self):
        tags = ["type:OSINT", "tlp:clear"]
        self.run_one(ev(extra__tags=tags), ev(extra__tags=tags, tlp="WHITE", sharing__tlp="CLEAR"))

    def test_csaf_label(self):
        self.run_one(ev(extra__csaf_tlp="WHITE"), ev(extra__csaf_tlp="WHITE", tlp="WHITE", sharing__tlp="CLEAR"))

    def test_stix_marking(self):
        mid = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
        self.run_one(ev(extra__tlp=mid), ev(extra__tlp=mid, tlp="AMBER", sharing__tlp="AMBER"))

    def test_no_label_gets_default(self):
        self.run_one(ev(), ev(tlp="AMBER", sharing__tlp="AMBER"))

    def test_configured_default(self):
        self.run_one(ev(), ev(tlp="RED", sharing__tlp="AMBER+STRICT"), default_tlp="amber+strict")

    def test_stock_tlp_untouched_when_disabled(self):
        self.run_one(ev(extra__tlp="CLEAR"), ev(extra__tlp="CLEAR", sharing__tlp="CLEAR"), set_stock_tlp=False)

    def test_unparseable_label_is_dumped(self):
        self.input_message = ev(extra__tlp="PURPLE")
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertRegexpMatchesLog(r"invalid value 'PURPLE' \(<class 'str'>\) for key 'extra\.tlp': 'PURPLE' is "
                                    r"not a TLP label; .*the event is dumped")

    def test_sharing_tlp_lower_than_another_label_never_lowers_it(self):
        # an upstream sharing.tlp GREEN beside a MISP tag tlp:red: RED (every label counts)
        tags = [{"name": "tlp:red"}, {"name": "type:OSINT"}]
        self.run_one(ev(sharing__tlp="GREEN", extra__misp_tags=tags),
                     ev(sharing__tlp="RED", tlp="RED", extra__misp_tags=tags))

    def test_label_in_an_unknown_field_counts(self):
        self.run_one(ev(tlp="GREEN", extra__marking="TLP:AMBER"),
                     ev(tlp="AMBER", sharing__tlp="AMBER", extra__marking="TLP:AMBER"))

    def test_refused_labels_are_dumped_with_the_field_named(self):
        for fields, field in [({"extra__tlp": "TLP:R\u0415D"}, "extra.tlp"),             # Cyrillic E
                              ({"extra__tlp": ["RED"]}, "extra.tlp"),                        # a list
                              ({"extra__misp_tags": [{"colour": "red"}]}, "extra.misp_tags[0]"),
                              ({"extra__tlp_level": "RED"}, "extra.tlp_level"),              # TLP-named field
                              ({"extra__note": "tlp\u200b:red"}, "extra.note")]:           # zero-width space
            with self.subTest(field=field):
                self.input_message = ev(sharing__tlp="CLEAR", **fields)
                self.run_bot(allowed_error_count=1)
                self.assertOutputQueueLen(0)
                self.assertRegexpMatchesLog(rf"for key '{re.escape(field)}': .*the event is dumped")

    def test_stock_red_of_amber_strict_stays_amber_strict(self):
        # the expert's own output read again (another hub's TLP expert) keeps AMBER+STRICT
        once = ev(extra__tlp="tlp:amber+strict", tlp="RED", sharing__tlp="AMBER+STRICT")
        self.run_one(dict(once), once)
        self.run_one(ev(tlp="RED"), ev(tlp="RED", sharing__tlp="RED"))

    def test_label_fields_parameter_no_longer_narrows_what_is_read(self):
        self.input_message = ev(tlp="GREEN", extra__tlp="RED")
        self.run_bot(parameters={"label_fields": ["tlp"]}, allowed_warning_count=1)
        self.assertMessageEqual(0, ev(tlp="RED", extra__tlp="RED", sharing__tlp="RED"))
        self.assertLogMatches(r"Parameter label_fields is ignored: every label field is read", "WARNING")

    def test_check_warns_about_label_fields(self):
        self.assertEqual(CrossBorderTLPExpertBot.check({"default_tlp": "AMBER", "label_fields": ["tlp"]}),
                         [["warning", "Parameter label_fields is ignored: every label field is read "
                                      "(docs/tlp.md); remove it."]])

    def test_unparseable_tag_in_tlp_namespace_is_dumped(self):
        self.input_message = ev(extra__misp_tags="tlp:purple,osint")
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)

    def test_check_rejects_bad_default(self):
        self.assertEqual(CrossBorderTLPExpertBot.check({"default_tlp": "BLUE"}),
                         [["error", "Parameter default_tlp: unknown TLP label 'BLUE' in parameter default_tlp."]])
        self.assertIsNone(CrossBorderTLPExpertBot.check({"default_tlp": "clear"}))

    def test_check_rejects_chatham_house_as_default(self):
        self.assertEqual(CrossBorderTLPExpertBot.check({"default_tlp": "tlp:ex:chr"})[0][0], "error")


    def test_manager_empty_optional_parameters_are_the_defaults(self):
        """IntelMQ Manager saves an untouched field as '': default_tlp AMBER, set_stock_tlp on."""
        manager = {"default_tlp": "", "set_stock_tlp": ""}
        self.assertIsNone(CrossBorderTLPExpertBot.check(manager))
        self.run_one(ev(), ev(sharing__tlp="AMBER", tlp="AMBER"), **manager)


if __name__ == "__main__":
    unittest.main()
