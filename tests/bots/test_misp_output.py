"""BotTestCase tests of the cross-border MISP output against a local fake MISP server."""
import io
import json
import logging
import os
import unittest
from pathlib import Path
from unittest import mock

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.testing.fake_misp import FakeMISP

from intelmq_crossborder.bots.outputs.misp.output import CrossBorderMISPOutputBot

AGREEMENTS = Path(__file__).resolve().parent.parent / "fixtures" / "misp" / "agreements"
PEER = str(AGREEMENTS / "peer-hub-de.yaml")
KEY = "k3y-Secret-0123456789abcdefghijklmnopqrstuvwx"
#: What names or points at a source that must stay hidden (tlp.SOURCE_FIELDS), with values to search for.
HIDDEN_SOURCE = {"feed.url": "https://feeds.secret-originator.example/cti", "feed.name": "Secret Originator Feed",
                 "event_description.url": "https://misp.secret-originator.example/events/view/4242",
                 "misp.event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
                 "provenance.originator": "cert-secret-originator"}


def ev(ip="192.0.2.1", tlp="GREEN", when="2024-05-01T09:00:00+00:00", **fields):
    out = {"__type": "Event", "feed.name": "member-misp", "classification.type": "c2-server",
           "classification.taxonomy": "malicious-code", "source.ip": ip, "sharing.tlp": tlp,
           "time.observation": "2024-05-01T10:00:00+00:00", "time.source": when}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


class TestCrossBorderMISPOutputBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPOutputBot
        cls.sysconfig = {"misp_url": "http://127.0.0.1:9/", "misp_api_token": KEY, "agreement_file": PEER,
                         "retry_backoff": 0.001}

    def setUp(self):
        super().setUp()
        self.srv = FakeMISP(key=KEY).__enter__()
        self.addCleanup(self.srv.__exit__)

    def push(self, events, allowed_error_count=0, allowed_warning_count=0, **params):
        self.input_message = events
        params.setdefault("misp_url", self.srv.url)
        self.run_bot(iterations=len(events), parameters=params, allowed_error_count=allowed_error_count,
                     allowed_warning_count=allowed_warning_count)

    def only_event(self):
        self.assertEqual(len(self.srv.events), 1)
        return next(iter(self.srv.events.values()))

    def test_creates_event_with_tags_distribution_and_sharing_group(self):
        self.push([ev()], distribution=4, sharing_group="5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10")
        stored = self.only_event()
        self.assertEqual((str(stored["distribution"]), str(stored["sharing_group_id"])), ("4", "7"))
        self.assertEqual(stored["SharingGroup"]["uuid"], "5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10")
        self.assertEqual(stored["info"], "member-misp 2024-05-01")
        self.assertEqual({t["name"] for t in stored["Tag"]}, {"tlp:green", 'rsit:malicious-code="c2-server"'})
        (attr,) = stored["Attribute"]
        self.assertEqual((attr["type"], attr["value"]), ("ip-src", "192.0.2.1"))
        self.assertEqual({t["name"] for t in attr["Tag"]}, {"tlp:green", 'rsit:malicious-code="c2-server"'})
        self.assertIn(("GET", "/sharing_groups/view/5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10", None),
                      self.srv.requests)

    def test_distribution_per_recipient(self):
        self.push([ev()], distribution=1)
        stored = self.only_event()
        self.assertEqual((str(stored["distribution"]), str(stored["sharing_group_id"])), ("1", "0"))

    def test_idempotent_repush(self):
        batch = [ev("192.0.2.1"), ev("192.0.2.2", tlp="AMBER"), ev("198.51.100.1", when="2024-05-02T01:00:00+00:00",
                                                                      time__observation="2024-05-02T02:00:00+00:00")]
        self.push(batch)
        self.assertEqual(len(self.srv.events), 2)         # two days -> two events
        writes = len(self.srv.writes())
        snapshot = {u: (e["timestamp"], len(e["Attribute"])) for u, e in self.srv.events.items()}
        self.push(batch)                                   # the same nightly exchange again
        self.assertEqual(len(self.srv.writes()), writes)  # nothing created, nothing updated
        self.assertEqual({u: (e["timestamp"], len(e["Attribute"])) for u, e in self.srv.events.items()}, snapshot)
        day1 = [e for e in self.srv.events.values() if e["date"] == "2024-05-01"][0]
        self.assertEqual({t["name"] for t in day1["Tag"]} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})

    def test_update_only_what_changed(self):
        self.push([ev()])
        first = self.only_event()["timestamp"]
        self.push([ev(comment="now with a comment")])
        stored = self.only_event()
        self.assertEqual([r[1] for r in self.srv.writes()][1:], [f"/attributes/edit/{stored['Attribute'][0]['uuid']}"])
        self.assertEqual(stored["Attribute"][0]["comment"], "now with a comment")
        self.assertNotEqual(stored["timestamp"], first)
        self.push([ev("192.0.2.77")])                     # new indicator, same group: added, not a new event
        self.assertEqual(len(self.only_event()["Attribute"]), 2)
        self.assertEqual([r[1] for r in self.srv.writes()][2:], [f"/attributes/add/{stored['uuid']}"])
        self.assertEqual(len(self.srv.writes("/events/")), 1)   # only the first creation touched the event

    def test_event_metadata_update_sends_no_attributes(self):
        self.push([ev(), ev("192.0.2.2")])
        self.push([ev("192.0.2.3", tlp="AMBER")])          # more restrictive: the event's TLP tag changes
        stored = self.only_event()
        self.assertEqual(len(stored["Attribute"]), 3)
        self.assertEqual({t["name"] for t in stored["Tag"]} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})
        (edit,) = self.srv.writes("/events/edit/")
        self.assertEqual(edit[1], f"/events/edit/{stored['uuid']}/metadata:1")
        self.assertNotIn("Attribute", edit[2].get("Event", edit[2]))

    def test_attribute_tlp_tightens_never_loosens(self):
        self.push([ev(tlp="GREEN")])
        self.push([ev(tlp="AMBER")])                          # same indicator, more restrictive copy
        (attr,) = self.only_event()["Attribute"]
        self.assertEqual({t["name"] for t in attr["Tag"]} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})
        writes = len(self.srv.writes())
        self.push([ev(tlp="GREEN")])                          # a less restrictive copy changes nothing
        self.assertEqual(len(self.srv.writes()), writes)
        self.assertEqual({t["name"] for t in self.only_event()["Tag"]} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})

    def test_sighting_when_seen_again_and_only_once(self):
        self.push([ev()])
        self.push([ev(when="2024-05-01T09:45:00+00:00")])
        (attr,) = self.only_event()["Attribute"]
        self.assertEqual([s["date_sighting"] for s in attr["Sighting"]], ["1714556700"])
        self.push([ev(when="2024-05-01T09:45:00+00:00")])  # re-run: no second sighting
        self.assertEqual(len(self.only_event()["Attribute"][0]["Sighting"]), 1)
        self.assertEqual(len(self.srv.writes("/sightings/add/")), 1)

    def publications(self):
        return [r[1] for r in self.srv.requests if r[1].startswith("/events/publish/")]

    def test_publish_after_a_change_and_only_then(self):
        self.push([ev()], publish=True)
        stored = self.only_event()
        self.assertIs(stored["published"], True)
        self.assertEqual(self.publications(), [f"/events/publish/{stored['uuid']}"])
        self.assertEqual([r[1] for r in self.srv.writes()][-1], f"/events/publish/{stored['uuid']}")
        self.push([ev()], publish=True)                          # re-run: nothing changed, nothing published
        self.assertEqual(len(self.publications()), 1)
        self.push([ev(comment="changed")], publish=True)         # a change unpublishes; published again after it
        self.assertEqual([r[1] for r in self.srv.writes()][-2:],
                         [f"/attributes/edit/{stored['Attribute'][0]['uuid']}", f"/events/publish/{stored['uuid']}"])
        self.assertIs(self.only_event()["published"], True)
        self.push([ev("192.0.2.9"), ev("192.0.2.9")], publish=True)   # one new indicator: one publication
        self.assertEqual(len(self.publications()), 3)

    def test_publish_is_off_by_default(self):
        self.push([ev()])
        self.push([ev("192.0.2.2")])
        self.assertEqual(self.publications(), [])
        self.assertIs(self.only_event()["published"], False)

    def test_publish_an_unpublished_server_copy_without_changes(self):
        self.push([ev()])                                        # written while publish was off
        writes = len(self.srv.writes())
        self.push([ev()], publish=True)                          # no change, but the peer's copy is unpublished
        self.assertEqual([r[1] for r in self.srv.writes()[writes:]], self.publications())
        self.assertEqual(len(self.publications()), 1)
        self.assertIs(self.only_event()["published"], True)

    def test_publish_retried_on_5xx_and_dumped_on_4xx(self):
        self.srv.fail("/events/publish/", 503, times=1)
        self.push([ev()], publish=True, allowed_warning_count=1)
        self.assertIs(self.only_event()["published"], True)
        self.srv.fail("/events/publish/", 403, {"name": "Could not publish", "message": "Could not publish",
                                                "url": "/events/publish/x"}, times=2)
        self.push([ev("192.0.2.3")], publish=True, allowed_error_count=1)
        self.assertRegexpMatchesLog(r"refused it: HTTP 403: Could not publish")
        self.assertIs(self.only_event()["published"], False)

    def test_grouping_by_incident(self):
        self.push([ev("192.0.2.1", extra__incident_id="INC-42"),
                   ev("192.0.2.2", extra__incident_id="INC-42", time__observation="2024-06-09T00:00:00+00:00")],
                  grouping="incident", event_info="Incident {incident}")
        stored = self.only_event()
        self.assertEqual(stored["info"], "Incident INC-42")
        self.assertEqual(len(stored["Attribute"]), 2)

    def test_retry_on_5xx_then_success(self):
        self.srv.fail("/events/add", 503, times=2)
        self.push([ev()], allowed_warning_count=2)
        self.assertEqual(len(self.srv.events), 1)
        self.assertEqual(len([r for r in self.srv.requests if r[1] == "/events/add"]), 3)
        self.assertRegexpMatchesLog(r"MISP event creation failed \(MISPServerError\), retry 2 of 3")

    def test_lost_answer_then_already_exists_is_not_a_failure(self):
        self.srv.fail("/events/add", 504, times=1, after=True)     # created, but the answer was a 504
        self.push([ev()], allowed_warning_count=1)
        self.assertEqual(len(self.srv.events), 1)
        self.assertEqual(len([r for r in self.srv.requests if r[1] == "/events/add"]), 2)   # retry got a 403
        self.assertRegexpMatchesLog(r"MISP refused a write for event [0-9a-f-]+ \(403\); re-reading it")
        self.assertEqual(len(self.only_event()["Attribute"]), 1)

    def test_5xx_exhausted_is_not_acknowledged_as_success(self):
        self.srv.fail("/events/add", 500, times=100)
        self.input_message = [ev()]
        self.run_bot(parameters={"misp_url": self.srv.url, "retry_attempts": 1, "error_max_retries": 0},
                     allowed_error_count=1, allowed_warning_count=1)
        self.assertEqual(self.srv.events, {})
        self.assertRegexpMatchesLog(r"MISP event creation failed after 2 attempt\(s\)")

    def test_dump_on_4xx_with_server_text(self):
        self.srv.fail("/events/add", 403, {"name": "Could not add Event", "message": "Could not add Event",
                                           "url": "/events/add",
                                           "errors": {"Event": {"date": ["Date is in the future."]}}}, times=2)
        self.push([ev()], allowed_error_count=1)
        self.assertOutputQueueLen(0)
        self.assertEqual(self.srv.events, {})
        self.assertRegexpMatchesLog(r"MISP at http://127\.0\.0\.1:\d+/ refused it: HTTP 403: Could not add Event "
                                    r"\{\"Event\": \{\"date\": \[\"Date is in the future\.\"\]\}\}")
        # no backoff retries on 4xx: one re-plan after reading the event again (it does not exist), then the dump
        uuid = self.srv.writes("/events/add")[-1][2]["uuid"]
        self.assertEqual([r[:2] for r in self.srv.requests if r[1].startswith("/events/")],
                         [("GET", f"/events/view/{uuid}"), ("POST", "/events/add")] * 2)

    def test_agreement_forbids_red_and_amber_strict(self):
        for label, reason in (("RED", r"TLP:RED is never forwarded automatically; not pushed"),
                              ("AMBER+STRICT", r"TLP:AMBER\+STRICT never leaves the organisation \(the agreement "
                                               r"of peer-hub-de is constituent\); not pushed")):
            self.push([ev(tlp=label)], allowed_error_count=1)
            self.assertRegexpMatchesLog(reason)
        self.push([ev(tlp="AMBER")])
        self.assertEqual(len(self.srv.events), 1)
        self.assertEqual(len(self.srv.writes()), 1)

    def test_effective_tlp_is_the_most_restrictive_label(self):
        # issue 12: sharing.tlp GREEN does not lower a tlp:amber / tlp:red MISP tag of the event
        self.push([ev(tlp="GREEN", extra__misp_tags=[{"name": "tlp:red"}])], allowed_error_count=1)
        self.assertRegexpMatchesLog(r"for key 'extra\.misp_tags\[0\]\.name': TLP:RED is never forwarded")
        self.assertEqual(self.srv.events, {})
        self.push([ev(tlp="GREEN", extra__misp_tags=[{"name": "tlp:amber"}])])
        stored = self.only_event()
        (attr,) = stored["Attribute"]
        for block in (stored, attr):
            self.assertEqual({t["name"] for t in block["Tag"] if t["name"].startswith("tlp:")}, {"tlp:amber"})

    def test_hostile_labels_are_dumped_with_the_field_named(self):
        for base, value, field in (("extra.tlp", ["RED"], r"extra\.tlp"),
                                   ("extra.misp_tags", [{"name": "tlp\u200b:red"}], r"extra\.misp_tags\[0\]\.name"),
                                   ("extra.misp_tags", [{"colour": "#cc0033"}], r"extra\.misp_tags\[0\]")):
            self.push([ev(**{base.replace(".", "__"): value})], allowed_error_count=1)
            self.assertRegexpMatchesLog(f"for key '{field}'")
        self.assertEqual(self.srv.events, {})
        self.assertEqual(self.srv.writes(), [])

    def test_hidden_source_never_in_what_is_pushed(self):
        # the peer's agreement discloses sources, but the event says its own must stay hidden:
        # no source value in the title ({feed}, {key}), the attributes or the event UUID
        from intelmq_crossborder.formats.misp import convert as misp
        flagged = ev(**HIDDEN_SOURCE, sharing__do_not_disclose_source=True)
        chr_tag = ev("192.0.2.2", **HIDDEN_SOURCE, extra__misp_tags=[{"name": "tlp:ex:chr"}])
        self.push([flagged, chr_tag], grouping="incident", incident_field="misp.event_uuid",
                  event_info="{recipient} {key} {feed} {incident} {day}")
        written = json.dumps([self.srv.writes(), self.srv.events, self.srv.requests], default=str)
        for field, value in HIDDEN_SOURCE.items():
            self.assertNotIn(value, written, field)
        self.assertNotIn("secret-originator", written.lower())
        stored = self.only_event()
        guessable = {misp.deterministic_uuid("peer-hub-de", f"incident:{HIDDEN_SOURCE['misp.event_uuid']}"),
                     misp.deterministic_uuid("peer-hub-de", f"feed:{HIDDEN_SOURCE['feed.name']}:2024-05-01")}
        self.assertNotIn(stored["uuid"], guessable)
        self.assertEqual(len(stored["Attribute"]), 2)
        for attr in stored["Attribute"]:
            self.assertIn("tlp:ex:chr", {t["name"] for t in attr["Tag"]})
        writes = len(self.srv.writes())                     # looked up under the UUID it was written with
        self.push([flagged, chr_tag], grouping="incident", incident_field="misp.event_uuid",
                  event_info="{recipient} {key} {feed} {incident} {day}")
        self.assertEqual(len(self.srv.writes()), writes)
        self.push([ev("192.0.2.3")])                       # a source not hidden stays
        self.assertIn("member-misp", json.dumps(self.srv.events))

    def test_community_agreement_caps_at_green_and_hides_source(self):
        self.push([ev(tlp="AMBER")], agreement_file=str(AGREEMENTS / "community-isac.yaml"), allowed_error_count=1)
        self.assertEqual(self.srv.events, {})
        self.push([ev(tlp="GREEN")], agreement_file=str(AGREEMENTS / "community-isac.yaml"))
        self.assertNotIn("member-misp", self.only_event()["info"])

    def test_hidden_source_not_in_the_event_title_of_the_hubs_copy(self):
        # Regression (leak audit): event_info's {key} was made from the hub's copy, so an output fed
        # without the router in front put the feed name the agreement hides into the MISP event title.
        self.push([ev(tlp="GREEN")], agreement_file=str(AGREEMENTS / "community-isac.yaml"),
                  event_info="{recipient} {key} {feed} {day}")
        stored = self.only_event()
        self.assertEqual(stored["info"], "community-isac feed:unknown-feed:2024-05-01 intelmq-crossborder 2024-05-01")
        self.assertNotIn("member-misp", json.dumps(self.srv.writes()))
        # the same (hidden) feed and day go into the same event; without an HMAC key the event UUID
        # comes from the recipient's copy, so it cannot be used to confirm a guessed feed name
        self.push([ev("192.0.2.9", tlp="GREEN")], agreement_file=str(AGREEMENTS / "community-isac.yaml"),
                  event_info="{key}")
        self.assertEqual(len(self.only_event()["Attribute"]), 2)

    def test_source_distribution_organisation_only_is_refused(self):
        self.push([ev(misp__distribution=0)], allowed_error_count=1)
        self.assertRegexpMatchesLog(r"the source set MISP distribution 0 \(your organisation only\)")
        self.assertEqual(self.srv.events, {})
        self.push([ev(misp__distribution=0)], refuse_distributions=[])      # configurable
        self.push([ev("192.0.2.5", misp__distribution=4)])
        self.assertEqual(len(self.only_event()["Attribute"]), 2)

    def test_unlabelled_event_is_dumped(self):
        event = ev()
        del event["sharing.tlp"]
        self.push([event], allowed_error_count=1)
        self.assertEqual(self.srv.events, {})

    def test_event_without_indicator_is_dumped(self):
        event = ev()
        del event["source.ip"]
        self.push([event], allowed_error_count=1)
        self.assertRegexpMatchesLog(r"no field of the event maps to a MISP attribute type")

    def test_key_from_environment_never_logged(self):
        # PyMISP logs request headers (with the Authorization key) at DEBUG: capture that logger too
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        pymisp_logger = logging.getLogger("pymisp")
        old_level = pymisp_logger.level
        pymisp_logger.addHandler(handler)
        pymisp_logger.setLevel(logging.DEBUG)
        try:
            with mock.patch.dict(os.environ, {"MISP_API_KEY": KEY}):
                self.srv.fail("/events/add", 502, times=1)
                self.push([ev()], misp_api_token="", logging_level="DEBUG", allowed_warning_count=1)
        finally:
            pymisp_logger.removeHandler(handler)
            pymisp_logger.setLevel(old_level)
        self.assertEqual(len(self.srv.events), 1)
        self.assertIn("Authorization", stream.getvalue())     # the header was logged ...
        self.assertNotIn(KEY, stream.getvalue())               # ... without the key
        self.assertNotIn(KEY, self.loglines_buffer)
        self.assertIn("misp_api_token", self.loglines_buffer)   # the parameter is logged, hidden

    def test_manager_empty_values_for_every_optional_parameter(self):
        # IntelMQ Manager saves an untouched optional field as '': each means its default
        empty = {name: "" for name in ("misp_api_token", "misp_api_token_env", "misp_verify_ssl", "http_timeout_sec",
                                       "hmac_key_env", "distribution", "sharing_group", "grouping", "incident_field",
                                       "event_info", "extra_tags", "refuse_distributions", "sighting_source",
                                       "publish", "retry_attempts", "retry_backoff", "cache_size")}
        self.assertIsNone(CrossBorderMISPOutputBot.check(dict(self.sysconfig, **empty)))
        with mock.patch.dict(os.environ, {"MISP_API_KEY": KEY}):           # the default variable
            self.push([ev(), ev("192.0.2.2", misp__distribution=0)], allowed_error_count=1, **empty)
        stored = self.only_event()
        self.assertEqual((stored["info"], str(stored["distribution"]), stored["published"]),
                         ("member-misp 2024-05-01", "0", False))
        self.assertEqual([a["value"] for a in stored["Attribute"]], ["192.0.2.1"])   # distribution 0 refused
        self.assertRegexpMatchesLog(r"the source set MISP distribution 0")

    def test_url_without_scheme_goes_back_as_the_originator_wrote_it(self):
        event = ev(source__url="http://evil.example/login?id=42", extra__misp_url_scheme_added=True)
        del event["source.ip"]
        self.push([event])
        (attr,) = self.only_event()["Attribute"]
        self.assertEqual((attr["type"], attr["value"]), ("url", "evil.example/login?id=42"))

    def test_check(self):
        self.assertIsNone(CrossBorderMISPOutputBot.check(self.sysconfig))
        errors = CrossBorderMISPOutputBot.check({"misp_url": "x", "agreement_file": "/nonexistent.yaml",
                                                 "distribution": 4})
        self.assertEqual([e[0] for e in errors], ["error", "error"])
        self.assertEqual(CrossBorderMISPOutputBot.check(dict(self.sysconfig, publish="yes")),
                         [["error", "Parameter publish must be true or false."]])
        self.assertIn("/nonexistent.yaml", errors[0][1])
        templated = dict(self.sysconfig, agreement_file="${INTELMQ_ROOT_DIR}/etc/agreements/x.yaml")
        self.assertEqual([e[0] for e in CrossBorderMISPOutputBot.check(templated)], ["warning"])


if __name__ == "__main__":
    unittest.main()
