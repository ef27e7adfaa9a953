"""The share decision and the single label reader (issue 12): labels, hidden sources, schemas, hostile files.

- the router's facts come from ``tlp.event_tlp`` only: every label counts, an unreadable one is
  the ``tlp-unreadable`` denial naming the field;
- a hidden source stays hidden in every field of ``tlp.SOURCE_FIELDS``, whatever the agreement's
  ``originator_fields`` says, and an event id that is the originator's MISP event id is replaced;
- identifiers, country codes and field names with a trailing newline or white space are refused;
- agreement files are read with the hostile-input reader: every bad file is an AgreementError
  naming the file (and line and field where there are some), never a traceback.
"""
import json
import re
import textwrap
import uuid

import pytest

from intelmq_crossborder.policy.agreements import _COUNTRY_RE, _FIELD_RE, _ID_RE, agreement_from_dict, AGREEMENT_SCHEMA, AgreementError, load_agreement, load_agreements
from intelmq_crossborder.policy.decide import decide, decide_all, event_facts, PolicySet
from intelmq_crossborder.policy.redact import hidden_event_uuid, HIDDEN_UUID_NAMESPACE, holds_pseudonym, label_fields_named, redact, without_source
from intelmq_crossborder.core.tlp import Level

from intelmq_crossborder.core import tlp

KEY = b"labels-test-key"
BASE = {"recipient": "cert-xx", "name": "CERT XX", "kind": "csirt", "country": "AT",
        "relation": "community", "max_tlp": "GREEN"}
ORIGIN_MISP = "https://misp.originator.example/events/view/4242"
MISP_UUID = "5f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"


def agreement(**overrides):
    return agreement_from_dict(dict(BASE, **overrides), source="test.yaml")


def event(**fields):
    out = {"classification.taxonomy": "vulnerable", "classification.type": "vulnerable-system",
           "source.ip": "192.0.2.10"}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


# --- the event's facts: tlp.event_tlp, once ---------------------------------------------

def test_facts_every_label_counts_sharing_tlp_included():
    facts = event_facts(event(sharing__tlp="GREEN", extra__misp_tags=[{"name": "tlp:amber"}]))
    assert (facts.level, facts.level_from) == (Level.AMBER, "labels")
    facts = event_facts(event(sharing__tlp="AMBER", tlp="GREEN"))
    assert (facts.level, facts.level_from) == (Level.AMBER, "sharing.tlp")
    d = decide(event(sharing__tlp="GREEN", extra__tlp="RED"), agreement())
    assert not d.allowed and d.codes == ["tlp-red"]


@pytest.mark.parametrize("fields,field", [
    ({"sharing__tlp": "GREEN", "extra__misp_tags": ["tlp\u200b:red"]}, "extra.misp_tags[0]"),
    ({"sharing__tlp": "GREEN", "extra__note": "TLP\uff1aRED"}, "extra.note"),
    ({"sharing__tlp": "GREEN", "extra__tlp": ["RED"]}, "extra.tlp"),
    ({"sharing__tlp": "GREEN", "extra__tlp_level": "RED"}, "extra.tlp_level"),
    ({"sharing__tlp": "GREEN", "sharing__do_not_disclose_source": "perhaps"}, "sharing.do_not_disclose_source"),
])
def test_unreadable_label_is_denied_for_everyone_naming_the_field(fields, field):
    facts = event_facts(event(**fields))
    assert facts.level is None and facts.level_from == "unreadable" and facts.tlp_error_field == field
    for a in (agreement(), agreement(relation="same-organisation", max_tlp="AMBER+STRICT", no_label="AMBER")):
        d = decide(event(**fields), a)
        assert not d.allowed and d.codes == ["tlp-unreadable"] and f"field {field}" in d.reasons[0]


def test_facts_value_of_an_unreadable_label_is_cut():
    facts = event_facts(event(extra__tlp=["RED"] * 10_000))
    assert facts.tlp_error_field == "extra.tlp" and len(facts.tlp_error_value) <= 200
    d = decide(event(extra__tlp="TLP:" + "X" * 100_000), agreement())
    assert d.codes == ["tlp-unreadable"] and "extra.tlp" in d.reasons[0] and len(d.reasons[0]) < 400


def test_event_tlp_is_called_once_per_event(monkeypatch):
    calls = []
    real = tlp.event_tlp
    monkeypatch.setattr(tlp, "event_tlp", lambda ev: calls.append(1) or real(ev))
    agreements = [agreement(recipient=f"r{i}") for i in range(5)]
    decide_all(event(sharing__tlp="GREEN"), agreements)
    assert len(calls) == 1
    PolicySet(agreements, KEY).decide(event(sharing__tlp="GREEN"))
    assert len(calls) == 2


