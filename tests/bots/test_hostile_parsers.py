"""Hostile input against every parser bot (issue 12, section 4), on IntelMQ's BotTestCase.

The same input classes as tests/test_hostile_inputs.py (strategies in tests/hostile.py): labels
hidden in every shape, look-alike spellings, duplicate keys, wrong JSON types, huge numbers, deep
nesting, lone surrogates, bytes that are not UTF-8.  Each case sends a hostile report followed by a
good one, and asserts:

- the bot never crashes: no exception escapes process() ("Bot has found a problem"), and a line the
  parser gives up on fails with the parser's own documented error (not a TypeError, KeyError...);
- a report or line that must be refused emits no event and is logged as an error (IntelMQ dumps it);
  a label that is refused is named by its field;
- the next (good) report is still processed;
- no emitted event carries a lower label than the input carried (the expected level comes from
  what the strategy planted, never from the code under test).
"""
import base64
import json
import unittest
from pathlib import Path

import pytest

from tests.botcase import CrossBorderBotTestCase
from hypothesis import given
from hypothesis import strategies as st

from tests import hostile
from tests.hostile import CHR, NAMES, REFUSE
from intelmq_crossborder.bots.parsers.csaf.parser import CrossBorderCSAFParserBot
from intelmq_crossborder.bots.parsers.exchange.parser import CrossBorderExchangeParserBot
from intelmq_crossborder.bots.parsers.misp.parser import CrossBorderMISPParserBot

pytestmark = pytest.mark.fuzz     # full size in make test, smoke size in make test-fast (docs/testing.md)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _names(*bases) -> set:
    names, stack = set(), list(bases)
    while stack:
        cls = stack.pop()
        names.add(cls.__name__)
        stack.extend(cls.__subclasses__())
    return names


def _documented() -> set:
    from intelmq.lib.exceptions import InvalidKey, InvalidValue

    from intelmq_crossborder.formats.csaf import document as csaf

    from intelmq_crossborder.core import inputs, tlp

    from intelmq_crossborder.formats.misp import convert as misp
    return _names(csaf.CSAFError, misp.MISPFormatError, inputs.InputError, tlp.UnknownTLPError, InvalidValue,
                  InvalidKey)


#: Exceptions a parser may end a line with: its documented errors and their subclasses (IntelMQ logs
#: and dumps the line).
DOCUMENTED = _documented()


def _exceptions(log: str) -> list:
    """(exception class, message) of every traceback in a bot's log."""
    found = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            for follow in lines[i + 1:]:
                if follow.startswith((" ", "\t")) or not follow.strip():
                    continue
                if follow.startswith(("During handling", "The above exception", "Traceback")):
                    break
                name, _, message = follow.partition(": ")
                found.append((name.rsplit(".", 1)[-1], message))
                break
    return found


class HostileParserMixin:
    """run_pair(): a hostile report, then a good one, through the bot; checks that hold for all parsers."""

    documented = DOCUMENTED

    def run_pair(self, hostile_report: dict, good_report: dict, parameters=None):
        self.input_message = [hostile_report, good_report]
        self.run_bot(iterations=2, parameters=parameters or {}, allowed_error_count=10_000,
                     allowed_warning_count=10_000)
        log = self.loglines_buffer
        assert "Bot has found a problem" not in log, "an exception escaped the parser\n" + log[-3000:]
        for name, message in _exceptions(log):
            assert name in self.documented, f"the parser crashed on a line with {name}: {message[:300]}\n" + log[-3000:]
        return self.output_events(), log

    @staticmethod
    def assert_not_lowered(event: dict, level, where=""):
        if level is None:
            return
        got = hostile.output_level(event)
        assert got is not None and got >= level, \
            f"label lowered {NAMES[level]} -> {event.get('sharing.tlp')} {where}\n{event!r}"

    @staticmethod
    def assert_refusal_logged(log: str, field_named: bool):
        assert "Failed to parse line." in log or " - ERROR - " in log, "a refused input was not logged\n" + log[-2000:]
        if field_named:
            assert any("field" in message for _, message in _exceptions(log)), \
                "the refusal does not name the field\n" + log[-2000:]


