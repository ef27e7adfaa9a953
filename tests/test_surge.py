"""Surge detector (analytics.surge): each model on hand-made series with known answers, TLP and hidden
sources, state across a restart, hostile state and parameters."""
import datetime as dt
import json
import math

import pytest
from hypothesis import strategies as st

from intelmq_crossborder.analytics import alerts, surge
from intelmq_crossborder.core import tlp

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc).timestamp()   # a Monday
H = 3600
DAY = 24 * H


def hour_events(hour, country, n, kind="scanner", tlp_label="GREEN", hub=None, same_source=False, **extra):
    """n events in the given hour (since T0) with distinct source IPs (or one IP)."""
    out = []
    for i in range(n):
        octet = 0 if same_source else i
        ev = {"time.source": alerts.iso(T0 + hour * H + (i * 3599) // max(n, 1)),
              "classification.type": kind, "source.geolocation.cc": country,
              "source.ip": f"10.{hour % 250}.{octet // 250}.{octet % 250}",
              "provenance.origin_hub": hub or f"hub-{country.lower()}", "sharing.tlp": tlp_label}
        ev.update(extra)
        out.append(ev)
    return out


def replay(detector, series, until=None):
    """series: {(hour, country): n or list of events}; feeds them hour by hour; returns the alerts."""
    found = []
    last = max(h for h, _ in series)
    for hour in range(0, last + 1):
        for (h, cc), value in sorted(series.items()):
            if h == hour:
                events = value if isinstance(value, list) else hour_events(h, cc, value)
                for ev in events:
                    found += detector.observe(ev)
    found += detector.advance(T0 + ((until or last + 1) + 1) * H)
    return found


def flat(countries, hours, rate):
    return {(h, cc): rate for h in range(hours) for cc in countries}


def det(model, **params):
    return surge.SurgeDetector(surge.SurgeSettings.from_parameters({"model": model, **params}))


@pytest.mark.parametrize("model", surge.MODELS)
def test_a_flat_series_raises_nothing(model):
    d = det(model)
    assert replay(d, flat(["DE", "FR"], 14 * 24, 3)) == []
    assert d.keys[("scanner", "DE")].n == 14 * 24 + 1          # and the empty hour after


@pytest.mark.parametrize("model", surge.MODELS)
def test_a_surge_in_two_countries_is_one_alert_naming_both_with_its_counts(model):
    series = flat(["DE", "FR", "IT"], 9 * 24, 2)
    surge_hour = 8 * 24 + 10
    for h in range(surge_hour, surge_hour + 3):
        series[(h, "DE")] = 20
        series[(h, "FR")] = 25
    found = replay(detector := det(model), series)
    assert len(found) == 1, found
    a = found[0]
    assert (a.kind, a.classification_type, a.countries, a.detector) == ("surge", "scanner", ("DE", "FR"),
                                                                        f"surge-{model}")
    assert a.start == T0 + surge_hour * H                       # the first anomalous bucket
    assert T0 + surge_hour * H < a.raised <= T0 + (surge_hour + 1) * H   # inside the bucket: early
    ev = a.evidence["countries"]
    assert 1.0 <= ev["DE"]["expected"] <= 3.5 and 1.0 <= ev["FR"]["expected"] <= 3.5
    assert ev["DE"]["observed"] >= 3 and ev["FR"]["observed"] >= 3
    assert a.hubs == 2 and a.undisclosed == 0 and a.tlp == "GREEN"
    assert "IT" not in ev and detector.name == f"surge-{model}"
    assert json.loads(json.dumps(a.as_dict()))["countries"] == ["DE", "FR"]     # JSON-safe, no event content
    assert "10." not in json.dumps(a.as_dict())


@pytest.mark.parametrize("model", surge.MODELS)
def test_one_country_is_a_signal_not_a_cross_border_surge(model):
    series = flat(["DE", "FR"], 9 * 24, 2)
    for h in range(8 * 24 + 10, 8 * 24 + 13):
        series[(h, "DE")] = 30
    d = det(model)
    assert replay(d, series) == []
    assert d.keys[("scanner", "DE")].since is not None or d.keys[("scanner", "DE")].last > 0
    assert len(replay(det(model, min_countries=1), series)) == 1


def test_no_signal_during_the_warm_up():
    series = flat(["DE", "FR"], 3 * 24, 2)
    for h in range(2 * 24, 2 * 24 + 3):
        series[(h, "DE")] = series[(h, "FR")] = 30
    assert replay(det("seasonal"), series) == []
    assert len(replay(det("seasonal", warmup=DAY), series)) == 1


def test_cusum_finds_a_small_sustained_rise_the_threshold_misses():
    series = flat(["DE", "FR"], 9 * 24, 4)
    for h in range(8 * 24, 8 * 24 + 12):
        series[(h, "DE")] = series[(h, "FR")] = 7              # +3 on 4: z = 1.5 each hour
    assert replay(det("seasonal"), series) == []
    found = replay(det("cusum"), series)
    assert len(found) == 1
    # CUSUM adds about (1.5 - 0.5) per hour and crosses h = 3 after three hours (the baseline
    # learns a little of the rise: in the fourth); the alert dates the change from where it left 0
    assert T0 + (8 * 24 + 2) * H < found[0].raised <= T0 + (8 * 24 + 4) * H
    assert found[0].start == T0 + 8 * 24 * H


@pytest.mark.parametrize("model", ["seasonal", "river"])
def test_the_baseline_is_seasonal_by_hour_of_day(model):
    """10/h by day, 1/h by night for two weeks; then 10/h at night in two countries is a surge
    while 10/h by day is not."""
    series = {}
    for h in range(15 * 24):
        for cc in ("DE", "FR"):
            series[(h, cc)] = 10 if 8 <= h % 24 < 20 else 1
    night = 14 * 24 + 2
    quiet = dict(series)
    assert replay(det(model), quiet) == []
    for h in (night, night + 1):
        series[(h, "DE")] = series[(h, "FR")] = 10
    found = replay(det(model), series)
    assert len(found) == 1 and found[0].start == T0 + night * H
    assert found[0].evidence["countries"]["DE"]["expected"] < 3


def test_a_burst_from_one_source_counts_once_unless_events_are_counted():
    series = flat(["DE", "FR"], 9 * 24, 2)
    hour = 8 * 24 + 5
    for cc in ("DE", "FR"):
        series[(hour, cc)] = hour_events(hour, cc, 60, same_source=True)
    assert replay(det("seasonal"), series) == []
    assert len(replay(det("seasonal", count="events"), series)) == 1


def test_tlp_red_does_not_count_and_the_alert_carries_the_most_restrictive_level():
    series = flat(["DE", "FR"], 9 * 24, 2)
    hour = 8 * 24 + 5
    for cc in ("DE", "FR"):
        series[(hour, cc)] = hour_events(hour, cc, 30, tlp_label="RED")
    d = det("seasonal")
    assert replay(d, series) == []
    assert d.withheld == 60
    series[(hour, "DE")] = hour_events(hour, "DE", 30)
    series[(hour, "FR")] = hour_events(hour, "FR", 1, tlp_label="AMBER") + hour_events(hour, "FR", 29)
    found = replay(det("seasonal"), series)
    assert len(found) == 1 and found[0].tlp == "AMBER"
    unlabelled = [{k: v for k, v in e.items() if k != "sharing.tlp"} for e in hour_events(hour, "DE", 30)]
    d = det("seasonal")
    replay(d, {**series, (hour, "DE"): unlabelled})
    assert d.withheld == 30                       # unlabelled counts as default_tlp RED


def test_a_country_reported_only_by_hidden_sources_counts_but_is_not_named():
    series = flat(["DE", "FR", "IT"], 9 * 24, 2)
    hour = 8 * 24 + 5
    series[(hour, "DE")] = 30
    series[(hour, "FR")] = hour_events(hour, "FR", 30, hub="hub-secret", **{"sharing.do_not_disclose_source": True})
    found = replay(det("seasonal"), series)
    assert len(found) == 1
    a = found[0]
    assert a.countries == ("DE",) and a.evidence["undisclosed_countries"] == 1
    assert a.hubs == 2 and a.undisclosed == 1
    assert "hub-secret" not in json.dumps(a.as_dict()) and "FR" not in json.dumps(a.as_dict())


def test_unreadable_labels_and_bad_fields_are_refused_naming_the_field():
    d = det("seasonal")
    good = hour_events(0, "DE", 1)[0]
    with pytest.raises(tlp.LabelError):
        d.observe({**good, "sharing.tlp": "TLP:PURPLE"})
    with pytest.raises(alerts.EventError) as exc:
        d.observe({**good, "classification.type": ["scanner"]})
    assert exc.value.field == "classification.type"
    for bad in ({k: v for k, v in good.items() if k != "time.source"}, {**good, "time.source": "yesterday"},
                {**good, "time.source": 5}, {**good, "time.source": "9" * 5000}):
        with pytest.raises(alerts.EventError):
            d.observe(bad)
    with pytest.raises(alerts.EventError):
        d.observe(good, now=T0 - 2 * DAY)                         # dated in the future of the clock
    assert d.keys == {}
    for cc in ("D\u0415", "DEU", "1A", "D"):                         # a Cyrillic E, not a country code
        assert d.observe({**good, "source.geolocation.cc": cc}) == []
    assert d.keys == {} and d.uncounted == 4


def test_a_long_gap_is_not_replayed_hour_by_hour():
    d = det("seasonal")
    d.observe(hour_events(0, "DE", 1)[0])
    assert d.advance(T0 + 10 * 365 * DAY) == []                    # ten years: no hang
    assert d.keys[("scanner", "DE")].n == 1


def test_memory_is_bounded_by_max_keys():
    d = det("seasonal", max_keys=2)
    for cc in ("DE", "FR", "IT", "ES"):
        d.observe(hour_events(0, cc, 1)[0])
    assert len(d.keys) == 2 and d.dropped == 2


@pytest.mark.parametrize("model", surge.MODELS)
def test_state_survives_a_restart_and_gives_the_same_alerts(model):
    series = flat(["DE", "FR"], 9 * 24, 2)
    for h in range(8 * 24 + 10, 8 * 24 + 12):
        series[(h, "DE")] = series[(h, "FR")] = 20
    whole = replay(det(model), series)
    first = det(model)
    early = {k: v for k, v in series.items() if k[0] < 8 * 24 + 10}
    later = {k: v for k, v in series.items() if k[0] >= 8 * 24 + 10}
    for (h, cc), n in sorted(early.items()):
        for ev in hour_events(h, cc, n):
            first.observe(ev)
    saved = json.loads(json.dumps(first.state()))
    second = alerts.restore(saved)
    assert isinstance(second, surge.SurgeDetector) and second.state() == saved
    found = []
    for hour in range(8 * 24 + 10, 9 * 24):
        for (h, cc), n in sorted(later.items()):
            if h == hour:
                for ev in hour_events(h, cc, n):
                    found += second.observe(ev)
    found += second.advance(T0 + (9 * 24 + 1) * H)
    assert [a.as_dict() for a in found] == [a.as_dict() for a in whole]


def _state():
    d = det("cusum")
    replay(d, flat(["DE"], 30, 2))
    d.observe(hour_events(30, "DE", 1)[0])
    return json.loads(json.dumps(d.state()))


@pytest.mark.parametrize("path, value, field", [
    (("version",), 99, "version"),
    (("settings", "model"), "magic", "settings"),
    (("settings", "surprise"), 1, "settings.surprise"),
    (("clock",), "now", "clock"),
    (("clock",), math.inf, "clock"),
    (("counters", "late"), -1, "counters.late"),
    (("keys",), {"a": 1}, "keys"),
    (("keys", 0), ["scanner", "DE"], "keys[0]"),
    (("keys", 0, 2, "hod"), [1.0] * 23, "keys[0].hod"),
    (("keys", 0, 2, "hod"), [1.0] * 23 + ["x"], "keys[0].hod[23]"),
    (("keys", 0, 2, "level"), True, "keys[0].level"),
    (("keys", 0, 2, "n"), 1.5, "keys[0].n"),
    (("keys", 0, 2, "sig_level"), 9, "keys[0].sig_level"),
    (("keys", 0, 2, "open", "indicators"), [1, 2], "keys[0].open.indicators"),
    (("keys", 0, 2, "open", "hubs"), "hub", "keys[0].open.hubs"),
    (("keys", 0, 2, "weights"), {"h1": "x"}, "keys[0].weights.h1"),
])
def test_a_bad_state_is_refused_naming_the_field(path, value, field):
    state = _state()
    target = state
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(alerts.StateError) as exc:
        alerts.restore(state)
    assert exc.value.field == field, str(exc.value)


@pytest.mark.parametrize("state", [None, [], "x", {"name": "nope"}, {"name": "surge-cusum"},
                                   {"name": "surge-cusum", "version": 1}])
def test_a_state_that_is_not_one_is_refused(state):
    with pytest.raises(alerts.StateError):
        alerts.restore(state)


def test_a_missing_key_is_named():
    state = _state()
    del state["keys"][0][2]["phi"]
    with pytest.raises(alerts.StateError, match="keys\\[0\\].phi: missing"):
        alerts.restore(state)


@pytest.mark.parametrize("params, wanted", [
    ({}, []),
    ({"bucket": "", "window": "", "sensitivity": "", "model": ""}, []),       # IntelMQ Manager's unset
    ({"bucket": "abc"}, ["error"]),
    ({"bucket": 10}, ["error"]),
    ({"bucket": True}, ["error"]),
    ({"min_countries": 0}, ["error"]),
    ({"min_countries": "1"}, ["warning"]),
    ({"sensitivity": "nan"}, ["error"]),
    ({"sensitivity": "1e400"}, ["error"]),
    ({"sensitivity": 0.1}, ["error"]),
    ({"model": "neural"}, ["error"]),
    ({"count": "bytes"}, ["error"]),
    ({"max_tlp": "RED"}, ["error"]),
    ({"max_tlp": "AMBER+STRICT"}, ["error"]),
    ({"default_tlp": "PURPLE"}, ["error"]),
    ({"window": 600}, ["warning"]),
    ({"warmup": "9" * 80}, ["error"]),
])
def test_parameter_problems(params, wanted):
    assert [level for level, _ in surge.parameter_problems(params)] == wanted


def test_settings_from_parameters_reads_manager_strings():
    s = surge.SurgeSettings.from_parameters({"bucket": "1800", "sensitivity": "3.5", "model": " river ",
                                             "min_countries": "", "count": "events"})
    assert (s.bucket, s.threshold, s.model, s.min_countries, s.count) == (1800, 3.5, "river", 2, "events")
    assert surge.SurgeSettings().threshold == surge.DEFAULT_SENSITIVITY[surge.BEST_MODEL]
    with pytest.raises(ValueError, match="bucket"):
        surge.SurgeSettings.from_parameters({"bucket": "x"})


def test_the_registry_builds_every_surge_detector():
    for name in ("surge", "surge-seasonal", "surge-cusum", "surge-river"):
        d = alerts.detector(name)
        assert isinstance(d, alerts.Detector) and d.name == name
    assert alerts.detector("surge").settings.model == surge.BEST_MODEL
    with pytest.raises(ValueError, match="unknown detector"):
        alerts.detector("nope")


@pytest.mark.parametrize("model", surge.MODELS)
def test_the_baseline_is_seasonal_by_day_of_week(model):
    """6/h on weekdays, 1/h at weekends for three weeks: then 6/h on a Saturday in two countries is a
    surge, while the same on a Monday is not."""
    def week_series(weeks, override=None):
        series = {}
        for h in range(weeks * 7 * 24):
            for cc in ("DE", "FR"):
                series[(h, cc)] = 6 if (h // 24) % 7 < 5 else 1
        series.update(override or {})
        return series
    saturday = 21 * 24 + 5 * 24 + 10               # week 4 (T0 is a Monday)
    monday = 21 * 24 + 10
    assert replay(det(model), week_series(4)) == []
    busy = {(h, cc): 6 for h in (saturday, saturday + 1) for cc in ("DE", "FR")}
    found = replay(det(model), week_series(4, busy))
    assert len(found) == 1 and found[0].start <= T0 + saturday * H
    assert replay(det(model), week_series(4, {(h, cc): 6 for h in (monday, monday + 1)
                                              for cc in ("DE", "FR")})) == []


def test_with_the_bots_clock_late_events_count_in_the_open_bucket():
    d = det("seasonal")
    now = T0 + 5 * H + 600
    d.advance(now)
    late = hour_events(2, "DE", 3)                             # three hours late
    for ev in late:
        d.observe(ev, now=now)
    assert d.late == 3 and d.keys[("scanner", "DE")].open.events == 3
    early = hour_events(5, "DE", 1)[0]
    early["time.source"] = alerts.iso(now + 1800)              # 30 min ahead of the bot's clock: dated now
    d.observe(early, now=now)
    assert d.clock == T0 + 5 * H and d.keys[("scanner", "DE")].open.events == 4


# --- hostile states (tests/hostile.py): any value of the wrong type anywhere ------------------------

from hypothesis import given  # noqa: E402

from tests import hostile  # noqa: E402


def _busy_state(model):
    d = det(model, warmup=H)
    series = flat(["DE", "FR"], 30, 2)
    series[(29, "DE")] = series[(29, "FR")] = 20
    replay(d, series, until=29)
    d.observe(hour_events(31, "DE", 2)[0])
    return json.loads(json.dumps(d.state()))


STATES = {model: _busy_state(model) for model in surge.MODELS}


@pytest.mark.fuzz
@hostile.hostile_settings(150)
@given(model=st.sampled_from(surge.MODELS), data=st.data())
def test_a_hostile_state_is_refused_or_works(model, data):
    state = data.draw(hostile.wrong_types(STATES[model]))
    try:
        d = alerts.restore(state)
    except alerts.StateError:
        return
    # accepted: it must work like a state it could have saved
    d.observe(hour_events(40, "FR", 1)[0])
    d.advance(T0 + 60 * H)
    json.dumps(d.state(), allow_nan=False)
