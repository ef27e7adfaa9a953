"""Unit tests of intelmq_crossborder.policy.provenance (no IntelMQ, no Redis)."""
import re

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
