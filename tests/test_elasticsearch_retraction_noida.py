"""The Elasticsearch output's retraction cases (tests/bots/test_elasticsearch_output_retraction.py)
against noida-db, an independent implementation of the Elasticsearch API: search by ids and
terms, bulk delete and re-index as a real server decides them.  Skipped without noida-db."""
import unittest

from tests.bots.test_elasticsearch_output_retraction import RetractionCases
from tests.es_harness import ElasticsearchOutputTestCase
from tests.test_elasticsearch_noida import FLAVOUR, Noida


class TestElasticsearchRetractionOnNoida(RetractionCases, ElasticsearchOutputTestCase, unittest.TestCase):
    def start_lake(self):
        return Noida().start()

    def lake_docs(self) -> dict:
        return self.es.all_docs("crossborder-events*")

    def run_es(self, events, **params):
        params.setdefault("server_flavour", FLAVOUR)
        super().run_es(events, **params)
