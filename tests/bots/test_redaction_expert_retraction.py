"""The redaction expert passes a retraction through unchanged (docs/retraction.md: a retraction
carries ids only and is never label-read) and dumps one it cannot read: a content field in a
"retraction" would otherwise escape the redaction."""
import unittest
import uuid

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.bots.experts.redaction.expert import CrossBorderRedactionExpertBot
from intelmq_crossborder.policy.retraction import Retraction, confirmation, new_retraction

KEY = "redaction-retraction-key-31"
UUID = str(uuid.uuid4())
FP = "ab" * 32


def retraction(action: str, **extra) -> dict:
    msg = new_retraction(action, "false positive", "at-hub", target_event_uuid=UUID, target_fingerprint=FP, **extra)
    return dict(msg.to_event(), **{"__type": "Event", "sharing.agreement": "at-csirt",
                                   "provenance.hub_path": "de-hub,at-hub"})


class TestRedactionExpertRetraction(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderRedactionExpertBot
        # every field a retraction has would be touched if it were redacted as an event
        cls.sysconfig = {"remove_fields": ["provenance.hub_path"],
                         "pseudonymise_fields": ["source.ip"], "hmac_password": KEY}

    def test_each_action_passes_unchanged(self):
        msgs = [retraction("withdraw"), retraction("erase"), retraction("relabel", new_tlp="RED"),
                retraction("relabel", new_tlp="AMBER+STRICT", new_pap="RED", new_do_not_disclose_source=True),
                retraction("withdraw", scope="indicator")]
        self.input_message = msgs
        self.run_bot(iterations=len(msgs))
        for i, msg in enumerate(msgs):
            self.assertMessageEqual(i, msg)
        self.assertEqual([Retraction.from_event({k: v for k, v in o.items() if k != "__type"})
                          for o in self.output_events()],
                         [Retraction.from_event({k: v for k, v in m.items() if k != "__type"}) for m in msgs])
        self.assertValidEvents()

    def test_a_confirmation_passes_unchanged(self):
        msg = new_retraction("erase", "personal data", "de-hub", target_event_uuid=UUID)
        conf = dict(confirmation(msg, "at-hub", 2).to_event(), __type="Event")
        self.input_message = conf
        self.run_bot()
        self.assertMessageEqual(0, conf)

    def test_a_retraction_with_content_is_dumped_naming_the_field(self):
        bad = dict(retraction("erase"), **{"source.ip": "192.0.2.1"})
        self.input_message = bad
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertLogMatches(r".*source\.ip.*carries no event content.*dumped, not passed on.*", "ERROR")

    def test_an_unreadable_relabel_is_dumped_not_label_read(self):
        bad = dict(retraction("relabel", new_tlp="RED"), **{"retraction.new_tlp": "REDD"})
        self.input_message = bad
        self.run_bot(allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertLogMatches(r".*retraction\.new_tlp.*", "ERROR")

    def test_events_are_still_redacted(self):
        event = {"__type": "Event", "classification.type": "scanner", "source.ip": "192.0.2.9",
                 "provenance.hub_path": "de-hub,at-hub"}
        self.input_message = event
        self.run_bot()
        out = self.output_events()[0]
        self.assertNotIn("provenance.hub_path", out)
        self.assertNotEqual(out["source.ip"], "192.0.2.9")


if __name__ == "__main__":
    unittest.main()
