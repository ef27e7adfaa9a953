"""BotTestCase tests of the cross-border TAXII output against a real TAXII 2.1 server (medallion,
memory backend) on a free local port, with its Redis journal in this run's database."""
import json
import unittest
import uuid
from unittest import mock

import redis

from intelmq_crossborder.bots.outputs.taxii.output import CrossBorderTAXIIOutputBot
from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.stix import export
from intelmq_crossborder.policy import retraction
from intelmq_crossborder.testing.taxii_server import TAXIIServer
from tests.botcase import CrossBorderBotTestCase
from tests.fault_server import FaultServer
from tests.isolation import REDIS_DB

HIDDEN = {"provenance.originator": "cert-secret-originator", "feed.name": "Secret Originator Feed",
          "feed.url": "https://feeds.secret-originator.example/cti",
          "event_description.url": "https://misp.secret-originator.example/events/view/4242"}


def ev(n=0, **fields):
    out = {"__type": "Event", "classification.type": "scanner", "classification.taxonomy": "information-gathering",
           "source.ip": f"192.0.2.{n + 1}", "time.observation": "2026-11-20T10:00:00+00:00",
           "time.source": "2026-11-20T09:00:00+00:00", "sharing.tlp": "GREEN",
           "provenance.originator": "CERT-AT", "provenance.fingerprint": f"{n:064x}",
           "provenance.event_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"event-{n}"))}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return {k: v for k, v in out.items() if v is not None}


class TestCrossBorderTAXIIOutputBot(CrossBorderBotTestCase, unittest.TestCase):
    server: TAXIIServer = None

    @classmethod
    def setUpClass(cls):
        cls.server = TAXIIServer(["cert-fi", "opencti-partner"]).start()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.server.stop()

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderTAXIIOutputBot
        cls.sysconfig = {"taxii_url": cls.server.discovery_url, "collection": "cert-fi", "hub_id": "at-hub",
                         "username": cls.server.user, "password": cls.server.password, "redis_db": REDIS_DB,
                         "batch_size": 1, "poll_interval": 0.05, "retry_backoff": 0.01, "retry_attempts": 1}

    def setUp(self):
        super().setUp()
        self.redis = redis.Redis(db=REDIS_DB)
        self._clean()
        self.collection = f"c-{uuid.uuid4()}"
        self.server.stop()                  # a fresh memory backend for each test
        self.server.recipients = ["cert-fi", "opencti-partner"]
        self.server.start()

    def tearDown(self):
        self._clean()
        super().tearDown()

    def _clean(self):
        for key in self.redis.scan_iter("intelmq-crossborder:taxii*test-bot*"):
            self.redis.delete(key)

    def journal(self) -> int:
        return self.redis.llen("intelmq-crossborder:taxii-journal:test-bot")

    def held(self, recipient="cert-fi", **kw):
        return self.server.objects(recipient, **kw)

    def of_type(self, kind, recipient="cert-fi", **kw):
        return [o for o in self.held(recipient, **kw) if o["type"] == kind]

    def assertValidCollection(self, recipient="cert-fi"):
        objects = self.held(recipient)
        self.assertEqual(export.validation_errors(export.make_bundle(objects, "check")), [])

    # --- pushing ---------------------------------------------------------------------------
    def test_events_pushed_as_indicators_with_markings_and_extension(self):
        self.input_message = [ev(0), ev(1, sharing__tlp="AMBER"), ev(2, sharing__tlp="CLEAR")]
        self.run_bot(iterations=3)
        indicators = self.of_type("indicator")
        self.assertEqual(sorted(i["pattern"] for i in indicators),
                         [f"[ipv4-addr:value = '192.0.2.{n}']" for n in (1, 2, 3)])
        marks = {i["pattern"].split("'")[1]: i["object_marking_refs"] for i in indicators}
        self.assertEqual(marks["192.0.2.2"], [tlp.to_stix_marking_id(tlp.Level.AMBER)])
        self.assertEqual(len(self.of_type("extension-definition")), 1)
        self.assertEqual([i["name"] for i in self.of_type("identity")], ["CERT-AT"])
        self.assertValidCollection()
        self.assertEqual(self.journal(), 0)
        self.assertLogMatches(r"Pushed 3 events, 0 refused and dumped, 0 retraction updates\.", "INFO")

    def test_guard_dumps_red_amber_strict_unlabelled_and_unreadable(self):
        unlabelled = ev(3, sharing__tlp=None)
        self.input_message = [ev(0, sharing__tlp="RED"), ev(1, sharing__tlp="AMBER+STRICT"),
                              ev(2, sharing__tlp="GREEN", extra__misp_tags=["tlp:red"]), unlabelled,
                              ev(4, sharing__tlp="GREEN", extra__tlp="PURPLE"), ev(5)]
        self.run_bot(iterations=6, allowed_error_count=5)
        self.assertEqual([i["pattern"] for i in self.of_type("indicator")], ["[ipv4-addr:value = '192.0.2.6']"])
        self.assertRegexpMatchesLog("TLP:RED is never forwarded automatically")
        self.assertRegexpMatchesLog("TLP:AMBER\\+STRICT never leaves the organisation")
        self.assertRegexpMatchesLog("no TLP label")
        self.assertRegexpMatchesLog("extra.tlp")

    def test_above_max_tlp_is_dumped(self):
        self.input_message = [ev(0, sharing__tlp="AMBER"), ev(1)]
        self.run_bot(iterations=2, parameters={"max_tlp": "GREEN"}, allowed_error_count=1)
        self.assertEqual(len(self.of_type("indicator")), 1)
        self.assertRegexpMatchesLog("above max_tlp GREEN")

    def test_hidden_source_never_reaches_the_collection(self):
        self.input_message = [ev(0, sharing__do_not_disclose_source=True, **{k.replace(".", "__"): v
                                                                              for k, v in HIDDEN.items()}),
                              ev(1, extra__misp_tags=["tlp:ex:chr"], **{k.replace(".", "__"): v
                                                                        for k, v in HIDDEN.items()})]
        self.run_bot(iterations=2, parameters={"export_kind": "observed-data"})
        text = json.dumps(self.held())
        self.assertEqual(len(self.of_type("observed-data")), 2)
        self.assertEqual(self.of_type("identity"), [])
        for value in HIDDEN.values():
            self.assertNotIn(value, text)

    def test_batches_and_the_journal(self):
        self.input_message = [ev(n) for n in range(5)]
        with mock.patch("intelmq_crossborder.formats.stix.taxii.Pusher.push",
                        autospec=True, side_effect=_counting(self)) as push:
            self.run_bot(iterations=5, parameters={"batch_size": 2, "batch_max_seconds": 3600})
        self.assertEqual(self.sizes, [2, 2, 1])          # two full batches, the rest at shutdown
        self.assertEqual(push.call_count, 3)
        self.assertEqual(len(self.of_type("indicator")), 5)
        self.assertEqual(self.journal(), 0)

    def test_pushing_again_updates_the_same_objects(self):
        self.input_message = [ev(0), ev(1)]
        self.run_bot(iterations=2)
        first = {i["id"]: i["modified"] for i in self.of_type("indicator")}
        self.input_message = [ev(0, sharing__tlp="AMBER"), ev(1)]
        self.run_bot(iterations=2)
        latest = {i["id"]: i for i in self.of_type("indicator")}
        self.assertEqual(set(latest), set(first))          # no duplicate objects
        for oid, obj in latest.items():
            self.assertGreater(obj["modified"], first[oid])
        self.assertEqual(len(self.of_type("indicator", all_versions=True)), 4)

    def test_opencti_profile(self):
        self.input_message = [ev(0, sharing__tlp="CLEAR")]
        self.run_bot(parameters={"collection": "opencti-partner", "recipient_profile": "opencti"})
        ind = self.of_type("indicator", "opencti-partner")[0]
        self.assertEqual(ind["object_marking_refs"], ["marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"])
        self.assertEqual(self.of_type("extension-definition", "opencti-partner"), [])
        self.assertEqual(self.of_type("indicator"), [])

    def test_without_the_extension_definition(self):
        self.input_message = [ev(0)]
        self.run_bot(parameters={"push_extension_definition": False})
        self.assertEqual(self.of_type("extension-definition"), [])
        self.assertEqual(len(self.of_type("marking-definition")), 1)

    # --- faults ------------------------------------------------------------------------------
    def test_server_down_keeps_the_journal_then_recovers(self):
        with FaultServer(forward=self.server.base_url) as fault:
            url = fault.url + "/hub/"
            self.input_message = [ev(0)]
            fault.mode, fault.only = "error", r"/objects/$"
            fault.status = 503
            self.run_bot(parameters={"taxii_url": url, "batch_size": 5, "batch_max_seconds": 3600},
                         allowed_warning_count=2)
            self.assertLogMatches(r"1 buffered events not pushed at shutdown; they stay in the journal", "WARNING")
            self.assertEqual(self.journal(), 1)
            self.assertEqual(self.of_type("indicator"), [])
            fault.mode = "ok"
            self.input_message = [ev(1)]
            self.run_bot(parameters={"taxii_url": url, "batch_size": 5, "batch_max_seconds": 3600})
            self.assertLogMatches(r"Recovered 1 journaled events", "INFO")
            self.assertEqual(len(self.of_type("indicator")), 2)
            self.assertEqual(self.journal(), 0)
            self.assertGreater(fault.count(mode="error"), 1)     # retried before giving up

    def test_a_server_down_at_start_is_not_a_configuration_error(self):
        from intelmq_crossborder.testing.taxii_server import free_port
        port = free_port()
        url = f"http://127.0.0.1:{port}/taxii2/"
        self.input_message = [ev(0)]
        self.run_bot(parameters={"taxii_url": url, "batch_size": 5, "batch_max_seconds": 3600},
                     allowed_warning_count=4)
        self.assertRegexpMatchesLog("TAXII server not reachable at start")
        self.assertEqual(self.journal(), 1)
        later = TAXIIServer(["cert-fi"], port=port, password=self.server.password).start()
        try:
            self.input_message = [ev(1)]
            self.run_bot(parameters={"taxii_url": url, "batch_size": 5, "batch_max_seconds": 3600})
            self.assertEqual(len([o for o in later.objects("cert-fi") if o["type"] == "indicator"]), 2)
            self.assertEqual(self.journal(), 0)
        finally:
            later.stop()

    def test_a_refused_object_is_dumped_with_the_servers_reason(self):
        dumped = []
        refuse = ev(1)
        with mock.patch.object(CrossBorderTAXIIOutputBot, "_dump_message",
                               lambda bot, tb, message: dumped.append((tb, message))), \
                mock.patch("intelmq_crossborder.formats.stix.taxii.Pusher.push", autospec=True,
                           side_effect=_refusing("192.0.2.2")):
            self.input_message = [ev(0), refuse, ev(2)]
            self.run_bot(iterations=3, parameters={"batch_size": 3}, allowed_error_count=1)
        self.assertEqual(len(dumped), 1)
        self.assertEqual(dumped[0][1]["source.ip"], "192.0.2.2")
        self.assertIn("the TAXII server refused it: ", "".join(dumped[0][0]))
        self.assertEqual(len(self.of_type("indicator")), 2)
        self.assertLogMatches(r"Pushed 2 events, 1 refused and dumped", "INFO")

    # --- retractions ---------------------------------------------------------------------------
    def test_withdraw_revokes_and_relabel_remarks_what_was_pushed(self):
        self.input_message = [ev(0), ev(1), ev(2)]
        self.run_bot(iterations=3)
        withdraw = retraction.new_retraction("withdraw", "false positive", "at-hub",
                                             target_event_uuid=ev(0)["provenance.event_uuid"])
        relabel = retraction.new_retraction("relabel", "more sensitive", "at-hub", target_fingerprint=f"{1:064x}",
                                            new_tlp="AMBER")
        unknown = retraction.new_retraction("withdraw", "never pushed here", "at-hub",
                                            target_event_uuid=str(uuid.uuid4()))
        self.input_message = [dict(r.to_event(), __type="Event") for r in (withdraw, relabel, unknown)]
        self.run_bot(iterations=3)
        latest = {i["pattern"]: i for i in self.of_type("indicator")}
        self.assertTrue(latest["[ipv4-addr:value = '192.0.2.1']"].get("revoked"))
        self.assertEqual(latest["[ipv4-addr:value = '192.0.2.2']"]["object_marking_refs"],
                         [tlp.to_stix_marking_id(tlp.Level.AMBER)])
        self.assertNotIn("revoked", latest["[ipv4-addr:value = '192.0.2.3']"])
        self.assertRegexpMatchesLog(r"nothing of it was pushed to this collection")
        self.assertValidCollection()

    def test_check_names_bad_parameters(self):
        problems = CrossBorderTAXIIOutputBot.check({"taxii_url": "ftp://x", "collection": "", "hub_id": "at-hub",
                                                    "max_tlp": "RED", "batch_size": 0, "recipient_profile": "misp",
                                                    "verify_ssl": "yes", "export_kind": ""})
        text = " ".join(p[1] for p in problems)
        for words in ("taxii_url 'ftp://x' must be an http", "collection is required", "TLP:RED is never pushed",
                      "batch_size must be at least 1", "recipient_profile must be one of",
                      "verify_ssl must be true or false"):
            self.assertIn(words, text)
        self.assertIsNone(CrossBorderTAXIIOutputBot.check({"taxii_url": "https://h.example/taxii2/",
                                                           "collection": "c", "hub_id": "h", "api_root": "",
                                                           "batch_size": "", "max_tlp": ""}))


def _counting(case):
    case.sizes = []
    from intelmq_crossborder.formats.stix.taxii import Pusher
    real = Pusher.push

    def push(self, objects):
        objects = list(objects)
        case.sizes.append(sum(1 for o in objects if o["type"] == "indicator"))
        return real(self, objects)
    return push


def _refusing(ip):
    from intelmq_crossborder.formats.stix.taxii import Pusher
    real = Pusher.push

    def push(self, objects):
        objects = list(objects)
        bad = [o for o in objects if ip in o.get("pattern", "")]
        result = real(self, [o for o in objects if o not in bad])
        for o in bad:
            result.refused[o["id"]] = "the pattern is on the partner's block list"
        return result
    return push
