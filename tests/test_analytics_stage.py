"""analytics.stage: the analytics expert's library (parameters, hostile events, state, journal)."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intelmq_crossborder.analytics import stage as analytics_stage
from intelmq_crossborder.analytics.alerts import Alert, EventError, StateError
from intelmq_crossborder.core import tlp
from tests import hostile

EVENT = {"time.source": "2026-11-30T12:00:00+00:00", "classification.type": "phishing",
         "classification.taxonomy": "fraud", "source.ip": "185.220.101.7", "source.asn": 64500,
         "source.fqdn": "login.evil-shop.com", "source.url": "http://login.evil-shop.com/x",
         "malware.hash.sha256": "ab" * 32, "malware.name": "darkgate", "product.vulnerabilities": "CVE-2026-1234",
         "source.geolocation.cc": "DE", "provenance.origin_hub": "hub-de", "provenance.origin_country": "DE",
         "provenance.hub_path": "hub-de", "sharing.tlp": "GREEN", "sharing.pap": "GREEN",
         "extra.cve": ["CVE-2026-1234"]}


def test_parameters_split_with_their_prefix():
    split = analytics_stage.detector_parameters({"surge_window": 7200, "campaign_window": 3600, "max_tlp": "GREEN",
                                                 "hub_id": "x", "surge_model": ""})
    assert split["surge"] == {"window": 7200, "model": "", "max_tlp": "GREEN"}
    assert split["campaign"] == {"window": 3600, "max_tlp": "GREEN"}


def test_problems_name_the_expert_parameter():
    problems = analytics_stage.parameter_problems({"surge_window": "x", "campaign_window": "x"})
    texts = " ".join(t for _, t in problems)
    assert "surge_window" in texts and "campaign_window" in texts
    assert analytics_stage.parameter_problems({"detectors": "surge"}) == []
    assert analytics_stage.parameter_problems({"detectors": []})[0][0] == "error"


def test_one_detector_only():
    stage = analytics_stage.AnalyticsStage.from_parameters({"detectors": "campaign"})
    assert list(stage.detectors) == ["campaign"]
    assert stage.observe(EVENT) == ([], None)


@hostile.hostile_settings(150)
@given(data=st.data())
def test_hostile_events_are_refused_naming_a_field_or_counted(data):
    """Wrong JSON types in any field: an EventError or LabelError naming a field, never another exception."""
    event = data.draw(hostile.wrong_types(EVENT))
    stage = analytics_stage.AnalyticsStage.from_parameters({"campaign_warmup": 0})
    try:
        stage.observe(event, 1_800_000_000.0)
    except (EventError, tlp.LabelError) as exc:
        assert exc.field
    except AttributeError:
        assert not isinstance(event, dict), "only a whole event that is not a mapping may fail otherwise"
    json.dumps(stage.state(), allow_nan=False)


@pytest.mark.parametrize("field,value", [("source.ip", "1.2.3.4.5"), ("source.asn", "ASx"),
                                         ("malware.hash.sha256", "zz"), ("source.geolocation.cc", "Germany"),
                                         ("time.source", "yesterday"), ("time.source", "9999-12-31T23:59:59+00:00")])
def test_bad_values_are_named(field, value):
    stage = analytics_stage.AnalyticsStage.from_parameters({})
    with pytest.raises(EventError) as info:
        stage.observe({**EVENT, field: value}, 1_800_000_000.0)
    assert info.value.field == field


def test_state_round_trip_and_changed_parameters(tmp_path):
    stage = analytics_stage.AnalyticsStage.from_parameters({"campaign_warmup": 0})
    for cc, ip in (("DE", "185.220.101.1"), ("FR", "185.220.101.2")):
        stage.observe({**EVENT, "source.geolocation.cc": cc, "source.ip": ip, "provenance.origin_hub": f"hub-{cc}"})
    path = tmp_path / "state.json"
    stage.save(path)
    again = analytics_stage.AnalyticsStage.from_parameters({"campaign_warmup": 0})
    assert analytics_stage.load_state(again, path) == []
    assert again.state()["detectors"] == stage.state()["detectors"]
    changed = analytics_stage.AnalyticsStage.from_parameters({"campaign_warmup": 0, "surge_window": 7200})
    notes = analytics_stage.load_state(changed, path)
    assert len(notes) == 1 and "surge" in notes[0] and "changed" in notes[0]
    assert changed.detectors["campaign"].state() == stage.detectors["campaign"].state()


@pytest.mark.parametrize("raw,field", [
    (b'{"name": "analytics-stage", "version": 1, "detectors": []}', "detectors"),
    (b'{"name": "other", "version": 1, "detectors": {}}', "name"),
    (b'{"name": "analytics-stage", "version": 2, "detectors": {}}', "version"),
])
def test_bad_states_are_named(tmp_path, raw, field):
    path = tmp_path / "state.json"
    path.write_bytes(raw)
    with pytest.raises(StateError) as info:
        analytics_stage.load_state(analytics_stage.AnalyticsStage.from_parameters({}), path)
    assert info.value.field == field


def test_journal_round_trip(tmp_path):
    journal = analytics_stage.AlertJournal(tmp_path / "sub" / "alerts.jsonl")
    alert = Alert("campaign", "campaign", 1.0, 2.0, "phishing", ("DE",), {"campaign_id": "c"}, hubs=2, tlp="GREEN")
    journal.append(alert, {"DE": [[0.0, 1, 0.5]]}, sent=False)
    (record, problem), = list(analytics_stage.read_journal(journal.path))
    assert problem is None and record["alert"] == alert.as_dict() and record["sent"] is False
    assert record["series"] == {"DE": [[0.0, 1, 0.5]]}
    assert (journal.path.stat().st_mode & 0o777) == 0o640


def test_a_surge_series_ends_with_the_bucket_it_was_raised_in():
    stage = analytics_stage.AnalyticsStage.from_parameters(
        {"detectors": "surge", "surge_bucket": 60, "surge_warmup": 600, "surge_model": "seasonal",
         "surge_sensitivity": 3, "surge_window": 600})
    start, n, alerts = 1_790_000_040.0, 0, []
    for bucket in range(22):
        for country in ("DE", "FR"):
            for j in range(1 if bucket < 15 else 12):
                n += 1
                event = {**EVENT, "classification.type": "ddos", "source.geolocation.cc": country,
                         "source.ip": f"185.{n // 65536}.{n // 256 % 256}.{n % 256}",
                         "time.source": alerts_iso(start + 60 * bucket + j)}
                for key in ("source.fqdn", "source.url", "malware.hash.sha256", "product.vulnerabilities", "extra.cve"):
                    event.pop(key)
                found = stage.observe(event)[0]
                if found:                               # as the expert journals it: at once
                    series = stage.series_of(found[0])
                alerts += found
    assert len(alerts) == 1
    assert sorted(series) == ["DE", "FR"]
    last = series["DE"][-1]
    assert last[0] == alerts[0].start and last[1] > last[2], "the surge's own bucket, above what was expected"
    assert all(p[1] <= 2 for p in series["DE"][:-1]), "the buckets before it"


def alerts_iso(seconds):
    from intelmq_crossborder.analytics.alerts import iso
    return iso(seconds)
