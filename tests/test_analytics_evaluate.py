"""analytics.evaluate: matching and metrics on a tiny hand-made truth, the rule-based early warning on the
replay's clock, hostile truth and event files."""
import json

import pytest

from intelmq_crossborder.analytics import alerts, evaluate
from intelmq_crossborder.analytics.alerts import Alert
from intelmq_crossborder.core import inputs

H = 3600
T = 1_767_571_200.0           # 2026-01-05T00:00:00Z


def inc(ident, start, end, kind="scanner", countries=("DE", "FR"), what="surge"):
    return evaluate.Incident(ident, what, T + start * H, T + end * H, kind, tuple(countries))


def alert(start, raised, kind="scanner", countries=("DE",), name="d"):
    return Alert(name, "surge", T + start * H, T + raised * H, kind, countries)


def test_matching_needs_overlap_type_and_a_shared_country():
    i = inc("a", 10, 20)
    assert evaluate.matches(alert(9, 11), i)
    assert evaluate.matches(alert(20, 25), i)                     # touches the end
    assert not evaluate.matches(alert(21, 25), i)                  # after
    assert not evaluate.matches(alert(2, 9), i)                    # before
    assert not evaluate.matches(alert(9, 11, kind="ddos"), i)      # another type
    assert not evaluate.matches(alert(9, 11, countries=("IT",)), i)
    assert evaluate.matches(alert(9, 11, countries=("IT", "FR")), i)


def test_metrics_on_a_hand_made_truth():
    incidents = [inc("a", 10, 20), inc("b", 30, 40, countries=("DE", "FR", "IT")),
                 inc("c", 50, 60, what="campaign", kind="phishing"), inc("d", 70, 80, countries=("AT", "BE", "CZ"))]
    found = [alert(10, 12), alert(11, 13),                         # a: first at +2h
             alert(29, 31, countries=("IT",)),                     # b: raised 1h after its start
             alert(52, 56, kind="phishing", countries=("FR",)),    # c: +6h
             alert(100, 101), alert(120, 121, kind="ddos")]        # two false alarms
    r = evaluate.score("d", found, incidents, weeks=2.0)
    m = r.metrics
    assert r.delays == {"a": 2 * H, "b": 1 * H, "c": 6 * H}
    assert m["recall"] == 0.75 and m["precision"] == round(4 / 6, 4)
    assert m["delay_median_s"] == 2 * H
    assert m["delay_p90_s"] == evaluate.quantile([H, 2 * H, 6 * H], 0.9) == 5.2 * H
    assert m["false_alarms"] == 2 and m["false_alarms_per_week"] == 1.0
    assert m["recall_3plus_countries"] == 0.5
    assert m["by_kind"] == {"surge": {"recall": round(2 / 3, 4), "delay_median_s": 1.5 * H},
                            "campaign": {"recall": 1.0, "delay_median_s": 6 * H}}
    assert m["detected"] == ["a", "b", "c"]


def test_the_delay_runs_from_the_incident_start_and_nothing_found_has_no_delay():
    r = evaluate.score("d", [alert(5, 9)], [inc("a", 8, 20)], weeks=1)     # dated before, raised after
    assert r.delays == {"a": 1.0 * H}
    empty = evaluate.score("d", [], [inc("a", 8, 20)], weeks=1).metrics
    assert empty["recall"] == 0.0 and empty["precision"] is None and empty["delay_median_s"] is None
    assert empty["delay_p90_s"] is None and empty["false_alarms_per_week"] == 0.0


def test_quantile():
    assert evaluate.quantile([], 0.9) is None
    assert evaluate.quantile([5.0], 0.9) == 5.0
    assert evaluate.quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == pytest.approx(9.1)
    assert evaluate.quantile([3, 1, 2], 0.5) == 2


def ev(hour, cc, ip, kind="scanner", **extra):
    e = {"time.source": alerts.iso(T + hour * H), "classification.type": kind, "source.ip": ip,
         "source.geolocation.cc": cc, "provenance.origin_hub": f"hub-{cc.lower()}",
         "provenance.origin_country": cc, "sharing.tlp": "GREEN"}
    e.update(extra)
    return e


