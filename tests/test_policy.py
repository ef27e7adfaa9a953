"""Unit tests of intelmq_crossborder.policy.decide: one test (or a few) per rule."""
import textwrap

import pytest

from intelmq_crossborder.core import fingerprint

from intelmq_crossborder.policy.agreements import Agreement, agreement_from_dict, AgreementError, load_agreement, load_agreements, tlp_ceiling
from intelmq_crossborder.policy.decide import decide, decide_all, parse_pap
from intelmq_crossborder.policy.redact import pseudonym, redact
from intelmq_crossborder.core.tlp import Level

BASE = {"recipient": "cert-xx", "name": "CERT XX", "kind": "csirt", "country": "AT",
        "relation": "community", "max_tlp": "GREEN"}
KEY = b"test-key-not-a-secret"


def agreement(**overrides) -> Agreement:
    data = dict(BASE)
    data.update(overrides)
    return agreement_from_dict(data, source="test.yaml")


def event(**fields):
    out = {"classification.taxonomy": "vulnerable", "classification.type": "vulnerable-system",
           "source.ip": "192.0.2.10", "feed.name": "Test feed", "provenance.originator": "CERT.at",
           "raw": "c29tZSByYXcgbGluZQ=="}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


# --- loading and validation -------------------------------------------------------

def test_minimal_agreement_defaults():
    a = agreement()
    assert a.max_tlp is Level.GREEN
    assert a.no_label is None and a.disclose_source is False and a.retention_days is None
    assert a.source == "test.yaml"
    assert tlp_ceiling(a) is Level.GREEN


@pytest.mark.parametrize("relation,max_tlp,ceiling", [
    ("same-organisation", "AMBER+STRICT", Level.AMBER_STRICT),
    ("same-organisation", "amber", Level.AMBER),
    ("constituent", "TLP:AMBER", Level.AMBER),
    ("constituent", "white", Level.CLEAR),
    ("community", "tlp:green", Level.GREEN),
])
def test_ceiling_is_min_of_max_tlp_and_relation(relation, max_tlp, ceiling):
    assert tlp_ceiling(agreement(relation=relation, max_tlp=max_tlp)) is ceiling


def test_max_tlp_red_is_refused():
    with pytest.raises(AgreementError, match=r"test.yaml, field max_tlp: TLP:RED is never forwarded"):
        agreement(relation="same-organisation", max_tlp="RED")


@pytest.mark.parametrize("relation,max_tlp", [("community", "AMBER"), ("constituent", "AMBER+STRICT")])
def test_max_tlp_above_relation_is_refused(relation, max_tlp):
    with pytest.raises(AgreementError, match=r"field max_tlp: .* exceeds what relation"):
        agreement(relation=relation, max_tlp=max_tlp)


@pytest.mark.parametrize("overrides,field,reason", [
    ({"kind": "bank"}, "kind", "'bank' is not one of national-hub"),
    ({"country": "Austria"}, "country", "does not match"),
    ({"relation": "friend"}, "relation", "is not one of"),
    ({"max_tlp": "PURPLE"}, "max_tlp", "unknown TLP label 'PURPLE'"),
    ({"recipient": "Bad Id"}, "recipient", "does not match"),
    ({"retention_days": "90"}, "retention_days", "must be an integer, not a string"),
    ({"retention_days": 0}, "retention_days", "less than the minimum"),
    ({"remove_fields": ["source.ipp"]}, "remove_fields[0]", "unknown field 'source.ipp'"),
    ({"remove_fields": ["Source IP"]}, "remove_fields[0]", "does not match"),
    ({"pseudonymise_fields": ["source.asn"]}, "pseudonymise_fields[0]", "cannot hold a pseudonym"),
    ({"pseudonymise_fields": ["provenance.origin_country"]}, "pseudonymise_fields[0]", "cannot hold a pseudonym"),
    ({"remove_fields": ["source.ip"], "pseudonymise_fields": ["source.ip"]}, "pseudonymise_fields",
     "also in remove_fields"),
    ({"remove_fields": ["sharing.tlp"]}, "remove_fields", "must stay on the event"),
    ({"no_label": "maybe"}, "no_label", "use 'deny' or a TLP level"),
    ({"max_pap": "PURPLE"}, "max_pap", "is not one of"),
    ({"taxonomies": "malicious-code"}, "taxonomies", "must be a list, not a string"),
    ({"types": ["scanner", "scaner"]}, "types[1]", "'scaner' is not an RSIT classification type"),
    ({"taxonomies": ["malware"]}, "taxonomies[0]", "not an RSIT classification taxonomy"),
    ({"redact": ["source.ip"]}, "redact", "unknown field (not part of the agreement schema"),
])
def test_bad_agreement_names_field_and_reason(overrides, field, reason):
    with pytest.raises(AgreementError) as info:
        agreement(**overrides)
    assert info.value.field == field
    assert reason in str(info.value)
    assert str(info.value).startswith(f"test.yaml, field {field}: ")


