"""STIX to events, the library: every convertible indicator of the real bundles with the right TLP,
the pattern forms (OR, AND, IN, ISSUBSET, IPs in domain-name, 2.0 hash names), observed-data
inline and by ref, sightings, containers, revoked objects and hostile input."""
import json
import re
from pathlib import Path

import pytest

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.stix import parse as stix
from intelmq_crossborder.formats.stix import patterns as pat

FIX = Path(__file__).parent / "fixtures" / "stix"
# the fixtures' TLP as their provenance lines in tests/fixtures/stix/README.md state it
REAL = {
    "talos-lazarus-magicrat.json": ("2.0", {"GREEN"}),
    "using-marking-definitions.json": ("2.1", {"AMBER"}),
    "extra/feeds2stix/ipsum_level_8.json": ("2.1", {"CLEAR"}),
    "extra/mvt/eaglemsgspy.json": ("2.1", {None}),
    "extra/unit42/2024-02-21-AsyncRAT.json": ("2.0", {None}),
    "extra/oasis-elevator/141-TLP-marking-structures.json": ("2.1", {"CLEAR", "GREEN", "AMBER"}),
}
# an oracle independent of the parser: single comparisons on one observable, read by a plain regex
SIMPLE = re.compile(r"\[\s*([a-z0-9-]+):([a-z_]+(?:\.'?[A-Za-z0-9-]+'?)?)\s*=\s*'([^']*)'\s*\]")
FIELD = {("ipv4-addr", "value"): "source.ip", ("domain-name", "value"): "source.fqdn", ("url", "value"): "source.url",
         ("file", "hashes.'SHA-256'"): "malware.hash.sha256", ("file", "hashes.SHA256"): "malware.hash.sha256",
         ("file", "hashes.MD5"): "malware.hash.md5", ("file", "hashes.'SHA-1'"): "malware.hash.sha1"}


def objects(name):
    data = json.loads((FIX / name).read_text("utf-8"))
    return data["objects"] if isinstance(data, dict) else data


@pytest.mark.parametrize("name", sorted(REAL))
def test_every_convertible_indicator_of_a_real_bundle(name):
    events = stix.Converter().convert(json.loads((FIX / name).read_text("utf-8")))
    got = {(e["extra.stix_id"], k, str(v)) for e in events for k, v in e.items()
           if k in set(FIELD.values())}
    expected = set()
    for obj in objects(name):
        if obj["type"] != "indicator":
            continue
        m = SIMPLE.fullmatch(obj["pattern"].strip())
        if m and (m.group(1), m.group(2)) in FIELD:
            expected.add((obj["id"], FIELD[(m.group(1), m.group(2))], m.group(3).lower()
                          if m.group(1) == "file" else m.group(3)))
    assert expected, "the oracle found no indicator"
    assert expected <= got, sorted(expected - got)[:5]
    version, levels = REAL[name]
    assert {e.get("sharing.tlp") for e in events} == levels
    assert {e.get("extra.stix_spec_version") for e in events if e["extra.stix_type"] == "indicator"} <= {version, None}


def test_elevator_each_indicator_has_its_own_colour_and_the_unconvertible_one_is_counted():
    conv = stix.Converter()
    events = conv.convert(json.loads((FIX / "extra/oasis-elevator/141-TLP-marking-structures.json").read_text()))
    by_field = {next(k for k in e if k.startswith(("source.", "malware."))): e["sharing.tlp"] for e in events}
    assert by_field == {"source.url": "CLEAR", "source.ip": "GREEN", "malware.hash.sha256": "AMBER"}
    assert conv.stats.not_converted == {"indicator: no convertible observable (email-message:subject MATCHES)": 1}


def test_talos_report_marking_applies_provenance_and_classification():
    events = stix.Converter().convert(json.loads((FIX / "talos-lazarus-magicrat.json").read_text()))
    assert len(events) == 22
    assert {e["provenance.originator"] for e in events} == {"Talos"}
    urls = [e for e in events if "source.url" in e]
    assert {e["classification.type"] for e in urls} == {"blacklist"}
    assert all(e["extra.stix_modified"].startswith("2022-09-") for e in events)


