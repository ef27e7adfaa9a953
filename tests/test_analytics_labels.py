"""The early warning, contributions, CSAF and MISP conversions read labels with the TLP core's one
reader (tlp.event_tlp): every label counts, a label that cannot be read is refused with the field
named, and the commands end with a message, never a traceback (issue 12)."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from intelmq_crossborder.analytics import contributions as cb
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.formats.misp import convert as misp
from intelmq_crossborder.core import tlp
from tests.clirun import run

CSAF_FIX = Path(__file__).parent / "fixtures" / "csaf" / "advisories"
BSI = json.loads((CSAF_FIX / "bsi-2022-0001.json").read_text("utf-8"))     # TLP:WHITE, one vulnerability
BSI_EVENTS = len(csaf.document_events(BSI).events)
LOOKALIKES = ["tlp\u200b:red", "tlp:r\u0435d", "tlp\uff1ared", "TLP:\u0280ED"]     # zero-width, Cyrillic, full-width



# --- early warning -----------------------------------------------------------------------------

def test_early_warning_level_is_the_most_restrictive_label():
    assert ew.read_level({"sharing.tlp": "GREEN", "extra.tlp": "RED"}, tlp.Level.AMBER) == (tlp.Level.RED, False)
    assert ew.read_level({"extra.misp_tags": [{"name": "tlp:ex:chr"}]}, tlp.Level.AMBER) == (tlp.Level.AMBER, True)
    with pytest.raises(tlp.LabelError) as info:
        ew.read_level({"sharing.tlp": "GREEN", "extra.tags": ["tlp:r\u0435d"]}, tlp.Level.AMBER)
    assert info.value.field == "extra.tags[0]"


def test_hidden_source_indicator_in_a_source_field_is_not_copied():
    spread = ew.Spread([ew.Contribution("de-hub", "DE", tlp.Level.GREEN, True),
                        ew.Contribution("fr-hub", "FR", tlp.Level.GREEN, False)])
    key = ("csaf.tracking_id", "DE-CERT-2026-0042")
    warning = ew.build_warning("spread", key, spread, None, 3600, "eu-hub", None, include_indicator=True)
    assert "DE-CERT-2026-0042" not in json.dumps(warning)
    assert "csaf.tracking_id" not in warning and "provenance.originator" not in warning
    shown = ew.build_warning("spread", key, ew.Spread(spread.contributions[1:]), None, 3600, None, None, True)
    assert shown["csaf.tracking_id"] == "DE-CERT-2026-0042", "without a hidden source the indicator is copied"


# --- contributions -----------------------------------------------------------------------------

def test_contributions_record_the_effective_level(tmp_path):
    conn = cb.connect(tmp_path / "s.sqlite")
    base = {"classification.type": "scanner", "provenance.originator": "cert-a"}
    cb.record_event(conn, dict(base, **{"sharing.tlp": "CLEAR", "extra.tlp_label": "TLP:AMBER+STRICT",
                                        "source.ip": "192.0.2.1"}), arrived_at="2026-11-20T10:00:00+00:00")
    cb.record_event(conn, dict(base, **{"extra.misp_tags": "foo,tlp:amber", "source.ip": "192.0.2.2"}),
                    arrived_at="2026-11-20T10:00:00+00:00")
    with pytest.raises(tlp.LabelError):
        cb.record_event(conn, dict(base, **{"sharing.tlp": "CLEAR", "extra.misp_tags": [{"nam": "tlp:red"}]}),
                        arrived_at="2026-11-20T10:00:00+00:00")
    rows = cb.contributions(conn)
    assert [r.by_tlp for r in rows] == [{"AMBER+STRICT": 1, "AMBER": 1}]
    assert [r.events for r in cb.contributions(conn, ceiling=tlp.Level.GREEN)] == []
    assert [row["level"] for row in cb.event_rows(conn)] == ["AMBER+STRICT", "AMBER"]


def test_contributions_flatten_refuses_a_field_given_twice():
    with pytest.raises(ValueError, match="sharing.tlp: given twice"):
        cb._flatten({"sharing.tlp": "CLEAR", "sharing": {"tlp": "RED"}})
    assert cb._flatten({"sharing": {"tlp": "RED"}, "extra": {"tlp": "AMBER", "x": {"tlp": 1}}}) == \
        {"sharing.tlp": "RED", "extra.tlp": "AMBER", "extra.x": {"tlp": 1}}


# --- CSAF ---------------------------------------------------------------------------------------

def bsi(**changes):
    doc = copy.deepcopy(BSI)
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        target[last] = value
    return doc


def test_csaf_event_never_lower_than_a_label_it_carries():
    """A title that is itself a TLP label ends up in event_description.text: the events read RED."""
    doc = bsi(document__title="TLP:RED")
    for vuln in doc["vulnerabilities"]:
        vuln.pop("title", None)
        vuln.pop("notes", None)
    result = csaf.document_events(doc)
    assert result.events and {e["sharing.tlp"] for e in result.events} == {"RED"}
    assert {tlp.event_tlp(e).label for e in result.events} == {"RED"}


@pytest.mark.parametrize("lookalike", LOOKALIKES)
def test_csaf_lookalike_label_refuses_the_document(lookalike):
    doc = bsi(document__title=lookalike)
    for vuln in doc["vulnerabilities"]:
        vuln.pop("title", None)
        vuln.pop("notes", None)
    with pytest.raises(csaf.CSAFError, match=r"doc\.json: .*event field event_description\.text"):
        csaf.document_events(doc, source="doc.json")


def test_csaf_feed_hide_flag_reaches_every_event():
    result = csaf.document_events(BSI, hide_source=True)
    assert all(e["sharing.do_not_disclose_source"] is True for e in result.events)


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _bsi_text(**changes):
    return json.dumps(bsi(**changes))


CSAF_BAD = {
    "duplicate key": (lambda: _bsi_text().replace('"category"', '"category": "x", "category"', 1),
                      "duplicate key 'category'"),
    "huge integer": (lambda: _bsi_text()[:-1] + ', "x": 1' + "0" * 5000 + "}", "number of 5001 characters"),
    "deep nesting": (lambda: _bsi_text()[:-1] + ', "x": ' + "[" * 3000 + "]" * 3000 + "}", "nested"),
    "lone surrogate": (lambda: _bsi_text(document__title="SURROGATE").replace("SURROGATE", "\\ud800"), "surrogate"),
    "not UTF-8": (lambda: _bsi_text().encode("utf-8").replace(b"CVRF", b"\xff\xfe", 1), "not UTF-8"),
    "a list": (lambda: "[" + _bsi_text() + "]", "a CSAF document is a JSON object, not list"),
    "a mapping where a list is": (lambda: _bsi_text(vulnerabilities={"0": {}}), "$.vulnerabilities"),
    "a list where a mapping is": (lambda: _bsi_text(document__tracking=[]), "$.document.tracking"),
    "label in a list": (lambda: _bsi_text(document__distribution={"tlp": {"label": ["RED"]}}),
                        "$.document.distribution.tlp.label"),
}


@pytest.mark.parametrize("case", sorted(CSAF_BAD))
def test_convert_csaf_bad_documents_exit_1_and_go_on(tmp_path, capsys, case):
    make, expected = CSAF_BAD[case]
    bad = _write(tmp_path, "bad.json", make())
    good = _write(tmp_path, "good.json", json.dumps(BSI))
    status, out, err = run(["convert", "csaf", str(bad), str(good)], capsys)
    assert status == 1, err
    assert "bad.json" in err and expected in err, err
    assert len(out.splitlines()) == BSI_EVENTS, "the good document after the bad one is converted"


def test_convert_csaf_unusable_paths_exit_2(tmp_path, capsys):
    good = _write(tmp_path, "good.json", json.dumps(BSI))
    status, out, err = run(["convert", "csaf", str(tmp_path / "no" / "such-dir"), str(good)], capsys)
    assert status == 2 and "no such file or directory" in err
    assert len(out.splitlines()) == BSI_EVENTS


def test_convert_csaf_directory_with_a_bad_file(tmp_path, capsys):
    _write(tmp_path, "a.json", b"\xff\xfe")
    _write(tmp_path, "b.json", json.dumps(BSI))
    status, out, err = run(["convert", "csaf", str(tmp_path)], capsys)
    assert status == 1 and "a.json" in err and len(out.splitlines()) == BSI_EVENTS


# --- MISP ---------------------------------------------------------------------------------------

EVENT_UUID = "5f6e7d8c-0000-4000-8000-000000000001"


def misp_event(event_tags=(), attr_tags=(), **attr):
    attribute = {"uuid": "5f6e7d8c-0000-4000-8000-00000000000a", "type": "ip-src", "value": "192.0.2.1",
                 "to_ids": True, "Tag": list(attr_tags), **attr}
    return {"Event": {"uuid": EVENT_UUID, "info": "test", "Tag": list(event_tags), "Attribute": [attribute]}}


def convert(doc):
    converter = misp.Converter()
    return [converter.convert(row) for event in misp.load_events(doc) for row in converter.rows(event)]


@pytest.mark.parametrize("lookalike", LOOKALIKES)
@pytest.mark.parametrize("where", ["event", "attribute"])
def test_misp_lookalike_tag_is_refused_not_read_as_unlabelled(lookalike, where):
    tags = [{"name": lookalike}]
    doc = misp_event(event_tags=tags) if where == "event" else misp_event(attr_tags=tags)
    with pytest.raises(misp.MISPFormatError, match="look-alike") as info:
        convert(doc)
    assert (info.value.field == "Event.Tag[0].name") if where == "event" else \
        info.value.field.endswith(".Tag[0].name")


@pytest.mark.parametrize("tag, field", [
    ("tlp:red", "Tag[0]"),                                   # a bare string, not MISP's {"name": ...}
    ({"name": ["tlp:red"]}, "Tag[0]"),
    ({"Name": "tlp:red"}, "Tag[0]"),
    (["tlp:red"], "Tag[0]"),
    (7, "Tag[0]"),
])
def test_misp_tag_that_is_not_misps_shape_is_refused(tag, field):
    with pytest.raises(misp.MISPFormatError) as info:
        convert(misp_event(event_tags=[tag]))
    assert info.value.field == f"Event.{field}"
    with pytest.raises(misp.MISPFormatError) as info:
        convert(misp_event(attr_tags=[tag]))
    assert info.value.field.endswith(f".{field}")


def test_misp_tag_block_that_is_not_a_list_is_refused():
    doc = misp_event()
    doc["Event"]["Attribute"][0]["Tag"] = {"tlp:red": {"name": "tlp:red"}}
    with pytest.raises(misp.MISPFormatError, match="list") as info:
        convert(doc)
    assert info.value.field.endswith(".Tag")


def test_misp_event_never_lower_than_a_label_it_carries():
    out, = convert(misp_event(event_tags=[{"name": "tlp:green"}], comment="TLP:AMBER+STRICT"))
    assert tlp.event_tlp(out).label == "AMBER+STRICT" and out["sharing.tlp"] == "AMBER+STRICT"
    out, = convert(misp_event(event_tags=[{"name": "tlp:green"}, {"name": "tlp:ex:chr"}]))
    assert out["sharing.tlp"] == "GREEN" and out["sharing.do_not_disclose_source"] is True


MISP_BAD = {
    "duplicate key": (lambda: json.dumps(misp_event()).replace('"info"', '"info": "a", "info"'), "duplicate key"),
    "huge integer": (lambda: json.dumps(misp_event(timestamp=1))[:-2] + ', "x": 1' + "0" * 4000 + "}}",
                     "number of 4001 characters"),
    "deep nesting": (lambda: '{"Event": ' + "[" * 3000 + "]" * 3000 + "}", "nested"),
    "lone surrogate": (lambda: json.dumps(misp_event()).replace('"test"', '"\\udfff"'), "surrogate"),
    "not UTF-8": (lambda: json.dumps(misp_event()).encode().replace(b"test", b"\xc3\x28"), "not UTF-8"),
    "a list where a mapping is": (lambda: json.dumps({"Event": []}), "not MISP event JSON"),
    "a mapping where a list is": (lambda: json.dumps({"Event": {"uuid": EVENT_UUID, "Attribute": {}}}),
                                  "field Event.Attribute: expected a list"),
    "lookalike tag": (lambda: json.dumps(misp_event(event_tags=[{"name": "tlp\u200b:red"}])), "look-alike"),
}


@pytest.mark.parametrize("case", sorted(MISP_BAD))
def test_convert_misp_bad_documents_exit_1_and_go_on(tmp_path, capsys, case):
    make, expected = MISP_BAD[case]
    content = make()
    bad = _write(tmp_path, "bad.json", content)
    good = _write(tmp_path, "good.json", json.dumps(misp_event(event_tags=[{"name": "tlp:green"}])))
    status, out, err = run(["convert", "misp", str(bad), str(good)], capsys)
    assert status == 1, err
    assert "bad.json" in err and expected in err, err
    assert len(out.splitlines()) == 1, "the good document after the bad one is converted"


def test_convert_misp_unusable_paths_exit_2(tmp_path, capsys):
    good = _write(tmp_path, "good.json", json.dumps(misp_event()))
    status, out, err = run(["convert", "misp", str(tmp_path / "missing.json"), str(tmp_path), str(good)], capsys)
    assert status == 2 and "missing.json: no such file" in err and "is a directory" in err
    assert len(out.splitlines()) == 1


def test_convert_as_a_process_no_traceback(tmp_path):
    bad = _write(tmp_path, "bad.json", b'{"Event": {"uuid": "' + b"\xff" * 3 + b'"}}')
    for fmt in ("csaf", "misp"):
        proc = subprocess.run([sys.executable, "-m", "intelmq_crossborder.cli", "convert", fmt, str(bad)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and "bad.json" in proc.stderr, proc.stderr


def test_misp_object_tags_count_too():
    doc = misp_event(event_tags=[{"name": "tlp:green"}])
    attribute = doc["Event"].pop("Attribute")[0]
    doc["Event"]["Object"] = [{"name": "ip-port", "uuid": "5f6e7d8c-0000-4000-8000-0000000000b0",
                               "Tag": [{"name": "tlp:amber"}], "Attribute": [attribute]}]
    out, = convert(doc)
    assert out["sharing.tlp"] == "AMBER"
    doc["Event"]["Object"][0]["Tag"] = [{"name": "tlp:\u0430mber"}]
    with pytest.raises(misp.MISPFormatError, match="look-alike") as info:
        convert(doc)
    assert info.value.field == "Object[ip-port].Tag[0].name"
