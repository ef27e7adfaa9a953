"""STIX marking definitions: the table's ids (TLP 1.0, TLP 2.0, OpenCTI), reading
definitions (fail closed), statements and undefined refs as metadata, building for export."""
import json
from pathlib import Path

import pytest
import stix2
from stix2validator import ValidationOptions, validate_string

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.tlp import Level as L
from intelmq_crossborder.formats.stix import markings as m

FIX = Path(__file__).parent / "fixtures" / "stix"
OPENCTI_AMBER_STRICT = "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"
TLP1 = {L.CLEAR: "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
        L.GREEN: "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
        L.AMBER: "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
        L.RED: "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"}


# --- the table ------------------------------------------------------------------------

def test_opencti_amber_strict_id_reads_and_writes():
    assert tlp.parse(OPENCTI_AMBER_STRICT) == tlp.ParsedTLP(L.AMBER_STRICT, tlp.STIX_OPENCTI)
    assert tlp.to_stix_marking_id(L.AMBER_STRICT, "opencti") == OPENCTI_AMBER_STRICT
    # OpenCTI's CLEAR is the TLP 1.0 WHITE id; GREEN/AMBER/RED are the TLP 1.0 ids
    for level in (L.CLEAR, L.GREEN, L.AMBER, L.RED):
        assert tlp.to_stix_marking_id(level, "opencti") == TLP1[level]
        assert tlp.parse(TLP1[level]).standard == tlp.STIX_TLP1     # still read as TLP 1.0 rows


def test_every_profile_writes_an_id_that_reads_back_at_least_as_strict():
    for profile in m.PROFILES:
        for level in L:
            assert tlp.parse_level(tlp.to_stix_marking_id(level, profile)) >= level
    assert tlp.to_stix_marking_id(L.AMBER_STRICT, "1.0") == TLP1[L.RED]


def test_unknown_marking_version_is_refused():
    with pytest.raises(ValueError, match="unknown STIX TLP marking version"):
        tlp.to_stix_marking_id(L.RED, "3.0")


def test_event_tlp_reads_the_opencti_id_in_any_field():
    assert tlp.event_tlp({"extra.stix_marking_refs": [OPENCTI_AMBER_STRICT]}).level == L.AMBER_STRICT


# --- reading --------------------------------------------------------------------------

def _load(name):
    return json.loads((FIX / name).read_text())["objects"]


@pytest.mark.parametrize("name,level", [("tlp2-clear.json", L.CLEAR), ("tlp2-amber+strict.json", L.AMBER_STRICT)])
def test_oasis_tlp2_definitions(name, level):
    (marking,) = m.definitions(_load(name)).values()
    assert (marking.kind, marking.level) == ("tlp", level)


def test_tlp1_definition_and_statement_from_the_oasis_example():
    defined = m.definitions(_load("using-marking-definitions.json"))
    ind = [o for o in _load("using-marking-definitions.json") if o["type"] == "indicator"][0]
    got = m.resolve(m.object_refs(ind, "objects[1]"), defined)
    assert got.level == L.AMBER
    assert got.statements == ["Copyright (c) Stark Industries 2017."]
    assert got.tlp_refs == [TLP1[L.AMBER]] and got.undefined == []


def test_undefined_and_statement_refs_neither_raise_nor_lower():
    undefined = "marking-definition--0ee0838b-9abc-4def-8123-456789abcdef"
    got = m.resolve([TLP1[L.GREEN], undefined], {})
    assert got.level == L.GREEN and got.undefined == [undefined]
    assert m.resolve([undefined], {}).level is None


def _tlp1(mid, value, **extra):
    return {"type": "marking-definition", "id": mid, "definition_type": "tlp", "definition": {"tlp": value},
            **extra}