def test_missing_required_field_is_named():
    data = dict(BASE)
    del data["relation"]
    with pytest.raises(AgreementError, match=r"x.yaml, field relation: required field is missing"):
        agreement_from_dict(data, source="x.yaml")


def test_load_agreement_from_yaml(tmp_path):
    path = tmp_path / "isac.yaml"
    path.write_text(textwrap.dedent("""\
        recipient: fin-isac
        name: Finance ISAC
        kind: isac
        country: DE
        relation: community
        max_tlp: TLP:GREEN
        types: [phishing, scanner]
        retention_days: 180
        """))
    a = load_agreement(path)
    assert a.recipient == "fin-isac" and a.types == ("phishing", "scanner") and a.retention_days == 180
    assert a.source == str(path)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("recipient: a\nname: [unclosed\n")
    with pytest.raises(AgreementError, match=r"broken.yaml:\d+: not valid YAML") as info:
        load_agreement(path)
    assert info.value.line is not None


def test_load_agreements_directory(tmp_path):
    for rid in ("b-hub", "a-csirt"):
        (tmp_path / f"{rid}.yaml").write_text(f"recipient: {rid}\nname: {rid}\nkind: csirt\ncountry: AT\n"
                                              "relation: community\nmax_tlp: GREEN\n")
    (tmp_path / "README.txt").write_text("not an agreement")
    loaded = load_agreements(tmp_path)
    assert list(loaded) == ["a-csirt", "b-hub"]


def test_load_agreements_duplicate_recipient(tmp_path):
    for name in ("one.yaml", "two.yaml"):
        (tmp_path / name).write_text("recipient: same\nname: x\nkind: csirt\ncountry: AT\n"
                                     "relation: community\nmax_tlp: GREEN\n")
    with pytest.raises(AgreementError, match=r"two.yaml, field recipient: 'same' is already the recipient of"):
        load_agreements(tmp_path)


def test_load_agreements_empty_directory(tmp_path):
    with pytest.raises(AgreementError, match="no agreement files"):
        load_agreements(tmp_path)


def test_disabled_agreement_left_out(tmp_path):
    (tmp_path / "a.yaml").write_text("recipient: a\nname: a\nkind: csirt\ncountry: AT\nrelation: community\n"
                                     "max_tlp: GREEN\nenabled: false\n")
    (tmp_path / "b.yaml").write_text("recipient: b\nname: b\nkind: csirt\ncountry: AT\nrelation: community\n"
                                     "max_tlp: GREEN\n")
    assert list(load_agreements(tmp_path)) == ["b"]
    assert list(load_agreements(tmp_path, include_disabled=True)) == ["a", "b"]


# --- TLP rules --------------------------------------------------------------------

SAME_ORG = dict(relation="same-organisation", max_tlp="AMBER+STRICT")
CONSTITUENT = dict(relation="constituent", max_tlp="AMBER")
COMMUNITY = dict(relation="community", max_tlp="GREEN")
OPEN = dict(relation="community", max_tlp="CLEAR")


@pytest.mark.parametrize("label", ["RED", "tlp:red"])
@pytest.mark.parametrize("rel", [SAME_ORG, CONSTITUENT, COMMUNITY, OPEN])
def test_red_never_forwarded(label, rel):
    d = decide(event(sharing__tlp=label), agreement(**rel))
    assert not d.allowed and d.codes == ["tlp-red"] and d.event_out is None


