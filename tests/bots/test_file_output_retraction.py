"""File outputs (IntelMQ's stock file output): a retraction is written as it is, one line, and that
line is the tombstone: the target's ids, the action, the reason, the time and the originator, and
nothing of the target's content (docs/retraction.md, "What each output does")."""
import json
import shutil
import tempfile
import unittest
import uuid
from pathlib import Path

from intelmq.bots.outputs.file.output import FileOutputBot

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.policy.retraction import ROUTING_FIELDS, Retraction, new_retraction

TARGET = {"__type": "Event", "classification.type": "phishing", "classification.taxonomy": "fraud",
          "source.url": "http://login.victim-bank.example/secret-path", "source.ip": "198.51.100.23",
          "source.account": "jane.doe@example.org", "comment": "reported by a customer",
          "feed.name": "Originator feed", "sharing.tlp": "AMBER", "provenance.event_uuid": str(uuid.uuid4())}
TARGET["provenance.fingerprint"] = fingerprint(TARGET)


class TestFileOutputTombstone(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = FileOutputBot
        cls.sysconfig = {"file": "/tmp/unused.txt"}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="file-output-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_the_retraction_line_is_a_tombstone_without_content(self):
        path = self.dir / "events.txt"
        for action, extra in (("withdraw", {}), ("erase", {}), ("relabel", {"new_tlp": "RED"})):
            r = new_retraction(action, "false positive", "at-hub", target_event_uuid=TARGET["provenance.event_uuid"],
                               target_fingerprint=TARGET["provenance.fingerprint"], **extra)
            self.input_message = [TARGET, dict(r.to_event(), __type="Event")]
            self.run_bot(iterations=2, parameters={"file": str(path)})
            line = path.read_text().splitlines()[-1]
            written = json.loads(line)
            self.assertTrue(all(k.startswith("retraction.") or k in ROUTING_FIELDS for k in written), written)
            self.assertEqual(Retraction.from_event(written), r)          # the tombstone reads back
            for name, value in TARGET.items():
                if name.startswith(("provenance.", "__")):
                    continue
                self.assertNotIn(str(value), line, f"{name} of the target in the tombstone line")


if __name__ == "__main__":
    unittest.main()