@pytest.mark.parametrize("obj,field", [
    # a TLP definition with an id the table does not know
    (_tlp1("marking-definition--00000000-0000-4000-8000-000000000000", "amber"), ".id"),
    # a custom TLP:TEST under an unknown id
    ({"type": "marking-definition", "id": "marking-definition--11111111-0000-4000-8000-000000000000",
      "definition_type": "statement", "definition": {"statement": "TLP:TEST"}, "name": "TLP:TEST"}, "name"),
    # a known id with a value the table does not know
    (_tlp1(TLP1[L.GREEN], "test"), "definition.tlp"),
    (_tlp1(TLP1[L.GREEN], ["green"]), "definition.tlp"),
    # TLP 2.0 extension with an unknown value
    ({"type": "marking-definition", "id": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
      "extensions": {m.TLP2_EXTENSION_ID: {"extension_type": "property-extension", "tlp_2_0": "purple"}}},
     "tlp_2_0"),
    # OpenCTI's form with an unknown value
    ({"type": "marking-definition", "id": OPENCTI_AMBER_STRICT, "definition_type": "statement",
      "definition": {"statement": "custom"}, "x_opencti_definition_type": "TLP",
      "x_opencti_definition": "TLP:AMBER+SRTICT"}, "x_opencti_definition"),
    # look-alike ids: upper case, trailing space, Cyrillic letter
    (_tlp1(TLP1[L.GREEN].upper(), "green"), ".id"),
    (_tlp1(TLP1[L.GREEN] + " ", "green"), ".id"),
    (_tlp1(TLP1[L.GREEN].replace("a", "\u0430", 1), "green"), ".id"),
    # look-alike value
    (_tlp1(TLP1[L.GREEN], "gr\u0435en"), "definition.tlp"),
])
def test_tlp_definitions_that_cannot_be_read_fail_closed(obj, field):
    with pytest.raises(tlp.LabelError) as exc:
        m.definitions([obj], "objects")
    assert field in exc.value.field and exc.value.field.startswith("objects[0]")


def test_known_id_with_a_stricter_value_counts_as_the_stricter():
    (marking,) = m.definitions([_tlp1(TLP1[L.GREEN], "red")]).values()
    assert marking.level == L.RED


@pytest.mark.parametrize("ref", [TLP1[L.RED].upper(), TLP1[L.RED].replace("e", "\u0435"),
                                 TLP1[L.RED][:20] + "\u200b" + TLP1[L.RED][20:], 7, None])
def test_look_alike_or_broken_refs_are_refused(ref):
    with pytest.raises(tlp.LabelError):
        m.resolve([("objects[2].object_marking_refs[0]", ref)], {})


def test_pap_and_other_markings_are_metadata():
    pap = {"type": "marking-definition", "id": "marking-definition--22222222-0000-4000-8000-000000000000",
           "definition_type": "PAP", "name": "PAP:GREEN", "definition": {"pap": "green"}}
    defined = m.definitions([pap])
    got = m.resolve([pap["id"]], defined)
    assert got.level is None and got.other == [pap["id"]]


def test_opencti_exported_forms_are_read():
    new = {"type": "marking-definition", "id": OPENCTI_AMBER_STRICT, "definition_type": "TLP",
           "name": "TLP:AMBER+STRICT"}
    old = {**new, "definition_type": "tlp", "definition": {"tlp": "AMBER+STRICT"}}
    for obj in (new, old, m.marking_definition(L.AMBER_STRICT, "opencti")):
        assert m.read_definition(obj).level == L.AMBER_STRICT


def test_granular_markings_refs_and_lang():
    obj = {"granular_markings": [{"marking_ref": TLP1[L.RED], "selectors": ["description"]},
                                 {"lang": "en", "selectors": ["name"]}],
           "object_marking_refs": [TLP1[L.GREEN]]}
    assert m.resolve(m.object_refs(obj, "o"), {}).level == L.RED
    with pytest.raises(tlp.LabelError, match="granular_markings"):
        m.object_refs({"granular_markings": {"marking_ref": TLP1[L.RED]}}, "o")


# --- building -------------------------------------------------------------------------

@pytest.mark.parametrize("profiles", [["2.0"], ["1.0"], ["opencti"], ["2.0", "opencti"]])
def test_built_markings_validate_parse_and_read_back(profiles):
    objs = m.bundle_objects(list(L), profiles)
    bundle = {"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": objs}
    result = validate_string(json.dumps(bundle), ValidationOptions(version="2.1"))
    assert result.is_valid, [str(e) for e in result.errors]
    stix2.parse(bundle, allow_custom=True)
    assert (objs[0]["id"] == m.TLP2_EXTENSION_ID) == ("2.0" in profiles)
    defined = m.definitions(objs)
    for level in L:
        for profile in profiles:
            ref = m.marking_ref(level, profile)
            assert defined[ref].level >= level
            assert m.resolve([ref], defined).level >= level


def test_tlp2_marking_equals_the_oasis_canonical_object():
    oasis = _load("tlp2-amber+strict.json")[0]
    assert m.marking_definition(L.AMBER_STRICT, "2.0") == oasis
