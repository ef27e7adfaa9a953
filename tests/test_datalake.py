"""Unit tests of the data lake's journal, batch, bulk indexer and lifecycle (intelmq_crossborder.datalake),
without IntelMQ: the fake Elasticsearch server and a real Redis (this run's database, tests/isolation.py; one key
under this module's prefix per test, deleted afterwards)."""
import logging
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import redis

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.datalake import elastic
from intelmq_crossborder.datalake.indexer import BulkIndexer, BulkRequestRefused, FlushFailed
from intelmq_crossborder.datalake.journal import Batch, Journal, journal_key
from intelmq_crossborder.datalake.lifecycle import Lifecycle
from intelmq_crossborder.harmonization import merged_harmonization
from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from tests.isolation import REDIS_DB

PREFIX = "test-datalake:"
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
MAPPING = elastic.mapping_from_harmonization(merged_harmonization())


@pytest.fixture
def journal():
    client = redis.Redis(db=REDIS_DB)
    key = f"{PREFIX}{uuid.uuid4().hex}"
    yield Journal(client, key)
    client.delete(key)


@pytest.fixture
def es():
    with FakeElasticsearch() as server:
        yield server


def doc(n: int, **fields) -> elastic.Doc:
    flat = {"source.ip": f"192.0.2.{n + 1}", "sharing.retention_days": 30, "provenance.fingerprint": f"{n:064x}",
            **fields}
    return elastic.build_document(flat, label=elastic.LakeTLP(tlp.Level.GREEN, False), prefix="lake",
                                  rotation="daily", default_retention_days=None, now=NOW)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def indexer(es, sleeps=None, **kw) -> BulkIndexer:
    lifecycle = Lifecycle("lake", MAPPING, "elasticsearch9")
    kw.setdefault("max_retries", 3)
    return BulkIndexer(lambda: elastic.make_client([es.url]), Backoff(0.5, 2.0), lifecycle=lifecycle,
                       sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw)


# --- journal -------------------------------------------------------------------------------

def test_journal_keeps_the_order_and_is_rewritten_whole(journal):
    assert journal_key("es-out") == "intelmq-crossborder:es-journal:es-out"
    for raw in (b"one", b"two", b"three"):
        journal.append(raw)
    assert journal.entries() == [b"one", b"two", b"three"] and len(journal) == 3
    journal.replace([b"two", b"three"])
    assert journal.entries() == [b"two", b"three"]
    journal.clear()
    assert journal.entries() == [] and len(journal) == 0


# --- batch ---------------------------------------------------------------------------------

def test_batch_journals_before_it_acknowledges(journal):
    batch = Batch(3, 5.0, journal)
    seen = []
    batch.add(doc(0), b"e0", acknowledge=lambda: seen.append(len(journal)))
    assert seen == [1] and len(batch) == 1


def test_batch_is_ready_when_full_or_due(journal):
    clock = Clock()
    batch = Batch(2, 5.0, journal, clock=clock)
    assert not batch.ready()
    batch.add(doc(0), b"e0")
    assert not batch.ready()
    clock.now += 5.0
    assert batch.due() and batch.ready()
    batch = Batch(2, 5.0, journal, clock=clock)
    batch.add(doc(0), b"e0")
    batch.add(doc(1), b"e1")
    assert batch.full() and batch.ready()


def test_batch_flush_empties_batch_and_journal(journal):
    batch = Batch(10, 5.0, journal)
    for n in range(3):
        batch.add(doc(n), f"e{n}".encode())
    sent = []
    batch.flush(sent.append)
    assert [d.id for d in sent[0]] == [f"{n:064x}" for n in range(3)]
    assert len(batch) == 0 and len(journal) == 0 and not batch.due()


def test_failed_flush_keeps_only_what_was_not_indexed(journal):
    clock = Clock()
    batch = Batch(10, 5.0, journal, clock=clock)
    docs = [doc(n) for n in range(3)]
    for n, d in enumerate(docs):
        batch.add(d, f"e{n}".encode())

    def send(sent):
        raise FlushFailed("lake down", [sent[2]])
    clock.now += 7
    with pytest.raises(FlushFailed):
        batch.flush(send)
    assert len(batch) == 1 and journal.entries() == [b"e2"]
    assert not batch.due()                       # the wait restarts after a failed flush
    clock.now += 5
    assert batch.ready()
    batch.flush(lambda sent: None)
    assert len(journal) == 0


