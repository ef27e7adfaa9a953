"""Events to STIX 2.1 (intelmq_crossborder.formats.stix.export) and ``export stix``: every bundle
produced here passes stix2-validator with no error (``assert_valid``)."""
import datetime as dt
import json

import pytest
import stix2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.stix import export as x
from tests.clirun import run

T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone.utc)
T1 = T0 + dt.timedelta(hours=1)
ORIGINATOR = "cert-secret-originator"
HIDDEN = {"provenance.originator": ORIGINATOR, "feed.provider": "Secret Provider", "feed.name": "Secret Feed",
          "feed.url": "https://feeds.secret.example/cti", "event_description.url": "https://misp.secret.example/e/42",
          "misp.event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"}


def ev(**fields):
    base = {"source.url": "http://evil.example/login", "source.fqdn": "evil.example", "source.ip": "192.0.2.10",
            "classification.type": "phishing", "classification.taxonomy": "fraud", "sharing.tlp": "GREEN",
            "time.source": "2026-11-20T08:00:00+00:00", "provenance.originator": "CERT-AT",
            "event_description.text": "credential phishing"}
    base.update({k.replace("__", "."): v for k, v in fields.items()})
    return {k: v for k, v in base.items() if v is not None}


def settings_(**kw):
    return x.ExportSettings("hub-at", **kw)


def assert_valid(bundle):
    errors = x.validation_errors(bundle)
    assert errors == [], errors
    if bundle.get("objects"):
        stix2.parse(bundle, allow_custom=False)      # the stix2 library reads it back too
    return bundle


def one_bundle(events, now=T0, **kw):
    b = x.BundleBuilder(settings_(**kw), now=now)
    for e in events:
        b.add(e)
    return b, assert_valid(b.bundle())


def by_type(bundle, kind):
    return [o for o in bundle.get("objects", []) if o["type"] == kind]


@pytest.mark.parametrize("kind", x.KINDS)
@pytest.mark.parametrize("profile", x.PROFILES)
def test_every_kind_and_profile_validates(kind, profile):
    events = [ev(), ev(source__url=None, source__fqdn=None, source__ip="2001:db8::1", sharing__tlp="CLEAR"),
              ev(source__url=None, source__fqdn=None, source__ip=None, malware__hash__sha256="a" * 64,
                 malware__hash__md5="b" * 32, sharing__tlp="AMBER"),
              ev(source__url=None, source__fqdn=None, source__ip=None, source__network="198.51.100.0/24"),
              ev(source__url=None, source__fqdn=None, source__ip=None, source__account="phisher@evil.example"),
              ev(source__url=None, source__fqdn=None, source__ip=None, source__asn=64500)]
    b, bundle = one_bundle(events, kind=kind, profile=profile)
    assert b.exported == 6 and b.refused == []
    primaries = by_type(bundle, kind)
    assert len(primaries) == 6
    defined = {o["id"] for o in by_type(bundle, "marking-definition")}
    for obj in bundle["objects"]:
        for ref in obj.get("object_marking_refs", []):
            assert ref in defined
    if profile in ("oasis", "both"):
        assert by_type(bundle, "extension-definition")[0]["id"] == "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
    else:
        assert by_type(bundle, "extension-definition") == []


def test_markings_per_profile():
    amber = ev(sharing__tlp="AMBER")
    clear = ev(sharing__tlp="CLEAR", source__url="http://other.example/")
    _, oasis = one_bundle([amber, clear], profile="oasis")
    _, opencti = one_bundle([amber, clear], profile="opencti")
    _, both = one_bundle([amber, clear], profile="both")
    mark = {o["name"].split(": ")[1]: o["object_marking_refs"] for o in by_type(oasis, "indicator")}
    assert mark["http://evil.example/login"] == [tlp.to_stix_marking_id(tlp.Level.AMBER, "2.0")]
    assert mark["http://other.example/"] == ["marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"]
    mark = {o["name"].split(": ")[1]: o["object_marking_refs"] for o in by_type(opencti, "indicator")}
    assert mark["http://other.example/"] == ["marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"]
    assert mark["http://evil.example/login"] == ["marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"]
    for obj in by_type(both, "indicator"):
        assert len(obj["object_marking_refs"]) == 2


def test_the_effective_label_is_the_most_restrictive_of_any_field():
    event = ev(sharing__tlp="GREEN", extra__misp_tags=[{"name": "tlp:amber"}])
    _, bundle = one_bundle([event])
    assert by_type(bundle, "indicator")[0]["object_marking_refs"] == [tlp.to_stix_marking_id(tlp.Level.AMBER)]


