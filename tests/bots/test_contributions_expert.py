"""BotTestCase tests of the cross-border contributions expert."""
import sqlite3
import tempfile
import unittest
import unittest.mock as mock
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.analytics import contributions
from intelmq_crossborder.bots.experts.contributions.expert import CrossBorderContributionsExpertBot


def ev(**fields):
    out = {"__type": "Event", "classification.type": "scanner", "source.ip": "192.0.2.1",
           "time.source": "2026-11-20T09:00:00+00:00", "sharing.tlp": "GREEN",
           "provenance.originator": "cert-a", "provenance.origin_hub": "hub-at"}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


class TestCrossBorderContributionsExpertBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderContributionsExpertBot
        cls.sysconfig = {"local_hub": "hub-lu"}

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory()
        self.db = str(Path(self.tmp.name) / "stats" / "contributions.sqlite")

    def tearDown(self):
        self.tmp.cleanup()
        super().tearDown()

    def test_records_and_forwards_unchanged(self):
        events = [ev(), ev(provenance__originator="cert-b"),
                  ev(source__ip="198.51.100.1", provenance__origin_hub=None, sharing__tlp="AMBER")]
        events[2] = {k: v for k, v in events[2].items() if v is not None}
        self.input_message = events
        self.run_bot(iterations=3, parameters={"database": self.db})
        for i, e in enumerate(events):
            self.assertMessageEqual(i, e)
        self.assertValidEvents()
        conn = sqlite3.connect(self.db)
        rows = conn.execute("SELECT contributor, hub, tlp, indicator, duplicate FROM events ORDER BY id").fetchall()
        self.assertEqual(rows, [("cert-a", "hub-at", "GREEN", "source.ip=192.0.2.1", 0),
                                ("cert-b", "hub-at", "GREEN", "source.ip=192.0.2.1", 1),
                                ("cert-a", "hub-lu", "AMBER", "source.ip=198.51.100.1", 0)])
        (c_a, c_lu, c_b) = contributions.contributions(conn)   # sorted by day, contributor, hub
        self.assertEqual((c_a.contributor, c_a.events, c_a.duplicates), ("cert-a", 1, 0))
        self.assertEqual((c_b.contributor, c_b.duplicates), ("cert-b", 1))
        self.assertEqual(c_lu.hub, "hub-lu")

    def test_early_warning_recorded_as_warning(self):
        self.input_message = ev(classification__type="other", classification__identifier="crossborder-early-warning",
                                classification__taxonomy="other", extra__early_warning_trigger="spread")
        self.run_bot(parameters={"database": self.db})
        conn = sqlite3.connect(self.db)
        self.assertEqual(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0], 0)
        self.assertEqual(conn.execute("SELECT trigger, tlp FROM warnings").fetchall(), [("spread", "GREEN")])
        self.assertOutputQueueLen(1)

    def test_records_the_effective_level_not_sharing_tlp(self):
        """sharing.tlp GREEN beside a tlp:red MISP tag is recorded as RED (was GREEN: visible under a GREEN ceiling)."""
        self.input_message = ev(extra__misp_tags=[{"name": "tlp:red"}])
        self.run_bot(parameters={"database": self.db})
        conn = sqlite3.connect(self.db)
        self.assertEqual(conn.execute("SELECT tlp FROM events").fetchall(), [("RED",)])
        from intelmq_crossborder.core import tlp
        self.assertEqual(contributions.contributions(conn, ceiling=tlp.Level.GREEN), [])

    def test_unreadable_label_is_dumped_not_recorded_as_unlabelled(self):
        self.input_message = [ev(extra__tlp=["RED"]), ev(provenance__originator="cert-b")]
        self.run_bot(iterations=2, parameters={"database": self.db}, allowed_error_count=1)
        self.assertOutputQueueLen(1)
        self.assertRegexpMatchesLog(r"extra\.tlp.*must be a string")
        conn = sqlite3.connect(self.db)
        self.assertEqual(conn.execute("SELECT contributor, tlp FROM events").fetchall(), [("cert-b", "GREEN")])

    def test_check(self):
        # '' is IntelMQ Manager's "not set" (the default hub), a hub id that is not text is an error
        self.assertEqual(CrossBorderContributionsExpertBot.check({"local_hub": ["hub-lu"]})[0][0], "error")
        self.assertIsNone(CrossBorderContributionsExpertBot.check(self.sysconfig))

    def test_manager_empty_optional_parameters_are_the_defaults(self):
        """'' as IntelMQ Manager saves it: the default store, local hub 'local', the default warning id."""
        manager = {"database": "", "local_hub": "", "warning_identifier": ""}
        self.assertIsNone(CrossBorderContributionsExpertBot.check(manager))
        event = {k: v for k, v in ev().items() if k != "provenance.origin_hub"}
        warning = ev(classification__identifier=contributions.WARNING_IDENTIFIER, source__ip="198.51.100.3")
        self.input_message = [event, warning]
        with mock.patch.object(contributions, "default_db_path", return_value=Path(self.db)):
            self.run_bot(iterations=2, parameters=manager)
        self.assertMessageEqual(0, event)
        conn = sqlite3.connect(self.db)
        try:
            self.assertEqual(conn.execute("SELECT hub FROM events").fetchall(), [("local",)])
            self.assertEqual(conn.execute("SELECT COUNT(*) FROM warnings").fetchone(), (1,))
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