def test_flush_without_journal(es):
    batch = Batch(10, 5.0, None)
    batch.add(doc(0), b"e0")
    batch.flush(indexer(es).send)
    assert sorted(es.all_docs()) == [f"{0:064x}"]


def test_recover_buffers_the_journal_oldest_first_and_due_at_once(journal):
    for raw in (b"e0", b"bad", b"e2"):
        journal.append(raw)
    batch = Batch(10, 5.0, journal)
    loaded = batch.recover(lambda raw: None if raw == b"bad" else doc(int(raw[1:])))
    assert loaded == 2 and batch.due()
    sent = []
    batch.flush(sent.append)
    assert [d.id for d in sent[0]] == [f"{0:064x}", f"{2:064x}"]
    assert Batch(10, 5.0, None).recover(lambda raw: doc(0)) == 0


def test_timer_flushes_an_idle_batch_and_reports_failures(journal):
    batch = Batch(10, 0.1, journal)
    flushed, errors = threading.Event(), []
    attempts = []

    def flush():
        attempts.append(1)
        if len(attempts) == 1:
            raise FlushFailed("down", [])
        batch.flush(lambda docs: flushed.set())
    batch.add(doc(0), b"e0")
    batch.start_timer(flush, errors.append)
    try:
        assert flushed.wait(5)
    finally:
        batch.stop_timer()
    assert len(errors) == 1 and isinstance(errors[0], FlushFailed) and len(journal) == 0


# --- indexer -------------------------------------------------------------------------------

def test_indexer_indexes_and_puts_templates_once(es):
    ix = indexer(es)
    assert ix.send([doc(0), doc(1, **{"sharing.retention_days": 365})]) == []
    assert ix.send([doc(2)]) == []
    assert sorted(es.all_docs()) == [f"{n:064x}" for n in range(3)] and ix.indexed == 3
    assert sorted(es.ilm_policies) == ["lake-retention-30d", "lake-retention-365d"]
    assert [r[1] for r in es.requests].count("/_index_template/lake-r30d") == 1


def test_indexer_retries_only_throttled_documents_with_backoff(es):
    es.item_failures[f"{1:064x}"] = [429, 503]
    sleeps = []
    assert indexer(es, sleeps).send([doc(n) for n in range(3)]) == []
    assert es.bulk_batches == [3, 1, 1] and sleeps == [0.5, 1.0]
    assert len(es.all_docs()) == 3


def test_indexer_returns_and_reports_refused_documents(es):
    reported = []
    ix = indexer(es)
    bad = doc(1, **{"source.geolocation.latitude": 95.0, "source.geolocation.longitude": 10.0})
    refused = ix.send([doc(0), bad, doc(2)], on_refused=reported.append)
    assert refused == reported and len(refused) == 1
    assert refused[0].doc is bad and refused[0].status == 400
    assert "illegal latitude value [95.0]" in refused[0].reason
    assert (ix.indexed, ix.rejected) == (2, 1)


def test_indexer_gives_up_after_max_retries_naming_what_is_left(es):
    es.bulk_failures = [429] * 10
    sleeps = []
    docs = [doc(0), doc(1)]
    with pytest.raises(FlushFailed, match=r"2 of 2 events not indexed after 2 retries.*HTTP 429") as err:
        indexer(es, sleeps, max_retries=2).send(docs)
    assert err.value.pending == docs and sleeps == [0.5, 1.0] and es.bulk_requests == 3


def test_indexer_refused_connection_is_retried_then_fails(es):
    url = es.url
    es.stop()
    sleeps = []
    ix = BulkIndexer(lambda: elastic.make_client([url]), Backoff(0.5, 2.0), max_retries=1, sleep=sleeps.append)
    with pytest.raises(FlushFailed, match="ConnectionError") as err:
        ix.send([doc(0)])
    assert len(err.value.pending) == 1 and sleeps == [0.5]


