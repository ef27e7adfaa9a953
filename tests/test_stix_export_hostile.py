"""Hostile input against ``intelmq-crossborder export stix`` (the rules of tests/test_hostile_inputs.py):
labels hidden in every shape and field, look-alike spellings, a hidden source, duplicate keys,
huge numbers, deep nesting, lone surrogates, wrong JSON types.  For every case: no traceback, a
documented exit status, a bundle stix2-validator accepts, no object for an event that may not
leave (unreadable label, RED, AMBER+STRICT, no label), markings never below the planted label
(read with this file's own table), and no value of a hidden source anywhere in the output."""
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intelmq_crossborder.formats.stix import export
from tests import hostile
from tests.hostile import AMBER, AMBER_STRICT, CLEAR, GREEN, RED, assert_clean, run_cli

pytestmark = pytest.mark.fuzz

#: The TLP 2.0 extension's marking ids (the default profile), restated from the OASIS definitions.
TLP2 = {"marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": CLEAR,
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": GREEN,
        "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": AMBER,
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": AMBER_STRICT,
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": RED}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile-export")


@st.composite
def lines(draw, index: int):
    """(bytes of one line, HostileEvent or None, bad line?) with a source IP unique to the line."""
    he = draw(hostile.labelled_events())
    he.event["source.ip"] = f"192.0.2.{index + 1}"
    kind = draw(st.sampled_from(["labels"] * 6 + ["inject", "top-type", "wrong-types"]))
    if kind == "labels":
        return json.dumps(he.event, ensure_ascii=draw(st.booleans())).encode(), he, False
    if kind == "inject":
        return draw(hostile.injected(he.event)), he, True
    if kind == "top-type":
        return json.dumps(draw(st.sampled_from([[he.event], "x", 12, None, True, 1.5]))).encode(), he, True
    event = dict(he.event)
    for name in draw(st.lists(st.sampled_from(sorted(hostile.BASE_EVENT)), min_size=1, max_size=3)):
        event[name] = draw(hostile.WRONG_TYPES)
    return json.dumps(event).encode(), hostile.HostileEvent(event, he.plants, he.token, he.source_values), None


@hostile.hostile_settings(150)
@given(st.data())
def test_export_stix_on_hostile_events(scratch, data):
    count = data.draw(st.integers(1, 5))
    drawn = [data.draw(lines(i)) for i in range(count)]
    path = Path(tempfile.mkdtemp(dir=scratch)) / "events.jsonl"
    path.write_bytes(b"\n".join(d for d, _, _ in drawn) + b"\n")
    with hostile.guard():
        result = run_cli(["export", "stix", path])
    assert_clean(result, {0, 1})
    if any(bad for _, _, bad in drawn):
        assert result.code == 1, result.show()
    bundle = json.loads(result.out)
    assert export.validation_errors(bundle) == [], result.show()
    by_ip = {}
    for obj in bundle.get("objects", []):
        if obj["type"] == "indicator":
            by_ip[obj["pattern"].split("'")[1]] = obj
    everything = result.out + result.err
    for index, (raw, he, bad) in enumerate(drawn):
        refuse, level, hide = he.oracle
        obj = by_ip.get(f"192.0.2.{index + 1}")
        where = f"line {index + 1}: {raw[:500]!r}"
        if bad is True:
            assert obj is None, where
            continue
        if refuse or level is None or level >= AMBER_STRICT:
            assert obj is None, f"exported although it may not leave ({where})"
        if obj is not None and bad is False:
            marks = [TLP2.get(ref) for ref in obj["object_marking_refs"]]
            assert marks and None not in marks and min(marks) >= level, f"label lowered ({where})\n{obj}"
        if hide:
            for value in he.source_values:
                assert value not in everything, f"hidden source {value!r} disclosed ({where})"
