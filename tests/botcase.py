"""The one base class for every bot test: IntelMQ's BotTestCase on the cross-border harmonization.

Usage (see docs/testing.md)::

    import unittest
    from tests.botcase import CrossBorderBotTestCase
    from intelmq_crossborder.bots.experts.tlp.expert import CrossBorderTLPExpertBot

    class TestCrossBorderTLPExpertBot(CrossBorderBotTestCase, unittest.TestCase):
        @classmethod
        def set_bot(cls):
            cls.bot_reference = CrossBorderTLPExpertBot
            cls.sysconfig = {"default_tlp": "AMBER"}

        def test_event(self):
            self.input_message = {"__type": "Event", "tlp": "GREEN"}
            self.run_bot()
            self.assertMessageEqual(0, {...})

IntelMQ's own checks still run: class name, ``check()``, empty queues, log
hygiene, and parser output against the harmonization, which is here IntelMQ's
stock harmonization plus the cross-border fields.  Expert and output results are
not re-validated by IntelMQ: call ``assertValidEvents()``.
"""
import copy
import unittest.mock as mock

from intelmq import HARMONIZATION_CONF_FILE
from intelmq.lib import message, test

from intelmq_crossborder.harmonization import merged_harmonization

CROSSBORDER_HARMONIZATION = merged_harmonization()
_stock_mocked_config = test.mocked_config


def _mocked_config(*args, **kwargs):
    inner = _stock_mocked_config(*args, **kwargs)

    def mocked(conf_file):
        if conf_file == HARMONIZATION_CONF_FILE:
            return copy.deepcopy(CROSSBORDER_HARMONIZATION)
        return inner(conf_file)
    return mocked


class CrossBorderBotTestCase(test.BotTestCase):
    harmonization = CROSSBORDER_HARMONIZATION

    def prepare_bot(self, *args, **kwargs):
        with mock.patch("intelmq.lib.test.mocked_config", _mocked_config):
            super().prepare_bot(*args, **kwargs)

    def output_events(self, path="_default") -> list:
        """Decoded output messages (dicts) of one path."""
        return [message.MessageFactory.unserialize(raw, harmonization=self.harmonization).to_dict(
                    hierarchical=False, with_type=True)
                for raw in self.get_output_queue(path=path)]

    def assertValidEvents(self, path="_default"):
        """Every output message of ``path`` validates against the cross-border harmonization."""
        for raw in self.get_output_queue(path=path):
            msg = message.MessageFactory.unserialize(raw, harmonization=self.harmonization)
            as_dict = msg.to_dict(hierarchical=False, with_type=True)
            message.MessageFactory.from_dict(as_dict, harmonization=self.harmonization)