def test_policy_set_cache_keeps_events_with_different_labels_apart():
    # the same classification and country; only the labels differ: the cached plan must not be reused
    ps = PolicySet([agreement()], KEY)
    assert ps.decide(event(sharing__tlp="GREEN"))[0].allowed
    assert not ps.decide(event(sharing__tlp="GREEN", extra__tags="tlp:amber"))[0].allowed
    assert not ps.decide(event(sharing__tlp="GREEN", extra__tags="tlp:r\u0435d"))[0].allowed
    out = ps.decide(event(sharing__tlp="GREEN", extra__tags="tlp:ex:chr", provenance__originator="X"))[0]
    assert out.allowed and out.event_out["sharing.do_not_disclose_source"] is True


# --- hidden sources --------------------------------------------------------------------

def source_event(**more):
    more.setdefault("provenance__event_uuid", MISP_UUID)
    return event(sharing__tlp="GREEN", feed__url="https://feeds.originator.example/x.json",
                 feed__name="Originator feed", provenance__originator="Originator CERT",
                 event_description__url=ORIGIN_MISP, misp__event_uuid=MISP_UUID,
                 misp__attribute_uuid="0b8f9a52-31c5-4b87-9d1c-6d3a1e2f4c5d", csaf__publisher="Originator PSIRT",
                 **more)


@pytest.mark.parametrize("originator_fields", [None, [], ["provenance.originator"], ["feed.name", "extra.contact"]])
@pytest.mark.parametrize("how", [{}, {"hide_source": "pseudonymise"}])
@pytest.mark.parametrize("why", [{}, {"sharing__do_not_disclose_source": True},
                                 {"extra__misp_tags": [{"name": "tlp:ex:chr"}]}])
def test_hidden_source_never_in_a_copy_whatever_originator_fields_says(originator_fields, how, why):
    overrides = dict(how)
    if originator_fields is not None:
        overrides["originator_fields"] = originator_fields
    if why:      # the event hides its source even where the agreement would disclose it
        overrides["disclose_source"] = True
    ev = source_event(extra__contact="someone", **why)
    d = decide(ev, agreement(**overrides), hmac_key=KEY)
    assert d.allowed
    text = json.dumps(d.event_out)
    for name in tlp.SOURCE_FIELDS:
        if name in ev and not (how and holds_pseudonym(name)):
            assert name not in d.event_out, name
        if name in ev:
            assert str(ev[name]) not in text, name
    assert "originator.example" not in text and MISP_UUID not in text
    assert d.event_out["provenance.event_uuid"] == hidden_event_uuid(MISP_UUID, KEY)
    if originator_fields and "extra.contact" in originator_fields:
        assert "someone" not in text


def test_agreement_originator_fields_add_to_the_core_list():
    a = agreement(originator_fields=["provenance.originator", "extra.contact"])
    assert a.originator_fields[:len(tlp.SOURCE_FIELDS)] == tlp.SOURCE_FIELDS
    assert a.originator_fields[len(tlp.SOURCE_FIELDS):] == ("extra.contact",)
    assert agreement().originator_fields == tlp.SOURCE_FIELDS


def test_disclosed_source_keeps_every_field():
    ev = source_event()
    d = decide(ev, agreement(disclose_source=True))
    for name in tlp.SOURCE_FIELDS + ("provenance.event_uuid",):
        if name in ev:
            assert d.event_out[name] == ev[name]


def test_event_uuid_replaced_only_when_it_points_at_the_originator():
    own = "3a1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    d = decide(source_event(provenance__event_uuid=own), agreement())
    assert d.event_out["provenance.event_uuid"] == own          # the hub's own id: nothing to hide
    d = decide(source_event(provenance__event_uuid=MISP_UUID.upper()), agreement())
    assert d.event_out["provenance.event_uuid"] != MISP_UUID.upper()
    assert "pseudonymised: provenance.event_uuid" in d.reasons


def test_hidden_event_uuid_is_stable_keyed_and_valid():
    plain = hidden_event_uuid(MISP_UUID)
    assert plain == hidden_event_uuid(MISP_UUID.upper()) == str(uuid.uuid5(HIDDEN_UUID_NAMESPACE,
                                                                                   MISP_UUID))
    keyed = hidden_event_uuid(MISP_UUID, KEY)
    assert keyed == hidden_event_uuid(MISP_UUID, KEY) != hidden_event_uuid(MISP_UUID, b"other")
    assert keyed != plain and MISP_UUID not in (keyed, plain)
    for value in (plain, keyed):
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value)


