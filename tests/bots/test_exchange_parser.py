"""BotTestCase tests of the cross-border exchange parser (and the output→collector→parser round trip)."""
import base64
import json
import unittest

from tests.botcase import CrossBorderBotTestCase
from tests.exchange_helpers import events

from intelmq_crossborder.bots.parsers.exchange.parser import CrossBorderExchangeParserBot


def report(lines, sender="de-hub", country="DE"):
    raw = "\n".join(json.dumps(l) if not isinstance(l, str) else l for l in lines)
    out = {"__type": "Report", "raw": base64.b64encode(raw.encode()).decode(), "feed.name": "Cross-border exchange",
           "extra.exchange_sender": sender, "extra.exchange_bundle_id": "6f1b3c52-8a4e-4d43-9a53-5d0f3d1f9c11",
           "extra.exchange_sequence": 1, "extra.exchange_first_event": 0, "extra.exchange_chunk": 0}
    if country:
        out["extra.exchange_sender_country"] = country
    return out


class TestCrossBorderExchangeParserBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeParserBot
        cls.sysconfig = {}

    def test_events_kept_as_they_came(self):
        sent = events(3, hub="at-hub")
        sent[0]["provenance.hub_path"] = "at-hub,de-hub"
        sent[1]["sharing.do_not_disclose_source"] = True
        sent[2]["extra.nested"] = {"a": [1, 2]}
        self.input_message = report(sent)
        self.run_bot()
        out = self.output_events()
        assert [{k: v for k, v in e.items() if k not in ("__type", "raw")} for e in out] == sent
        assert [json.loads(base64.b64decode(e["raw"])) for e in out] == sent
        assert all("feed.name" not in e for e in out), "report feed fields are not copied into events"

    def test_raw_kept_and_classification_defaulted(self):
        self.input_message = report([{"source.ip": "192.0.2.1", "raw": base64.b64encode(b"orig").decode()}])
        self.run_bot()
        out = self.output_events()[0]
        assert base64.b64decode(out["raw"]) == b"orig" and out["classification.type"] == "undetermined"

    def test_fill_origin_from_sender(self):
        self.input_message = report([{"source.ip": "192.0.2.1", "classification.type": "scanner"}])
        self.run_bot()
        assert self.output_events()[0]["provenance.origin_hub"] == "de-hub"
        assert self.output_events()[0]["provenance.origin_country"] == "DE"

    def test_fill_origin_disabled(self):
        self.input_message = report([{"source.ip": "192.0.2.1", "classification.type": "scanner"}])
        self.run_bot(parameters={"fill_origin": False})
        assert "provenance.origin_hub" not in self.output_events()[0]

    def test_manager_style_empty_parameters_are_the_defaults(self):
        """IntelMQ Manager saves an untouched parameter as '': fill_origin and add_raw stay on."""
        self.input_message = report([{"source.ip": "192.0.2.1", "classification.type": "scanner"}])
        self.run_bot(parameters={"fill_origin": "", "add_raw": ""})
        out = self.output_events()[0]
        assert out["provenance.origin_hub"] == "de-hub" and "raw" in out

    def test_bad_lines_dumped_others_forwarded(self):
        self.input_message = report([{"source.ip": "192.0.2.1"}, {"no.such.field": 1}, "[1, 2]", "{not json",
                                     {"source.ip": "192.0.2.2"}])
        self.run_bot(allowed_error_count=3)
        assert [e["source.ip"] for e in self.output_events()] == ["192.0.2.1", "192.0.2.2"]
        self.assertRegexpMatchesLog("Sent 2 events and found 3 problem")

    def test_labels_are_kept_never_lowered(self):
        sent = [{"source.ip": "192.0.2.1", "classification.type": "scanner", "sharing.tlp": "GREEN",
                 "extra.tlp": "RED", "extra.misp_tags": [{"name": "tlp:ex:chr"}]}]
        self.input_message = report(sent)
        self.run_bot()
        out, = self.output_events()
        from intelmq_crossborder.core import tlp
        read = tlp.event_tlp(out)
        assert read.label == "RED" and read.hide_source
        assert out["sharing.tlp"] == "GREEN" and out["extra.tlp"] == "RED", "every label as it came"

    def test_hostile_lines_dumped_naming_line_and_field_others_go_on(self):
        good = json.dumps({"source.ip": "192.0.2.9", "classification.type": "scanner"})
        lines = [good,
                 '{"source.ip": "192.0.2.1", "sharing.tlp": "RED", "sharing.tlp": "CLEAR"}',
                 json.dumps({"source.ip": "192.0.2.2", "extra.tags": ["tlp:r\u0435d"]}),
                 json.dumps({"source.ip": "192.0.2.3", "extra.tlp": ["RED"]}),
                 json.dumps({"source.ip": "192.0.2.4", "extra": {"tlp": "RED"}, "extra.tlp": "CLEAR"}),
                 '{"source.port": 1' + "0" * 100 + "}",
                 good]
        raw = "\n".join(lines).encode() + b'\n{"comment": "\xff"}\n'
        message = report([])
        message["raw"] = base64.b64encode(raw).decode()
        self.input_message = message
        self.run_bot(allowed_error_count=6)
        assert [e["source.ip"] for e in self.output_events()] == ["192.0.2.9", "192.0.2.9"]
        self.assertRegexpMatchesLog(r"bundle 6f1b3c52-8a4e-4d43-9a53-5d0f3d1f9c11:2: .*duplicate key 'sharing\.tlp'")
        self.assertRegexpMatchesLog(r"extra\.tags\[0\].*look-alike")
        self.assertRegexpMatchesLog(r"extra\.tlp.*must be a string")
        self.assertRegexpMatchesLog(r"field extra\.tlp: given twice")
        self.assertRegexpMatchesLog(r":6: .*a number of 101 characters")
        self.assertRegexpMatchesLog(r":8: .*not UTF-8")
        self.assertRegexpMatchesLog("Sent 2 events and found 6 problem")