def test_observed_data_granular_markings_and_sighting_oasis_slider():
    conv = stix.Converter()
    events = conv.convert(json.loads((FIX / "extra/oasis-slider/examples.json").read_text()))
    by_id = {}
    for e in events:
        by_id.setdefault(e["extra.stix_id"], []).append(e)
    # granular AMBER and RED on the observed-data: the most restrictive counts for all its events
    gran = by_id["observed-data--c8c32b6e-2ea8-41c4-a446-7f5218072f27"]
    assert {e["sharing.tlp"] for e in gran} == {"RED"}
    # an undefined custom marking neither raises nor lowers
    custom = by_id["observed-data--e37882f5-1b85-4d1e-aa20-9bb3dc7d7a9e"]
    assert all("sharing.tlp" not in e for e in custom)
    assert custom[0]["extra.stix_undefined_markings"] == ["marking-definition--0ee0838b-d40a-4c01-bde5-d0e502691764"]
    assert {e.get("source.asn") for e in custom} >= {15139}
    # network-traffic by ref: one event with both ends and the ports
    assert {"source.ip": "198.51.100.5", "destination.ip": "198.51.100.6", "source.port": 3372,
            "destination.port": 80}.items() <= next(e for e in events if e.get("source.port") == 3372).items()
    # the sighting (count 50) is added to the indicator it is about
    md5 = by_id["indicator--de2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"][0]
    assert md5["malware.hash.md5"] == "3773a88f65a5e780c8dff9cdc3a056f3"
    assert md5["extra.stix_sighting_count"] == 50
    assert md5["extra.stix_sighting_last_seen"].startswith("2015-12-22")


def test_statements_and_undefined_refs_feeds2stix():
    events = stix.Converter().convert(json.loads((FIX / "extra/feeds2stix/ipsum_level_8.json").read_text()))
    assert len(events) == 58
    e = events[0]
    assert e["extra.stix_marking_refs"] == ["marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"]
    assert len(e["extra.stix_statements"]) == 2


# --- patterns --------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,events", [
    ("[ipv4-addr:value = '198.51.100.1' OR ipv6-addr:value = '2001:db8::1']",
     [{"source.ip": "198.51.100.1"}, {"source.ip": "2001:db8::1"}]),
    ("[ipv4-addr:value = '198.51.100.0/24']", [{"source.network": "198.51.100.0/24"}]),
    ("[ipv4-addr:value = '198.51.100.7/32']", [{"source.ip": "198.51.100.7"}]),
    ("[ipv4-addr:value ISSUBSET '10.0.0.0/8']", [{"source.network": "10.0.0.0/8"}]),
    ("[domain-name:value = '192.0.2.5']", [{"source.ip": "192.0.2.5"}]),
    ("[domain-name:value = 'Evil.Example.']", [{"source.fqdn": "evil.example"}]),
    ("[url:value = 'https://evil.example/x?a=1']", [{"source.url": "https://evil.example/x?a=1"}]),
    ("[email-addr:value = 'phish@evil.example']", [{"source.account": "phish@evil.example"}]),
    ("[email-message:from_ref.value = 'phish@evil.example']", [{"source.account": "phish@evil.example"}]),
    ("[autonomous-system:number = 64500]", [{"source.asn": 64500}]),
    ("[file:hashes.MD5 = '3773A88F65A5E780C8DFF9CDC3A056F3' AND file:name = 'a.exe']",
     [{"malware.hash.md5": "3773a88f65a5e780c8dff9cdc3a056f3", "extra.file_name": "a.exe"}]),
    ("[file:hashes.'SHA-1' = '" + "ab" * 20 + "']", [{"malware.hash.sha1": "ab" * 20}]),
    ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '203.0.113.9' "
     "AND network-traffic:dst_port = 8443]", [{"destination.ip": "203.0.113.9", "destination.port": 8443}]),
    ("[network-traffic:src_ref.value = '192.0.2.1' AND network-traffic:src_port = 4444 AND "
     "network-traffic:dst_ref.value = 'c2.example']",
     [{"source.ip": "192.0.2.1", "source.port": 4444, "destination.fqdn": "c2.example"}]),
    ("[ipv4-addr:value IN ('192.0.2.1', '192.0.2.2')]", [{"source.ip": "192.0.2.1"}, {"source.ip": "192.0.2.2"}]),
    ("([domain-name:value = 'a.example'] OR [url:value = 'http://b.example/']) FOLLOWEDBY "
     "[file:hashes.'SHA-256' = '" + "c" * 64 + "'] WITHIN 60 SECONDS",
     [{"source.fqdn": "a.example"}, {"source.url": "http://b.example/"}, {"malware.hash.sha256": "c" * 64}]),
    ("[(ipv4-addr:value = '192.0.2.1' OR ipv4-addr:value = '192.0.2.2') AND ipv4-addr:value != '192.0.2.3']",
     [{"source.ip": "192.0.2.1"}, {"source.ip": "192.0.2.2"}]),
])
def test_pattern_alternatives(pattern, events):
    assert pat.alternatives(pattern, "2.1").events == events


