"""BotTestCase tests: the STIX parser passes a revoked object on as withdraw retractions (docs/bots/stix.md)."""
import base64
import copy
import json
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.parsers.stix.parser import CrossBorderSTIXParserBot
from intelmq_crossborder.formats.stix import parse as stix
from intelmq_crossborder.policy.provenance import stamp
from intelmq_crossborder.policy.retraction import FIELDS, Retraction

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "stix"
HUB = "fi-hub"
REAL = FIX / "extra/unit42/2024-02-21-AsyncRAT.json"          # a real bundle (README.md: provenance)


def report(data: bytes, **fields):
    out = {"__type": "Report", "feed.name": "partner-stix", "feed.provider": "partner-cti",
           "raw": base64.b64encode(data).decode(), "time.observation": "2024-05-01T10:00:00+00:00"}
    out.update(fields)
    return out


def revoked_version(bundle: dict, count: int, modified="2024-06-01T00:00:00.000Z") -> dict:
    """The same bundle with its first ``count`` indicators re-published as revoked (a newer version)."""
    out = copy.deepcopy(bundle)
    done = 0
    for obj in out["objects"]:
        if obj.get("type") == "indicator" and done < count:
            obj.update(revoked=True, modified=modified)
            done += 1
    return out


class TestSTIXParserRevocation(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderSTIXParserBot
        cls.sysconfig = {"hub_id": HUB}

    def run_parser(self, data: bytes, paths=("_default", "retractions"), params=None, **kw):
        self.input_message = report(data)
        self.prepare_bot(parameters=dict(params or {}), destination_queues=list(paths))
        self.run_bot(prepare=False, **kw)

    def test_revoked_objects_become_retractions_on_their_path_naming_the_stamped_events(self):
        bundle = json.loads(REAL.read_bytes())
        self.run_parser(REAL.read_bytes())
        first = self.output_events()
        self.assertEqual(len(first), 19)
        self.assertEqual(self.output_events("retractions"), [])
        # the outbound provenance expert keeps the parser's uuid
        for e in first:
            kept = e["provenance.event_uuid"]
            stamp(e, "outbound", HUB)
            self.assertEqual(e["provenance.event_uuid"], kept)
        # the publisher revokes 3 of its indicators: 3 retractions, 16 events, nothing else
        self.run_parser(json.dumps(revoked_version(bundle, 3)).encode())
        self.assertEqual(len(self.output_events()), 16)
        out = self.output_events("retractions")
        self.assertEqual(len(out), 3)
        notices = [Retraction.from_event({k: v for k, v in r.items() if k != "__type"}) for r in out]
        revoked_ids = [o["id"] for o in bundle["objects"] if o.get("type") == "indicator"][:3]
        targets = {e["provenance.event_uuid"] for e in first if e["extra.stix_id"] in revoked_ids}
        self.assertEqual({n.target_event_uuid for n in notices}, targets)
        for e in first:
            hits = [n for n in notices if n.matches(e["provenance.event_uuid"], e["provenance.fingerprint"])]
            self.assertEqual(len(hits), 1 if e["extra.stix_id"] in revoked_ids else 0)
        for r, n in zip(out, notices):
            self.assertEqual(set(r) - {"__type"}, set(n.to_event()))         # no feed, no raw, no time.observation
            self.assertTrue(set(r) - {"__type"} <= set(FIELDS))
            self.assertEqual(n.originator, HUB)
            self.assertTrue(n.reason.startswith("revoked by the publisher (STIX indicator--"))
            self.assertTrue(n.reason.endswith(", modified 2024-06-01T00:00:00+00:00)"))
        self.assertRegexpMatchesLog(r"3 revoked object\(s\): 3 withdraw retraction\(s\) issued\.")
        self.assertValidEvents("retractions")

    def test_default_fields_are_not_put_on_a_retraction(self):
        data = (FIX / "malformed/revoked-and-unconvertible.json").read_bytes()
        self.run_parser(data, params={"default_fields": {"feed.accuracy": 80, "extra.source_note": "partner"}})
        (ret,) = self.output_events("retractions")
        self.assertNotIn("feed.accuracy", ret)
        self.assertNotIn("extra.source_note", ret)
        Retraction.from_event({k: v for k, v in ret.items() if k != "__type"})
        (event,) = self.output_events()
        self.assertEqual(event["feed.accuracy"], 80)

    def test_without_the_named_path_retractions_take_the_default_path(self):
        data = (FIX / "malformed/revoked-and-unconvertible.json").read_bytes()
        self.input_message = report(data)
        self.prepare_bot(destination_queues=["_default"])
        # (IntelMQ's harness asserts classification.type on a parser's default path: a retraction has none)
        self.bot_type, saved = "expert", self.bot_type
        try:
            self.run_bot(prepare=False)
        finally:
            self.bot_type = saved
        out = self.output_events()
        self.assertEqual(len(out), 2)
        (ret,) = [m for m in out if "retraction.id" in m]
        self.assertEqual(ret["retraction.target_event_uuid"],
                         stix.event_uuid(HUB, "indicator--00000001-0000-4000-8000-000000000000", 0))
        self.assertRegexpMatchesLog(r"No named path 'retractions': retractions of revoked objects go to the default")

    def test_without_hub_id_revoked_objects_are_only_counted(self):
        data = (FIX / "malformed/revoked-and-unconvertible.json").read_bytes()
        self.run_parser(data, params={"hub_id": ""})
        self.assertEqual(self.output_events("retractions"), [])
        (event,) = self.output_events()
        self.assertNotIn("provenance.event_uuid", event)
        self.assertRegexpMatchesLog(r"1 revoked object\(s\) not converted; without hub_id no retraction")

    def test_a_revoked_object_that_cannot_be_named_is_dumped_the_others_go_on(self):
        bundle = json.loads(REAL.read_bytes())
        bundle = revoked_version(bundle, 2)
        bundle["objects"][[i for i, o in enumerate(bundle["objects"]) if o.get("revoked")][0]]["id"] = \
            "indicator--not-a-uuid"
        self.run_parser(json.dumps(bundle).encode(), allowed_error_count=1)
        self.assertEqual(len(self.output_events("retractions")), 1)
        self.assertEqual(len(self.output_events()), 17)
        self.assertRegexpMatchesLog(r"field objects\[\d+\]\.id: a revoked indicator needs a STIX id")
        self.assertEqual(self.loglines_buffer.count("Failed to parse line"), 1)

    def test_bad_hub_id_fails_check_and_init(self):
        errors = CrossBorderSTIXParserBot.check({"hub_id": "fi hub"})
        self.assertEqual([level for level, _ in errors], ["error"])
        warned = CrossBorderSTIXParserBot.check({"hub_id": HUB, "destination_queues": {"_default": ["q"]}})
        self.assertEqual([level for level, _ in warned], ["warning"])
        self.assertIn("'retractions'", warned[0][1])
        self.assertIsNone(CrossBorderSTIXParserBot.check(
            {"hub_id": HUB, "destination_queues": {"_default": ["q"], "retractions": ["router-queue"]}}))


if __name__ == "__main__":
    unittest.main()
