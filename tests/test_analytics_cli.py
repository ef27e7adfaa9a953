"""intelmq-crossborder analytics simulate / evaluate / compare: output, exit codes, hostile files."""
import json

import pytest

from tests.clirun import run

SIM = ["--weeks", "2", "--countries", "4", "--volume", "0.5"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("analytics")
    from intelmq_crossborder.analytics import simulate
    simulate.write(simulate.Settings(seed=5, weeks=2, countries=4, volume=0.5), d / "e.jsonl", d / "t.jsonl")
    return d / "e.jsonl", d / "t.jsonl"


def test_simulate_writes_the_same_pair_for_a_seed(tmp_path, capsys):
    args = ["analytics", "simulate", "--seed", "5", *SIM]
    status, out, _ = run(args + ["--out-events", str(tmp_path / "e"), "--out-truth", str(tmp_path / "t")], capsys)
    assert status == 0 and "incidents (seed 5, 2 weeks)" in out
    run(args + ["--out-events", str(tmp_path / "e2"), "--out-truth", str(tmp_path / "t2")], capsys)
    assert (tmp_path / "e").read_bytes() == (tmp_path / "e2").read_bytes()
    assert (tmp_path / "t").read_bytes() == (tmp_path / "t2").read_bytes()


@pytest.mark.parametrize("extra", [["--weeks", "0"], ["--seed", "-1"], ["--countries", "1"], ["--volume", "nan"],
                                   ["--weeks", "2", "--warmup-weeks", "2"],
                                   ["--weeks", "52", "--volume", "20", "--countries", "12"]])
def test_simulate_usage_errors(tmp_path, capsys, extra):
    status, _, err = run(["analytics", "simulate", *extra, "--out-events", str(tmp_path / "e"),
                          "--out-truth", str(tmp_path / "t")], capsys)
    assert status == 2 and err


def test_simulate_into_a_directory_or_nowhere(tmp_path, capsys):
    status, _, err = run(["analytics", "simulate", *SIM, "--out-events", str(tmp_path), "--out-truth",
                          str(tmp_path / "t")], capsys)
    assert status == 2 and "is a directory" in err
    (tmp_path / "file").write_text("x")
    status, _, err = run(["analytics", "simulate", *SIM, "--out-events", str(tmp_path / "file" / "e"),
                          "--out-truth", str(tmp_path / "t")], capsys)
    assert status == 2 and "cannot write" in err


def test_evaluate_prints_every_detector_and_writes_the_issue_json(pair, tmp_path, capsys):
    events, truth = pair
    status, out, err = run(["analytics", "evaluate", "--events", str(events), "--truth", str(truth),
                            "--detector", "rule", "--detector", "surge", "--json", str(tmp_path / "r.json"),
                            "--alerts", str(tmp_path / "a.jsonl")], capsys)
    assert status == 0, err
    assert out.splitlines()[0].split()[:3] == ["detector", "precision", "recall"]
    assert any(line.startswith("rule ") for line in out.splitlines())
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["detectors"]) == {"rule", "surge"}
    for m in report["detectors"].values():
        assert {"precision", "recall", "delay_median_s", "delay_p90_s", "false_alarms_per_week"} <= set(m)
    alerts = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert {a["detector"] for a in alerts} <= {"rule", "surge"}
    assert len(alerts) == sum(m["alerts"] for m in report["detectors"].values())


def test_evaluate_parameters(pair, capsys):
    events, truth = pair
    base = ["analytics", "evaluate", "--events", str(events), "--truth", str(truth), "--detector", "surge"]
    status, out, _ = run(base + ["--param", "surge.min_countries=3", "--param", "surge.model=seasonal"], capsys)
    assert status == 0 and "surge" in out
    for bad in (["--param", "surge.bucket=soon"], ["--param", "nobody.x=1"], ["--param", "surge=1"],
                ["--detector", "magic"]):
        status, _, err = run(base + bad, capsys)
        assert status == 2 and err, bad


def test_evaluate_missing_and_unreadable_inputs(pair, tmp_path, capsys):
    events, truth = pair
    for args in (["--events", str(tmp_path / "missing"), "--truth", str(truth)],
                 ["--events", str(events), "--truth", str(tmp_path)]):
        status, _, err = run(["analytics", "evaluate", *args], capsys)
        assert status == 2 and "intelmq-crossborder: error:" in err


@pytest.mark.parametrize("content", [b"{not json\n", b'{"id": "x"}\n', b"\xff\xfe\n", b'[1]\n',
                                     b'{"id": "a", "id": "a"}\n'])
def test_a_bad_truth_file_exits_1_naming_the_line(pair, tmp_path, capsys, content):
    events, truth = pair
    bad = tmp_path / "truth.jsonl"
    bad.write_bytes(truth.read_bytes().splitlines(keepends=True)[0] + content)
    status, out, err = run(["analytics", "evaluate", "--events", str(events), "--truth", str(bad)], capsys)
    assert status == 1 and f"{bad}:2" in err and out == ""


