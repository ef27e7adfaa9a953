"""BotTestCase tests of the cross-border TLP expert."""
import unittest

from botcase import CrossBorderBotTestCase

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
        self.assertRegexpMatchesLog(r"unknown TLP label 'PURPLE' in field extra\.tlp; the event is dumped")

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


if __name__ == "__main__":
    unittest.main()