def test_the_rule_is_the_early_warning_evaluator_on_the_replay_clock():
    rule = evaluate.RuleDetector()
    assert isinstance(rule, alerts.Detector)
    out = []
    for hour, cc in ((0, "DE"), (1, "FR"), (2, "IT")):
        out += rule.observe(ev(hour, cc, "192.0.2.7"))
    assert len(out) == 1
    a = out[0]
    assert (a.kind, a.countries, a.classification_type, a.start, a.raised) == \
        ("indicator", ("DE", "FR", "IT"), "scanner", T, T + 2 * H)
    assert a.hubs == 3 and a.tlp == "GREEN"
    # the same again within the window: claimed, no second warning; weeks later (replay time): a new one
    assert rule.observe(ev(3, "ES", "192.0.2.7")) == []
    later = []
    for hour, cc in ((500, "DE"), (501, "FR"), (502, "IT")):
        later += rule.observe(ev(hour, cc, "192.0.2.7"))
    assert len(later) == 1 and later[0].start == T + 500 * H
    # two countries are not enough, RED does not count
    quiet = evaluate.RuleDetector()
    assert [a for e in (ev(0, "DE", "198.51.100.1"), ev(1, "FR", "198.51.100.1"),
                        ev(2, "IT", "198.51.100.1", **{"sharing.tlp": "RED"})) for a in quiet.observe(e)] == []
    assert quiet.evaluator.withheld == 1


def test_the_rule_takes_the_early_warning_parameters():
    rule = alerts.detector("rule", {"min_countries": "2", "min_hubs": "0"})
    found = [a for e in (ev(0, "DE", "192.0.2.9"), ev(1, "FR", "192.0.2.9")) for a in rule.observe(e)]
    assert len(found) == 1
    with pytest.raises(ValueError):
        alerts.detector("rule", {"window": "soon"})
    state = json.loads(json.dumps(rule.state()))
    assert alerts.restore(state).settings.min_countries == 2
    with pytest.raises(alerts.StateError):
        alerts.restore({**state, "params": {"window": "soon"}})
    with pytest.raises(alerts.StateError):
        alerts.restore({**state, "params": []})


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


GOOD = {"id": "s1", "kind": "surge", "start": "2026-01-05T10:00:00Z", "end": "2026-01-05T12:00:00+00:00",
        "classification.type": "scanner", "countries": ["de", "FR"]}


@pytest.mark.parametrize("line, field", [
    (b"{nope", None),
    (b"[1, 2]", None),
    (json.dumps({**GOOD, "kind": "storm"}).encode(), "kind"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "end"}).encode(), "end"),
    (json.dumps({**GOOD, "start": "tomorrow"}).encode(), "start"),
    (json.dumps({**GOOD, "start": 5}).encode(), "start"),
    (json.dumps({**GOOD, "end": "2026-01-05T09:00:00Z"}).encode(), "end"),
    (json.dumps({**GOOD, "countries": []}).encode(), "countries"),
    (json.dumps({**GOOD, "countries": "DE"}).encode(), "countries"),
    (json.dumps({**GOOD, "countries": ["DEU"]}).encode(), "countries[0]"),
    (json.dumps({**GOOD, "countries": ["Dе"]}).encode(), "countries[0]"),           # Cyrillic е
    (json.dumps({**GOOD, "classification.type": "scanner "}).encode(), "classification.type"),
    (json.dumps({**GOOD, "classification.type": ["scanner"]}).encode(), "classification.type"),
    (json.dumps({**GOOD, "id": None}).encode(), "id"),
    (json.dumps({**GOOD, "id": True}).encode(), "id"),
    (b'{"id": "a", "id": "b"}', None),
    (b"\xff\xfe{}", None),
    (b'{"id": 1e999999}', None),
    (b"[" * 5000, None),
])
def test_a_bad_truth_line_names_the_file_line_and_field(tmp_path, line, field):
    path = write(tmp_path, "truth.jsonl", [json.dumps(GOOD).encode(), line])
    with pytest.raises(inputs.InputError) as exc:
        evaluate.load_truth(path)
    assert exc.value.line == 2 and str(path) in str(exc.value)
    if field:
        assert exc.value.field == field


def test_truth_ids_are_unique_and_countries_normalised(tmp_path):
    [i] = evaluate.load_truth(write(tmp_path, "t", [json.dumps(GOOD)]))
    assert i.countries == ("DE", "FR") and i.end - i.start == 2 * H
    with pytest.raises(inputs.InputError, match="already on line 1"):
        evaluate.load_truth(write(tmp_path, "t2", [json.dumps(GOOD), "", json.dumps(GOOD)]))
    with pytest.raises(inputs.InputError, match="cannot read"):
        evaluate.load_truth(tmp_path / "missing")


def test_load_events_sorts_and_reports_bad_lines(tmp_path):
    path = write(tmp_path, "events.jsonl", [
        json.dumps(ev(5, "DE", "192.0.2.1")), b"not json", json.dumps([1]), json.dumps(ev(1, "FR", "192.0.2.2")),
        json.dumps({"classification.type": "scanner"}), json.dumps({"time.source": "2026-13-45T00:00:00"}),
        json.dumps({"time.source": ["2026-01-05"]}), b"", json.dumps(ev(1, "IT", "192.0.2.3"))])
    problems = []
    events = evaluate.load_events(path, problems)
    assert [line for _, line, _ in events] == [4, 9, 1]
    assert [(p.line, p.field) for p in problems] == [(2, None), (3, None), (5, "time.source"), (6, "time.source"),
                                                    (7, "time.source")]
    with pytest.raises(inputs.InputError) as exc:
        evaluate.load_events(path)
    assert exc.value.line == 2


