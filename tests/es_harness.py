"""The shared harness of the Elasticsearch output's BotTestCase tests: the real bot against
the fake Elasticsearch server, with its Redis journal (in this run's database, tests/isolation.py) cleaned around each test."""
from unittest import mock

import redis
from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.outputs.elasticsearch.output import CrossBorderElasticsearchOutputBot
from intelmq_crossborder.datalake.journal import JOURNAL_KEY
from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from tests.isolation import REDIS_DB


def ev(n=0, **fields):
    """Event number ``n`` (its fingerprint is ``n`` in hex, the document id); ``a__b=...`` sets ``a.b``."""
    out = {"__type": "Event", "classification.type": "scanner", "source.ip": f"192.0.2.{n + 1}",
           "time.observation": "2026-11-20T10:00:00+00:00", "time.source": "2026-11-20T09:00:00+00:00",
           "sharing.tlp": "GREEN", "sharing.retention_days": 30, "provenance.fingerprint": f"{n:064x}"}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


class ElasticsearchOutputTestCase(CrossBorderBotTestCase):
    #: extra keyword arguments for run_bot (e.g. allowed_error_count)
    run_kwargs: dict = {}

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderElasticsearchOutputBot
        cls.sysconfig = {"hosts": ["http://127.0.0.1:9"], "journal_redis_db": REDIS_DB,
                         "initial_backoff": 0.01, "max_retries": 3, "tlp_ceiling": "AMBER"}

    def start_lake(self):
        """The server the bot indexes into (``self.es``): the project's fake unless a subclass says otherwise."""
        return FakeElasticsearch().start()

    def setUp(self):
        super().setUp()
        self.es = self.start_lake()
        self.redis = redis.Redis(db=REDIS_DB)
        self.redis.delete(JOURNAL_KEY.format(bot_id="test-bot"))

    def tearDown(self):
        self.es.stop()
        self.redis.delete(JOURNAL_KEY.format(bot_id="test-bot"))
        super().tearDown()

    def run_es(self, events, **params):
        self.input_message = events
        params.setdefault("hosts", [self.es.url])
        self.run_bot(iterations=len(events), parameters=params, **self.run_kwargs)

    def run_with_one_mapping_error(self) -> list:
        """Three events; the lake refuses the second (latitude 95: a mapping error).
        Returns the (traceback, message) pairs the bot dumped."""
        dumped = []
        with mock.patch.object(CrossBorderElasticsearchOutputBot, "_dump_message",
                               lambda bot, tb, message: dumped.append((tb, message))):
            self.input_message = [ev(0), ev(1, source__geolocation__latitude=95.0,
                                          source__geolocation__longitude=10.0), ev(2)]
            self.run_bot(iterations=3, parameters={"hosts": [self.es.url]}, allowed_error_count=1)
        return dumped