def test_bad_event_lines_are_named_skipped_and_exit_1(pair, tmp_path, capsys):
    events, truth = pair
    bad = tmp_path / "events.jsonl"
    lines = events.read_bytes().splitlines(keepends=True)[:300]
    bad.write_bytes(b"".join(lines[:10]) + b"garbage\n" + b'{"time.source": 7}\n' +
                    b'{"time.source": "2026-01-05T10:00:00Z", "classification.type": "scanner", '
                    b'"sharing.tlp": "TLP:PINK"}\n' + b"".join(lines[10:]))
    status, out, err = run(["analytics", "evaluate", "--events", str(bad), "--truth", str(truth),
                            "--detector", "surge-seasonal", "--json", str(tmp_path / "r.json")], capsys)
    assert status == 1
    assert "surge-seasonal" in out and (tmp_path / "r.json").exists()
    assert f"{bad}:11" in err and f"{bad}:12: field time.source" in err and f"{bad}:13: field sharing.tlp" in err
    assert "3 event line(s)" in err


def test_evaluate_an_empty_events_file(pair, tmp_path, capsys):
    _, truth = pair
    (tmp_path / "empty").write_bytes(b"")
    status, out, _ = run(["analytics", "evaluate", "--events", str(tmp_path / "empty"), "--truth", str(truth),
                          "--detector", "rule"], capsys)
    assert status == 0 and "0 events" in out


def test_compare(tmp_path, capsys):
    status, out, err = run(["analytics", "compare", "--seeds", "1-2", "--weeks", "2", "--detector", "rule",
                            "--json", str(tmp_path / "c.json")], capsys)
    assert status == 0, err
    assert "mean ± sd" in out and "rule" in out
    assert json.loads((tmp_path / "c.json").read_text())["seeds"] == [1, 2]
    for seeds in ("a-b", "5-1", "1-99", "", "1,,2"):
        status, _, err = run(["analytics", "compare", "--seeds", seeds], capsys)
        assert status == 2 and err, seeds


# --- hostile files (tests/hostile.py): any line, any field of any type --------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests import hostile  # noqa: E402

TRUTH_LINE = {"id": "s1", "kind": "surge", "start": "2026-01-19T10:00:00Z", "end": "2026-01-19T12:00:00Z",
              "classification.type": "scanner", "countries": ["DE", "FR"]}
EVENT_LINE = {"time.source": "2026-01-19T10:30:00+00:00", "classification.type": "scanner",
              "source.geolocation.cc": "DE", "provenance.origin_hub": "hub-de", "provenance.origin_country": "DE",
              "source.ip": "192.0.2.1", "sharing.tlp": "GREEN", "extra.list": [1, {"a": "b"}]}


def _hostile_run(tmp, truth_lines, event_lines):
    (tmp / "t").write_bytes(b"\n".join(truth_lines) + b"\n")
    (tmp / "e").write_bytes(b"\n".join(event_lines) + b"\n")
    with hostile.guard(60):
        result = hostile.run_cli(["analytics", "evaluate", "--events", tmp / "e", "--truth", tmp / "t",
                                  "--detector", "rule", "--detector", "surge", "--detector", "surge-river",
                                  "--detector", "campaign"])
    hostile.assert_clean(result, {0, 1})
    return result


@pytest.mark.fuzz
@hostile.hostile_settings(25)
@given(data=st.data())
def test_hostile_truth_and_event_lines(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("hostile-analytics")
    good_truth, good_event = json.dumps(TRUTH_LINE).encode(), json.dumps(EVENT_LINE).encode()
    if data.draw(st.booleans()):
        bad = data.draw(hostile.injected(TRUTH_LINE))
        result = _hostile_run(tmp, [good_truth, bad], [good_event])
        assert result.code == 1 and ":2" in result.err
    else:
        bad = data.draw(hostile.injected(EVENT_LINE))
        _hostile_run(tmp, [good_truth], [good_event, bad, good_event])


@pytest.mark.fuzz
@hostile.hostile_settings(60)
@given(field=st.sampled_from(sorted(EVENT_LINE) + [
    "sharing.do_not_disclose_source", "time.observation", "provenance.hub_path", "sharing.pap", "provenance.event_uuid",
    "provenance.fingerprint", "extra.large_scale", "extra.severity", "extra.incident_id", "malware.hash.sha256",
    "source.url", "source.fqdn", "product.vulnerabilities", "source.asn", "malware.name"]),
       value=hostile.WRONG_TYPES, truth_field=st.sampled_from(sorted(TRUTH_LINE)), truth_value=hostile.WRONG_TYPES)
def test_wrong_types_in_any_field(tmp_path_factory, field, value, truth_field, truth_value):
    tmp = tmp_path_factory.mktemp("types-analytics")
    events = [json.dumps({**EVENT_LINE, field: value}).encode(), json.dumps(EVENT_LINE).encode()]
    _hostile_run(tmp, [json.dumps(TRUTH_LINE).encode()], events)
    truth = json.dumps({**TRUTH_LINE, truth_field: truth_value}).encode()
    _hostile_run(tmp, [truth], events)
