"""Property tests of the share decision (hypothesis).

Random events carry random TLP labels in any supported spelling, in any of the
fields the policy reads, plus random identifying and originator fields; random
agreements have random relations, ceilings, filters and redaction lists.  The
oracle below is written from TLP 2.0 and the agreement schema, not from
``policy``: no recipient ever receives more than its agreement and TLP 2.0
allow, and no removed or pseudonymised field appears in clear in any output.
Every label counts: a ``sharing.tlp`` lower than another label never lowers it.
A hidden source never appears in any field of a copy, whatever ``originator_fields``
says.
"""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intelmq_crossborder.policy.agreements import agreement_from_dict, KINDS
from intelmq_crossborder.policy.decide import decide, decide_all, PolicySet
from intelmq_crossborder.policy.redact import field_type, pseudonym

from intelmq_crossborder.core import tlp
KEY = b"property-test-key"
RANK = {"CLEAR": 0, "GREEN": 1, "AMBER": 2, "AMBER+STRICT": 3, "RED": 4}
RELATION_MAX = {"same-organisation": "AMBER+STRICT", "constituent": "AMBER", "community": "GREEN"}
TYPES = ["scanner", "phishing", "c2-server", "vulnerable-system"]
REDACTABLE = ["source.ip", "source.fqdn", "source.account", "destination.ip", "extra.contact", "extra.note",
              "malware.name", "provenance.originator", "feed.name"]
#: fields that name or point at the originator (tlp.SOURCE_FIELDS), set on some events
SOURCE_VALUES = {"feed.url": "https://misp.originator.example/feeds/7", "feed.provider": "Originator CERT",
                 "event_description.url": "https://misp.originator.example/events/view/4242",
                 "misp.event_uuid": "5f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "csaf.publisher": "Originator PSIRT"}
PAP = ["CLEAR", "GREEN", "AMBER", "RED"]

# every spelling the parser accepts, with the level it means
SPELLINGS = [(row.text, row.level.label) for row in tlp.SPELLINGS if row.parse]
SPELLINGS += [(text.lower(), level) for text, level in list(SPELLINGS) if not text.startswith("marking")]
SPELLINGS += [("TLP:" + level, level) for level in RANK] + [("tlp: amber strict", "AMBER+STRICT"),
                                                            ("Amber + Strict", "AMBER+STRICT"), ("white", "CLEAR")]

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=10, max_size=16)


@st.composite
def labels(draw):
    """(fields to put on the event, the level the labels mean or None)."""
    fields, levels = {}, []
    if draw(st.booleans()):
        level = draw(st.sampled_from(list(RANK)))
        fields["sharing.tlp"] = level                # canonical: what the TLP expert (or a peer) wrote
        levels.append(level)
    for name in draw(st.lists(st.sampled_from(["tlp", "extra.tlp", "extra.csaf_tlp", "extra.misp_tags"]),
                              unique=True, max_size=3)):
        text, level = draw(st.sampled_from(SPELLINGS))
        if name == "tlp":   # the stock field holds IntelMQ's TLP 1.0 values only
            text, level = draw(st.sampled_from([("WHITE", "CLEAR"), ("GREEN", "GREEN"), ("AMBER", "AMBER"),
                                                ("RED", "RED")]))
        if name == "extra.misp_tags":
            misp_text = tlp.to_misp_tag(tlp.Level.from_label(level))
            extra = draw(st.sampled_from(["", ",tlp:ex:chr", ',osint:source-type="blog-post"']))
            text = misp_text + extra
        fields[name] = text
        levels.append(level)
    effective = max(levels, key=RANK.get) if levels else None
    if fields.get("tlp") == "RED":
        # the stock field cannot say AMBER+STRICT (the TLP expert writes RED for it): a stock
        # RED beside an AMBER+STRICT label and no other RED is that AMBER+STRICT (docs/tlp.md)
        others = [_level_of(n, v) for n, v in fields.items() if n != "tlp"]
        if "AMBER+STRICT" in others and "RED" not in others:
            effective = "AMBER+STRICT"
    return fields, effective


def _level_of(name: str, text: str) -> str:
    if name == "extra.misp_tags":
        text = text.split(",")[0]
    return tlp.parse_level(text).label


@st.composite
def events(draw):
    fields, level = draw(labels())
    ev = {"classification.type": draw(st.sampled_from(TYPES))}
    ev.update(fields)
    ip_a, ip_b = draw(st.integers(1, 254)), draw(st.integers(1, 254))
    values = {"source.ip": f"198.18.{ip_a}.{ip_b}", "source.fqdn": f"h-{draw(token)}.example.org",
              "source.account": f"acct-{draw(token)}", "destination.ip": f"198.19.{ip_b}.{ip_a}",
              "extra.contact": f"contact-{draw(token)}", "extra.note": f"note-{draw(token)}",
              "malware.name": f"mw-{draw(token)}", "provenance.originator": f"org-{draw(token)}",
              "feed.name": f"feed-{draw(token)}"}
    for name in draw(st.lists(st.sampled_from(REDACTABLE), unique=True, min_size=1)):
        ev[name] = values[name]
    if draw(st.booleans()):
        ev["raw"] = "cmF3IGxpbmUgd2l0aCBldmVyeXRoaW5n"
    if draw(st.booleans()):
        ev["sharing.pap"] = draw(st.sampled_from(PAP))
    if draw(st.booleans()):
        ev["sharing.do_not_disclose_source"] = True
    if draw(st.booleans()):
        ev["provenance.origin_country"] = draw(st.sampled_from(["AT", "DE", "FR"]))
    for name in draw(st.lists(st.sampled_from(sorted(SOURCE_VALUES)), unique=True)):
        ev[name] = SOURCE_VALUES[name]
    if "misp.event_uuid" in ev and draw(st.booleans()):
        ev["provenance.event_uuid"] = ev["misp.event_uuid"]     # the MISP parser's event id
    return ev, level