@pytest.mark.parametrize("fields,field,words", [
    ({"sharing__tlp": "RED"}, "sharing.tlp", "never forwarded"),
    ({"sharing__tlp": "AMBER+STRICT"}, "sharing.tlp", "never leaves"),
    ({"sharing__tlp": "GREEN", "tlp": "RED"}, "tlp", "never forwarded"),
    ({"sharing__tlp": None}, "sharing.tlp", "no TLP label"),
    ({"sharing__tlp": "PURPLE"}, "sharing.tlp", "not a TLP label"),
    ({"sharing__tlp": "GREEN", "extra__misp_tags": ["tlp:rеd"]}, "extra.misp_tags[0]", "look-alike"),
    ({"sharing__tlp": "AMBER"}, "sharing.tlp", "above max_tlp"),
])
def test_guard_refuses_naming_the_field(fields, field, words):
    s = settings_(max_tlp="GREEN") if words == "above max_tlp" else settings_()
    with pytest.raises(x.ExportRefused) as info:
        x.admit(ev(**fields), s)
    assert info.value.field == field and words in info.value.reason


def test_settings_refuse_amber_strict_and_red_ceilings_and_bad_values():
    for level in ("AMBER+STRICT", "RED"):
        with pytest.raises(ValueError, match="never exported"):
            settings_(max_tlp=level)
    with pytest.raises(ValueError):
        x.ExportSettings("hub-at ", kind="indicator")
    with pytest.raises(ValueError):
        settings_(kind="report")
    with pytest.raises(ValueError):
        settings_(profile="misp")


def test_deterministic_ids_and_updates():
    b1, first = one_bundle([ev()], now=T0)
    b2, again = one_bundle([ev(sharing__tlp="AMBER", feed__name="another feed")], now=T1)   # not its identity
    i1, i2 = by_type(first, "indicator")[0], by_type(again, "indicator")[0]
    assert i1["id"] == i2["id"]                       # the same event: the same object
    assert i2["modified"] > i1["modified"] and i2["created"] == i1["created"]
    assert i2["object_marking_refs"] == [tlp.to_stix_marking_id(tlp.Level.AMBER)]
    other_hub = x.BundleBuilder(x.ExportSettings("hub-fi"), now=T0)
    other_hub.add(ev())
    assert by_type(other_hub.bundle(), "indicator")[0]["id"] != i1["id"]
    _, changed = one_bundle([ev(source__url="http://evil.example/other")])
    assert by_type(changed, "indicator")[0]["id"] != i1["id"]
    assert first["id"] == one_bundle([ev()], now=T0)[1]["id"]          # bundle id from ids and versions


def test_originator_identity_only_when_the_source_may_be_known():
    _, bundle = one_bundle([ev()])
    ident = by_type(bundle, "identity")
    assert [i["name"] for i in ident] == ["CERT-AT"]
    assert by_type(bundle, "indicator")[0]["created_by_ref"] == ident[0]["id"]
    for hidden in ({"sharing__do_not_disclose_source": True}, {"extra__misp_tags": ["tlp:ex:chr"]}):
        event = ev(**{k.replace(".", "__"): v for k, v in HIDDEN.items()}, **hidden)
        _, bundle = one_bundle([event], kind="observed-data")
        text = json.dumps(bundle)
        assert by_type(bundle, "identity") == []
        assert "created_by_ref" not in by_type(bundle, "observed-data")[0]
        for value in HIDDEN.values():
            assert value not in text


def test_indicator_pattern_is_valid_and_escaped():
    nasty = "http://evil.example/a'b\\c?q=' OR 1=1 ]"
    b, bundle = one_bundle([ev(source__url=nasty, source__fqdn=None)])
    pattern = by_type(bundle, "indicator")[0]["pattern"]
    assert run_validator(pattern) == []
    assert pattern == "[url:value = 'http://evil.example/a\\'b\\\\c?q=\\' OR 1=1 ]']"


def test_hashes_of_one_file_in_one_observation():
    _, bundle = one_bundle([ev(source__url=None, source__fqdn=None, source__ip=None,
                               malware__hash__sha256="a" * 64, malware__hash__md5="b" * 32)])
    pattern = by_type(bundle, "indicator")[0]["pattern"]
    assert pattern == f"[file:hashes.'MD5' = '{'b' * 32}' AND file:hashes.'SHA-256' = '{'a' * 64}']"


def test_observed_data_carries_every_observable_marked():
    event = ev(malware__hash__sha1="c" * 40, source__asn=64500, destination__ip="198.51.100.7")
    _, bundle = one_bundle([event], kind="observed-data", profile="oasis")
    od = by_type(bundle, "observed-data")[0]
    types = sorted(ref.split("--")[0] for ref in od["object_refs"])
    assert types == ["autonomous-system", "domain-name", "file", "ipv4-addr", "ipv4-addr", "url"]
    for ref in od["object_refs"]:
        sco = next(o for o in bundle["objects"] if o["id"] == ref)
        assert sco["object_marking_refs"] == od["object_marking_refs"]


