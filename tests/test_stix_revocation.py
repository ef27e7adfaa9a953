"""Revoked STIX objects become retractions (issue 15 and 16): the library.

A parsed event carries ``provenance.event_uuid`` = uuid5(hub, STIX id, index), which the outbound
provenance expert keeps; the object's ``revoked: true`` version gives one ``withdraw`` per event the
non-revoked version gave, naming exactly those uuids and nothing of the object's content."""
import copy
import json
import re
import uuid
from pathlib import Path

import pytest
from hypothesis import given

from tests import fuzzing
from intelmq_crossborder.formats.stix import parse as stix
from intelmq_crossborder.policy import retraction as R
from intelmq_crossborder.policy.provenance import ProvenanceGuard

FIX = Path(__file__).parent / "fixtures" / "stix"
HUB = "fi-hub"
SID = "indicator--7c6d1b0e-4f1a-4d55-9a3e-0c1f2a3b4c5d"
INDICATOR = {
    "type": "indicator", "spec_version": "2.1", "id": SID,
    "created": "2024-03-01T10:00:00.000Z", "modified": "2024-03-01T10:00:00.000Z",
    "name": "C2 of campaign X", "description": "secret analyst notes",
    "pattern": "[ipv4-addr:value = '198.51.100.7'] OR [domain-name:value = 'c2.example.test'] "
               "OR [url:value = 'http://c2.example.test/gate.php']",
    "pattern_type": "stix", "valid_from": "2024-03-01T10:00:00Z",
    "indicator_types": ["malicious-activity"],
    "object_marking_refs": ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"],   # TLP 1.0 AMBER
}
OTHER = dict(INDICATOR, id="indicator--00000000-0000-4000-8000-0000000000aa",
             pattern="[ipv4-addr:value = '203.0.113.9']")


def revoked(obj, modified="2024-04-02T08:30:00.000Z"):
    out = copy.deepcopy(obj)
    out.update(revoked=True, modified=modified)
    return out


def convert(objects, hub_id=HUB, **kw):
    kw.setdefault("default_tlp", "AMBER")
    conv = stix.Converter(hub_id=hub_id, **kw)
    items = list(conv.items(objects))
    return conv, items


def outbound_stamp(events):
    """What the outbound provenance expert does to each event (the same library)."""
    guard = ProvenanceGuard("outbound", HUB, originator="Finnish national cyber hub", origin_country="FI",
                            dedup_window=0)
    for e in events:
        assert guard.admit(e).drop is None
    return events


def test_event_uuid_is_deterministic_per_hub_object_and_index():
    a = stix.event_uuid(HUB, SID, 0)
    assert a == stix.event_uuid(HUB, SID, 0)
    assert uuid.UUID(a).version == 5
    assert len({a, stix.event_uuid(HUB, SID, 1), stix.event_uuid("de-hub", SID, 0),
                stix.event_uuid(HUB, OTHER["id"], 0)}) == 4


def test_parsed_events_carry_their_uuid_and_the_provenance_expert_keeps_it():
    _conv, items = convert([INDICATOR])
    events = items[0].events
    assert len(events) == 3
    before = [e["provenance.event_uuid"] for e in events]
    assert before == [stix.event_uuid(HUB, SID, i) for i in range(3)]
    outbound_stamp(events)
    assert [e["provenance.event_uuid"] for e in events] == before
    assert all(e["provenance.origin_hub"] == HUB and e["provenance.fingerprint"] for e in events)


def test_without_hub_id_no_uuid_and_revoked_only_counted():
    conv, items = convert([INDICATOR, revoked(OTHER)], hub_id=None)
    assert all("provenance.event_uuid" not in e for e in items[0].events)
    assert items[1].retractions == [] and items[1].note == "revoked"
    assert conv.stats.revoked == 1 and conv.stats.retractions == 0
    assert "1 revoked, 0 retraction(s)" in conv.stats.summary()


def test_end_to_end_the_revocation_targets_exactly_the_stamped_events():
    # 1. the bundle as first published: parsed and stamped as the outbound provenance expert does
    _conv, items = convert({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000001",
                            "objects": [INDICATOR, OTHER]})
    stamped = outbound_stamp([e for it in items for e in it.events])
    mine = [e for e in stamped if e["extra.stix_id"] == SID]
    others = [e for e in stamped if e["extra.stix_id"] != SID]
    assert len(mine) == 3 and len(others) == 1
    # 2. a later bundle (another poll) with the revoked version only, parsed by a new converter
    conv, items = convert({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000002",
                           "objects": [revoked(INDICATOR)]})
    assert items[0].events == [] and items[0].error is None
    notices = [R.Retraction.from_event(r) for r in items[0].retractions]
    assert len(notices) == 3 and conv.stats.retractions == 3 and conv.stats.revoked == 1
    # 3. every stamped event of the object is the target of exactly one retraction, no other event of any
    for e in stamped:
        hits = [n for n in notices if n.matches(e["provenance.event_uuid"], e["provenance.fingerprint"])]
        assert len(hits) == (1 if e in mine else 0)
        what = {R.instruction(n, event_uuid=e["provenance.event_uuid"], fingerprint=e["provenance.fingerprint"])
                for n in notices}
        assert what == ({R.TOMBSTONE, R.KEEP} if e in mine else {R.KEEP})
    for n in notices:
        assert n.action == "withdraw" and n.originator == HUB and n.scope == "event" and not n.hub_path
        assert n.reason == f"revoked by the publisher (STIX {SID}, modified 2024-04-02T08:30:00+00:00)"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", n.time)