@st.composite
def agreements(draw):
    relation = draw(st.sampled_from(list(RELATION_MAX)))
    max_tlp = draw(st.sampled_from([l for l in RANK if RANK[l] <= RANK[RELATION_MAX[relation]]]))
    remove = draw(st.lists(st.sampled_from(REDACTABLE), unique=True, max_size=3))
    pseudo = draw(st.lists(st.sampled_from([f for f in REDACTABLE if f not in remove]), unique=True, max_size=3))
    data = {"recipient": "r", "name": "R", "kind": draw(st.sampled_from(KINDS)), "country": "AT",
            "relation": relation, "max_tlp": draw(st.sampled_from([max_tlp, max_tlp.lower(), "TLP:" + max_tlp])),
            "remove_fields": remove, "pseudonymise_fields": pseudo,
            "disclose_source": draw(st.booleans()),
            "hide_source": draw(st.sampled_from(["remove", "pseudonymise"])),
            "keep_raw": draw(st.booleans())}
    if draw(st.booleans()):     # adds to tlp.SOURCE_FIELDS, never replaces it
        data["originator_fields"] = draw(st.lists(st.sampled_from(["provenance.originator", "feed.name",
                                                                   "extra.contact"]), unique=True))
    if draw(st.booleans()):
        data["types"] = draw(st.lists(st.sampled_from(TYPES), unique=True, min_size=1))
    if draw(st.booleans()):
        data["no_label"] = draw(st.sampled_from(["deny"] + list(RANK)[:4]))
    if draw(st.booleans()):
        data["max_pap"] = draw(st.sampled_from(PAP))
    if draw(st.booleans()):
        data["origin_countries"] = ["AT"]
    return data


def in_clear(value, out: dict) -> bool:
    return str(value) in json.dumps(out)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events(), agreements())
def test_no_recipient_gets_more_than_allowed(generated, data):
    event, level = generated
    agreement = agreement_from_dict(data)
    decision = decide(event, agreement, hmac_key=KEY)
    max_tlp = tlp.parse_level(data["max_tlp"]).label
    ceiling = min(RANK[max_tlp], RANK[RELATION_MAX[data["relation"]]])
    effective = level
    if effective is None and data.get("no_label", "deny") != "deny":
        effective = data["no_label"]
    if not decision.allowed:
        assert decision.event_out is None and decision.reasons
        return
    out = decision.event_out
    # TLP 2.0 and the agreement
    assert effective is not None, "an unlabelled event was shared though the no_label rule denies"
    assert effective != "RED"
    assert RANK[effective] <= ceiling
    if effective == "AMBER+STRICT":
        assert data["relation"] == "same-organisation"
    if effective == "AMBER":
        assert data["relation"] in ("same-organisation", "constituent")
    assert out["sharing.tlp"] == effective
    assert out["sharing.agreement"] == "r"
    if "types" in data:
        assert event["classification.type"] in data["types"]
    if "max_pap" in data and "sharing.pap" in event:
        assert PAP.index(event["sharing.pap"]) <= PAP.index(data["max_pap"])
    if "origin_countries" in data:
        assert event.get("provenance.origin_country") == "AT"
    # nothing removed or pseudonymised in clear
    hidden = list(data["remove_fields"]) + list(data["pseudonymise_fields"])
    chr_flag = event.get("sharing.do_not_disclose_source") or ",tlp:ex:chr" in event.get("extra.misp_tags", "")
    if not data["disclose_source"] or chr_flag:
        hidden += list(tlp.SOURCE_FIELDS) + list(data.get("originator_fields", []))
        if "misp.event_uuid" in event:
            assert event["misp.event_uuid"] not in json.dumps(out), "the originator's MISP event id disclosed"
    for name in hidden:
        if name in event:
            assert not in_clear(event[name], out), f"{name} in clear"
    for name in data["remove_fields"]:
        assert name not in out
    for name in data["pseudonymise_fields"]:
        if name in event:
            assert out[name] == pseudonym(event[name], KEY, field_type(name))
    if "raw" in event and (hidden or not data["keep_raw"]):
        if any(n in event for n in hidden) or not data["keep_raw"]:
            assert "raw" not in out


@settings(max_examples=150, deadline=None)
@given(events(), st.lists(agreements(), min_size=1, max_size=5))
def test_decide_all_equals_decide_and_input_untouched(generated, many):
    event, _ = generated
    before = json.dumps(event, sort_keys=True)
    agreements_ = [agreement_from_dict(dict(d, recipient=f"r{i}")) for i, d in enumerate(many)]
    together = decide_all(event, agreements_, hmac_key=KEY)
    alone = [decide(event, a, hmac_key=KEY) for a in agreements_]
    assert [d.to_json() for d in together] == [d.to_json() for d in alone]
    policy_set = PolicySet(agreements_, KEY, cache_size=2)
    for _ in range(2):      # cold and cached
        assert [d.to_json() for d in policy_set.decide(event)] == [d.to_json() for d in alone]
    assert json.dumps(event, sort_keys=True) == before
