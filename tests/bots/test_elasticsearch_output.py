"""BotTestCase tests of the cross-border Elasticsearch output against the local fake REST API."""
import json
import socket
import unittest
from unittest import mock

from tests.es_harness import REDIS_DB, ElasticsearchOutputTestCase, ev

from intelmq_crossborder.bots.outputs.elasticsearch.output import PARAMETERS, CrossBorderElasticsearchOutputBot
from intelmq_crossborder.datalake.journal import JOURNAL_KEY
from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from intelmq_crossborder.testing.polling import wait_until

FP = "a" * 64
#: What names or points at a source that must stay hidden (tlp.SOURCE_FIELDS), with values to search for.
HIDDEN_SOURCE = {"feed__url": "https://feeds.secret-originator.example/cti", "feed__name": "Secret Originator Feed",
                 "event_description__url": "https://misp.secret-originator.example/events/view/4242",
                 "misp__event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
                 "provenance__originator": "cert-secret-originator"}


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TestCrossBorderElasticsearchOutputBot(ElasticsearchOutputTestCase, unittest.TestCase):
    def test_batch_indexed_with_template_policy_and_ids(self):
        self.run_es([ev(0), ev(1, source__geolocation__latitude=48.2, source__geolocation__longitude=16.37),
                     ev(2, sharing__retention_days=365, sharing__tlp="CLEAR")])
        docs = self.es.all_docs()
        self.assertEqual(sorted(docs), [f"{n:064x}" for n in range(3)])
        index, src = docs[f"{1:064x}"]
        self.assertEqual(index, "crossborder-events-r30d-2026.11.20")
        self.assertEqual(src["sharing"]["tlp"], "GREEN")
        self.assertEqual(src["source"]["geolocation"]["location"], {"lat": 48.2, "lon": 16.37})
        self.assertEqual(docs[f"{2:064x}"][0], "crossborder-events-r365d-2026.11.20")
        self.assertEqual(docs[f"{2:064x}"][1]["sharing"]["tlp"], "CLEAR")
        # one bulk request for the whole batch (flushed at shutdown)
        self.assertEqual(self.es.bulk_batches, [3])
        tpl = self.es.templates["crossborder-events-r30d"]
        props = tpl["template"]["mappings"]["properties"]
        self.assertEqual(props["source"]["properties"]["ip"]["type"], "ip")
        self.assertEqual(props["time"]["properties"]["source"]["type"], "date")
        self.assertEqual(props["sharing"]["properties"]["tlp"]["type"], "keyword")
        self.assertEqual(props["source"]["properties"]["geolocation"]["properties"]["location"]["type"], "geo_point")
        self.assertEqual(tpl["template"]["settings"]["index.lifecycle.name"], "crossborder-events-retention-30d")
        self.assertEqual(self.es.ilm_policies["crossborder-events-retention-365d"]["policy"]["phases"]["delete"]
                         ["min_age"], "365d")
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 0)

    def test_batches_bounded_by_count(self):
        self.run_es([ev(n) for n in range(5)], bulk_size=2)
        self.assertEqual(self.es.bulk_batches, [2, 2, 1])
        self.assertEqual(len(self.es.all_docs()), 5)

    def test_batches_bounded_by_time(self):
        self.input_message = [ev(0)]
        self.run_bot(parameters={"hosts": [self.es.url], "bulk_max_seconds": 0.2}, stop_bot=False)
        self.assertEqual(self.es.all_docs(), {})            # buffered, acknowledged, journaled
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 1)
        wait_until(lambda: self.es.all_docs() and not self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 5,
                   "the timer to flush the buffer", interval=0.05)
        self.assertEqual(len(self.es.all_docs()), 1)       # flushed by the timer, no new message needed
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 0)
        self.bot.stop(exitcode=0)

    def test_reindexing_is_idempotent(self):
        self.run_es([ev(0), ev(0)])
        self.assertEqual(len(self.es.all_docs()), 1)

    def test_above_ceiling_is_filtered_not_indexed(self):
        self.input_message = [ev(0, sharing__tlp="RED"), ev(1, sharing__tlp="AMBER+STRICT"),
                              ev(2, sharing__tlp="AMBER")]
        self.prepare_bot(parameters={"hosts": [self.es.url], "tlp_ceiling": "AMBER"},
                         destination_queues={"_default": ["unused"], "above_ceiling": ["held-queue"]})
        self.run_bot(iterations=3, prepare=False)
        self.assertEqual(sorted(self.es.all_docs()), [f"{2:064x}"])
        self.assertEqual(len(self.get_output_queue(path="above_ceiling")), 2)
        self.assertLogMatches(r"Event with TLP RED is above the index ceiling AMBER: not indexed \(1 so far\)\.",
                              "DEBUG")

    def test_missing_label_gets_default_and_is_filtered_by_ceiling(self):
        no_label = ev(0)
        del no_label["sharing.tlp"]
        self.run_es([no_label], tlp_ceiling="GREEN", default_tlp="AMBER")
        self.assertEqual(self.es.all_docs(), {})

    def test_label_outside_sharing_tlp_is_read_not_defaulted(self):
        # Regression (leak audit): without sharing.tlp the lake took default_tlp even when the event
        # carried a label elsewhere, so a RED event entered an AMBER lake stored as GREEN.
        red, amber = ev(0, tlp="RED"), ev(1, extra__misp_tags=["tlp:amber", "osint:x"])
        del red["sharing.tlp"], amber["sharing.tlp"]
        self.input_message = [red, amber]
        self.prepare_bot(parameters={"hosts": [self.es.url], "tlp_ceiling": "AMBER", "default_tlp": "GREEN",
                                     "bulk_size": 1},
                         destination_queues={"_default": ["unused"], "above_ceiling": ["held-queue"]})
        self.run_bot(iterations=2, prepare=False)
        docs = self.es.all_docs()
        self.assertEqual(sorted(docs), [f"{1:064x}"])
        self.assertEqual(docs[f"{1:064x}"][1]["sharing"]["tlp"], "AMBER")
        self.assertEqual(len(self.get_output_queue(path="above_ceiling")), 1)

    def test_unknown_label_outside_sharing_tlp_is_dumped(self):
        event = ev(0, extra__tlp="PURPLE")
        del event["sharing.tlp"]
        self.input_message = [event]
        self.run_bot(parameters={"hosts": [self.es.url]}, allowed_error_count=1)
        self.assertRegexpMatchesLog(r"invalid value 'PURPLE' .* for key 'extra\.tlp'")
        self.assertEqual(self.es.all_docs(), {})

    def test_mapping_error_dumped_with_server_reason(self):
        dumped = self.run_with_one_mapping_error()
        self.assertEqual(sorted(self.es.all_docs()), [f"{0:064x}", f"{2:064x}"])
        self.assertEqual(len(dumped), 1)
        tb, message = dumped[0]
        self.assertEqual(message["provenance.fingerprint"], f"{1:064x}")
        self.assertIn("failed to parse field [source.geolocation.location] of type [geo_point]", "".join(tb))
        self.assertLogMatches(r"The lake refused document 0+1 in crossborder-events-r30d-2026.11.20 \(status 400\): "
                              r"document_parsing_exception: .*illegal latitude value .*; the event is dumped\.",
                              "ERROR")

    def test_number_out_of_range_dumped_with_server_reason(self):
        # the same refusal tests/test_elasticsearch_noida.py gets from an independent server
        dumped = []
        with mock.patch.object(CrossBorderElasticsearchOutputBot, "_dump_message",
                               lambda bot, tb, message: dumped.append((tb, message))):
            self.input_message = [ev(0), ev(1, rtir_id=2 ** 70)]
            self.run_bot(iterations=2, parameters={"hosts": [self.es.url]}, allowed_error_count=1)
        self.assertEqual(sorted(self.es.all_docs()), [f"{0:064x}"])
        (tb, message), = dumped
        self.assertIn("failed to parse field [rtir_id] of type [long]", "".join(tb))
        self.assertIn("out of range of long", "".join(tb))

    def test_partial_429_retried_per_document(self):
        self.es.item_failures[f"{1:064x}"] = [429, 429]
        self.run_es([ev(n) for n in range(3)])
        self.assertEqual(len(self.es.all_docs()), 3)
        # the whole batch once, then only the throttled document twice
        self.assertEqual(self.es.bulk_batches, [3, 1, 1])

    def test_whole_request_429_backs_off(self):
        self.es.bulk_failures = [429, 429]
        self.run_es([ev(n) for n in range(2)])
        self.assertEqual(len(self.es.all_docs()), 2)
        self.assertEqual(self.es.bulk_requests, 3)
        self.assertLogMatches(r"Lake busy or unreachable \(HTTP 429 es_rejected_execution_exception\), "
                              r"retrying 2 events in 0\.01 s\.", "INFO")

    def test_refused_connection_keeps_journal_then_recovers(self):
        port = closed_port()
        host = f"http://127.0.0.1:{port}"
        self.input_message = [ev(0), ev(1)]
        self.run_bot(iterations=2, parameters={"hosts": [host], "max_retries": 1}, allowed_warning_count=1)
        self.assertLogMatches(r"2 buffered events not indexed at shutdown; they stay in the journal", "WARNING")
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 2)
        # the lake comes back on that port: the next start indexes the journal first
        with FakeElasticsearch(port=port) as back:
            self.input_message = [ev(2)]
            self.run_bot(parameters={"hosts": [host]})
            self.assertEqual(sorted(back.all_docs()), [f"{n:064x}" for n in range(3)])
            self.assertLogMatches(r"Recovered 2 buffered events from the journal", "INFO")
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 0)

    def test_refused_connection_blocks_intake(self):
        """A full buffer that cannot be flushed stops the bot from taking more messages."""
        host = f"http://127.0.0.1:{closed_port()}"
        self.input_message = [ev(0), ev(1), ev(2)]
        with self.assertRaisesRegex(AssertionError, "Not all input messages have been processed"):
            self.run_bot(iterations=3, parameters={"hosts": [host], "max_retries": 0, "bulk_size": 2},
                         allowed_error_count=2, allowed_warning_count=1)
        # ev(0), ev(1) journaled; the flush failed (twice); ev(2) was never taken from the queue
        self.assertEqual(self.redis.llen(JOURNAL_KEY.format(bot_id="test-bot")), 2)
        self.assertEqual(len(self.input_queue), 1)
        self.input_queue = []   # BotTestCase.tearDown requires an empty source queue

    def test_bulk_size_one_refused_document_dumped_at_once(self):
        self.input_message = [ev(1, source__geolocation__latitude=95.0, source__geolocation__longitude=10.0)]
        self.run_bot(parameters={"hosts": [self.es.url], "bulk_size": 1}, allowed_error_count=1)
        self.assertEqual(self.es.all_docs(), {})
        self.assertRegexpMatchesLog(r"InvalidValue: .* for key 'document': the lake refused the document: "
                                    r"document_parsing_exception: .*illegal latitude value")

    def test_bulk_size_one_indexes_each(self):
        self.run_es([ev(0), ev(1)], bulk_size=1)
        self.assertEqual(self.es.bulk_batches, [1, 1])

    def test_unknown_tlp_is_dumped(self):
        self.input_message = [ev(0, sharing__tlp="PURPLE")]
        self.run_bot(parameters={"hosts": [self.es.url]}, allowed_error_count=1)
        self.assertRegexpMatchesLog(r"invalid value 'PURPLE' .* for key 'sharing\.tlp'")
        self.assertEqual(self.es.all_docs(), {})

    def test_effective_tlp_is_stored_and_filtered(self):
        # issue 12: sharing.tlp GREEN does not lower a tlp:red MISP tag: stored as RED, and filtered
        # by a ceiling below RED
        red = ev(0, extra__misp_tags=[{"name": "tlp:red"}])
        self.run_es([red], tlp_ceiling="AMBER")
        self.assertEqual(self.es.all_docs(), {})
        self.run_es([red], tlp_ceiling="RED")
        self.assertEqual(self.es.all_docs()[f"{0:064x}"][1]["sharing"]["tlp"], "RED")

    def test_hostile_labels_are_dumped_with_the_field_named(self):
        for n, (base, value, field) in enumerate((
                ("extra__tlp", ["RED"], r"extra\.tlp"),
                ("extra__misp_tags", [{"name": "tlp\u200b:red"}], r"extra\.misp_tags\[0\]\.name"),
                ("extra__misp_tags", [{"colour": "#cc0033"}], r"extra\.misp_tags\[0\]"))):
            self.input_message = [ev(n, **{base: value})]
            self.run_bot(parameters={"hosts": [self.es.url], "tlp_ceiling": "RED"}, allowed_error_count=1)
            self.assertRegexpMatchesLog(f"for key '{field}'")
        self.assertEqual(self.es.all_docs(), {})

    def test_hidden_source_never_in_the_lake(self):
        flagged = ev(0, sharing__do_not_disclose_source=True, **HIDDEN_SOURCE)
        chr_tag = ev(1, extra__tags="tlp:ex:chr", **HIDDEN_SOURCE)
        del flagged["provenance.fingerprint"], chr_tag["provenance.fingerprint"]   # ids from the content
        self.run_es([flagged, chr_tag, ev(2, feed__name="Public Feed")])
        docs = self.es.all_docs()
        self.assertEqual(len(docs), 3)
        written = json.dumps(docs) + json.dumps(self.es.templates)
        for field, value in HIDDEN_SOURCE.items():
            self.assertNotIn(value, written, field)
        self.assertNotIn("secret-originator", written.lower())
        self.assertIn("Public Feed", written)                 # a source not hidden stays

    def test_monthly_rotation_and_default_retention(self):
        e = ev(0)
        del e["sharing.retention_days"]
        self.run_es([e], rotation="monthly")
        self.assertEqual(self.es.all_docs()[f"{0:064x}"][0], "crossborder-events-rkeep-2026.11")
        self.assertNotIn("index.lifecycle.name", self.es.templates["crossborder-events-rkeep"]["template"]["settings"])
        self.assertEqual(self.es.ilm_policies, {})

    def test_opensearch(self):
        self.es.stop()
        self.es = FakeElasticsearch("opensearch2").start()
        self.run_es([ev(0), ev(1)], server_flavour="opensearch2")
        self.assertEqual(len(self.es.all_docs()), 2)
        self.assertIn("crossborder-events-retention-30d", self.es.ism_policies)
        self.assertNotIn("index.lifecycle.name", self.es.templates["crossborder-events-r30d"]["template"]["settings"])
        bulk = [r for r in self.es.requests if r[1] == "/_bulk"][0]
        self.assertEqual(bulk[3], "application/x-ndjson")
        # a restarted bot finds the ISM policy in place (409) and carries on
        self.run_es([ev(2)], server_flavour="opensearch2")
        self.assertEqual(len(self.es.all_docs()), 3)

    def test_elasticsearch8(self):
        self.es.stop()
        self.es = FakeElasticsearch("elasticsearch8").start()
        self.run_es([ev(0)], server_flavour="elasticsearch8")
        self.assertEqual(len(self.es.all_docs()), 1)
        self.assertTrue(all("compatible-with=8" in (r[2] or "") for r in self.es.requests))

    def test_api_key_not_logged(self):
        self.run_es([ev(0)], api_token="c2VjcmV0LWtleS0xMjM0NQ==")
        self.assertNotIn("c2VjcmV0LWtleS0xMjM0NQ==", self.loglines_buffer)

    def test_check(self):
        check = CrossBorderElasticsearchOutputBot.check
        self.assertIsNone(check({"tlp_ceiling": "amber", "rotation": "monthly", "server_flavour": "opensearch2"}))
        self.assertEqual(check({"tlp_ceiling": "BLUE"})[0][0], "error")
        self.assertEqual(check({"rotation": "weekly"}),
                         [["error", "Parameter rotation must be one of daily, monthly, none."]])
        self.assertEqual(check({"index_prefix": "Bad_Prefix"})[0][0], "error")
        self.assertEqual(check({"server_flavour": "solr"})[0][0], "error")


    def test_manager_empty_values_pass_check_and_start(self):
        # issue 14 §1: IntelMQ Manager saves an untouched parameter as ''; default_retention_days ''
        # failed check() and the bot did not start.  '' is the default for every optional parameter.
        empty = {name: "" for name in PARAMETERS}
        self.assertIsNone(CrossBorderElasticsearchOutputBot.check(empty))
        e = ev(0)
        del e["sharing.retention_days"]
        self.run_es([e], **dict(empty, hosts=[self.es.url], journal_redis_db=REDIS_DB))
        docs = self.es.all_docs()
        self.assertEqual(docs[f"{0:064x}"][0], "crossborder-events-rkeep-2026.11.20")  # defaults, no retention
        self.assertEqual(docs[f"{0:064x}"][1]["sharing"]["tlp"], "GREEN")
        self.assertNotIn("raw", self.es.templates["crossborder-events-rkeep"]["template"]["mappings"]["properties"])
        self.assertEqual(self.bot.bulk_size, 500)
        self.assertEqual((self.bot.api_token, self.bot.ca_certs, self.bot.journal_redis_password), (None, None, None))

    def test_check_reads_values_as_the_manager_saves_them(self):
        check = CrossBorderElasticsearchOutputBot.check
        self.assertIsNone(check({"default_retention_days": "365", "bulk_size": "100", "hosts": "http://a:9200, http://b:9200",
                                 "verify_certs": "false", "password": 12345}))
        self.assertEqual(check({"default_retention_days": "a year"}),
                         [["error", "Parameter default_retention_days: expected an integer, got 'a year'."]])
        self.assertEqual(check({"default_retention_days": -1}),
                         [["error", "Parameter default_retention_days must be at least 0, not -1."]])
        self.assertEqual(check({"bulk_size": 0})[0][0], "error")
        self.assertEqual(check({"initial_backoff": 10, "max_backoff": 1})[0][0], "error")
        self.assertEqual(check({"journal": "sometimes"})[0][0], "error")

if __name__ == "__main__":
    unittest.main()
