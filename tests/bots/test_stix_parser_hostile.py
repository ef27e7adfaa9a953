"""Hostile input against the STIX parser bot, on IntelMQ's BotTestCase (the checks of
tests/bots/test_hostile_parsers.py: HostileParserMixin, strategies of tests/hostile.py).

Each case sends a hostile STIX report, then a good one, and asserts: nothing escapes process(), a
line the parser gives up on fails with a documented error, the next report is still processed, an
object with an unreadable marking or label gives no event and is logged naming the field, and no
event carries a lower label than what was planted (levels from this file's own id table, never from
the code under test)."""
import base64
import json
import unittest

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import hostile
from tests.botcase import CrossBorderBotTestCase
from tests.bots.test_hostile_parsers import DOCUMENTED, HostileParserMixin
from tests.hostile import AMBER, AMBER_STRICT, CLEAR, GREEN, RED
from intelmq_crossborder.bots.parsers.stix.parser import CrossBorderSTIXParserBot

pytestmark = pytest.mark.fuzz

#: level -> marking-definition ids that mean it (STIX 2.1 spec TLP 1.0, OASIS TLP 2.0, OpenCTI)
IDS = {
    CLEAR: ["613f2e26-407d-48c7-9eca-b8e91df99dc9", "94868c89-83c2-464b-929b-a1a8aa3c8487"],
    GREEN: ["34098fce-860f-48ae-8e50-ebd3cc5e41da", "bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
    AMBER: ["f88d31f6-486f-44da-b317-01333bde0b82", "55d920b0-5e8b-4f79-9ee9-91f868d9b421"],
    AMBER_STRICT: ["939a9414-2ddd-4d32-a0cd-375ea402b003", "826578e1-40ad-459f-bc73-ede076f81f37"],
    RED: ["5e57c739-391a-4eb3-b6be-7d15ca92d5ed", "e828b379-4e03-4974-9ac4-e53a884c97c1"],
}
TLP2_EXT = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
WORD = {CLEAR: "clear", GREEN: "green", AMBER: "amber", AMBER_STRICT: "amber+strict", RED: "red"}


def mid(uuid):
    return "marking-definition--" + uuid


def _raw(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _report(data: bytes, feed=None) -> dict:
    out = {"__type": "Report", "raw": _raw(data), "feed.name": "hostile STIX feed",
           "time.observation": "2026-11-20T00:00:00+00:00"}
    if feed:
        out["sharing.tlp"] = feed
    return out


GOOD = _report(json.dumps({"type": "bundle", "id": "bundle--1", "objects": [
    {"type": "indicator", "id": "indicator--99999999-0000-4000-8000-000000000000", "pattern": "[ipv4-addr:value = "
     "'192.0.2.99']", "pattern_type": "stix", "spec_version": "2.1", "valid_from": "2026-01-01T00:00:00Z",
     "object_marking_refs": [mid(IDS[GREEN][0])]}]}).encode())


def _indicator(n: int, refs=(), granular=(), labels=()):
    obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{n:08d}-0000-4000-8000-000000000000",
           "created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z", "pattern_type": "stix",
           "pattern": f"[ipv4-addr:value = '198.51.100.{n}']", "valid_from": "2026-01-01T00:00:00Z"}
    if refs:
        obj["object_marking_refs"] = list(refs)
    if granular:
        obj["granular_markings"] = [{"marking_ref": r, "selectors": ["pattern"]} for r in granular]
    if labels:
        obj["labels"] = list(labels)
    return obj


@st.composite
def readable(draw):
    """(where the label goes, value, level): a marking ref, a granular ref, a label, or a
    definition of a known id (TLP 1.0 form, TLP 2.0 extension form)."""
    level = draw(st.sampled_from([CLEAR, GREEN, AMBER, AMBER_STRICT, RED]))
    where = draw(st.sampled_from(["ref", "ref", "granular", "label", "container"]))
    if where == "label":
        return where, draw(st.sampled_from(hostile.PREFIXED[level])), level
    return where, mid(draw(st.sampled_from(IDS[level]))), level


@st.composite
def refused(draw):
    """(where, value or definition): something label-like that cannot be read."""
    kind = draw(st.sampled_from(["lookalike-label", "lookalike-ref", "upper-ref", "unknown-tlp-def",
                                 "unknown-value-def", "bad-ext-value"]))
    if kind == "lookalike-label":
        return "label", draw(hostile.lookalike())
    uuid = draw(st.sampled_from([u for ids in IDS.values() for u in ids]))
    if kind == "lookalike-ref":
        i = draw(st.sampled_from([k for k, ch in enumerate(uuid) if ch in "ace"]))
        return "ref", mid(uuid[:i] + {"a": "\u0430", "c": "\u0441", "e": "\u0435"}[uuid[i]] + uuid[i + 1:])
    if kind == "upper-ref":
        return "ref", mid(uuid).upper()
    if kind == "unknown-tlp-def":
        bad = "5d0092c5-5f74-4287-9642-" + draw(st.sampled_from(["33f4c354e56d", "000000000001"]))
        return "def", {"type": "marking-definition", "id": mid(bad), "definition_type": "tlp",
                       "definition": {"tlp": draw(st.sampled_from(["green", "amber", "test"]))}}
    if kind == "unknown-value-def":
        return "def", {"type": "marking-definition", "id": mid(uuid), "definition_type": "tlp",
                       "definition": {"tlp": draw(st.sampled_from(["test", "TLP:TEST", "purple", "unclear"]))}}
    return "def", {"type": "marking-definition", "id": mid(uuid), "name": "TLP:X",
                   "extensions": {TLP2_EXT: {"extension_type": "property-extension",
                                             "tlp_2_0": draw(st.sampled_from(["pink", "", "AMBER STRICT!"]))}}}


@st.composite
def bundles(draw):
    """(bundle, {indicator id: (must refuse, planted levels)})."""
    objects, expects = [], {}
    for n in range(1, draw(st.integers(1, 4)) + 1):
        plants = draw(st.lists(readable(), max_size=3))
        bad = draw(st.one_of(st.none(), st.none(), refused()))
        refs, granular, labels, levels, container, defs = [], [], [], [], [], []
        for where, value, level in plants:
            levels.append(level)
            {"ref": refs, "granular": granular, "label": labels, "container": container}[where].append(value)
        if bad is not None:
            where, value = bad
            if where == "def":
                defs.append(value)
                refs.append(value["id"])
            else:
                (labels if where == "label" else refs).append(value)
        ind = _indicator(n, refs, granular, labels)
        objects.append(ind)
        objects.extend(defs)
        if container:
            objects.append({"type": "report", "id": f"report--{n:08d}-0000-4000-8000-000000000000",
                            "spec_version": "2.1", "name": "r", "published": "2026-01-01T00:00:00Z",
                            "object_refs": [ind["id"]], "object_marking_refs": container})
        expects[ind["id"]] = (bad is not None, levels)
    if draw(st.booleans()):
        # the definitions of the known ids the objects use, in their publishers' forms
        for level, ids in IDS.items():
            objects.append({"type": "marking-definition", "id": mid(ids[0]), "definition_type": "tlp",
                            "name": f"TLP:{'WHITE' if level == CLEAR else WORD[level].upper()}",
                            "definition": {"tlp": "white" if level == CLEAR else WORD[level]}}
                           if level != AMBER_STRICT else
                           {"type": "marking-definition", "id": mid(ids[0]), "name": "TLP:AMBER+STRICT",
                            "extensions": {TLP2_EXT: {"extension_type": "property-extension",
                                                      "tlp_2_0": "amber+strict"}}})
    return {"type": "bundle", "id": "bundle--2", "objects": objects}, expects


class TestHostileSTIXParser(HostileParserMixin, CrossBorderBotTestCase, unittest.TestCase):
    documented = DOCUMENTED | {"STIXFormatError", "LabelError", "PatternError"}

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderSTIXParserBot
        cls.sysconfig = {"default_tlp": "CLEAR"}

    @hostile.hostile_settings(120)
    @given(st.data())
    def test_hostile_reports(self, data):
        bundle, expects = data.draw(bundles())
        kind = data.draw(st.sampled_from(["labels", "labels", "labels", "inject", "wrong-types"]))
        feed = data.draw(st.sampled_from([None, None, "GREEN", "AMBER", "RED"]))
        feed_level = None if feed is None else hostile.CANONICAL_LEVEL[feed]
        if kind == "labels":
            raw = json.dumps(bundle, ensure_ascii=data.draw(st.booleans())).encode()
        elif kind == "inject":
            raw = data.draw(hostile.injected(bundle))
        else:
            # wrong types may legitimately remove a planted label or link (null is "no marking", a
            # report without object_refs contains nothing): only "no crash, next report processed"
            raw = json.dumps(data.draw(hostile.wrong_types(bundle))).encode()
        events, log = self.run_pair(_report(raw, feed), GOOD)
        good = [e for e in events if e.get("source.ip") == "192.0.2.99"]
        assert good, "the next report was not processed"
        mine = [e for e in events if e.get("source.ip") != "192.0.2.99"]
        if kind == "inject":
            assert mine == [], "a document that must be refused gave events"
            self.assert_refusal_logged(log, field_named=False)
            return
        if kind != "labels":
            return
        for event in mine:
            planted = expects.get(event.get("extra.stix_id"))
            assert planted is not None, f"an event of no planted indicator\n{event!r}"
            must_refuse, levels = planted
            assert not must_refuse, f"an unreadable marking or label was not refused\n{event!r}"
            level = max([lvl for lvl in levels + [feed_level] if lvl is not None], default=CLEAR)
            self.assert_not_lowered(event, level, f"(planted {levels}, feed {feed})")
        if any(refuse for refuse, _ in expects.values()):
            self.assert_refusal_logged(log, field_named=True)
