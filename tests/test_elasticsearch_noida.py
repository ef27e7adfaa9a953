"""The Elasticsearch output against an independent implementation of the Elasticsearch API (issue 14 §3).

noida-db (PyPI ``noida-db``, MIT; one local binary that also speaks Postgres, MySQL, Redis and more)
is started once per test in the foreground with ``--only elasticsearch``, an explicit free port and
its own data directory: without ``--only`` it would also bind 5432, 3306 and 6379, which is our
Redis.  It says it is Elasticsearch 8.15.3, so the bot runs with ``server_flavour: elasticsearch8``.

The tests that need injected faults (429s, 503s, per-document failures) stay with the project's
fake (tests/bots/test_elasticsearch_output.py); these run what a real server decides by itself.
What noida does differently from Elasticsearch is recorded in docs/bots/elasticsearch.md; two of
those differences are pinned here so that a new noida release that closes them is noticed.
Skipped when the ``noida_db`` package is not installed.
"""
import importlib.resources
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import pytest

noida_db = pytest.importorskip("noida_db", reason="noida-db is not installed (pip install noida-db): the "
                                                  "Elasticsearch output is tested against the project's fake only")

from elasticsearch import NotFoundError  # noqa: E402

from intelmq_crossborder.bots.outputs.elasticsearch.output import CrossBorderElasticsearchOutputBot  # noqa: E402
from intelmq_crossborder.core import tlp  # noqa: E402
from intelmq_crossborder.core.retry import Backoff  # noqa: E402
from intelmq_crossborder.datalake import elastic  # noqa: E402
from intelmq_crossborder.datalake.indexer import BulkIndexer, BulkRequestRefused  # noqa: E402
from intelmq_crossborder.datalake.journal import JOURNAL_KEY  # noqa: E402
from intelmq_crossborder.datalake.lifecycle import Lifecycle  # noqa: E402
from intelmq_crossborder.harmonization import merged_harmonization  # noqa: E402
from tests.es_harness import ElasticsearchOutputTestCase, ev  # noqa: E402

FLAVOUR = "elasticsearch8"
PATTERN = "crossborder-events-*"
HIDDEN = {"feed__url": "https://feeds.secret-originator.example/cti", "feed__name": "Secret Originator Feed",
          "provenance__originator": "cert-secret-originator"}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def binary() -> str:
    path = importlib.resources.files("noida_db").joinpath("noida-db")
    if not os.access(str(path), os.X_OK):
        os.chmod(str(path), 0o755)          # as noida_db.cli does before it runs the binary
    return str(path)


class Noida:
    """One noida-db process serving only Elasticsearch on ``port``; the state is read through the API."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.proc = None

    def start(self) -> "Noida":
        self.dir = Path(tempfile.mkdtemp(prefix="noida-es-"))
        self.log = open(self.dir / "noida.log", "wb")
        self.proc = subprocess.Popen(
            [binary(), "start", "--only", "elasticsearch", "--elasticsearch-port", str(self.port),
             "--host", "127.0.0.1", "--data-dir", str(self.dir / "data")],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"noida-db did not answer on {self.url}: {self.output()}")

    def output(self) -> str:
        return (self.dir / "noida.log").read_text("utf-8", "replace")[-2000:]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        return elastic.make_client([self.url], FLAVOUR)

    def all_docs(self, pattern: str = PATTERN) -> dict:
        """_id -> (index, source) over the lake's indices."""
        client = self.client()
        client.indices.refresh(index=pattern, allow_no_indices=True, ignore_unavailable=True)
        hits = client.search(index=pattern, size=1000, allow_no_indices=True, ignore_unavailable=True)
        return {h["_id"]: (h["_index"], h["_source"]) for h in hits["hits"]["hits"]}

    @property
    def templates(self) -> dict:
        try:
            listed = self.client().indices.get_index_template()["index_templates"]
        except NotFoundError:
            return {}
        return {t["name"]: t["index_template"] for t in listed}


def keep(n=0, **fields):
    """An event without a retention period: its index is ``rkeep``, which needs no ILM policy."""
    event = ev(n, **fields)
    del event["sharing.retention_days"]
    return event


