"""BotTestCase tests: the contributions expert counts retractions per contributor (the quality
indicator "retracted" of the stats and the daily report), erases indicator values for an erase,
and forwards the retraction unchanged."""
import shutil
import sqlite3
import tempfile
import unittest
import uuid
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.analytics import contributions
from intelmq_crossborder.bots.experts.contributions.expert import CrossBorderContributionsExpertBot
from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.policy.retraction import confirmation, new_retraction


def ev(ip="192.0.2.1", originator="cert-a", level="GREEN", **fields):
    out = {"__type": "Event", "classification.type": "scanner", "source.ip": ip,
           "time.source": "2026-11-20T09:00:00+00:00", "sharing.tlp": level,
           "provenance.originator": originator, "provenance.origin_hub": "hub-at",
           "provenance.event_uuid": str(uuid.uuid4())}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    out["provenance.fingerprint"] = fingerprint(out)
    return out


def retraction_of(target, action="withdraw"):
    return new_retraction(action, "false positive", "hub-at", target_event_uuid=target["provenance.event_uuid"],
                          target_fingerprint=target["provenance.fingerprint"])


class TestContributionsExpertRetraction(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderContributionsExpertBot
        cls.sysconfig = {"local_hub": "hub-lu"}

    def setUp(self):
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix="contrib-retraction-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.db = str(self.tmp / "contributions.sqlite")

    def run_expert(self, messages, **kwargs):
        self.input_message = messages
        self.run_bot(iterations=len(messages), parameters={"database": self.db}, **kwargs)

    def rows(self):
        conn = contributions.connect(self.db, create=False)
        try:
            return contributions.contributions(conn)
        finally:
            conn.close()

    def test_counted_for_the_contributor_and_forwarded_unchanged(self):
        a, b = ev(), ev("192.0.2.2", originator="cert-b")
        message = dict(retraction_of(a).to_event(), __type="Event")
        self.run_expert([a, b, message])
        self.assertEqual(self.output_events()[2], message)
        rows = {r.contributor: r for r in self.rows()}
        self.assertEqual(rows["cert-a"].retracted, {"withdraw": 1})
        self.assertEqual(rows["cert-b"].retracted, {})
        self.run_expert([message])                                        # received twice: counted once
        self.assertEqual({r.contributor: r.retracted for r in self.rows()}["cert-a"], {"withdraw": 1})

    def test_erase_takes_the_indicator_value_out_of_the_store(self):
        a = ev("192.0.2.77")
        self.run_expert([a, dict(retraction_of(a, "erase").to_event(), __type="Event")])
        dump = "\n".join(sqlite3.connect(self.db).iterdump())
        self.assertNotIn("192.0.2.77", dump)
        (row,) = self.rows()
        self.assertEqual((row.events, row.retracted), (1, {"erase": 1}))

    def test_a_retraction_of_events_above_the_ceiling_is_not_shown_under_it(self):
        a = ev(level="AMBER")
        self.run_expert([a, dict(retraction_of(a).to_event(), __type="Event")])
        conn = contributions.connect(self.db, create=False)
        self.addCleanup(conn.close)
        self.assertEqual(contributions.contributions(conn, ceiling=tlp.Level.GREEN), [])
        (row,) = contributions.contributions(conn, ceiling=tlp.Level.AMBER)
        self.assertEqual(row.retracted, {"withdraw": 1})

    def test_a_confirmation_is_forwarded_not_counted(self):
        a = ev()
        message = dict(confirmation(retraction_of(a), "hub-de", 1).to_event(), __type="Event")
        self.run_expert([a, message])
        self.assertEqual(self.output_events()[1], message)
        self.assertEqual(self.rows()[0].retracted, {})

    def test_a_retraction_with_content_is_dumped(self):
        a = ev()
        bad = dict(retraction_of(a).to_event(), __type="Event", **{"source.ip": "192.0.2.1"})
        self.run_expert([bad], allowed_error_count=1)
        self.assertLogMatches(r".*source\.ip.*carries no event content.*", "ERROR")


if __name__ == "__main__":
    unittest.main()
