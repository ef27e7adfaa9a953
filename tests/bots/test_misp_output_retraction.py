"""BotTestCase tests: the cross-border MISP output applies retractions (withdraw, relabel, erase)
to what it wrote on a peer's MISP (a local fake MISP server, through PyMISP)."""
import json
import shutil
import tempfile
import unittest
import uuid
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.policy.retraction import new_retraction
from intelmq_crossborder.testing.fake_misp import FakeMISP

from intelmq_crossborder.bots.outputs.misp.output import CrossBorderMISPOutputBot

AGREEMENTS = Path(__file__).resolve().parent.parent / "fixtures" / "misp" / "agreements"
PEER = str(AGREEMENTS / "peer-hub-de.yaml")            # max_tlp AMBER
KEY = "k3y-Secret-0123456789abcdefghijklmnopqrstuvwx"


def ev(ip="192.0.2.1", tlp="GREEN", when="2024-05-01T09:00:00+00:00", event_uuid=None, **fields):
    out = {"__type": "Event", "feed.name": "member-misp", "classification.type": "c2-server",
           "classification.taxonomy": "malicious-code", "source.ip": ip, "sharing.tlp": tlp,
           "time.observation": "2024-05-01T10:00:00+00:00", "time.source": when,
           "provenance.event_uuid": event_uuid or str(uuid.uuid4())}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    out["provenance.fingerprint"] = fingerprint(out)
    return out


def retraction(target: dict, action="withdraw", scope="event", **kwargs) -> dict:
    r = new_retraction(action, "false positive", "at-hub", scope=scope,
                       target_event_uuid=None if scope == "indicator" else target["provenance.event_uuid"],
                       target_fingerprint=target["provenance.fingerprint"], **kwargs)
    return dict(r.to_event(), __type="Event")