@pytest.mark.parametrize("pattern", [
    "[email-message:subject = 'Invoice']", "[ipv4-addr:value != '192.0.2.1']",
    "[url:value LIKE 'http://%.example/']", "[network-traffic:dst_port = 443]", "[file:name = 'a.exe']",
    "[process:name MATCHES '^evil']",
])
def test_patterns_without_convertible_comparison_are_counted(pattern):
    conv = pat.alternatives(pattern, "2.1")
    assert conv.events == [] and conv.unconverted


@pytest.mark.parametrize("pattern,message", [
    ("[ipv4-addr:value = '198.51.100.300']", "not an IP address"),
    ("[file:hashes.MD5 = 'xyz']", "not a MD5 hash"),
    ("[ipv4-addr:value = '1.2.3.4'", "not a valid STIX"),
    ("", "non-empty string"), (None, "non-empty string"), ("[" * 100000, "characters"),
    ("[autonomous-system:number = 99999999999]", "not an AS number"),
    ("[network-traffic:dst_ref.value = '1.2.3.4' AND network-traffic:dst_port = 70000]", "not a port"),
])
def test_bad_patterns_raise_pattern_error(pattern, message):
    with pytest.raises(pat.PatternError, match=message):
        pat.alternatives(pattern, "2.1")


def test_deep_and_wide_patterns_are_refused_not_hung():
    deep = "[" + "(" * 400 + "ipv4-addr:value = '1.2.3.4'" + ")" * 400 + "]"
    with pytest.raises(pat.PatternError):
        pat.alternatives(deep, "2.1")
    wide = "[" + " AND ".join("(" + " OR ".join(f"ipv4-addr:value = '10.0.{i}.{j}'" for j in range(20)) + ")"
                              for i in range(4)) + "]"
    with pytest.raises(pat.PatternError, match="alternatives"):
        pat.alternatives(wide, "2.1")


# --- bundles ---------------------------------------------------------------------------

def _ind(i, pattern, **kw):
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{i:08d}-0000-4000-8000-000000000000",
            "created": "2024-01-01T00:00:00Z", "modified": "2024-02-01T00:00:00Z", "pattern": pattern,
            "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z", **kw}


def test_plain_array_envelope_single_object_and_20_inline_observed_data():
    one = _ind(1, "[ipv4-addr:value = '192.0.2.1']")
    assert stix.Converter().convert([one])[0]["source.ip"] == "192.0.2.1"
    assert stix.Converter().convert({"objects": [one], "more": False})[0]["source.ip"] == "192.0.2.1"
    assert stix.Converter().convert(one)[0]["source.ip"] == "192.0.2.1"
    bundle = {"type": "bundle", "spec_version": "2.0", "id": "bundle--1", "objects": [
        {"type": "observed-data", "id": "observed-data--1", "created": "2016-01-01T00:00:00Z",
         "modified": "2016-01-01T00:00:00Z", "first_observed": "2016-01-01T00:00:00Z",
         "last_observed": "2016-01-02T00:00:00Z", "number_observed": 2,
         "objects": {"0": {"type": "ipv4-addr", "value": "192.0.2.1"}, "1": {"type": "domain-name", "value": "x.example"},
                     "2": {"type": "network-traffic", "src_ref": "0", "dst_ref": "1", "dst_port": 80},
                     "3": {"type": "mac-addr", "value": "00:11:22:33:44:55"}}}]}
    conv = stix.Converter()
    events = conv.convert(bundle)
    assert events == [dict(events[0], **{"source.ip": "192.0.2.1", "destination.fqdn": "x.example",
                                         "destination.port": 80})]
    assert events[0]["time.source"].startswith("2016-01-02") and events[0]["extra.stix_number_observed"] == 2
    assert events[0]["extra.stix_unconverted"] == ["observable mac-addr"]


def test_21_fields_in_a_20_bundle_and_a_20_pattern_in_a_21_bundle():
    mixed = {"type": "bundle", "spec_version": "2.0", "id": "bundle--1", "objects": [
        {**_ind(1, "[file:hashes.SHA256 = '" + "a" * 64 + "']", indicator_types=["malicious-activity"]),
         "spec_version": None}]}
    mixed["objects"][0].pop("spec_version")
    (event,) = stix.Converter().convert(mixed)
    assert event["malware.hash.sha256"] == "a" * 64 and event["classification.type"] == "malware"


