"""BotTestCase tests of the cross-border provenance / loop-guard expert (de-duplication in this run's Redis database)."""
import re
import unittest
import unittest.mock as mock
import uuid

import redis
from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.experts.provenance import expert as provenance_expert
from intelmq_crossborder.bots.experts.provenance.expert import CrossBorderProvenanceExpertBot
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.runtime import state_store
from tests.isolation import REDIS_DB

BASE = {"__type": "Event", "classification.type": "c2-server", "source.ip": "203.0.113.9", "source.port": 443,
        "time.source": "2026-11-20T10:00:00+00:00"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def ev(**fields):
    out = dict(BASE)
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


class TestCrossBorderProvenanceExpertBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.prefix = f"test-provenance:{uuid.uuid4()}:"
        cls.bot_reference = CrossBorderProvenanceExpertBot
        cls.sysconfig = {"direction": "inbound", "hub_id": "xx-hub", "max_hops": 3, "dedup_window": 60,
                         "redis_cache_db": REDIS_DB, "dedup_key_prefix": cls.prefix}

    def tearDown(self):
        r = redis.Redis(db=REDIS_DB)
        keys = list(r.scan_iter(match=self.prefix + "*"))
        if keys:
            r.delete(*keys)
        super().tearDown()

    # --- outbound -----------------------------------------------------------------
    def test_outbound_stamps(self):
        self.input_message = ev()
        self.run_bot(parameters={"direction": "outbound", "originator": "CERT.xx", "origin_country": "XX"})
        out = self.output_events()[0]
        self.assertRegex(out["provenance.event_uuid"], UUID_RE)
        self.assertEqual(out["provenance.origin_hub"], "xx-hub")
        self.assertEqual(out["provenance.originator"], "CERT.xx")
        self.assertEqual(out["provenance.origin_country"], "XX")
        self.assertEqual(out["provenance.hub_path"], "xx-hub")
        self.assertEqual(out["provenance.fingerprint"], fingerprint(ev()))
        self.assertValidEvents()

    def test_outbound_keeps_existing_and_appends_to_path(self):
        existing = ev(provenance__event_uuid="0b8f9a52-31c5-4b87-9d1c-6d3a1e2f4c5d", provenance__originator="CERT.at",
                      provenance__origin_hub="at-hub", provenance__hub_path="at-hub")
        self.input_message = [existing, ev(provenance__hub_path="at-hub,xx-hub")]
        self.run_bot(iterations=2, parameters={"direction": "outbound", "originator": "CERT.xx", "dedup_window": 0})
        first, second = self.output_events()
        self.assertEqual(first["provenance.event_uuid"], "0b8f9a52-31c5-4b87-9d1c-6d3a1e2f4c5d")
        self.assertEqual(first["provenance.originator"], "CERT.at")
        self.assertEqual(first["provenance.origin_hub"], "at-hub")
        self.assertEqual(first["provenance.hub_path"], "at-hub,xx-hub")
        self.assertEqual(second["provenance.hub_path"], "at-hub,xx-hub")   # not appended twice

    # --- inbound ------------------------------------------------------------------
    def test_inbound_drops_loops_and_long_paths(self):
        self.input_message = [ev(provenance__hub_path="at-hub,xx-hub,de-hub"),     # passed through us
                              ev(provenance__origin_hub="xx-hub", source__port=1),  # our own event
                              ev(provenance__hub_path="a,b,c,d", source__port=2),   # 4 hops > 3
                              ev(provenance__hub_path="a,b,c", source__port=3)]     # fine
        self.run_bot(iterations=4, parameters={"counts_interval": 0})
        out = self.output_events()
        self.assertEqual([e["source.port"] for e in out], [3])
        self.assertRegex(out[0]["provenance.event_uuid"], UUID_RE)
        self.assertEqual(out[0]["provenance.hub_path"], "a,b,c")     # inbound does not append
        self.bot.log_counts()
        self.assertRegexpMatchesLog(r"Provenance inbound: passed 1 .*dropped hop-limit 1, loop 2\.")

    def test_inbound_deduplicates_by_fingerprint(self):
        from_at = ev(provenance__hub_path="at-hub", feed__name="AT exchange")
        from_de = ev(provenance__hub_path="at-hub,de-hub", feed__name="DE exchange",
                     time__observation="2026-11-21T00:00:00+00:00")
        other = ev(source__ip="203.0.113.10")
        self.input_message = [from_at, from_de, other]
        self.run_bot(iterations=3)
        out = self.output_events()
        self.assertEqual([(e["feed.name"] if "feed.name" in e else None, e["source.ip"]) for e in out],
                         [("AT exchange", "203.0.113.9"), (None, "203.0.113.10")])
        key = self.prefix + "inbound:" + fingerprint(from_at)
        ttl = redis.Redis(db=REDIS_DB).ttl(key)
        self.assertTrue(0 < ttl <= 60, ttl)

    def test_outbound_fingerprints_do_not_make_inbound_duplicates(self):
        """An outbound and an inbound expert on the same Redis and prefix: the hub's own
        report of an indicator must not make a peer's report of it a duplicate."""
        own = ev()
        self.input_message = own
        self.run_bot(parameters={"direction": "outbound"})
        self.assertOutputQueueLen(1)
        self.input_message = ev(provenance__hub_path="at-hub", feed__name="AT exchange")
        self.run_bot()
        self.assertOutputQueueLen(1)
        self.assertEqual(self.output_events()[0]["feed.name"], "AT exchange")

    def test_retry_of_the_same_message_is_not_a_duplicate(self):
        # a bot restarted before acknowledging processes the very same message again
        msg = ev(provenance__hub_path="at-hub", provenance__event_uuid="8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b5a")
        self.input_message = msg
        self.run_bot()
        self.input_message = msg
        self.run_bot()
        self.assertOutputQueueLen(1)

    def test_no_dedup_without_window(self):
        self.input_message = [ev(), ev()]
        self.run_bot(iterations=2, parameters={"dedup_window": 0})
        self.assertOutputQueueLen(2)

    def test_check(self):
        self.assertIsNone(CrossBorderProvenanceExpertBot.check(self.sysconfig))
        result = CrossBorderProvenanceExpertBot.check({"direction": "sideways", "hub_id": "XX Hub",
                                                       "max_hops": -1, "origin_country": "Austria"})
        self.assertEqual([r[0] for r in result], ["error"] * 4)
        self.assertIn("Parameter direction must be inbound or outbound, not 'sideways'.", result[0][1])


    def test_manager_empty_optional_parameters_are_the_defaults(self):
        """'' as IntelMQ Manager saves it: inbound, 8 hops, a day's window under the default prefix, and the
        default Redis (127.0.0.1:6379, db 7; redirected to this run's database for the test)."""
        manager = {name: "" for name in ("direction", "originator", "origin_country", "max_hops", "dedup_window",
                                         "dedup_key_prefix", "redis_cache_host", "redis_cache_port", "redis_cache_db",
                                         "redis_cache_password", "counts_interval")}
        self.assertIsNone(CrossBorderProvenanceExpertBot.check({"hub_id": "xx-hub", **manager}))
        event = ev(source__port=uuid.uuid4().int % 60000 + 1024,       # a fingerprint of this test run
                   provenance__hub_path="a,b,c,d,e,f,g")          # 7 hops: within the default 8
        key = "crossborder:fingerprint:inbound:" + fingerprint(event)
        store = redis.Redis(db=REDIS_DB)
        self.addCleanup(store.delete, key)
        asked = []

        def this_runs_redis(host, port, db, password, socket_timeout):
            asked.append((state_store.redis_client(host, port, db, password).connection_pool.connection_kwargs, db))
            return store
        self.input_message = [event, {**event, "feed.name": "again"}]
        with mock.patch.object(provenance_expert, "redis_client", this_runs_redis):
            self.run_bot(iterations=2, parameters=manager)
        (kwargs, db), = asked
        self.assertEqual((kwargs["host"], kwargs["port"], db, kwargs["password"]), ("127.0.0.1", 6379, 7, None))
        out = self.output_events()
        self.assertEqual(len(out), 1)                             # the second is a duplicate
        self.assertNotIn("provenance.originator", out[0])
        self.assertTrue(86300 < store.ttl(key) <= 86400)

if __name__ == "__main__":
    unittest.main()
