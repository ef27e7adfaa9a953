"""Wrong JSON types and deep nesting in MISP input are MISPFormatError (found by tests/test_fuzz_misp.py)."""

import pytest

from intelmq_crossborder.formats.misp import convert as misp
EVENT = {"uuid": "5f2d2d5e-1b8c-4a3e-9f1a-0c1d2e3f4a5b", "info": "x",
         "Attribute": [{"uuid": "6f2d2d5e-1b8c-4a3e-9f1a-0c1d2e3f4a5b", "type": ["ip-dst"], "value": "192.0.2.1"}]}


def test_attribute_type_of_the_wrong_json_type():
    converter = misp.Converter(where="feed.json")
    rows = list(converter.rows(EVENT))
    with pytest.raises(misp.MISPFormatError, match="wrong type") as info:
        converter.convert(rows[0])
    assert "feed.json" in str(info.value) and "Attribute[" in str(info.value)


def test_deep_nesting_in_a_file(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"Event":' + "[" * 50000 + "]" * 50000 + "}")
    with pytest.raises(misp.MISPFormatError, match="nested too deeply"):
        misp.load_file(path)


def test_timestamp_out_of_range_is_left_out():
    attribute = dict(EVENT["Attribute"][0], type="ip-dst", timestamp=str(10 ** 20))
    converter = misp.Converter(where="feed.json")
    rows = list(converter.rows(dict(EVENT, Attribute=[attribute])))
    out = converter.convert(rows[0])
    assert out["destination.ip"] == "192.0.2.1" and "time.source" not in out