def test_revoked_objects_are_counted_not_converted():
    conv = stix.Converter()
    assert conv.convert([_ind(1, "[ipv4-addr:value = '192.0.2.1']", revoked=True)]) == []
    assert conv.stats.revoked == 1


def test_most_restrictive_of_object_container_bundle_and_label():
    green = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
    red2 = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
    opencti_as = "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"
    ind = _ind(1, "[ipv4-addr:value = '192.0.2.1']", object_marking_refs=[green])
    report = {"type": "report", "id": "report--1", "object_refs": [ind["id"]], "object_marking_refs": [opencti_as]}
    assert stix.Converter().convert([ind, report])[0]["sharing.tlp"] == "AMBER+STRICT"
    bundle = {"type": "bundle", "id": "bundle--1", "object_marking_refs": [red2], "objects": [ind]}
    assert stix.Converter().convert(bundle)[0]["sharing.tlp"] == "RED"
    labelled = dict(ind, labels=["tlp:red"])
    assert stix.Converter().convert([labelled])[0]["sharing.tlp"] == "RED"
    for bad in ("tlp:purple", "tlp:unclear", "\u0442lp:red", "TLP\uff1aRED"):
        with pytest.raises(stix.STIXFormatError, match=r"labels\[1\]"):
            stix.Converter().convert([dict(ind, labels=["malicious-activity", bad])])


def test_default_tlp_only_when_nothing_at_all():
    ind = _ind(1, "[ipv4-addr:value = '192.0.2.1']")
    assert stix.Converter(default_tlp="GREEN").convert([ind])[0]["sharing.tlp"] == "GREEN"
    assert "sharing.tlp" not in stix.Converter().convert([ind])[0]
    conv = stix.Converter(default_tlp="GREEN")
    conv.feed = tlp.event_tlp({"extra.tlp": "AMBER"})
    assert conv.convert([ind])[0]["sharing.tlp"] == "AMBER"


def test_provenance_and_related_malware_and_attack_pattern():
    ident = {"type": "identity", "id": "identity--1", "name": "CERT-XY"}
    ind = _ind(1, "[url:value = 'http://phish.example/login']", created_by_ref="identity--1",
               indicator_types=["malicious-activity"])
    ap = {"type": "attack-pattern", "id": "attack-pattern--1", "name": "Phishing",
          "external_references": [{"source_name": "mitre-attack", "external_id": "T1566.002"}]}
    mw = {"type": "malware", "id": "malware--1", "name": "Emotet", "is_family": True}
    rels = [{"type": "relationship", "id": f"relationship--{i}", "relationship_type": "indicates",
             "source_ref": ind["id"], "target_ref": t} for i, t in enumerate(("attack-pattern--1", "malware--1"))]
    (event,) = stix.Converter().convert([ident, ind, ap, mw, *rels])
    assert event["provenance.originator"] == "CERT-XY"
    assert not any("identity--1" in json.dumps(v) for k, v in event.items() if k != "provenance.originator")
    assert event["classification.type"] == "phishing" and event["malware.name"] == "emotet"
    assert event["extra.stix_modified"] == "2024-02-01T00:00:00+00:00"
    (event,) = stix.Converter().convert([_ind(2, "[ipv4-addr:value = '192.0.2.1']", created_by_ref="identity--9")])
    assert event["provenance.originator"] == "identity--9"


def test_bad_marking_definition_refuses_only_what_refers_to_it():
    bad = {"type": "marking-definition", "id": "marking-definition--11111111-1111-4111-8111-111111111111",
           "definition_type": "tlp", "definition": {"tlp": "green"}}
    items = list(stix.Converter(where="f.json").items([bad, _ind(1, "[ipv4-addr:value = '192.0.2.1']",
                                                                 object_marking_refs=[bad["id"]]),
                                                       _ind(2, "[ipv4-addr:value = '192.0.2.2']")]))
    assert [bool(i.error) for i in items] == [True, True, False]
    assert items[1].error.field == "[1].object_marking_refs[0]" and "f.json" in str(items[1].error)


@pytest.mark.parametrize("data,field", [
    ({"type": "bundle", "objects": {"a": 1}}, "objects"),
    ({"type": "bundle", "objects": [], "spec_version": 2}, "spec_version"),
    (42, ""), ("text", ""), ({"no": "type"}, ""),
])
def test_whole_input_errors_name_the_field(data, field):
    with pytest.raises(stix.STIXFormatError) as exc:
        stix.load(data, "x.json")
    assert exc.value.field == field and "x.json" in str(exc.value)


