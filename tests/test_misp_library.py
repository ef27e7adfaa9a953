"""Unit tests of intelmq_crossborder.formats.misp.convert (mapping library) and the convert misp CLI."""
import json
from pathlib import Path

import pytest

from intelmq_crossborder import cli

from intelmq_crossborder.formats.misp import convert as misp
FIX = Path(__file__).resolve().parent / "fixtures" / "misp"
REGIN = FIX / "misp-core" / "event-regin.json"


def test_both_wrappers_and_lists():
    event = json.loads(REGIN.read_text())["Event"]
    for data in ({"Event": event}, {"response": [{"Event": event}]}, {"response": {"Event": event}},
                 [{"Event": event}, {"Event": event}]):
        events = misp.load_events(data)
        assert events[0]["uuid"] == event["uuid"]


@pytest.mark.parametrize("data,field", [
    ({"type": "bundle"}, "(top level)"),
    ({"response": [{"Event": {"uuid": "nope"}}]}, "response[0].Event.uuid"),
    ({"Event": {"uuid": "5b646415-7b48-40d5-86b4-c0070acd0835", "Attribute": {}}}, "Event.Attribute"),
    ({"response": []}, "response"),
])
def test_not_misp_names_the_field(data, field):
    with pytest.raises(misp.MISPFormatError) as info:
        misp.load_events(data, "x.json")
    assert str(info.value).startswith(f"x.json: field {field}: ")


@pytest.mark.parametrize("chain,expected", [
    ([(5, None), (3, None)], (3, None)),              # inherit
    ([(3, None), (1, None)], (1, None)),              # never wider than the event
    ([(1, None), (3, None)], (1, None)),
    ([(4, "sg"), (3, None)], (4, "sg")),
    ([(2, None), (4, "ev-sg")], (4, "ev-sg")),        # the event's sharing group bounds it
    ([(4, "sg"), (0, None)], (0, None)),              # organisation only beats a sharing group
    ([(5, None), (5, None), (4, "ev")], (4, "ev")),   # attribute -> object -> event
    ([(None, None), (None, None)], None),
])
def test_effective_distribution(chain, expected):
    assert misp.effective_distribution(chain) == expected


def test_taxonomy_tags():
    assert misp.taxonomy_classification(['rsit:malicious-code="c2-server"']) == "c2-server"
    assert misp.taxonomy_classification(['ecsirt:malicious-code="botnet-drone"']) == "infected-system"
    assert misp.taxonomy_classification(['ecsirt:abusive-content="spam"', "tlp:green"]) == "spam"
    assert misp.taxonomy_classification(["tlp:green", 'rsit:other="not-a-type"']) is None


def test_unmapped_counted_and_non_ids_filtered():
    conv = misp.Converter(keep_non_ids=False)
    event = json.loads(REGIN.read_text())["Event"]
    out = list(conv.convert_event(event))
    assert conv.stats.unmapped == {"filename": 6, "regkey": 3, "link": 1, "text": 1}
    assert conv.stats.attributes == 38 and conv.stats.emitted == len(out)
    assert conv.stats.emitted + conv.stats.filtered + sum(conv.stats.unmapped.values()) == 38


def test_attribute_tag_error_names_the_attribute():
    event = json.loads(REGIN.read_text())["Event"]
    index = next(i for i, a in enumerate(event["Attribute"]) if a["type"] == "md5")
    event["Attribute"][index]["Tag"] = [{"name": "tlp:blue"}]
    conv = misp.Converter(where="r.json")
    rows = list(conv.rows(event))
    uuid = event["Attribute"][index]["uuid"]
    with pytest.raises(misp.MISPFormatError,
                       match=rf"r\.json: field Attribute\[{uuid}\]\.Tag\[0\]\.name: 'tlp:blue' is not a TLP label"):
        conv.convert(rows[index])


def test_ip_port_variants():
    assert misp.TYPE_FIELDS["ip-dst|port"]("192.0.2.1|443") == {"destination.ip": "192.0.2.1", "destination.port": 443}
    assert misp.TYPE_FIELDS["ip-src|port"]("192.0.2.1:8080") == {"source.ip": "192.0.2.1", "source.port": 8080}
    assert misp.TYPE_FIELDS["AS"]("as3320") == {"source.asn": 3320}


def test_cli_prints_flat_events(capsys):
    status = cli.main(["convert", "misp", str(FIX / "ours" / "endor-tlp-clear.json")])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(lines) == 11
    assert all(line["sharing.tlp"] == "CLEAR" and "." in next(iter(line)) for line in lines)
    assert {line["misp.event_uuid"] for line in lines} == {"5bbe59a6-2e48-4da3-9e01-01550a016219"}
    assert "without IntelMQ field (text=12, filename=7, email-dst=1)" in err


def test_cli_bad_files_exit_1_after_all(capsys):
    good = str(FIX / "pymisp" / "sighting_1.json")
    status = cli.main(["convert", "misp", str(FIX / "ours" / "malformed-not-misp.json"), good,
                       str(FIX / "ours" / "malformed-truncated.json")])
    out, err = capsys.readouterr()
    assert status == 1
    assert len(out.splitlines()) == 5           # the good file in the middle is still converted
    assert "malformed-not-misp.json: field (top level): not MISP event JSON" in err
    assert "malformed-truncated.json:1: not valid JSON" in err


def test_cli_missing_file(capsys):
    assert cli.main(["convert", "misp", "/nonexistent/x.json"]) == 2      # cannot be read at all: usage
    assert "/nonexistent/x.json: no such file or directory" in capsys.readouterr().err


def test_cli_drop_non_ids_and_mapping(capsys):
    path = str(FIX / "ours" / "sighting-attribute-tlp-types.json")
    cli.main(["convert", "misp", path])
    all_lines = capsys.readouterr().out.splitlines()
    cli.main(["convert", "misp", "--drop-non-ids", "--type-classification", "domain=phishing", path])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(all_lines) - 1
    assert {x["classification.type"] for x in lines if x["extra.misp_type"] == "domain"} <= {"phishing", "c2-server"}


def test_cli_help():
    with pytest.raises(SystemExit) as info:
        cli.main(["convert", "misp", "--help"])
    assert info.value.code == 0


def test_docs_mapping_table_lists_every_type():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "bots" / "misp.md").read_text()
    table = doc.split("### Mapping: MISP attribute types", 1)[1].split("### Parameters", 1)[0]
    for mtype in misp.TYPE_FIELDS:
        assert f"`{mtype.replace('|', chr(92) + '|')}`" in table, mtype


@pytest.mark.parametrize("path", ["eset/ebury.misp.json", "ours/regin-amber-strict-sharing-group.json",
                                  "ours/sighting-attribute-tlp-types.json"])
def test_row_raw_is_compact_and_converts_the_same(path):
    conv = misp.Converter()
    for row in conv.rows(misp.load_file(FIX / path)[0]):
        fields = conv.convert(row)
        if fields is None:
            continue
        raw = row.raw()
        assert len(raw) < 10_000                      # ebury's full event is 1.85 MB
        (again,) = list(misp.Converter().convert_event(misp.load_events(json.loads(raw))[0]))
        for key in ("extra.misp_galaxies", "malware.name"):   # galaxies are not repeated in raw
            fields.pop(key, None)
            again.pop(key, None)
        assert again == fields