class TestMISPOutputRetraction(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPOutputBot
        cls.sysconfig = {"misp_url": "http://127.0.0.1:9/", "misp_api_token": KEY, "agreement_file": PEER,
                         "retry_backoff": 0.001}

    def setUp(self):
        super().setUp()
        self.srv = FakeMISP(key=KEY).__enter__()
        self.addCleanup(self.srv.__exit__)
        self.state = Path(tempfile.mkdtemp(prefix="misp-holdings-"))
        self.addCleanup(shutil.rmtree, self.state, True)

    def push(self, events, allowed_error_count=0, **params):
        self.input_message = events
        params.setdefault("misp_url", self.srv.url)
        params.setdefault("holdings_file", str(self.state / "holdings.sqlite"))
        self.run_bot(iterations=len(events), parameters=params, allowed_error_count=allowed_error_count)

    def only_event(self):
        self.assertEqual(len(self.srv.events), 1)
        return next(iter(self.srv.events.values()))

    def attributes(self, with_deleted=True):
        return {a["value"]: a for e in self.srv.events.values() for a in e["Attribute"]
                if with_deleted or not a.get("deleted")}

    def deletions(self):
        return [(r[1], r[2]) for r in self.srv.requests if r[1].startswith(("/attributes/delete/", "/events/delete/"))]

    def test_withdraw_soft_deletes_the_attribute_and_keeps_a_tombstone(self):
        one, two = ev("192.0.2.1"), ev("192.0.2.2")
        self.push([one, two])
        self.push([retraction(one)])
        attrs = self.attributes()
        self.assertTrue(attrs["192.0.2.1"]["deleted"])
        self.assertFalse(attrs["192.0.2.2"]["deleted"])
        ((path, body),) = self.deletions()
        self.assertEqual(path, f"/attributes/delete/{attrs['192.0.2.1']['uuid']}")
        self.assertNotIn("hard", body or {})                            # soft: MISP keeps and syncs the deletion
        self.assertEqual(len(self.srv.events), 1)                       # the MISP event stays
        self.assertLogMatches(r"Retraction .* \(withdraw, event .*\) applied: delete; 1 held event\(s\), "
                              r"1 attribute\(s\) changed", "INFO")
        writes = len(self.srv.writes())
        self.push([one])                                                # the same event again: not re-pushed
        self.assertEqual(len(self.srv.writes()), writes)
        self.assertLogMatches(r"Event .* was retracted \(withdraw, retraction .*\): not pushed again", "INFO")

    def test_another_event_with_a_withdrawn_indicator_restores_the_attribute(self):
        one = ev("192.0.2.1")
        self.push([one])
        self.push([retraction(one)])
        self.assertTrue(self.attributes()["192.0.2.1"]["deleted"])
        other = ev("192.0.2.1", time__source="2024-05-01T09:30:00+00:00")      # another event, same indicator
        self.push([other])
        self.assertFalse(self.attributes()["192.0.2.1"]["deleted"])
        self.assertIn("/attributes/restore/" + self.attributes()["192.0.2.1"]["uuid"],
                      [r[1] for r in self.srv.requests])
        self.push([retraction(other)])                        # and it can be withdrawn again
        self.assertTrue(self.attributes()["192.0.2.1"]["deleted"])

    def test_with_publish_the_change_is_published_for_the_sync(self):
        one, two = ev("192.0.2.1"), ev("192.0.2.2")
        self.push([one, two], publish=True)
        self.push([retraction(one)], publish=True)
        stored = self.only_event()
        calls = [r[1] for r in self.srv.requests if r[0] == "POST"]
        self.assertEqual(calls[-1], f"/events/publish/{stored['uuid']}")
        self.assertTrue(stored["published"])

    def test_withdraw_in_tag_mode_tags_and_clears_to_ids(self):
        one = ev()
        self.push([one])
        self.push([retraction(one)], withdraw_mode="tag")
        (attr,) = self.only_event()["Attribute"]
        self.assertFalse(attr["deleted"])
        self.assertFalse(attr["to_ids"])
        self.assertIn("crossborder:retracted", {t["name"] for t in attr["Tag"]})
        self.assertEqual(self.deletions(), [])

    def test_erase_hard_deletes_with_sightings_and_the_empty_event(self):
        one = ev()
        self.push([one])
        self.push([ev(when="2024-05-01T09:45:00+00:00", event_uuid=one["provenance.event_uuid"])])
        self.assertEqual(len(self.only_event()["Attribute"][0]["Sighting"]), 1)
        sightings = len(self.srv.writes("/sightings/add/"))
        self.push([retraction(one, "erase")])
        self.assertEqual(self.srv.events, {})                        # attribute, sightings, empty event: gone
        self.assertEqual([json.loads(json.dumps(b)) for _, b in self.deletions()][0], {"hard": 1})
        self.assertEqual(len(self.srv.writes("/sightings/add/")), sightings)   # no sighting for a retraction
        self.assertNotIn("192.0.2.1", json.dumps(self.srv.events))
        self.push([one])                                                       # replayed: not written again
        self.assertEqual(self.srv.events, {})

    def test_erase_leaves_the_other_attributes_of_the_event(self):
        one, two = ev("192.0.2.1"), ev("192.0.2.2")
        self.push([one, two])
        self.push([retraction(one, "erase")])
        self.assertEqual(list(self.attributes()), ["192.0.2.2"])

    def test_relabel_within_the_entitlement_writes_the_higher_label(self):
        one = ev(tlp="GREEN")
        self.push([one])
        self.push([retraction(one, "relabel", new_tlp="AMBER")])
        stored = self.only_event()
        (attr,) = stored["Attribute"]
        self.assertFalse(attr["deleted"])
        self.assertEqual({t["name"] for t in attr["Tag"]} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})
        self.assertEqual({t["name"] for t in stored["Tag"]} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})

    def test_relabel_hiding_a_source_the_agreement_discloses_removes_the_copy(self):
        # the peer's agreement discloses sources: the MISP title names the feed, so the copy goes
        one = ev()
        self.push([one])
        self.push([retraction(one, "relabel", new_do_not_disclose_source=True)])
        self.assertEqual(self.srv.events, {})

    def test_relabel_above_the_entitlement_removes_the_attribute(self):
        one = ev(tlp="GREEN")
        self.push([one])
        self.push([retraction(one, "relabel", new_tlp="RED")])
        self.assertEqual(self.srv.events, {})
        self.assertEqual(self.deletions()[0][1], {"hard": 1})

    def test_a_relabel_never_lowers(self):
        one = ev(tlp="AMBER")
        self.push([one])
        self.push([retraction(one, "relabel", new_tlp="GREEN")])
        (attr,) = self.only_event()["Attribute"]
        self.assertEqual({t["name"] for t in attr["Tag"]} & {"tlp:green", "tlp:amber"}, {"tlp:amber"})

    def test_event_scope_keeps_an_attribute_another_event_still_holds(self):
        one, other = ev("192.0.2.1"), ev("192.0.2.1", feed__code="another")
        self.assertEqual(one["provenance.fingerprint"] == other["provenance.fingerprint"],
                         fingerprint(one) == fingerprint(other))
        self.push([one, other])
        (attr,) = self.only_event()["Attribute"]
        self.push([retraction(one)])
        self.assertFalse(self.attributes()["192.0.2.1"]["deleted"])
        self.assertLogMatches(r".*0 attribute\(s\) changed, 1 kept for another event", "INFO")
        self.push([retraction(other)])                        # the last holder: now it goes
        self.assertTrue(self.attributes()["192.0.2.1"]["deleted"])

    def test_indicator_scope_removes_it_for_every_event(self):
        one, other = ev("192.0.2.1"), ev("192.0.2.1", time__source="2024-05-01T08:00:00+00:00")
        other["provenance.fingerprint"] = one["provenance.fingerprint"]
        self.push([one, other])
        self.push([retraction(one, "withdraw", scope="indicator")])
        self.assertTrue(self.attributes()["192.0.2.1"]["deleted"])
        later = ev("192.0.2.1")
        later["provenance.fingerprint"] = one["provenance.fingerprint"]
        writes = len(self.srv.writes())
        self.push([later])                                     # the indicator is buried: not pushed again
        self.assertEqual(len(self.srv.writes()), writes)

    def test_retraction_of_an_event_not_held_changes_nothing(self):
        self.push([ev()])
        writes = len(self.srv.writes())
        self.push([retraction(ev("198.51.100.9"))])
        self.assertEqual(len(self.srv.writes()), writes)
        self.assertLogMatches(r".*0 held event\(s\), 0 attribute\(s\) changed", "INFO")

    def test_a_retraction_with_content_is_dumped_naming_the_field(self):
        one = ev()
        self.push([one])
        bad = dict(retraction(one), **{"source.ip": "192.0.2.1"})
        self.push([bad], allowed_error_count=1)
        self.assertLogMatches(r".*source\.ip.*carries no event content.*", "ERROR")
        self.assertFalse(self.only_event()["Attribute"][0]["deleted"])

    def test_retraction_is_applied_again_after_a_server_failure(self):
        one = ev()
        self.push([one])
        self.srv.fail("/attributes/delete/", 403, {"name": "Forbidden", "message": "Forbidden"})
        self.push([retraction(one)], allowed_error_count=1)      # refused: dumped, holdings unchanged
        self.assertFalse(self.only_event()["Attribute"][0]["deleted"])
        self.push([retraction(one)])                             # handed over again: applied in full
        self.assertTrue(self.only_event()["Attribute"][0]["deleted"])


if __name__ == "__main__":
    unittest.main()