def test_hostile_bytes_are_refused_with_the_reason():
    for raw, reason in ((b'{"type": "bundle", "objects": [], "objects": []}', "duplicate key"),
                        (b"\xff\xfe", "not UTF-8"), (b"[" * 5000 + b"]" * 5000, "nested"),
                        (b'{"type": "bundle", "objects": [{"type": "indicator", "x": 1' + b"1" * 100 + b'}]}',
                         "number")):
        with pytest.raises(stix.STIXFormatError, match=reason):
            stix.loads(raw, "r")


def test_a_hidden_source_is_named_in_source_fields_only():
    """tlp:ex:chr among the labels hides the source: the creator only in provenance.originator (which the
    redaction hides), the publisher's terms of use (statements) dropped, no identity of a sighting."""
    from intelmq_crossborder.core.tlp import SOURCE_FIELDS
    statement = {"type": "marking-definition", "id": "marking-definition--d81f86b9-975b-4c0b-875e-810c5ad45a4f",
                 "definition_type": "statement", "definition": {"statement": "Copyright (c) CERT-XY"}}
    ident = {"type": "identity", "id": "identity--5df15c12-89fc-45a7-9620-0044ac110004", "name": "CERT-XY"}
    ind = _ind(1, "[ipv4-addr:value = '192.0.2.1']", created_by_ref=ident["id"], labels=["tlp:ex:chr"],
               object_marking_refs=[statement["id"]])
    sighting = {"type": "sighting", "id": "sighting--1", "sighting_of_ref": ind["id"], "count": 2,
                "where_sighted_refs": [ident["id"]]}
    (event,) = stix.Converter().convert([statement, ident, ind, sighting])
    assert event["sharing.do_not_disclose_source"] is True and event["extra.stix_sighting_count"] == 2
    for key, value in event.items():
        if key not in SOURCE_FIELDS:
            assert "CERT-XY" not in json.dumps(value) and ident["id"] not in json.dumps(value), key


def test_markings_of_an_sco_count_for_its_event():
    red = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
    green = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
    sco = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--1", "value": "192.0.2.7",
           "object_marking_refs": [red]}
    dst = {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--2", "value": "192.0.2.8",
           "object_marking_refs": [red]}
    traffic = {"type": "network-traffic", "spec_version": "2.1", "id": "network-traffic--1", "dst_ref": "ipv4-addr--2",
               "dst_port": 22}
    plain = {"type": "domain-name", "spec_version": "2.1", "id": "domain-name--1", "value": "x.example"}
    od = {"type": "observed-data", "spec_version": "2.1", "id": "observed-data--1", "created": "2024-01-01T00:00:00Z",
          "modified": "2024-01-01T00:00:00Z", "first_observed": "2024-01-01T00:00:00Z",
          "last_observed": "2024-01-01T00:00:00Z", "number_observed": 1, "object_marking_refs": [green],
          "object_refs": ["ipv4-addr--1", "network-traffic--1", "domain-name--1"]}
    events = stix.Converter().convert([sco, dst, traffic, plain, od])
    by_obs = {e.get("source.ip") or e.get("destination.ip") or e.get("source.fqdn"): e["sharing.tlp"] for e in events}
    assert by_obs == {"192.0.2.7": "RED", "192.0.2.8": "RED", "x.example": "GREEN"}


def test_a_tlp_looking_indicator_type_must_be_a_known_label():
    ind = _ind(1, "[ipv4-addr:value = '192.0.2.1']", indicator_types=["malicious-activity", "TLP:AMBER"])
    assert stix.Converter().convert([ind])[0]["sharing.tlp"] == "AMBER"
    with pytest.raises(stix.STIXFormatError, match=r"indicator_types\[1\]"):
        stix.Converter().convert([dict(ind, indicator_types=["malicious-activity", "TLP:TEST"])])


def test_valid_until_and_opencti_score_are_kept():
    ind = _ind(1, "[ipv4-addr:value = '192.0.2.1']", valid_until="2025-01-01T00:00:00.000Z", x_opencti_score=85)
    (event,) = stix.Converter().convert([ind])
    assert event["extra.stix_valid_until"] == "2025-01-01T00:00:00+00:00" and event["extra.stix_score"] == 85
    with pytest.raises(stix.STIXFormatError, match=r"\[0\]\.valid_until"):
        stix.Converter().convert([dict(ind, valid_until="yesterday")])
