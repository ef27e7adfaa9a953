"""Unit tests of intelmq_crossborder.policy.provenance (no IntelMQ, no Redis)."""
import hashlib
import json
import re

import pytest

from intelmq_crossborder.policy import provenance
from intelmq_crossborder.core.fingerprint import fingerprint

EVENT = {"classification.type": "c2-server", "source.ip": "203.0.113.9"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_hub_path():
    assert provenance.hub_path({}) == []
    assert provenance.hub_path({"provenance.hub_path": "at-hub,,de-hub"}) == ["at-hub", "de-hub"]
    assert provenance.hub_path({"provenance.hub_path": 5}) == []


def test_loop_reason():
    assert provenance.loop_reason({"provenance.hub_path": "at-hub,xx-hub"}, "xx-hub", 8) == "loop"
    assert provenance.loop_reason({"provenance.origin_hub": "xx-hub"}, "xx-hub", 8) == "loop"
    assert provenance.loop_reason({"provenance.hub_path": "a,b,c,d"}, "xx-hub", 3) == "hop-limit"
    assert provenance.loop_reason({"provenance.hub_path": "a,b,c"}, "xx-hub", 3) is None
    assert provenance.loop_reason({}, "xx-hub", 0) is None


def test_stamp_outbound_adds_what_is_missing_once():
    event = dict(EVENT)
    provenance.stamp(event, "outbound", "xx-hub", "CERT.xx", "XX")
    assert UUID_RE.match(event["provenance.event_uuid"])
    assert event["provenance.fingerprint"] == fingerprint(EVENT)
    assert (event["provenance.origin_hub"], event["provenance.originator"], event["provenance.origin_country"],
            event["provenance.hub_path"]) == ("xx-hub", "CERT.xx", "XX", "xx-hub")
    before = dict(event)
    provenance.stamp(event, "outbound", "xx-hub", "CERT.other", "YY")
    assert event == before                       # nothing overwritten, the hub not appended twice
    provenance.stamp(event, "outbound", "yy-hub")
    assert event["provenance.hub_path"] == "xx-hub,yy-hub" and event["provenance.origin_hub"] == "xx-hub"


def test_stamp_inbound_only_identifies():
    event = dict(EVENT, **{"provenance.hub_path": "at-hub"})
    provenance.stamp(event, "inbound", "xx-hub", "CERT.xx", "XX")
    assert set(event) - set(EVENT) == {"provenance.hub_path", "provenance.event_uuid", "provenance.fingerprint"}
    assert event["provenance.hub_path"] == "at-hub"


def test_retry_token_is_order_independent_and_content_sensitive():
    a = {"x": 1, "y": "2"}
    assert provenance.retry_token(a) == provenance.retry_token({"y": "2", "x": 1})
    assert provenance.retry_token(a) != provenance.retry_token({"x": 1, "y": "3"})


def test_dedup_key_keeps_directions_apart():
    assert provenance.dedup_key("p:", "inbound", "ab") == "p:inbound:ab"
    assert provenance.dedup_key("p:", "inbound", "ab") != provenance.dedup_key("p:", "outbound", "ab")


def test_parameter_problems():
    defaults = {"direction": "inbound", "max_hops": 8, "dedup_window": 86400}
    assert provenance.parameter_problems({"hub_id": "xx-hub"}, defaults) == []
    problems = provenance.parameter_problems({"direction": "up", "hub_id": "XX Hub", "origin_country": "xx",
                                              "max_hops": -1, "dedup_window": True}, defaults)
    assert [p.split()[1] for p in problems] == ["direction", "hub_id", "origin_country", "max_hops", "dedup_window"]


def test_retry_token_is_the_digest_of_the_canonical_json():
    event = {"source.ip": "203.0.113.9", "comment": "Zürich", "source.port": 443}
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert provenance.retry_token(event) == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_parameter_problems_take_manager_empty_values_as_unset():
    manager = {"direction": "", "hub_id": "xx-hub", "originator": "", "origin_country": "", "max_hops": "",
               "dedup_window": "", "dedup_key_prefix": ""}
    assert provenance.parameter_problems(manager) == []
    assert provenance.parameter_problems({"hub_id": ""})[0].startswith("parameter hub_id")
    assert provenance.parameter_problems({"hub_id": "xx-hub", "max_hops": "4"}) == []     # text from the Manager
    assert provenance.parameter_problems({"hub_id": "xx-hub", "max_hops": "four"})[0].startswith("parameter max_hops")
    guard = provenance.ProvenanceGuard.from_parameters(manager)
    assert (guard.direction, guard.originator, guard.origin_country, guard.max_hops, guard.dedup_window,
            guard.dedup_key_prefix) == ("inbound", None, None, 8, 86400, "crossborder:fingerprint:")


def test_guard_from_bad_parameters_names_the_problem():
    with pytest.raises(ValueError, match="parameter direction"):
        provenance.ProvenanceGuard.from_parameters({"direction": "up", "hub_id": "xx-hub"})


def test_guard_inbound_drops_loops_and_claims_by_fingerprint():
    guard = provenance.ProvenanceGuard("inbound", "xx-hub", max_hops=2, dedup_window=60, dedup_key_prefix="p:")
    assert guard.admit(dict(EVENT, **{"provenance.hub_path": "at-hub,xx-hub"})).drop == "loop"
    assert guard.admit(dict(EVENT, **{"provenance.hub_path": "a,b,c"})).drop == "hop-limit"
    received = dict(EVENT, **{"provenance.hub_path": "at-hub"})
    token = provenance.retry_token(received)
    event = dict(received)
    admission = guard.admit(event)
    assert admission.drop is None
    assert admission.claim == provenance.Claim("p:inbound:" + fingerprint(EVENT), token, 60)
    assert event["provenance.fingerprint"] == fingerprint(EVENT)          # stamped in place
    guard.sent(True)
    guard.sent(False)
    assert guard.summary() == ("Provenance inbound: passed 1 (0 without identifying fields, not de-duplicated), "
                               "dropped duplicate 1, hop-limit 1, loop 1.")
    assert not guard.pending()


def test_guard_claims_nothing_without_window_or_identity():
    no_window = provenance.ProvenanceGuard("outbound", "xx-hub", dedup_window=0)
    event = dict(EVENT)
    assert no_window.admit(event) == provenance.Admission()
    assert event["provenance.hub_path"] == "xx-hub"
    guard = provenance.ProvenanceGuard("outbound", "xx-hub", dedup_window=60)
    assert guard.admit({"feed.name": "no identity"}) == provenance.Admission()
    assert guard.no_identity == 1
    assert guard.admit(dict(EVENT)).claim is not None
