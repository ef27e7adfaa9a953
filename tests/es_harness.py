"""The shared harness of the Elasticsearch output's BotTestCase tests: the real bot against
the fake Elasticsearch server, with its Redis journal (db 15) cleaned around each test."""
import redis
from botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.outputs.elasticsearch.output import JOURNAL_KEY, CrossBorderElasticsearchOutputBot
from intelmq_crossborder.fake_elasticsearch import FakeElasticsearch

REDIS_DB = 15


class ElasticsearchOutputTestCase(CrossBorderBotTestCase):
    #: extra keyword arguments for run_bot (e.g. allowed_error_count)
    run_kwargs: dict = {}

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderElasticsearchOutputBot
        cls.sysconfig = {"hosts": ["http://127.0.0.1:9"], "journal_redis_db": REDIS_DB,
                         "initial_backoff": 0.01, "max_retries": 3, "tlp_ceiling": "AMBER"}

    def setUp(self):
        super().setUp()
        self.es = FakeElasticsearch().start()
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