def test_amber_strict_only_same_organisation():
    ev = event(sharing__tlp="AMBER+STRICT")
    assert decide(ev, agreement(**SAME_ORG)).allowed
    d = decide(ev, agreement(**CONSTITUENT))
    assert not d.allowed and d.codes == ["tlp-amber-strict"]
    assert not decide(ev, agreement(**COMMUNITY)).allowed
    # same organisation but an agreement that only admits AMBER
    d = decide(ev, agreement(relation="same-organisation", max_tlp="AMBER"))
    assert not d.allowed and d.codes == ["tlp-above-ceiling"]


def test_amber_to_organisation_and_constituents_only():
    ev = event(sharing__tlp="AMBER")
    assert decide(ev, agreement(**SAME_ORG)).allowed
    assert decide(ev, agreement(**CONSTITUENT)).allowed
    d = decide(ev, agreement(**COMMUNITY))
    assert not d.allowed and d.codes == ["tlp-above-ceiling"]


def test_green_to_community_not_to_clear_only_agreement():
    ev = event(sharing__tlp="GREEN")
    assert all(decide(ev, agreement(**r)).allowed for r in (SAME_ORG, CONSTITUENT, COMMUNITY))
    assert not decide(ev, agreement(**OPEN)).allowed


def test_clear_to_anyone_admitted():
    ev = event(sharing__tlp="CLEAR")
    assert all(decide(ev, agreement(**r)).allowed for r in (SAME_ORG, CONSTITUENT, COMMUNITY, OPEN))
    # ... but the other rules of the agreement still apply
    assert not decide(ev, agreement(types=["phishing"], **OPEN)).allowed


def test_sharing_tlp_is_the_decision_field():
    # the TLP expert wrote sharing.tlp = the most restrictive; stock tlp is its projection
    ev = event(sharing__tlp="AMBER+STRICT", tlp="RED")
    assert decide(ev, agreement(**SAME_ORG)).allowed


def test_without_sharing_tlp_most_restrictive_label_counts():
    ev = event(tlp="GREEN", extra__tlp="AMBER")
    d = decide(ev, agreement(**COMMUNITY))
    assert not d.allowed and d.codes == ["tlp-above-ceiling"]
    d = decide(ev, agreement(**CONSTITUENT))
    assert d.allowed and d.event_out["sharing.tlp"] == "AMBER"
    assert "from the event's labels" in d.reasons[0]


def test_misp_tags_and_chatham_house_without_sharing_tlp():
    ev = event(extra__misp_tags="tlp:green,tlp:ex:chr,osint:source-type=\"blog-post\"")
    d = decide(ev, agreement(disclose_source=True, **COMMUNITY))
    assert d.allowed
    assert "provenance.originator" not in d.event_out and "feed.name" not in d.event_out
    assert d.event_out["sharing.do_not_disclose_source"] is True


def test_unreadable_label_denied():
    d = decide(event(extra__tlp="PURPLE"), agreement(**OPEN))
    assert not d.allowed and d.codes == ["tlp-unreadable"]
    assert "extra.tlp" in d.reasons[0]
    d = decide(event(sharing__tlp="PURPLE"), agreement(**OPEN))
    assert not d.allowed and d.codes == ["tlp-unreadable"]


def test_no_label_default_denies():
    d = decide(event(), agreement(**COMMUNITY))
    assert not d.allowed and d.codes == ["tlp-missing"]


def test_no_label_rule_assumes_level():
    a = agreement(no_label="AMBER", **CONSTITUENT)
    d = decide(event(), a)
    assert d.allowed and d.event_out["sharing.tlp"] == "AMBER"
    assert "no_label rule" in d.reasons[0]
    # an assumed level above the ceiling is still denied
    d = decide(event(), agreement(no_label="AMBER", **COMMUNITY))
    assert not d.allowed and d.codes == ["tlp-above-ceiling"]


# --- other rules ------------------------------------------------------------------

def test_taxonomies_and_types():
    a = agreement(taxonomies=["vulnerable"], types=["vulnerable-system", "ddos-amplifier"], **OPEN)
    assert decide(event(sharing__tlp="CLEAR"), a).allowed
    d = decide(event(sharing__tlp="CLEAR", classification__type="scanner",
                            classification__taxonomy="information-gathering"), a)
    assert not d.allowed and d.codes == ["taxonomy-not-allowed", "type-not-allowed"]