def test_a_retraction_carries_nothing_of_the_object():
    _conv, items = convert([revoked(INDICATOR)])
    text = json.dumps(items[0].retractions)
    for secret in ("198.51.100.7", "c2.example.test", "gate.php", "C2 of campaign X", "secret analyst notes",
                   "malicious-activity", "marking-definition", "AMBER"):
        assert secret not in text
    for r in items[0].retractions:
        assert set(r) <= set(R.FIELDS)
        R.Retraction.from_event(r)             # strict reading: no content field, no label field


def test_the_same_revoked_object_read_again_is_the_same_retraction():
    _c, first = convert([revoked(INDICATOR)])
    _c, again = convert([revoked(INDICATOR)])
    assert [r["retraction.id"] for r in first[0].retractions] == [r["retraction.id"] for r in again[0].retractions]
    _c, later = convert([revoked(INDICATOR, modified="2024-05-01T00:00:00Z")])
    assert [r["retraction.target_event_uuid"] for r in later[0].retractions] == \
        [r["retraction.target_event_uuid"] for r in first[0].retractions]
    assert not {r["retraction.id"] for r in later[0].retractions} & {r["retraction.id"] for r in first[0].retractions}


def test_another_hub_reading_the_same_feed_issues_for_its_own_uuids_only():
    _c, here = convert([INDICATOR])
    _c, there = convert([revoked(INDICATOR)], hub_id="de-hub")
    notices = [R.Retraction.from_event(r) for r in there[0].retractions]
    assert all(n.originator == "de-hub" for n in notices)
    assert not any(n.matches(e["provenance.event_uuid"], None) for e in here[0].events for n in notices)


def test_observed_data_of_a_real_bundle_revoked():
    data = json.loads((FIX / "extra/oasis-slider/examples.json").read_text())
    _c, items = convert(data)
    multi = [it for it in items if len(it.events) == 3 and it.obj["type"] == "observed-data"][0]
    stamped = outbound_stamp(multi.events)
    index = int(multi.path.split("[")[1].rstrip("]"))
    data["objects"][index] = revoked(data["objects"][index])
    conv, items = convert(data)
    notices = [R.Retraction.from_event(r) for r in items[index].retractions]
    assert len(notices) == 3
    assert sorted(n.target_event_uuid for n in notices) == sorted(e["provenance.event_uuid"] for e in stamped)
    assert conv.stats.events == sum(len(it.events) for it in items)


def test_older_version_in_the_same_input_as_its_revoked_version_is_not_converted():
    conv, items = convert([INDICATOR, revoked(INDICATOR)])
    assert items[0].events == [] and "superseded by its revoked version" in items[0].note
    assert len(items[1].retractions) == 3
    assert conv.stats.events == 0 and conv.stats.retractions == 3


def test_revoked_objects_that_never_gave_events_give_no_retraction():
    conv, items = convert([revoked(dict(INDICATOR, pattern="[process:name = 'evil.exe']")),
                           revoked(dict(INDICATOR, id="indicator--00000000-0000-4000-8000-0000000000bb",
                                        pattern_type="snort", pattern="alert tcp any any -> any any"))])
    assert [it.retractions for it in items] == [[], []]
    assert all(it.error is None and it.note.startswith("revoked") for it in items)
    assert conv.stats.revoked == 2 and conv.stats.retractions == 0 and conv.stats.refused == 0


def test_the_real_fixture_with_a_revoked_indicator():
    conv = stix.Converter(default_tlp="AMBER", hub_id=HUB)
    items = list(conv.items(stix.load_file(FIX / "malformed/revoked-and-unconvertible.json")))
    (notice,) = [R.Retraction.from_event(r) for it in items for r in it.retractions]
    assert notice.target_event_uuid == stix.event_uuid(HUB, "indicator--00000001-0000-4000-8000-000000000000", 0)
    assert "1 revoked, 1 retraction(s), 0 refused" in conv.stats.summary()


