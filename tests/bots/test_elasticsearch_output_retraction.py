"""BotTestCase tests: the Elasticsearch output applies retractions (withdraw, relabel, erase) to the
documents it indexed (the project's fake Elasticsearch; the same cases against noida-db, a real
implementation of the API, in tests/test_elasticsearch_retraction_noida.py)."""
import json
import unittest
import uuid

import redis

from tests.es_harness import ElasticsearchOutputTestCase, ev
from intelmq_crossborder.datalake.journal import JOURNAL_KEY
from intelmq_crossborder.policy.redact import hidden_event_uuid
from intelmq_crossborder.policy.retraction import new_retraction
from tests.isolation import REDIS_DB

UUIDS = [str(uuid.UUID(int=n + 1, version=4)) for n in range(5)]


def lake_ev(n, **fields):
    """Event ``n`` with its uuid, kept without a retention period (noida-db has no ILM API)."""
    event = ev(n, provenance__event_uuid=UUIDS[n], **fields)
    del event["sharing.retention_days"]
    return event


def retraction(n, action="withdraw", scope="event", **kwargs) -> dict:
    r = new_retraction(action, "false positive", "at-hub", scope=scope,
                       target_event_uuid=None if scope == "indicator" else UUIDS[n],
                       target_fingerprint=f"{n:064x}", **kwargs)
    return dict(r.to_event(), __type="Event")


class RetractionCases:
    """The cases, run against the fake here and against noida-db in tests/test_elasticsearch_retraction_noida.py."""

    def lake_docs(self) -> dict:
        """_id -> (index, source) over the event indices and the tombstone index."""
        return self.es.all_docs()

    def events_docs(self) -> dict:
        return {i: src for i, (idx, src) in self.lake_docs().items() if idx.startswith("crossborder-events-")}

    def tombstones(self) -> dict:
        return {i: src for i, (idx, src) in self.lake_docs().items() if idx == "crossborder-events.retractions"}

    def test_withdraw_deletes_by_document_id_and_leaves_a_tombstone(self):
        self.run_es([lake_ev(0), lake_ev(1)], bulk_size=1)
        self.assertEqual(set(self.events_docs()), {f"{0:064x}", f"{1:064x}"})
        r = retraction(0)
        self.run_es([r], bulk_size=1)
        self.assertEqual(set(self.events_docs()), {f"{1:064x}"})
        (stone,) = self.tombstones().values()
        self.assertEqual(stone["retraction"]["target_event_uuid"], UUIDS[0])
        self.assertNotIn("192.0.2.1", json.dumps(self.tombstones()))          # ids only, no value
        if hasattr(self.es, "exchanges"):          # the fake keeps the requests: one delete by _index and _id
            deletes = [line for e in self.es.exchanges if e["path"].endswith("_bulk")
                       for line in (e["body"] or b"").split(b"\n") if b'"delete"' in line]
            self.assertEqual(len(deletes), 1)
            self.assertEqual(json.loads(deletes[0])["delete"]["_id"], f"{0:064x}")
        self.assertLogMatches(r"Retraction .* applied: 1 document\(s\) deleted, 0 relabelled", "INFO")

    def test_erase_flushes_the_batch_first_and_clears_the_journal(self):
        # the target is still in the batch (and its Redis journal) when the erase arrives
        self.run_es([lake_ev(0), lake_ev(1), retraction(0, "erase")], bulk_size=10, bulk_max_seconds=3600)
        self.assertEqual(set(self.events_docs()), {f"{1:064x}"})
        journal = redis.Redis(db=REDIS_DB).lrange(JOURNAL_KEY.format(bot_id="test-bot"), 0, -1)
        self.assertFalse([raw for raw in journal if b"192.0.2.1" in raw])

    def test_relabel_within_the_ceiling_rewrites_the_label(self):
        self.run_es([lake_ev(0)], bulk_size=1)
        self.run_es([retraction(0, "relabel", new_tlp="AMBER")], bulk_size=1)
        (doc,) = self.events_docs().values()
        self.assertEqual(doc["sharing"]["tlp"], "AMBER")
        self.assertEqual(doc["source"]["ip"], "192.0.2.1")

    def test_relabel_above_the_ceiling_deletes(self):
        self.run_es([lake_ev(0)], bulk_size=1)
        self.run_es([retraction(0, "relabel", new_tlp="RED")], bulk_size=1)
        self.assertEqual(self.events_docs(), {})

    def test_relabel_hiding_the_source_removes_the_source_fields(self):
        self.run_es([lake_ev(0, feed__name="Secret Originator Feed", provenance__originator="cert-secret")],
                    bulk_size=1)
        self.run_es([retraction(0, "relabel", new_do_not_disclose_source=True)], bulk_size=1)
        (doc,) = self.events_docs().values()
        self.assertNotIn("Secret Originator", json.dumps(doc))
        self.assertNotIn("cert-secret", json.dumps(doc))
        self.assertTrue(doc["sharing"]["do_not_disclose_source"])

    def test_a_hidden_source_document_is_found_by_its_derived_uuid(self):
        self.run_es([lake_ev(0, sharing__do_not_disclose_source=True, misp__event_uuid=UUIDS[0])], bulk_size=1)
        stored = list(self.events_docs().values())
        self.assertIn(stored[0]["provenance"]["event_uuid"], (UUIDS[0], hidden_event_uuid(UUIDS[0])))
        self.run_es([retraction(0)], bulk_size=1)
        self.assertEqual(self.events_docs(), {})

    def test_indicator_scope_and_documents_not_named_stay(self):
        self.run_es([lake_ev(0), lake_ev(1)], bulk_size=1)
        self.run_es([retraction(0, scope="indicator")], bulk_size=1)
        self.assertEqual(set(self.events_docs()), {f"{1:064x}"})
        self.run_es([retraction(3)], bulk_size=1)                          # not held: nothing deleted
        self.assertEqual(set(self.events_docs()), {f"{1:064x}"})

    def test_a_hostile_retraction_is_dumped(self):
        self.run_es([lake_ev(0)], bulk_size=1)
        self.run_kwargs = {"allowed_error_count": 1}
        bad = dict(retraction(0), **{"source.ip": "192.0.2.1"})          # content in a retraction: refused
        self.run_es([bad], bulk_size=1)
        self.assertLogMatches(r".*source\.ip.*carries no event content.*", "ERROR")
        self.assertEqual(len(self.events_docs()), 1)



class TestElasticsearchOutputRetraction(RetractionCases, ElasticsearchOutputTestCase, unittest.TestCase):
    pass


if __name__ == "__main__":
    unittest.main()