def test_origin_countries():
    a = agreement(origin_countries=["AT", "DE"], **OPEN)
    assert decide(event(sharing__tlp="CLEAR", provenance__origin_country="AT"), a).allowed
    d = decide(event(sharing__tlp="CLEAR", provenance__origin_country="FR"), a)
    assert not d.allowed and d.codes == ["origin-not-allowed"]
    d = decide(event(sharing__tlp="CLEAR"), a)
    assert not d.allowed and d.codes == ["origin-unknown"]
    assert decide(event(sharing__tlp="CLEAR"), agreement(origin_countries=["AT"], unknown_origin="allow",
                                                                **OPEN)).allowed


def test_pap_limits():
    a = agreement(max_pap="GREEN", **OPEN)
    assert decide(event(sharing__tlp="CLEAR", sharing__pap="GREEN"), a).allowed
    assert decide(event(sharing__tlp="CLEAR"), a).allowed          # missing_pap: allow
    d = decide(event(sharing__tlp="CLEAR", sharing__pap="AMBER"), a)
    assert not d.allowed and d.codes == ["pap-above-limit"]
    d = decide(event(sharing__tlp="CLEAR"), agreement(max_pap="GREEN", missing_pap="deny", **OPEN))
    assert not d.allowed and d.codes == ["pap-missing"]
    d = decide(event(sharing__tlp="CLEAR", sharing__pap="BLUE"), a)
    assert not d.allowed and d.codes == ["pap-unreadable"]


@pytest.mark.parametrize("value,expected", [("PAP:WHITE", "CLEAR"), ("amber", "AMBER"), (" pap:red", "RED")])
def test_parse_pap(value, expected):
    assert parse_pap(value) == expected


def test_loop_rule_for_hubs():
    a = agreement(kind="national-hub", hub_id="de-hub", **OPEN)
    assert decide(event(sharing__tlp="CLEAR", provenance__hub_path="at-hub"), a).allowed
    d = decide(event(sharing__tlp="CLEAR", provenance__hub_path="de-hub,at-hub"), a)
    assert not d.allowed and d.codes == ["loop"]
    d = decide(event(sharing__tlp="CLEAR", provenance__origin_hub="de-hub"), a)
    assert not d.allowed and d.codes == ["loop"]


def test_all_reasons_collected():
    d = decide(event(sharing__tlp="RED", classification__type="scanner"),
                      agreement(types=["phishing"], max_pap="CLEAR", **COMMUNITY))
    assert d.codes == ["tlp-red", "type-not-allowed"]


# --- transformations --------------------------------------------------------------

def test_source_not_disclosed_by_default_removes_originator_fields():
    d = decide(event(sharing__tlp="GREEN"), agreement(**COMMUNITY))
    assert d.allowed
    for name in ("provenance.originator", "feed.name", "raw"):
        assert name not in d.event_out
    assert d.event_out["source.ip"] == "192.0.2.10"
    assert "removed: feed.name, provenance.originator, raw" in d.reasons


def test_source_disclosed_keeps_originator_but_event_flag_wins():
    a = agreement(disclose_source=True, **COMMUNITY)
    d = decide(event(sharing__tlp="GREEN"), a)
    assert d.event_out["provenance.originator"] == "CERT.at" and "raw" not in d.event_out
    d = decide(event(sharing__tlp="GREEN", sharing__do_not_disclose_source=True), a)
    assert "provenance.originator" not in d.event_out and "feed.name" not in d.event_out


def test_keep_raw():
    d = decide(event(sharing__tlp="GREEN"), agreement(disclose_source=True, keep_raw=True, **COMMUNITY))
    assert d.event_out["raw"] == "c29tZSByYXcgbGluZQ=="
    # raw would hold redacted values in clear: dropped anyway
    d = decide(event(sharing__tlp="GREEN"), agreement(keep_raw=True, **COMMUNITY))
    assert "raw" not in d.event_out


def test_hide_source_by_pseudonym():
    a = agreement(hide_source="pseudonymise", **COMMUNITY)
    d = decide(event(sharing__tlp="GREEN"), a, hmac_key=KEY)
    assert d.event_out["provenance.originator"].startswith("pseudo-")
    assert d.event_out["provenance.originator"] == pseudonym("CERT.at", KEY, "String")
    assert not decide(event(sharing__tlp="GREEN"), a).allowed  # no key