@pytest.mark.parametrize("bad_id, needle", [
    ("indicator--7c6d1b0e-4f1a-4d55-9a3e-0c1f2a3b4c5\u0434", "needs a STIX id"),        # Cyrillic look-alike
    ("indicator--7c6d1b0e-4f1a-4d55-9a3e-0c1f2a3b4c5d ", "needs a STIX id"),            # trailing white space
    ("malware--7c6d1b0e-4f1a-4d55-9a3e-0c1f2a3b4c5d", "needs a STIX id"),               # another type's id
    ("indicator--x" * 500, "needs a STIX id"),
    (["indicator--7c6d1b0e-4f1a-4d55-9a3e-0c1f2a3b4c5d"], "needs a STIX id"),
    (None, "needs a STIX id"),
])
def test_revoked_object_without_a_usable_id_is_refused_naming_the_field(bad_id, needle):
    conv, items = convert([revoked(dict(INDICATOR, id=bad_id))])
    assert items[0].error is not None and items[0].retractions == []
    assert needle in str(items[0].error) and items[0].error.field == "[0].id"
    assert conv.stats.refused == 1


@pytest.mark.parametrize("obj, field", [
    (dict(INDICATOR, pattern="[ipv4-addr:value = "), "[0].pattern"),
    (dict(INDICATOR, pattern=None), "[0].pattern"),
    (dict(INDICATOR, modified=12), "[0].modified"),
    (dict(INDICATOR, modified="yesterday"), "[0].modified"),
])
def test_revoked_object_whose_events_cannot_be_named_is_refused(obj, field):
    item = list(stix.Converter(hub_id=HUB).items([dict(obj, revoked=True)]))[0]
    assert item.error is not None and item.error.field == field and item.retractions == []


def test_revoked_with_wrong_type_still_refused():
    item = list(stix.Converter(hub_id=HUB).items([dict(INDICATOR, revoked="true")]))[0]
    assert item.error is not None and item.error.field == "[0].revoked"


@pytest.mark.parametrize("hub", ["fi hub", "FI-HUB", "fi-hub ", "fi-h\u0443b", "x" * 80, 7])
def test_bad_hub_id_refused(hub):
    with pytest.raises(ValueError, match="hub_id"):
        stix.Converter(hub_id=hub)


def test_check_hub_id_unset():
    assert stix.check_hub_id(None) is None and stix.check_hub_id("") is None
    assert stix.check_hub_id("at-hub") == "at-hub"


def test_the_sharing_routers_plan_sends_each_revocation_to_exactly_the_holders(tmp_path):
    """Through the router's library (policy.retraction_router) with a holdings index: a revocation
    issued by this hub is accepted (originator = the router's hub_id, an event not from a peer) and
    goes to exactly the recipients that got the stamped event, under their copies' ids."""
    from intelmq_crossborder.policy import holdings as H
    from intelmq_crossborder.policy.agreements import agreement_from_dict
    from intelmq_crossborder.policy.retraction_router import RetractionRouter

    agreements = [agreement_from_dict(d) for d in (
        {"recipient": "cert-fi", "name": "CERT-FI", "kind": "csirt", "country": "FI", "relation": "constituent",
         "max_tlp": "AMBER"},
        {"recipient": "de-hub", "name": "DE", "kind": "national-hub", "country": "DE", "relation": "community",
         "max_tlp": "GREEN", "hub_id": "de-hub"})]
    green = [{k: v for k, v in o.items() if k != "object_marking_refs"} for o in (INDICATOR, OTHER)]
    _c, items = convert(green, default_tlp="GREEN")
    assert {e["sharing.tlp"] for it in items for e in it.events} == {"GREEN"}
    stamped = outbound_stamp([e for it in items for e in it.events])
    index = H.Holdings(tmp_path / "holdings.sqlite")
    derived = {}
    for n, e in enumerate(stamped):
        copy_uuid, copy_fp = str(uuid.UUID(int=n + 1, version=4)), f"{n + 1:02x}" * 32   # de-hub's hidden-source copy
        derived[e["provenance.event_uuid"]] = (copy_uuid, copy_fp)
        holders = [("de-hub", copy_uuid, copy_fp, "GREEN", None, True)]
        if n % 2 == 0:                                   # cert-fi got every other event only
            holders.append(("cert-fi", None, None, "GREEN", None, False))
        index.record_sent(e["provenance.event_uuid"], e["provenance.fingerprint"], holders)
    router = RetractionRouter(index, agreements, HUB, ["cert-fi", "de-hub"])
    _c, rev = convert([revoked(green[0])])
    for n, raw in enumerate(rev[0].retractions):
        plan = router.plan(R.Retraction.from_event(raw))
        assert plan.outcome == "routed", plan.outcome
        target = raw["retraction.target_event_uuid"]
        sent = {r: e["retraction.target_event_uuid"] for r, e in plan.items}
        expected = {"de-hub": derived[target][0]}
        if n % 2 == 0:
            expected["cert-fi"] = target
        assert sent == expected
        router.commit(plan)
    assert all(index.still_held(e["provenance.event_uuid"]) == [] for e in stamped if e["extra.stix_id"] == SID)
    (other,) = [e for e in stamped if e["extra.stix_id"] != SID]
    assert stamped.index(other) == 3 and index.still_held(other["provenance.event_uuid"]) == ["de-hub"]   # untouched
    # another hub's parser cannot retract this hub's events: not the originator here
    _c, theirs = convert([revoked(green[0])], hub_id="de-hub")
    assert router.plan(R.Retraction.from_event(theirs[0].retractions[0])).outcome == "refused: not-originator"