def test_hidden_source_copy_is_a_valid_event():
    from intelmq.lib.message import Event
    from intelmq_crossborder.harmonization import merged_harmonization
    harmonization = merged_harmonization()
    for a in (agreement(), agreement(hide_source="pseudonymise")):
        out = decide(source_event(), a, hmac_key=KEY).event_out
        Event(out, harmonization=harmonization)        # raises on a value the harmonization refuses


def test_fingerprint_recomputed_when_a_hidden_source_field_is_identifying():
    from intelmq_crossborder.core import fingerprint
    ev = source_event()
    ev["provenance.fingerprint"] = fingerprint.fingerprint(ev)        # event_description.url is identifying
    out = decide(ev, agreement()).event_out
    assert out["provenance.fingerprint"] == fingerprint.fingerprint(out) != ev["provenance.fingerprint"]


def test_copy_never_pseudonymises_a_label_field():
    ev = event(sharing__tlp="GREEN", extra__tlp="tlp:green", extra__note="n")
    d = decide(ev, agreement(pseudonymise_fields=["extra.*"], disclose_source=True), hmac_key=KEY)
    assert "extra.tlp" not in d.event_out and d.event_out["extra.note"].startswith("pseudo-")
    assert tlp.event_tlp(d.event_out).level == Level.GREEN
    with pytest.raises(AgreementError, match=r"field pseudonymise_fields\[0\]: extra.tlp carries"):
        agreement(pseudonymise_fields=["extra.tlp"])


# --- redact: never a lower label --------------------------------------------------------

def test_redact_keeps_the_effective_label_and_flag():
    ev = event(sharing__tlp="GREEN", extra__tlp="RED", comment="tlp:ex:chr")
    out, removed, _ = redact(ev, remove=["extra.*", "comment"])
    assert out["sharing.tlp"] == "RED" and out["sharing.do_not_disclose_source"] is True
    assert tlp.event_tlp(out).level == Level.RED and set(removed) == {"extra.tlp", "comment"}
    out, _, _ = redact(ev, remove=["sharing.*"])
    assert out["sharing.tlp"] == "RED" and out["sharing.do_not_disclose_source"] is True
    out, removed, _ = redact(event(tlp="GREEN"), remove=["source.ip"])     # no label touched
    assert "sharing.tlp" not in out and removed == ["source.ip"]
    with pytest.raises(tlp.LabelError):
        redact(event(extra__tlp="PURPLE"), remove=["source.ip"])


def test_label_fields_named():
    assert label_fields_named(["source.ip", "tlp", "extra.*", "sharing.do_not_disclose_source", 3]) == \
        ["tlp", "sharing.do_not_disclose_source"]


# --- schemas that mean what they say ------------------------------------------------------

@pytest.mark.parametrize("overrides,field", [
    ({"recipient": "cert-at\n"}, "recipient"),
    ({"recipient": "cert-at "}, "recipient"),
    ({"recipient": " cert-at"}, "recipient"),
    ({"hub_id": "de-hub\n"}, "hub_id"),
    ({"hub_id": "de-hub\t"}, "hub_id"),
    ({"country": "AT\n"}, "country"),
    ({"country": "AT "}, "country"),
    ({"origin_countries": ["AT", "DE\n"]}, "origin_countries[1]"),
    ({"remove_fields": ["source.ip\n"]}, "remove_fields[0]"),
    ({"remove_fields": ["extra.contact\n"]}, "remove_fields[0]"),
    ({"pseudonymise_fields": ["source.ip "]}, "pseudonymise_fields[0]"),
    ({"originator_fields": ["feed.name\n"]}, "originator_fields[0]"),
    ({"name": " \n"}, "name"),
])
def test_white_space_is_refused_with_the_field_named(overrides, field):
    with pytest.raises(AgreementError) as info:
        agreement(**overrides)
    assert info.value.field == field
    assert str(info.value).startswith(f"test.yaml, field {field}: ")


def test_every_schema_pattern_refuses_a_final_newline():
    """jsonschema runs "pattern" with re.search, where $ matches before a final newline."""
    patterns = []

    def walk(node):
        if isinstance(node, dict):
            if "pattern" in node:
                patterns.append(node["pattern"])
            for value in node.values():
                walk(value)
    walk(AGREEMENT_SCHEMA)
    samples = {_ID_RE: "cert-at", _FIELD_RE: "source.ip", _COUNTRY_RE: "AT"}
    assert set(samples) <= set(patterns)
    for pattern in patterns:
        sample = samples.get(pattern, "x")
        assert re.search(pattern, sample)
        for bad in (sample + "\n", sample + " ", "\n" + sample) if pattern in samples else (" \n",):
            assert not re.search(pattern, bad), (pattern, bad)