def test_a_shared_sco_keeps_the_more_restrictive_marking():
    green = ev(source__url=None, source__fqdn=None, sharing__tlp="GREEN", classification__type="scanner")
    amber = ev(source__url=None, source__fqdn=None, sharing__tlp="AMBER", classification__type="c2-server",
               classification__taxonomy="malicious-code")
    for events in ([green, amber], [amber, green]):
        _, bundle = one_bundle(events, kind="observed-data")
        ip = by_type(bundle, "ipv4-addr")
        assert len(ip) == 1 and ip[0]["object_marking_refs"] == [tlp.to_stix_marking_id(tlp.Level.AMBER)]


@pytest.mark.parametrize("fields,field", [
    ({"source__url": None, "source__fqdn": None, "source__ip": None}, "source.ip"),
    ({"source__ip": "999.1.1.1"}, "source.ip"),
    ({"source__asn": "AS-foo"}, "source.asn"),
    ({"source__url": "http://a.example/\nb"}, "source.url"),
    ({"source__url": ["http://a.example/"]}, "source.url"),
    ({"source__url": "http://a.example/" + "a" * 9000}, "source.url"),
    ({"time__source": "yesterday"}, "time.source"),
])
def test_values_no_stix_object_can_hold_are_refused(fields, field):
    copy, level = x.admit(ev(**fields), settings_())
    with pytest.raises(x.ExportRefused) as info:
        x.event_objects(copy, level, settings_())
    assert info.value.field == field


def test_revoked_and_relabelled_versions():
    _, bundle = one_bundle([ev()], now=T0)
    ind = by_type(bundle, "indicator")[0]
    rev = x.revoked(ind, now=T0)                # the clock has not moved: one millisecond later
    assert rev["revoked"] is True and rev["id"] == ind["id"] and rev["modified"] > ind["modified"]
    rel = x.relabelled(ind, tlp.Level.AMBER, "oasis", now=T1)
    assert rel["object_marking_refs"] == [tlp.to_stix_marking_id(tlp.Level.AMBER)] and "revoked" not in rel
    for obj in (rev, rel):
        assert_valid(x.make_bundle(x.markings.bundle_objects([tlp.Level.GREEN, tlp.Level.AMBER]) + [obj], "hub-at"))


# --- round trip with the STIX parser (helper B's formats.stix.parse, when present) --------------------

OBSERVABLE_FIELDS = ("source.url", "source.fqdn", "source.ip", "source.network", "destination.ip",
                     "malware.hash.md5", "malware.hash.sha1", "malware.hash.sha256", "source.account", "source.asn")


def _parsed(bundle):
    from intelmq_crossborder.formats.stix import parse as stix_parse
    converter = stix_parse.Converter(default_tlp=None)
    events = []
    for item in converter.items(json.loads(json.dumps(bundle))):
        assert item.error is None, item.error
        events += item.events
    return events


def _observed(event, fields=OBSERVABLE_FIELDS):
    out = set()
    for name in fields:
        if event.get(name) not in (None, ""):
            out.add((name.split(".")[-1] if name.startswith(("source.", "destination.")) else name,
                     str(event[name]).lower()))
    return out


ROUND_TRIP = [
    ev(source__fqdn=None, source__ip=None),
    ev(source__url=None, source__ip=None, sharing__tlp="CLEAR"),
    ev(source__url=None, source__fqdn=None, source__ip="2001:db8::7", sharing__tlp="AMBER"),
    ev(source__url=None, source__fqdn=None, source__ip=None, source__network="198.51.100.0/24"),
    ev(source__url=None, source__fqdn=None, source__ip=None, malware__hash__sha256="a" * 64,
       malware__hash__md5="b" * 32, classification__type="malware-distribution",
       classification__taxonomy="malicious-code"),
    ev(source__url=None, source__fqdn=None, source__ip=None, source__account="phisher@evil.example"),
    ev(source__url=None, source__fqdn=None, source__ip=None, source__asn=64500, classification__type="scanner",
       classification__taxonomy="information-gathering"),
    ev(source__fqdn=None, source__ip=None, sharing__tlp="GREEN", extra__misp_tags=["tlp:amber"],
       source__url="http://evil.example/tagged"),
]