# --- fuzz: a revoked object of hostile input gives readable retractions or an error naming a field ---
_SEEDS = [json.loads((FIX / "malformed/revoked-and-unconvertible.json").read_text()),
          {"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000003",
           "objects": [INDICATOR, revoked(INDICATOR), revoked(OTHER)]}]


@pytest.mark.fuzz
@fuzzing.fuzz_settings(0.05)
@given(fuzzing.mutated_json(_SEEDS))
def test_fuzz_revoked_objects(doc):
    from intelmq.lib.message import Event

    from intelmq_crossborder.harmonization import merged_harmonization
    harm = merged_harmonization()
    with fuzzing.time_guard():
        conv = stix.Converter(default_tlp="AMBER", hub_id=HUB, where="fuzz")
        try:
            bundle = stix.load(doc, "fuzz")
        except stix.STIXFormatError:
            return
        for item in conv.items(bundle):
            if item.error is not None:
                assert isinstance(item.error, stix.STIXFormatError) and item.error.field
                continue
            assert not (item.events and item.retractions)
            for raw in item.retractions:
                notice = R.Retraction.from_event(raw)
                assert notice.action == "withdraw" and notice.originator == HUB
                ev = Event(harmonization=harm)
                for key, value in raw.items():
                    ev.add(key, value)


@pytest.mark.parametrize("kind", ["indicator", "observed-data"])
def test_hub_to_hub_a_revoked_version_from_the_taxii_output_retracts_the_events_parsed_here(kind):
    """at-hub exports events (formats.stix.export, as its TAXII output does); fi-hub parses and stamps
    them; at-hub's retraction makes its TAXII output push ``export.revoked`` of each object; fi-hub's
    next poll brings only those new versions (observed-data: without its SCOs, sent before)."""
    from intelmq_crossborder.formats.stix import export

    settings = export.ExportSettings("at-hub", kind=kind)
    events = [{"source.ip": "192.0.2.10", "classification.type": "scanner", "sharing.tlp": "GREEN",
               "time.source": "2024-03-01T10:00:00+00:00"},
              {"source.fqdn": "bad.example.test", "classification.type": "phishing", "sharing.tlp": "GREEN",
               "time.source": "2024-03-01T10:00:00+00:00"},
              {"source.ip": "192.0.2.11", "source.port": 8080, "classification.type": "c2-server",
               "sharing.tlp": "CLEAR", "time.source": "2024-03-01T10:00:00+00:00"}]
    exported = [export.event_objects(*export.admit(e, settings), settings) for e in events]
    first = [o for x in exported for o in x.objects]
    _c, items = convert(first)
    stamped = outbound_stamp([e for it in items for e in it.events])
    assert len(stamped) >= 3
    gone = exported[0].primary["id"]
    _c, polled = convert([export.revoked(exported[0].primary)])            # the next poll: one new version
    notices = [R.Retraction.from_event(r) for it in polled for r in it.retractions]
    assert notices
    for e in stamped:
        hits = [n for n in notices if n.matches(e["provenance.event_uuid"], e["provenance.fingerprint"])]
        assert len(hits) == (1 if e["extra.stix_id"] == gone else 0)
    assert "192.0.2.10" not in json.dumps([n.to_event() for n in notices])


def test_revoked_observed_data_without_its_scos_covers_every_event_it_gave():
    data = json.loads((FIX / "extra/oasis-slider/examples.json").read_text())
    _c, items = convert(data)
    multi = [it for it in items if len(it.events) == 3 and it.obj["type"] == "observed-data"][0]
    uuids = {e["provenance.event_uuid"] for e in multi.events}
    conv, items = convert([revoked(multi.obj)])                # alone: its SCOs are not in this input
    targets = {r["retraction.target_event_uuid"] for r in items[0].retractions}
    assert len(targets) == len(multi.obj["object_refs"]) >= 3 and uuids <= targets
    assert conv.stats.not_converted == {}