def test_indexer_whole_request_refused_is_a_configuration_problem(es):
    es.bulk_failures = [401]
    with pytest.raises(BulkRequestRefused, match="401"):
        indexer(es).send([doc(0)])


def test_indexer_logs_each_retry(es, caplog):
    es.bulk_failures = [429]
    with caplog.at_level(logging.INFO, logger="intelmq_crossborder.datalake.indexer"):
        indexer(es).send([doc(0)])
    assert "Lake busy or unreachable (HTTP 429 es_rejected_execution_exception), retrying 1 events in 0.50 s." \
        in caplog.messages


def test_indexer_connects_lazily_and_again_after_a_failed_connect(es):
    calls = []

    def connect():
        calls.append(1)
        if len(calls) == 1:
            raise elastic.ElasticConfigError("not yet")
        return elastic.make_client([es.url])
    ix = BulkIndexer(connect, Backoff(0.0), max_retries=1, sleep=lambda s: None)
    assert calls == []
    ix.send([doc(0)])
    assert len(calls) == 2 and len(es.all_docs()) == 1


# --- lifecycle -----------------------------------------------------------------------------

def test_lifecycle_puts_policy_and_template_per_retention_value(es):
    client = elastic.make_client([es.url])
    life = Lifecycle("lake", MAPPING, "elasticsearch9", default_retention_days=7, shards=2, replicas=0)
    life.ensure(client, [{"sharing": {"retention_days": 30}}, {}, {"sharing": {"retention_days": 30}}])
    assert sorted(es.ilm_policies) == ["lake-retention-30d", "lake-retention-7d"]
    tpl = es.templates["lake-r7d"]
    assert tpl["template"]["settings"] == {"number_of_shards": 2, "number_of_replicas": 0,
                                           "index.lifecycle.name": "lake-retention-7d"}
    before = len(es.requests)
    life.ensure(client, [{"sharing": {"retention_days": 7}}])
    assert len(es.requests) == before


def test_lifecycle_keep_has_a_template_and_no_policy(es):
    life = Lifecycle("lake", MAPPING, "elasticsearch9")
    life.ensure(elastic.make_client([es.url]), [{}])
    assert list(es.templates) == ["lake-rkeep"] and es.ilm_policies == {}


def test_lifecycle_unmanaged_puts_nothing(es):
    Lifecycle("lake", MAPPING, "elasticsearch9", manage=False).ensure(elastic.make_client([es.url]),
                                                                      [{"sharing": {"retention_days": 30}}])
    assert es.templates == {} and es.ilm_policies == {}


def test_lifecycle_opensearch_leaves_an_existing_ism_policy():
    with FakeElasticsearch("opensearch2") as os_:
        client = elastic.make_client([os_.url], "opensearch2")
        Lifecycle("lake", MAPPING, "opensearch2").ensure(client, [{"sharing": {"retention_days": 30}}])
        first = dict(os_.ism_policies)
        Lifecycle("lake", MAPPING, "opensearch2").ensure(client, [{"sharing": {"retention_days": 30}}])  # 409
        assert os_.ism_policies == first and list(first) == ["lake-retention-30d"]
        assert "index.lifecycle.name" not in os_.templates["lake-r30d"]["template"]["settings"]


def test_timer_tick_is_bounded():
    batch = Batch(10, 1000.0, None)
    started = time.monotonic()
    batch.start_timer(lambda: None, lambda exc: None)
    batch.stop_timer()
    batch._timer.join(2)
    assert not batch._timer.is_alive() and time.monotonic() - started < 2


def test_a_refused_policy_put_is_named():
    # a server without the ILM API (noida-db, see docs/bots/elasticsearch.md) answers 400 "no handler
    # found": a configuration problem, reported with the request it refused, not as a bulk error
    with FakeElasticsearch("opensearch2") as no_ilm:
        client = elastic.make_client([no_ilm.url], "opensearch2")
        ix = BulkIndexer(lambda: client, Backoff(0.0), lifecycle=Lifecycle("lake", MAPPING, "elasticsearch9"))
        with pytest.raises(BulkRequestRefused, match=r"the lake refused PUT _ilm/policy/lake-retention-30d "
                                                     r"\(400: no handler found"):
            ix.send([doc(0)])
        assert no_ilm.bulk_requests == 0
