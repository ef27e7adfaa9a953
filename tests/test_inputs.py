"""intelmq_crossborder.core.inputs: hostile JSON, JSON lines and YAML get a clear error, fast."""
import json
import time

import pytest
from hypothesis import given, settings, strategies as st

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.inputs import InputError


@pytest.mark.parametrize("text,reason", [
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ('{"x": {"tlp": "RED", "tlp": "CLEAR"}}', "duplicate key 'tlp'"),
    ("9" * 5000, "a number of 5000 characters"),
    ("[1." + "5" * 100 + "]", "a number of"),
    ("[NaN]", "NaN is not a JSON number"),
    ('{"a": Infinity}', "Infinity is not a JSON number"),
    ("[" * 100000 + "]" * 100000, "nested"),
    ('"\\ud800"', "lone UTF-16 surrogate"),
    ('{"\\udfff": 1}', "lone UTF-16 surrogate"),
    ("{} {}", "extra data"),
    ('{"a": ', "not valid JSON"),
])
def test_json_refusals_name_the_reason(text, reason):
    with pytest.raises(InputError) as info:
        inputs.loads_json(text, "feed.json")
    assert reason in str(info.value)
    assert str(info.value).startswith("feed.json")


def test_json_depth_limit_names_the_field():
    deep = {"a": {"b": [[[[1]]]]}}
    with pytest.raises(InputError) as info:
        inputs.loads_json(json.dumps(deep), "x.json", max_depth=4)
    assert info.value.field.startswith("a.b[0]")


def test_json_bytes_must_be_utf8():
    with pytest.raises(InputError, match="not UTF-8 text"):
        inputs.loads_json(b'{"a": "\xff"}', "x.json")
    assert inputs.loads_json('\ufeff{"a": 1}'.encode("utf-8"), "bom.json") == {"a": 1}


def test_json_lines_go_on_after_a_bad_line():
    lines = ['{"a": 1}\n', "\n", '{"a": 1, "a": 2}\n', '[' * 5000 + "\n", b'{"b": 2}\n']
    got = list(inputs.iter_json_lines(lines, "events.jsonl"))
    assert [n for n, _ in got] == [1, 3, 4, 5]
    assert got[0][1] == {"a": 1} and got[3][1] == {"b": 2}
    assert isinstance(got[1][1], InputError) and got[1][1].line == 3
    assert "events.jsonl:4:" in str(got[2][1])


def test_json_lines_stop_with_an_error_on_undecodable_text(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with path.open(encoding="utf-8") as fh:
        got = list(inputs.iter_json_lines(fh, path))
    assert isinstance(got[-1][1], InputError) and "not UTF-8" in str(got[-1][1])


def _bomb(levels=9, width=9):
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_within_seconds():
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        inputs.loads_yaml(_bomb(), "agreement.yaml")
    assert time.monotonic() - start < 5
    assert "billion laughs" in str(info.value) and info.value.line is not None


def test_yaml_small_aliases_are_fine():
    assert inputs.loads_yaml("base: &b {x: 1}\nother: *b\n") == {"base": {"x": 1}, "other": {"x": 1}}


@pytest.mark.parametrize("text,reason", [
    ("a: 1\na: 2\n", "duplicate key 'a'"),
    ("a: " + "x" * 3_000_000 + "\n", "a value of 3000000 characters"),
    ("[" * 10000, "nesting"),
    ("a: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("- &x [*x]\n", "nested"),
    ("a: [1\n", "not valid YAML"),
    ("a: " + "9" * 5000 + "\n", "a number of 5000 characters"),
    ("a: " + "9" * 100 + "\n", "a number of 100 characters"),
    ("a: !!int " + "9" * 5000 + "\n", "a number of 5000 characters"),
    ("a: !!timestamp 2001-99-99\n", "a value that cannot be read"),
    ("a: !!float x\n", "a value that cannot be read"),
])
def test_yaml_refusals(text, reason):
    start = time.monotonic()
    with pytest.raises(InputError) as info:
        inputs.loads_yaml(text, "trust.yaml")
    assert reason in str(info.value)
    assert time.monotonic() - start < 5


def test_read_text_refuses_directories_missing_large_and_non_utf8(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        inputs.read_text(tmp_path)
    with pytest.raises(InputError, match="cannot read"):
        inputs.read_text(tmp_path / "missing.json")
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" * 1000)
    with pytest.raises(InputError, match="larger than"):
        inputs.read_yaml(big, max_bytes=100)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: Ä\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        inputs.read_yaml(latin)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**18, 10**18) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_valid_json_reads_back_unchanged(value):
    try:
        json.dumps(value).encode("utf-8")
    except UnicodeEncodeError:
        return
    assert inputs.loads_json(json.dumps(value)) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_value_or_an_input_error(data):
    for reader in (inputs.loads_json, inputs.loads_yaml):
        try:
            reader(data, "fuzz")
        except InputError:
            pass