@pytest.mark.parametrize("kind", x.KINDS)
@pytest.mark.parametrize("profile", x.PROFILES)
def test_round_trip_keeps_every_indicator_and_never_lowers_a_label(kind, profile):
    pytest.importorskip("intelmq_crossborder.formats.stix.parse")
    for event in ROUND_TRIP:
        _, bundle = one_bundle([event], kind=kind, profile=profile)
        back = _parsed(bundle)
        assert back, event
        sent_level = tlp.event_tlp(event).level
        for got in back:
            assert tlp.event_tlp(got).level >= sent_level, (event, got)
        sent = _observed(event)
        received = set().union(*(_observed(e) for e in back))
        if kind == "indicator":      # the pattern carries the first observable (all hashes of the file)
            field, _, _, value = x._observables(event)[0]
            if field == "malware.hash":
                expected = {v for v in sent if v[0].startswith("malware.hash")}
            else:
                expected = {(field.split(".")[-1], str(value).lower())}
            assert expected <= received, (expected, received)
        else:
            assert sent <= received, (sent, received)
        assert all(e.get("provenance.originator") == "CERT-AT" for e in back)
        assert all(e.get("classification.type") == event["classification.type"] for e in back), back


# --- hypothesis: any event is exported validly or refused with a named field ----------------------

_values = st.one_of(st.text(max_size=30), st.integers(-5, 2 ** 33), st.none(), st.lists(st.text(max_size=5), max_size=2))
_events = st.fixed_dictionaries({}, optional={
    "source.url": _values, "source.fqdn": _values, "source.ip": st.one_of(st.ip_addresses().map(str), _values),
    "source.asn": _values, "source.account": _values, "malware.hash.md5": _values,
    "sharing.tlp": st.sampled_from(["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED", "WHITE", "", "tlp:green"]),
    "classification.type": st.sampled_from(["phishing", "scanner", "", "weird"]),
    "time.source": st.one_of(st.just("2026-11-20T08:00:00+00:00"), _values),
    "sharing.do_not_disclose_source": st.booleans(), "provenance.originator": _values})


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(_events, max_size=4))
def test_any_event_is_exported_validly_or_refused(events):
    b = x.BundleBuilder(settings_(kind="observed-data"), now=T0)
    for e in events:
        b.add({k: v for k, v in e.items() if v is not None})
    assert b.exported + len(b.refused) == len(events)
    for _, field, reason in b.refused:
        assert isinstance(field, str) and field and reason
    assert_valid(b.bundle())


# --- the command -------------------------------------------------------------------------------

def test_export_stix_command(tmp_path, capsys):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [ev(), ev(sharing__tlp="RED")]) + "\n{bad\n[1]\n", "utf-8")
    code, out, err = run(["export", "stix", str(path), "--recipient-profile", "opencti"], capsys)
    assert code == 1
    bundle = assert_valid(json.loads(out))
    assert len(by_type(bundle, "indicator")) == 1
    assert "events.jsonl:2: field sharing.tlp: TLP:RED is never forwarded" in err
    assert "events.jsonl:3:" in err and "events.jsonl:4: an event is a JSON object, not a list" in err
    assert "exported 1 event(s)" in err
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps(ev()) + "\n", "utf-8")
    code, out, _ = run(["export", "stix", str(ok), "--kind", "observed-data"], capsys)
    assert code == 0 and by_type(assert_valid(json.loads(out)), "observed-data")
    for argv in (["export", "stix", str(tmp_path / "missing.jsonl")], ["export", "stix", str(ok), "--max-tlp", "RED"],
                 ["export", "stix", str(tmp_path)]):
        assert run(argv, capsys)[0] == 2


def test_round_trip_of_a_value_with_a_quote_and_a_backslash():
    pytest.importorskip("intelmq_crossborder.formats.stix.parse")
    url = "http://evil.example/x'y\\z"
    _, bundle = one_bundle([ev(source__fqdn=None, source__ip=None, source__url=url)])
    assert [e["source.url"] for e in _parsed(bundle)] == [url]


def test_no_identity_for_a_pseudonymised_originator():
    # an agreement with hide_source: pseudonymise leaves pseudonyms in the source fields: the
    # recipient may not know the source, so no identity (not even a pseudonymous one)
    for fields in ({"provenance__originator": "pseudo-7ab4a0092d2d626f06ffea499fb13569"},
                   {"feed__url": "https://31d726be9e2771e67758f33eb2e7a438.pseudonym.invalid/"}):
        _, bundle = one_bundle([ev(**fields)])
        assert by_type(bundle, "identity") == [] and "created_by_ref" not in by_type(bundle, "indicator")[0]


def test_export_stix_reads_stdin():
    from tests.hostile import run_cli as run_with_stdin
    result = run_with_stdin(["export", "stix", "-"], stdin=(json.dumps(ev()) + "\n").encode())
    assert result.code == 0, result.show()
    assert len(by_type(assert_valid(json.loads(result.out)), "indicator")) == 1