class TestElasticsearchOutputOnNoida(ElasticsearchOutputTestCase, unittest.TestCase):
    def start_lake(self):
        return Noida().start()

    def run_es(self, events, **params):
        params.setdefault("server_flavour", FLAVOUR)
        super().run_es(events, **params)

    def test_batch_indexed_with_template_and_ids(self):
        self.run_es([keep(0), keep(1, source__geolocation__latitude=48.2, source__geolocation__longitude=16.37),
                     keep(2, sharing__tlp="CLEAR")])
        docs = self.es.all_docs()
        self.assertEqual(sorted(docs), [f"{n:064x}" for n in range(3)])
        index, src = docs[f"{1:064x}"]
        self.assertEqual(index, "crossborder-events-rkeep-2026.11.20")
        self.assertEqual(src["sharing"]["tlp"], "GREEN")
        self.assertEqual(src["source"]["geolocation"]["location"], {"lat": 48.2, "lon": 16.37})
        self.assertEqual(docs[f"{2:064x}"][1]["sharing"]["tlp"], "CLEAR")
        props = self.es.templates["crossborder-events-rkeep"]["template"]["mappings"]["properties"]
        self.assertEqual(props["source"]["properties"]["ip"]["type"], "ip")
        self.assertEqual(props["source"]["properties"]["geolocation"]["properties"]["location"]["type"], "geo_point")
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 0)

    def test_the_server_applies_the_template(self):
        self.run_es([keep(0)])
        mapping = self.es.client().indices.get_mapping(index="crossborder-events-rkeep-2026.11.20")
        props = mapping["crossborder-events-rkeep-2026.11.20"]["mappings"]["properties"]
        self.assertEqual(props["source"]["properties"]["ip"]["type"], "ip")
        self.assertEqual(props["time"]["properties"]["source"]["type"], "date")
        self.es.client().indices.refresh(index=PATTERN)
        hits = self.es.client().search(index=PATTERN, query={"term": {"source.ip": "192.0.2.1"}})
        self.assertEqual(hits["hits"]["total"]["value"], 1)

    def test_reindexing_is_idempotent(self):
        self.run_es([keep(0), keep(0)])
        self.assertEqual(len(self.es.all_docs()), 1)

    def test_bulk_size_one_indexes_each(self):
        self.run_es([keep(0), keep(1)], bulk_size=1)
        self.assertEqual(len(self.es.all_docs()), 2)

    def test_mapping_error_dumped_with_server_reason(self):
        # rtir_id is an Integer without a length in the harmonization; 2**70 does not fit a long
        dumped = []
        with mock.patch.object(CrossBorderElasticsearchOutputBot, "_dump_message",
                               lambda bot, tb, message: dumped.append((tb, message))):
            self.input_message = [keep(0), keep(1, rtir_id=2 ** 70), keep(2)]
            self.run_bot(iterations=3, parameters={"hosts": [self.es.url], "server_flavour": FLAVOUR},
                         allowed_error_count=1)
        self.assertEqual(sorted(self.es.all_docs()), [f"{0:064x}", f"{2:064x}"])
        (tb, message), = dumped
        self.assertEqual(message["provenance.fingerprint"], f"{1:064x}")
        self.assertIn("failed to parse field [rtir_id] of type [long]", "".join(tb))
        self.assertLogMatches(r"The lake refused document 0+1 in crossborder-events-rkeep-2026.11.20 \(status 400\): "
                              r"document_parsing_exception: .*; the event is dumped\.", "ERROR")

    def test_hidden_source_never_in_the_lake(self):
        flagged = keep(0, sharing__do_not_disclose_source=True, **HIDDEN)
        del flagged["provenance.fingerprint"]
        self.run_es([flagged, keep(1, feed__name="Public Feed")])
        written = json.dumps(self.es.all_docs())
        self.assertEqual(len(self.es.all_docs()), 2)
        for field, value in HIDDEN.items():
            self.assertNotIn(value, written, field)
        self.assertIn("Public Feed", written)

    def test_above_ceiling_is_not_indexed(self):
        self.run_es([keep(0, sharing__tlp="RED"), keep(1, extra__misp_tags=[{"name": "tlp:red"}]), keep(2)],
                    tlp_ceiling="AMBER")
        self.assertEqual(sorted(self.es.all_docs()), [f"{2:064x}"])

    def test_refused_connection_keeps_journal_then_recovers(self):
        port = free_port()
        host = f"http://127.0.0.1:{port}"
        self.input_message = [keep(0), keep(1)]
        self.run_bot(iterations=2, parameters={"hosts": [host], "max_retries": 1, "server_flavour": FLAVOUR},
                     allowed_warning_count=1)
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 2)
        with Noida(port) as back:
            self.input_message = [keep(2)]
            self.run_bot(parameters={"hosts": [host], "server_flavour": FLAVOUR})
            self.assertEqual(sorted(back.all_docs()), [f"{n:064x}" for n in range(3)])
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 0)


# --- what noida does differently (docs/bots/elasticsearch.md); a release that closes a gap fails here -----

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def _doc(n, **fields):
    flat = {"source.ip": f"192.0.2.{n + 1}", "provenance.fingerprint": f"{n:064x}", **fields}
    return elastic.build_document(flat, label=elastic.LakeTLP(tlp.Level.GREEN, False), prefix="lake",
                                  rotation="daily", default_retention_days=None, now=NOW)


def test_noida_has_no_ilm_api_and_the_indexer_names_the_refused_request():
    with Noida() as lake:
        ix = BulkIndexer(lake.client, Backoff(0.0), lifecycle=Lifecycle(
            "lake", elastic.mapping_from_harmonization(merged_harmonization()), FLAVOUR))
        with pytest.raises(BulkRequestRefused, match=r"PUT _ilm/policy/lake-retention-30d \(400: no handler found"):
            ix.send([_doc(0, **{"sharing.retention_days": 30})])
        assert lake.all_docs("lake-*") == {}
        assert ix.send([_doc(1)]) == [] and list(lake.all_docs("lake-*")) == [f"{1:064x}"]   # rkeep: no policy


def test_noida_takes_a_latitude_elasticsearch_refuses():
    # Elasticsearch refuses latitude 95 on a geo_point ("illegal latitude value"), as the fake does
    with Noida() as lake:
        ix = BulkIndexer(lake.client, Backoff(0.0), lifecycle=Lifecycle(
            "lake", elastic.mapping_from_harmonization(merged_harmonization()), FLAVOUR))
        refused = ix.send([_doc(0, **{"source.geolocation.latitude": 95.0, "source.geolocation.longitude": 10.0})])
        assert refused == [] and ix.indexed == 1