def test_hub_id_with_white_space_can_no_longer_defeat_the_loop_rule():
    ev = event(sharing__tlp="CLEAR", provenance__hub_path="at-hub,de-hub")
    d = decide(ev, agreement(kind="national-hub", hub_id="de-hub", max_tlp="CLEAR"))
    assert not d.allowed and d.codes == ["loop"]
    for spelling in ("de-hub\n", "de-hub ", "de-hub\r\n"):
        with pytest.raises(AgreementError, match="field hub_id"):
            agreement(kind="national-hub", hub_id=spelling, max_tlp="CLEAR")


def test_remove_fields_with_a_newline_can_no_longer_silently_not_remove(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(textwrap.dedent("""\
        recipient: cert-xx
        name: CERT XX
        kind: csirt
        country: AT
        relation: community
        max_tlp: GREEN
        remove_fields: ["extra.contact\\n"]
        """))
    with pytest.raises(AgreementError, match=r"field remove_fields\[0\]: 'extra.contact\\n' does not match"):
        load_agreement(path)


# --- wrong types at every level ---------------------------------------------------------

@pytest.mark.parametrize("data,field", [
    ([BASE], None),
    ("recipient: x", None),
    (dict(BASE, recipient=["cert-xx"]), "recipient"),
    (dict(BASE, recipient={"id": "x"}), "recipient"),
    (dict(BASE, name=None), "name"),
    (dict(BASE, kind=["csirt"]), "kind"),
    (dict(BASE, country=43), "country"),
    (dict(BASE, max_tlp=["GREEN"]), "max_tlp"),
    (dict(BASE, max_tlp=None), "max_tlp"),
    (dict(BASE, taxonomies={"a": 1}), "taxonomies"),
    (dict(BASE, types=[["scanner"]]), "types[0]"),
    (dict(BASE, remove_fields=[{"source.ip": True}]), "remove_fields[0]"),
    (dict(BASE, remove_fields="source.ip"), "remove_fields"),
    (dict(BASE, pseudonymise_fields=[None]), "pseudonymise_fields[0]"),
    (dict(BASE, originator_fields=[1]), "originator_fields[0]"),
    (dict(BASE, origin_countries="AT"), "origin_countries"),
    (dict(BASE, retention_days=True), "retention_days"),
    (dict(BASE, retention_days=1.5), "retention_days"),
    (dict(BASE, disclose_source="yes"), "disclose_source"),
    (dict(BASE, keep_raw=1), "keep_raw"),
    (dict(BASE, no_label=["deny"]), "no_label"),
    (dict(BASE, max_pap={"PAP": "GREEN"}), "max_pap"),
    (dict(BASE, description=["a", "b"]), "description"),
    ({**BASE, 1: "one"}, "1"),
    ({**BASE, None: "x"}, "None"),
])
def test_wrong_types_are_agreement_errors(data, field):
    with pytest.raises(AgreementError) as info:
        agreement_from_dict(data, source="t.yaml")
    assert info.value.field == field
    assert len(str(info.value)) < 400


def test_a_huge_value_is_not_quoted_whole():
    with pytest.raises(AgreementError) as info:
        agreement(kind="x" * 200_000)
    assert info.value.field == "kind" and len(str(info.value)) < 400


# --- hostile files ----------------------------------------------------------------------

GOOD = "recipient: cert-xx\nname: CERT XX\nkind: csirt\ncountry: AT\nrelation: community\nmax_tlp: GREEN\n"
LAUGHS = "a0: &a0 [lol]\n" + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
                                     for i in range(1, 10)) + GOOD