def test_remove_and_pseudonymise_fields():
    a = agreement(remove_fields=["source.account", "extra.*"], pseudonymise_fields=["source.ip", "source.fqdn"],
                  disclose_source=True, **COMMUNITY)
    ev = event(sharing__tlp="GREEN", source__account="alice", source__fqdn="host.example.com",
               extra__note="x", extra__contact="y")
    d = decide(ev, a, hmac_key=KEY)
    out = d.event_out
    assert "source.account" not in out and "extra.note" not in out and "extra.contact" not in out
    assert out["source.ip"].startswith("fd") and out["source.fqdn"].endswith(".pseudonym.invalid")
    assert "192.0.2.10" not in str(out) and "host.example.com" not in str(out)
    assert "pseudonymised: source.fqdn, source.ip" in d.reasons
    # the input is untouched
    assert ev["source.ip"] == "192.0.2.10" and "raw" in ev


def test_pseudonyms_are_stable_and_keyed():
    assert pseudonym("192.0.2.1", KEY, "IPAddress") == pseudonym("192.0.2.1", KEY, "IPAddress")
    assert pseudonym("192.0.2.1", KEY, "IPAddress") != pseudonym("192.0.2.1", b"other", "IPAddress")
    assert pseudonym("192.0.2.1", KEY, "IPAddress") != pseudonym("192.0.2.2", KEY, "IPAddress")


def test_pseudonymisation_without_key_is_denied():
    d = decide(event(sharing__tlp="GREEN"), agreement(pseudonymise_fields=["source.ip"], **COMMUNITY))
    assert not d.allowed and d.codes == ["key-missing"]


def test_agreement_and_retention_stamped():
    d = decide(event(sharing__tlp="GREEN"), agreement(retention_days=90, **COMMUNITY))
    assert d.event_out["sharing.agreement"] == "cert-xx"
    assert d.event_out["sharing.retention_days"] == 90
    d = decide(event(sharing__tlp="GREEN"), agreement(**COMMUNITY))
    assert "sharing.retention_days" not in d.event_out


def test_fingerprint_recomputed_when_identity_redacted():
    ev = event(sharing__tlp="GREEN")
    ev["provenance.fingerprint"] = fingerprint.fingerprint(ev)
    d = decide(ev, agreement(pseudonymise_fields=["source.ip"], **COMMUNITY), hmac_key=KEY)
    assert d.event_out["provenance.fingerprint"] != ev["provenance.fingerprint"]
    assert d.event_out["provenance.fingerprint"] == fingerprint.fingerprint(d.event_out)
    d = decide(ev, agreement(**COMMUNITY))   # only originator fields removed: not identity
    assert d.event_out["provenance.fingerprint"] == ev["provenance.fingerprint"]


def test_decide_all_and_json():
    agreements = [agreement(recipient="a", **COMMUNITY), agreement(recipient="b", **OPEN)]
    decisions = decide_all(event(sharing__tlp="GREEN"), agreements)
    assert [(d.recipient, d.allowed) for d in decisions] == [("a", True), ("b", False)]
    assert decisions[1].to_json() == {"recipient": "b", "allowed": False, "reasons": decisions[1].reasons,
                                      "event_out": None}


def test_decide_accepts_intelmq_event():
    from intelmq.lib.message import Event
    from intelmq_crossborder.harmonization import merged_harmonization
    ev = Event(event(sharing__tlp="GREEN"), harmonization=merged_harmonization())
    d = decide(ev, agreement(**COMMUNITY))
    assert d.allowed and isinstance(d.event_out, dict) and d.event_out["source.ip"] == "192.0.2.10"


def test_redact_function():
    out, removed, pseudo = redact(event(source__account="bob"), remove=["source.account"],
                                         pseudonymise=["source.ip"], key=KEY)
    assert removed == ["source.account", "raw"] and pseudo == ["source.ip"]
    with pytest.raises(ValueError, match="key is required"):
        redact(event(), pseudonymise=["source.ip"])


# --- pinned outputs (the router's optimisations must not change a byte) -----------------

