"""Early-warning library: indicator identity, flags, warning content rules, Redis tracker (db 14)."""
import uuid

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.core import tlp
REDIS_DB = 14


@pytest.fixture()
def tracker():
    client = redis.Redis(db=REDIS_DB)
    prefix = f"test-ew-{uuid.uuid4().hex}:"
    yield ew.Tracker(client, window=3600, prefix=prefix)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)


def test_indicator_key_preference_and_normalisation():
    assert ew.indicator_key({"source.ip": "192.0.2.1", "source.fqdn": "Bad.Example."}) == ("source.fqdn", "bad.example")
    assert ew.indicator_key({"malware.hash.sha256": "AB" * 32, "source.ip": "192.0.2.1"}) == \
        ("malware.hash.sha256", "ab" * 32)
    assert ew.indicator_key({"product.vulnerabilities": "cve-2024-2;cve-2024-1;cve-2024-2"}) == \
        ("product.vulnerabilities", "cve-2024-1;cve-2024-2")
    assert ew.indicator_key({"source.url": "http://x.example/Path"}) == ("source.url", "http://x.example/Path")
    assert ew.indicator_key({"extra.foo": 1}) is None
    assert ew.indicator_key({"classification.type": "scanner"}, ["source.ip"]) is None
    assert ew.indicator_key({"source.ip": "192.0.2.1"}, ["source.fqdn"]) is None


def test_fingerprint_fallback_is_the_shared_event_identity():
    from intelmq_crossborder.core import fingerprint
    a = {"classification.type": "ddos", "time.source": "2026-11-20T01:00:00+00:00", "provenance.origin_hub": "de-hub"}
    b = dict(a, **{"provenance.origin_hub": "fr-hub", "feed.name": "other feed"})
    assert ew.indicator_key(a) == ew.indicator_key(b) == ("fingerprint", fingerprint.fingerprint(a))
    assert ew.indicator_key({**a, "provenance.fingerprint": "AB" * 32}) == ("fingerprint", "ab" * 32)


def test_flags():
    fields, sev = ["extra.large_scale"], ["critical"]
    assert ew.is_flagged({"extra.large_scale": True}, fields, "extra.severity", sev) == "extra.large_scale"
    assert ew.is_flagged({"extra.large_scale": "yes"}, fields, "extra.severity", sev) == "extra.large_scale"
    assert ew.is_flagged({"extra.large_scale": False}, fields, "extra.severity", sev) is None
    assert ew.is_flagged({"extra.severity": "Critical"}, fields, "extra.severity", sev) == "extra.severity=critical"
    assert ew.is_flagged({"extra.severity": "high"}, fields, "extra.severity", sev) is None


def C(hub, country, level="GREEN", undisclosed=False, pap=None):
    return ew.Contribution(hub, country, tlp.Level.from_label(level), undisclosed, pap)


def test_tracker_counts_hubs_once_and_expires(tracker):
    key = ("source.ip", "192.0.2.1")
    tracker.record(key, C("de-hub", "DE"), now=1000)
    tracker.record(key, C("de-hub", "DE"), now=1100)       # same hub again: still one
    spread = tracker.record(key, C("fr-hub", "FR"), now=1200)
    assert spread.hubs == {"de-hub", "fr-hub"} and spread.countries == {"DE", "FR"}
    spread = tracker.record(key, C("at-hub", "AT"), now=1000 + 3600 + 150)   # de-hub's reports left the window
    assert spread.hubs == {"fr-hub", "at-hub"}
    assert tracker.claim(key, "spread") and not tracker.claim(key, "spread")
    assert tracker.claim(key, "flag")


def test_warning_is_most_restrictive_and_names_no_undisclosed_source():
    spread = ew.Spread([C("de-hub", "DE", "GREEN", pap="GREEN"), C("fr-hub", "FR", "AMBER", pap="AMBER"),
                        C("at-hub", "AT", "CLEAR", undisclosed=True)])
    w = ew.build_warning("spread", ("source.ip", "192.0.2.1"), spread, "scanner", 86400, "eu-hub", None,
                         include_indicator=True)
    assert w["sharing.tlp"] == "AMBER" and w["tlp"] == "AMBER" and w["sharing.pap"] == "AMBER"
    assert w["extra.contributing_hubs"] == ["de-hub", "fr-hub"]
    assert w["extra.contributing_countries"] == ["DE", "FR"]
    assert w["extra.undisclosed_contributors"] == 1 and w["extra.hub_count"] == 3
    assert "at-hub" not in str(w) and "AT" not in w["comment"]
    assert w["source.ip"] == "192.0.2.1" and w["comment"].startswith("Early warning: same source.ip indicator")
    w = ew.build_warning("spread", ("source.ip", "192.0.2.1"), spread, "scanner", 86400, None, None,
                         include_indicator=False)
    assert "192.0.2.1" not in str(w)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["de-hub", "fr-hub", "at-hub", "it-hub"]),
                          st.sampled_from(["GREEN", "CLEAR", "AMBER"]), st.booleans()), min_size=1, max_size=8))
def test_property_warning_never_names_undisclosed_and_tlp_is_max(inputs):
    countries = {"de-hub": "DE", "fr-hub": "FR", "at-hub": "AT", "it-hub": "IT"}
    spread = ew.Spread([C(h, countries[h], level, dnd) for h, level, dnd in inputs])
    w = ew.build_warning("spread", ("source.ip", "192.0.2.1"), spread, None, 3600, None, None, True)
    assert w["sharing.tlp"] == max((tlp.Level.from_label(l) for _, l, _ in inputs)).label
    hidden = {h for h, _, dnd in inputs if dnd}
    for hub in hidden:
        assert hub not in w["comment"] and hub not in w["extra.contributing_hubs"]
        assert countries[hub] not in w["extra.contributing_countries"]