def test_evaluate_reports_the_issue_shape_and_refused_lines(tmp_path):
    events = [(T + h * H, h + 1, ev(h, "DE", f"10.0.0.{h % 200}")) for h in range(30)]
    events.append((T + 31 * H, 99, ev(31, "DE", "10.1.1.1", **{"sharing.tlp": "TLP:MAUVE"})))
    problems = []
    report = evaluate.evaluate(events, [inc("a", 10, 12)], ["rule", "surge"], problems=problems, source="x")
    for name in ("rule", "surge"):
        m = report["detectors"][name]
        assert {"precision", "recall", "delay_median_s", "delay_p90_s", "false_alarms_per_week"} <= set(m)
        assert m["refused"] == 1
    assert report["detectors"]["surge"]["versus_rule"]["incidents_both_detect"] == 0
    assert [(p.line, p.field) for p in problems] == [(99, "sharing.tlp")]
    evaluate.write_json(report, tmp_path / "r.json")
    written = json.loads((tmp_path / "r.json").read_text())
    assert set(written["detectors"]) == {"rule", "surge"} and "alerts" not in written
    assert "rule" in evaluate.table(report)


def test_compare_summarises_seeds():
    result = evaluate.compare([1, 2], {"weeks": 2, "countries": 3, "volume": 0.3}, ["rule", "surge-seasonal"])
    assert result["seeds"] == [1, 2] and set(result["per_seed"]) == {"1", "2"}
    recall = result["detectors"]["surge-seasonal"]["recall"]
    values = [result["per_seed"][s]["detectors"]["surge-seasonal"]["recall"] for s in ("1", "2")]
    assert recall["mean"] == pytest.approx(sum(values) / 2, abs=1e-4) and recall["n"] == 2
    assert recall["min"] == min(values) and recall["max"] == max(values)
    assert "surge-seasonal" in evaluate.summary_table(result)


def test_the_replay_tracker_overrides_every_redis_method_of_the_tracker():
    """A new Tracker method that talks to Redis must get a replay version here (redis is None)."""
    import inspect

    from intelmq_crossborder.analytics import early_warning as ew
    public = {name for name, _ in inspect.getmembers(ew.Tracker, inspect.isfunction) if not name.startswith("_")}
    assert public - set(vars(evaluate.ReplayTracker)) == set()


def test_compare_pools_the_incidents_both_detect_over_the_seeds():
    result = evaluate.compare([1, 2, 3], {"weeks": 3}, ["rule", "campaign"])
    mine, theirs = [], []
    for report in result["per_seed"].values():
        own, rule = report["detectors"]["campaign"]["delays_s"], report["detectors"]["rule"]["delays_s"]
        for ident in set(own) & set(rule):
            mine.append(own[ident])
            theirs.append(rule[ident])
    assert mine, "the simulation has campaigns the rule sees (a shared file hash or address)"
    vs = result["detectors"]["campaign"]["versus_rule"]
    import statistics
    assert vs["incidents_both_detect"] == len(mine)
    assert vs["delay_median_s"] == round(statistics.median(mine), 1)
    assert vs["rule_delay_median_s"] == round(statistics.median(theirs), 1)
    assert "versus_rule" not in result["detectors"]["rule"]


@pytest.mark.parametrize("field, value", [("provenance.hub_path", 5), ("provenance.origin_hub", {"a": 1}),
                                          ("provenance.origin_country", ["DE"]), ("sharing.pap", ["RED"])])
def test_the_rule_refuses_a_field_of_a_type_the_harmonization_refuses(field, value):
    with pytest.raises(alerts.EventError) as exc:
        evaluate.RuleDetector().observe({**ev(0, "DE", "192.0.2.1"), field: value})
    assert exc.value.field == field


def test_clean_simulated_data_is_never_refused_and_the_rule_sees_its_campaigns():
    """An interface change in a detector (a new argument of the early warning's tracker, say) must not
    turn into every event being refused."""
    from intelmq_crossborder.analytics import simulate
    events, truth = simulate.simulate(simulate.Settings(seed=2, weeks=3, countries=6))
    timed = [(alerts.event_time(e), i + 1, e) for i, e in enumerate(events)]
    incidents = [evaluate._truth_line(t, "sim", i + 1) for i, t in enumerate(truth)]
    problems = []
    report = evaluate.evaluate(timed, incidents, problems=problems)
    assert problems == []
    for name, m in report["detectors"].items():
        assert m["refused"] == 0, name
        assert m["alerts"] > 0, name
    assert report["detectors"]["rule"]["recall"] > 0