def _bench_events(n: int) -> list:
    """The benchmark's events, with some variations the benchmark lacks (no label, loops, bad PAP, the
    originator's id as event id, a fingerprint, the source flag)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_router
    out = []
    for i, e in enumerate(bench_router.make_events(n)):
        e = {k: v for k, v in e.items() if k != "__type"}
        if i % 7 == 3:
            del e["sharing.tlp"]
        if i % 11 == 5:
            e["provenance.hub_path"] = " DE-hub ,fr-hub"
        if i % 13 == 6:
            e["sharing.pap"] = "PAP:PURPLE"
        if i % 17 == 8:            # the originator's own id: derived in a copy that hides the source
            e["misp.event_uuid"] = e["provenance.event_uuid"].upper()
        if i % 19 == 9:
            e["provenance.fingerprint"] = "ab" * 32
        if i % 23 == 4:
            e["sharing.do_not_disclose_source"] = True
        out.append(e)
    return out


def test_decisions_and_copies_pinned(tmp_path):
    """decide_all and PolicySet give the same decisions, and the same bytes as recorded before the
    router's cost was cut (issue 14 §4): reasons, and every copy as serialised for the queue."""
    import hashlib
    import json
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_router
    from intelmq_crossborder.policy.audit import encode_decision
    from intelmq_crossborder.policy.decide import PolicySet
    from intelmq_crossborder.runtime.fanout import serialize_event
    bench_router.make_agreements(tmp_path)
    agreements = list(load_agreements(tmp_path).values())
    key = b"benchmark-key-not-a-secret"
    policy = PolicySet(agreements, key)
    h = hashlib.sha256()
    for e in _bench_events(1500):
        expected, got = decide_all(e, agreements, hmac_key=key), policy.decide(e)
        assert got.audit_parts == [encode_decision(d.recipient, d.allowed, d.reasons) for d in expected]
        assert got.denials == tuple((d.recipient, tuple(d.codes)) for d in expected if not d.allowed)
        for x, y in zip(expected, got, strict=True):
            assert (x.recipient, x.allowed, x.reasons, x.event_out) == (y.recipient, y.allowed, y.reasons,
                                                                        y.event_out)
            h.update(json.dumps([x.recipient, x.allowed, x.reasons]).encode() + b"\n")
            if x.allowed:
                h.update(serialize_event(x.event_out).encode() + b"\n")
    assert h.hexdigest() == "29bfd95acd8d790a1fa90ce73fc654133b2ba09235fdf3bc0a522a88d4b8c2f8"


def test_policy_set_shares_denials_between_events(tmp_path):
    """Denials are cached: the same facts give the same objects, and so does a different
    combination of facts that gives an agreement the same denial (what keeps the router cheap)."""
    from intelmq_crossborder.policy.decide import PolicySet
    agreements = [agreement(recipient="a", taxonomies=["vulnerable"]), agreement(recipient="b", max_tlp="AMBER",
                                                                                relation="constituent")]
    policy = PolicySet(agreements, KEY)
    red_vuln, red_vuln_again = policy.decide(event(sharing__tlp="RED")), policy.decide(event(sharing__tlp="RED"))
    assert red_vuln[0] is red_vuln_again[0] and red_vuln.denials is red_vuln_again.denials
    red_fraud = policy.decide(event(sharing__tlp="RED", classification__taxonomy="fraud"))
    assert red_fraud[1] is red_vuln[1]            # b: tlp-red either way
    assert red_fraud[0] is not red_vuln[0]        # a: also taxonomy-not-allowed
    assert red_fraud.denials == (("a", ("tlp-red", "taxonomy-not-allowed")), ("b", ("tlp-red",)))
    # another combination of facts (a PAP no agreement limits), the same denials: shared audit entries and counts
    red_vuln_pap = policy.decide(event(sharing__tlp="RED", sharing__pap="GREEN"))
    assert red_vuln_pap[0] is red_vuln[0] and red_vuln_pap[1] is red_vuln[1]
    assert red_vuln_pap.denials is red_vuln.denials and red_vuln_pap.audit_parts == red_vuln.audit_parts
    green_fraud = policy.decide(event(sharing__tlp="GREEN", classification__taxonomy="fraud"))
    assert green_fraud[1].allowed and green_fraud.denials == (("a", ("taxonomy-not-allowed",)),)
