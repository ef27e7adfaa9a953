"""Cross-border harmonization: schema, install (merge), check, and compatibility with stock events."""
import json
import shutil
from pathlib import Path

import pytest
from intelmq.lib import message
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder import harmonization as h
from intelmq_crossborder.core import tlp
FIXTURE = Path(__file__).parent / "fixtures" / "harmonization" / "intelmq-3.5.0-harmonization.conf"


@pytest.fixture
def stock_copy(tmp_path):
    target = tmp_path / "harmonization.conf"
    shutil.copy(FIXTURE, target)
    return target


def test_schema_is_structurally_valid_and_documented():
    schema = h.load_schema()
    assert h.check_structure(schema, "crossborder.json") == []
    doc = (Path(__file__).parent.parent / "docs" / "harmonization.md").read_text()
    for section, fields in schema.items():
        for name in fields:
            assert f"`{name}`" in doc, f"{section}.{name} is not documented in docs/harmonization.md"


def test_schema_does_not_redefine_stock_fields():
    stock = json.loads(FIXTURE.read_text())
    for section, fields in h.load_schema().items():
        assert not set(fields) & set(stock[section]), "the schema must only add fields"


def test_install_on_stock_copy(stock_copy):
    before = json.loads(stock_copy.read_text())
    report, backup = h.install(stock_copy)
    after = json.loads(stock_copy.read_text())
    assert sorted(report.added) == sorted(f"{s}.{n}" for s, f in h.load_schema().items() for n in f)
    assert backup is not None and json.loads(backup.read_text()) == before
    for section in before:                        # nothing dropped or changed
        for name, definition in before[section].items():
            assert after[section][name] == definition
    assert h.check(stock_copy) == []


def test_install_is_idempotent(stock_copy):
    h.install(stock_copy)
    content = stock_copy.read_text()
    report, backup = h.install(stock_copy)
    assert report.added == [] and backup is None and not report.changed
    assert stock_copy.read_text() == content
    assert report.lines()[0].startswith("nothing to do")


def test_install_keeps_custom_fields_and_never_weakens(stock_copy):
    data = json.loads(stock_copy.read_text())
    data["event"]["extra_local.ticket_id"] = {"type": "Integer", "description": "our ticket number"}
    # a field we also define, with a stricter local definition: it must be kept as it is
    data["event"]["sharing.tlp"] = {"type": "UppercaseString", "description": "local", "regex": "^(RED)$"}
    stock_copy.write_text(json.dumps(data))
    report, _ = h.install(stock_copy)
    after = json.loads(stock_copy.read_text())
    assert after["event"]["extra_local.ticket_id"] == data["event"]["extra_local.ticket_id"]
    assert after["event"]["sharing.tlp"] == data["event"]["sharing.tlp"]
    assert "event.sharing.tlp" in report.kept
    assert any("kept existing definition of event.sharing.tlp" in line for line in report.lines())
    # check reports the difference, naming the field
    assert any("field event.sharing.tlp" in p for p in h.check(stock_copy))


def test_install_creates_missing_target(tmp_path):
    target = tmp_path / "etc" / "harmonization.conf"
    report, backup = h.install(target)
    assert backup is None and target.exists() and h.check(target) == []


def test_install_writes_intelmqs_layout_and_keeps_the_files_permissions(stock_copy, tmp_path):
    stock_copy.chmod(0o640)
    h.install(stock_copy, backup=False)
    assert stock_copy.stat().st_mode & 0o7777 == 0o640
    text = stock_copy.read_text("utf-8")
    assert text == json.dumps(json.loads(text), indent=4, sort_keys=True) + "\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name != stock_copy.name]     # no temporary file left
    new = tmp_path / "new" / "harmonization.conf"
    h.install(new)
    assert new.stat().st_mode & 0o7777 == 0o644          # readable by the intelmq user


def test_install_refuses_broken_target(tmp_path):
    target = tmp_path / "harmonization.conf"
    target.write_text('{"event": {"source.ip": {"type": "NoSuchType", "description": "x"}}, "report": {}}')
    with pytest.raises(h.HarmonizationError, match="field event.source.ip: type 'NoSuchType'"):
        h.install(target)
    assert "NoSuchType" in target.read_text()  # untouched


@pytest.mark.parametrize("mutation,expected", [
    (lambda d: d["event"].__setitem__("Bad-Key", {"type": "String", "description": "x"}), "field event.Bad-Key: invalid key"),
    (lambda d: d["event"]["source.ip"].__setitem__("type", "IPv9"), "field event.source.ip: type 'IPv9'"),
    (lambda d: d["event"]["source.ip"].pop("description"), "field event.source.ip: description is missing"),
    (lambda d: d["event"]["sharing.tlp"].__setitem__("regex", "^(RED$"), "field event.sharing.tlp: regex does not compile"),
    (lambda d: d["event"]["sharing.tlp"].__setitem__("length", "12"), "field event.sharing.tlp: length must be"),
    (lambda d: d["event"].pop("provenance.hub_path"), "field event.provenance.hub_path: cross-border field is missing"),
    (lambda d: d.pop("report"), "section 'report' is missing"),
])
def test_check_names_the_field(stock_copy, mutation, expected):
    h.install(stock_copy)
    data = json.loads(stock_copy.read_text())
    mutation(data)
    stock_copy.write_text(json.dumps(data))
    problems = h.check(stock_copy)
    assert any(expected in p for p in problems), problems
    assert all(str(stock_copy) in p for p in problems)


def test_check_not_json(tmp_path):
    bad = tmp_path / "h.conf"
    bad.write_text("{not json")
    assert "not valid JSON" in h.check(bad)[0]


# --- compatibility --------------------------------------------------------------

HARM = h.merged_harmonization()


def test_stock_events_still_validate():
    """Events as stock bots produce them, incl. the stock tlp field with TLP 1.0 values and prefix."""
    ev = message.Event(harmonization=HARM)
    ev.add("tlp", "tlp:amber")          # stock TLP type: prefix stripped, uppercased
    ev.add("classification.type", "scanner")
    ev.add("source.ip", "192.0.2.1")
    assert ev["tlp"] == "AMBER"
    with pytest.raises(InvalidValue):    # the stock field stays TLP 1.0: no AMBER+STRICT there
        ev.add("tlp", "AMBER+STRICT", overwrite=True)


@pytest.mark.parametrize("level", list(tlp.Level))
def test_crossborder_tlp_field_takes_every_tlp2_label(level):
    ev = message.Event(harmonization=HARM)
    ev.add("sharing.tlp", level.label)
    assert ev["sharing.tlp"] == level.label


@pytest.mark.parametrize("field,good,bad", [
    ("sharing.tlp", "AMBER+STRICT", "WHITE"),
    ("sharing.pap", "GREEN", "WHITE"),
    ("provenance.origin_country", "AT", "AUT"),
    ("provenance.event_uuid", "0b0d3f7e-7d2e-4b5f-9a43-1c2d3e4f5a6b", "not-a-uuid"),
    ("provenance.fingerprint", "a" * 64, "abc"),
    ("provenance.hub_path", "at-hub,de-hub", "at hub;de"),
    ("misp.distribution", 4, 9),
    ("vulnerability.cwe", "CWE-79", "79"),
    ("vulnerability.product_status", "known_affected", "maybe"),
])
def test_crossborder_field_validation(field, good, bad):
    ev = message.Event(harmonization=HARM)
    ev.add(field, good)
    with pytest.raises(InvalidValue):
        ev.add(field, bad, overwrite=True)