def _raw(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- CSAF parser -------------------------------------------------------------------------------

CSAF_SEED = json.loads((FIXTURES / "csaf" / "advisories" / "2022-evd-uc-01-a-001.json").read_text())
CSAF_LABELS = {0: ["WHITE", "CLEAR", "TLP:WHITE"], 1: ["GREEN", "green"], 2: ["AMBER", "Amber"],
               3: ["AMBER+STRICT"], 4: ["RED", "TLP:RED"]}


def _csaf(label=None, tracking="HOSTILE-1"):
    doc = json.loads(json.dumps(CSAF_SEED))
    doc["document"]["tracking"]["id"] = tracking
    if label is not None:
        doc["document"]["distribution"] = {"tlp": {"label": label}}
    return doc


def _csaf_report(data: bytes, feed_tlp=None) -> dict:
    report = {"__type": "Report", "raw": _raw(data), "feed.name": "hostile CSAF feed",
              "time.observation": "2026-11-20T00:00:00+00:00"}
    if feed_tlp:
        report["sharing.tlp"] = feed_tlp
    return report


GOOD_CSAF = _csaf_report(json.dumps(_csaf("GREEN", tracking="GOOD-1")).encode())


class TestHostileCSAFParser(HostileParserMixin, CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderCSAFParserBot
        cls.sysconfig = {"default_tlp": "AMBER"}

    @hostile.hostile_settings(100)
    @given(st.data())
    def test_hostile_reports(self, data):
        kind = data.draw(st.sampled_from(["label", "label", "refused-label", "inject", "inject", "wrong-types"]))
        feed = data.draw(st.sampled_from([None, None, "GREEN", "AMBER", "RED", "CLEAR", "AMBER+STRICT"]))
        feed_level = None if feed is None else hostile.CANONICAL_LEVEL[feed]
        level, refuse, field_named = None, False, False
        if kind == "label":
            level = data.draw(st.sampled_from(sorted(CSAF_LABELS)))
            raw = json.dumps(_csaf(data.draw(st.sampled_from(CSAF_LABELS[level])))).encode()
        elif kind == "refused-label":
            label = data.draw(st.one_of(hostile.lookalike(), st.sampled_from(
                [["RED"], {"label": "RED"}, 4, True, "PURPLE", "R\u0415D", "\u200bRED"])))
            raw = json.dumps(_csaf(label), ensure_ascii=data.draw(st.booleans())).encode()
            refuse = True
        elif kind == "inject":
            raw = data.draw(hostile.injected(_csaf(data.draw(st.sampled_from(["RED", "AMBER"])))))
            refuse = True
        else:
            raw = json.dumps(data.draw(hostile.wrong_types(_csaf("AMBER")))).encode()
        events, log = self.run_pair(_csaf_report(raw, feed), GOOD_CSAF)
        mine = [e for e in events if e.get("csaf.tracking_id") != "GOOD-1"]
        assert [e for e in events if e.get("csaf.tracking_id") == "GOOD-1"], "the next report was not processed"
        if refuse:
            assert mine == [], f"a document that must be refused gave {len(mine)} event(s)"
            self.assert_refusal_logged(log, field_named)
        expected = max([lvl for lvl in (level, feed_level) if lvl is not None], default=None)
        for event in mine:
            self.assert_not_lowered(event, expected, f"(document label level {level}, feed {feed})")


# --- MISP parser -------------------------------------------------------------------------------

GOOD_UUID = "6b1c5e0a-0d5e-4c8f-9a53-2c1f1f0e7a01"
GOOD_MISP = {"__type": "Report", "feed.name": "member-misp", "time.observation": "2026-11-20T00:00:00+00:00",
             "raw": _raw(json.dumps({"Event": {"uuid": GOOD_UUID, "info": "good", "Tag": [{"name": "tlp:green"}],
                                              "Attribute": [{"uuid": "1b1c5e0a-0d5e-4c8f-9a53-2c1f1f0e7a01",
                                                             "type": "ip-src", "value": "203.0.113.1",
                                                             "to_ids": True}]}}).encode())}


class TestHostileMISPParser(HostileParserMixin, CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPParserBot
        cls.sysconfig = {}

    @hostile.hostile_settings(120)
    @given(st.data())
    def test_hostile_reports(self, data):
        doc, event_expects, by_uuid = data.draw(hostile.misp_documents())
        kind = data.draw(st.sampled_from(["labels", "labels", "labels", "inject", "wrong-types"]))
        if kind == "labels":
            raw = json.dumps(doc, ensure_ascii=data.draw(st.booleans())).encode()
        elif kind == "inject":
            raw = data.draw(hostile.injected(doc))
        else:
            raw = json.dumps(data.draw(hostile.wrong_types(doc))).encode()
        report = dict(GOOD_MISP, raw=_raw(raw))
        events, log = self.run_pair(report, GOOD_MISP)
        assert [e for e in events if e.get("misp.event_uuid") == GOOD_UUID], "the next report was not processed"
        mine = [e for e in events if e.get("misp.event_uuid") != GOOD_UUID]
        if kind == "inject":
            assert mine == [], "a document that must be refused gave events"
            self.assert_refusal_logged(log, field_named=False)
        if kind != "labels":
            return
        if any(e == REFUSE for e in event_expects):
            assert mine == [], "an event with an unreadable tag gave events"
            self.assert_refusal_logged(log, field_named=True)
        for auid, expects in by_uuid.items():
            if any(e == REFUSE for e in expects):
                assert not [e for e in mine if e.get("misp.attribute_uuid") == auid], \
                    f"an attribute with an unreadable tag gave an event: {expects!r}"
                self.assert_refusal_logged(log, field_named=True)
        for event in mine:
            expects = event_expects + by_uuid[event["misp.attribute_uuid"]]
            refuse, level, hide = hostile.expected([hostile.Plant({}, expects, "misp")])
            assert not refuse, f"an unreadable tag was not refused: {expects!r}\n{event!r}"
            self.assert_not_lowered(event, level, f"(tags {expects!r})")
            if hide:
                assert event.get("sharing.do_not_disclose_source") is True, f"tlp:ex:chr lost\n{event!r}"


# --- exchange parser ---------------------------------------------------------------------------

def _exchange_report(lines: list) -> dict:
    return {"__type": "Report", "raw": _raw(b"\n".join(lines)), "feed.name": "Cross-border exchange",
            "extra.exchange_sender": "de-hub", "extra.exchange_sender_country": "DE",
            "extra.exchange_bundle_id": "6f1b3c52-8a4e-4d43-9a53-5d0f3d1f9c11", "extra.exchange_sequence": 1,
            "extra.exchange_first_event": 0, "extra.exchange_chunk": 0}


GOOD_EXCHANGE = _exchange_report([json.dumps({"classification.type": "scanner", "source.ip": "192.0.2.99",
                                              "sharing.tlp": "GREEN", "extra.hostile_line": "good"}).encode()])


@st.composite
def exchange_lines(draw):
    """[(line bytes, planted HostileEvent or None, must be refused)]."""
    out = []
    for i in range(draw(st.integers(1, 4))):
        he = draw(hostile.labelled_events())
        event = dict(he.event, **{"extra.hostile_line": i})
        kind = draw(st.sampled_from(["labels", "labels", "labels", "inject", "top-type"]))
        if kind == "labels":
            out.append((json.dumps(event, ensure_ascii=draw(st.booleans())).encode(), he, False))
        elif kind == "inject":
            out.append((draw(hostile.injected(event)), he, True))
        else:
            out.append((json.dumps(draw(st.sampled_from([[event], "x", 3, None, True]))).encode(), he, True))
    return out


class TestHostileExchangeParser(HostileParserMixin, CrossBorderBotTestCase, unittest.TestCase):
    documented = DOCUMENTED | {"JSONDecodeError", "ValueError"}   # "not a JSON object": the documented refusal

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeParserBot
        cls.sysconfig = {}

    @hostile.hostile_settings(100)
    @given(exchange_lines())
    def test_hostile_lines(self, lines):
        events, log = self.run_pair(_exchange_report([line for line, _, _ in lines]), GOOD_EXCHANGE)
        assert [e for e in events if e.get("extra.hostile_line") == "good"], "the next report was not processed"
        for name, message in _exceptions(log):
            if name == "ValueError":
                assert "not an object" in message or "JSON" in message, f"ValueError: {message[:300]}"
        by_line: dict = {}
        for event in events:
            by_line.setdefault(event.get("extra.hostile_line"), []).append(event)
        for i, (line, he, refuse) in enumerate(lines):
            got = by_line.get(i, [])
            if refuse:
                assert got == [], f"line {i + 1} must be refused (dumped), it gave an event: {line[:300]!r}"
                continue
            for event in got:
                # The parser keeps every field as it came: each planted label is still there, at its level.
                _refuse, level, hide = he.oracle
                self.assert_not_lowered(event, level, f"(line {line[:300]!r})")
                for plant in he.plants:
                    for name in plant.fields:
                        assert name in event, f"label field {name} dropped (line {line[:300]!r})"
                if hide:
                    assert any(event.get(name) == value for plant in he.plants if CHR in plant.expects
                               for name, value in plant.fields.items()) or \
                        event.get("sharing.do_not_disclose_source") is True, f"the hide-source mark was lost\n{event!r}"
