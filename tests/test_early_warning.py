"""Early-warning library: indicator identity, flags, warning content rules, Redis tracker (in this run's database, tests/isolation.py)."""
import hashlib
import uuid

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.core import tlp
from tests.isolation import REDIS_DB


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


# --- the expert's evaluation, without IntelMQ -------------------------------------------

def report(hub, country, ip="192.0.2.1", label="GREEN", **fields):
    return {"classification.type": "scanner", "source.ip": ip, "sharing.tlp": label,
            "provenance.origin_hub": hub, "provenance.origin_country": country,
            **{k.replace("__", "."): v for k, v in fields.items()}}


def evaluator(tracker, **params):
    return ew.Evaluator(ew.Settings.from_parameters({"hub_id": "eu-hub", **params}), tracker)


def test_evaluator_raises_one_spread_warning_per_window(tracker):
    e = evaluator(tracker)
    assert e.evaluate(report("de-hub", "DE"), now=1000) == []
    assert e.evaluate(report("fr-hub", "FR", label="AMBER"), now=1001) == []
    warning, = e.evaluate(report("at-hub", "AT"), now=1002)
    assert (warning.trigger, warning.level) == ("spread", tlp.Level.AMBER)
    assert warning.fields["extra.contributing_hubs"] == ["at-hub", "de-hub", "fr-hub"]
    assert warning.fields["provenance.origin_hub"] == "eu-hub" and warning.fields["time.observation"]
    assert e.evaluate(report("it-hub", "IT"), now=1003) == []          # claimed for this window


def test_evaluator_withholds_inputs_above_max_tlp_and_reads_every_label(tracker):
    e = evaluator(tracker, min_hubs=2)
    assert e.evaluate(report("de-hub", "DE", extra__tlp="RED"), now=1000) == []     # sharing.tlp GREEN beside RED
    assert e.evaluate(report("fr-hub", "FR", label="AMBER+STRICT"), now=1001) == []
    unlabelled = report("be-hub", "BE")
    del unlabelled["sharing.tlp"]
    assert e.evaluate(unlabelled, now=1002) == []                                # default_tlp RED
    assert e.withheld == 3
    assert e.evaluate(report("at-hub", "AT"), now=1003) == []                    # the first that counts
    with pytest.raises(tlp.LabelError):
        e.evaluate(report("it-hub", "IT", extra__misp_tags=[{"name": "tlp\u200b:red"}]))


def test_evaluator_flag_warns_once_and_without_indicator_by_event_uuid(tracker):
    e = evaluator(tracker, key_fields=["source.fqdn"])
    flagged = report("de-hub", "DE", extra__large_scale=True, provenance__event_uuid="4f0c")
    warning, = e.evaluate(flagged)
    assert warning.trigger == "flag" and warning.fields["extra.early_warning_flag"] == "extra.large_scale"
    assert e.evaluate(flagged) == []                                             # same event uuid: claimed
    no_uuid = report("fr-hub", "FR", extra__severity="critical")
    assert len(e.evaluate(no_uuid)) == len(e.evaluate(no_uuid)) == 1             # nothing to claim it by


def test_settings_take_manager_empty_values_as_unset():
    manager = {name: "" for name in ("min_hubs", "min_countries", "window", "key_fields", "flag_fields",
                                     "severity_field", "severity_values", "max_tlp", "default_tlp",
                                     "include_indicator", "hub_id", "country")}
    assert ew.parameter_problems(manager) == []
    assert ew.Settings.from_parameters(manager) == ew.Settings()
    s = ew.Settings.from_parameters({"min_hubs": "2", "key_fields": "source.ip, source.fqdn", "severity_values": []})
    assert (s.min_hubs, s.key_fields, s.severity_values) == (2, ("source.ip", "source.fqdn"), ())


def test_parameter_problems_name_the_parameter():
    assert "cannot go" in ew.parameter_problems({"max_tlp": "RED"})[0][1]
    assert "window" in ew.parameter_problems({"window": 0})[0][1]
    assert "min_hubs" in ew.parameter_problems({"min_hubs": "many"})[0][1]
    assert ew.parameter_problems({"key_fields": []})[0] == [
        "error", "Parameter key_fields must be a non-empty list of field names."]
    assert ew.parameter_problems({"min_hubs": 0, "min_countries": 0})[0][0] == "warning"
    with pytest.raises(ValueError, match="window"):
        ew.Settings.from_parameters({"window": -5})


def test_most_restrictive_pap_reads_the_policy_spellings():
    assert ew.most_restrictive_pap(["white", "PAP:GREEN", None, "pap:amber "]) == "AMBER"
    assert ew.most_restrictive_pap(["WHITE"]) == "CLEAR"
    assert ew.most_restrictive_pap(["BLUE", ""]) is None


def test_tracker_key_names_stay_as_they_were():
    # state written by an earlier release must still be found: "<prefix><kind>:" + sha256("<field>\0<value>")
    name = ew.Tracker(None, 60, "p:")._key("seen", ("source.ip", "192.0.2.1"))
    assert name == "p:seen:" + hashlib.sha256(b"source.ip\x00192.0.2.1").hexdigest()