@pytest.mark.parametrize("content,reason,line", [
    (LAUGHS.encode(), "billion laughs", True),
    ((GOOD + "description: " + "x" * 300_000 + "\n").encode(), "characters (at most", True),
    ((GOOD + "description: &d [" + ", ".join(["x" * 1000] * 3) + "]\nname: *d\n").encode(), "duplicate key", True),
    ((GOOD + "kind: isac\n").encode(), "duplicate key 'kind'", True),
    (GOOD.encode("utf-16"), "not UTF-8", False),
    (b"recipient: caf\xe9\n", "not UTF-8", False),
    (("x: " + "[" * 300 + "]" * 300 + "\n" + GOOD).encode(), "nested too deeply", True),
    (b"recipient: [unclosed\n", "not valid YAML", True),
    (b"- " + GOOD.replace("\n", "\n  ", 5).encode(), "must be a mapping, not a list", False),
    (b"", "must be a mapping, not empty", False),
])
def test_hostile_agreement_files(tmp_path, content, reason, line):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    with pytest.raises(AgreementError) as info:
        load_agreement(path)
    assert str(info.value).startswith(str(path)) and reason in str(info.value)
    assert (info.value.line is not None) is line
    assert len(str(info.value)) < 500


def test_directory_and_missing_file(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(AgreementError, match=r"dir.yaml: is a directory, not a YAML agreement file"):
        load_agreement(tmp_path / "dir.yaml")
    with pytest.raises(AgreementError, match=r"missing.yaml: cannot read the YAML agreement file"):
        load_agreement(tmp_path / "missing.yaml")
    (tmp_path / "ok.yaml").write_text(GOOD)
    assert list(load_agreements(tmp_path)) == ["cert-xx"]      # a directory named *.yaml is no file


def test_error_names_file_line_and_field(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(GOOD + "remove_fields: [source.ip]\nremove_fields: [source.fqdn]\n")
    with pytest.raises(AgreementError) as info:
        load_agreement(path)
    assert info.value.line == 8 and str(info.value).startswith(f"{path}:8: ")


def test_unlistable_directory(tmp_path, monkeypatch):
    from pathlib import Path

    def refuse(self):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(AgreementError, match="cannot list the directory: Permission denied"):
        load_agreements(tmp_path)


def test_without_source_for_outputs_without_an_agreement():
    """The one helper the exchange, CSAF and lake outputs hide a source with."""
    from intelmq_crossborder.core.fingerprint import fingerprint
    uuid = "5f1c3c1e-2b7a-4c84-9a43-0c1b8f0e1a77"
    event = {"source.ip": "192.0.2.7", "feed.url": "https://misp.cert.example/events/view/7",
             "event_description.url": "https://misp.cert.example/events/view/7", "misp.event_uuid": uuid,
             "provenance.event_uuid": uuid, "provenance.originator": "CERT-Example", "raw": "eyJ4IjoxfQ==",
             "classification.type": "phishing", "sharing.tlp": "GREEN"}
    event["provenance.fingerprint"] = fingerprint(event)
    out = without_source(event)
    text = repr(out)
    for secret in ("misp.cert.example", uuid, "CERT-Example", "eyJ4IjoxfQ=="):
        assert secret not in text
    assert out["provenance.event_uuid"] == hidden_event_uuid(uuid)
    assert out["sharing.do_not_disclose_source"] is True and out["source.ip"] == "192.0.2.7"
    assert without_source(event, b"k")["provenance.event_uuid"] == hidden_event_uuid(uuid, b"k")
    # an event id of the hub's own (not the originator's) stays
    own = dict(event, **{"provenance.event_uuid": "0b7e2c3a-1111-4222-8333-944455556666"})
    assert without_source(own)["provenance.event_uuid"] == own["provenance.event_uuid"]


@pytest.mark.parametrize("field,value", [
    ("provenance.origin_hub", "de-hub\n"), ("provenance.origin_hub", " de-hub"), ("provenance.origin_hub", "DE-HUB"),
    ("provenance.hub_path", "at-hub,de-hub\n"), ("provenance.hub_path", "at-hub, De-Hub "),
])
def test_white_space_or_case_in_the_event_cannot_defeat_the_loop_rule(field, value):
    """Found by the hostile suite: "de-hub\\n" in the event passed IntelMQ's `$` regex and the loop rule."""
    d = decide(event(sharing__tlp="CLEAR", **{field.replace(".", "__"): value}),
                      agreement(kind="national-hub", hub_id="de-hub", max_tlp="CLEAR"))
    assert not d.allowed and "loop" in d.codes


def test_harmonization_regexes_end_at_the_end_of_the_value():
    import intelmq.lib.harmonization as types
    from intelmq_crossborder.harmonization import merged_harmonization
    fields = merged_harmonization()["event"]
    assert types.LowercaseString.is_valid("de-hub", sanitize=False)
    assert not re.search(fields["provenance.origin_hub"]["regex"], "de-hub\n")
    assert not re.search(fields["provenance.origin_country"]["regex"], "AT\n")
    assert not re.search(fields["sharing.tlp"]["regex"], "RED\n")
