"""demo.analytics: the demo's surge, seeded baseline, feed file and the summary the report prints."""
import json

from intelmq_crossborder.analytics import stage as analytics_stage
from intelmq_crossborder.demo import analytics as demo


#: a fixed "now" (Monday 2026-11-30 15:03 UTC): the files and the detectors' answers are deterministic
NOW = 1796051000.0


def replay(tmp_path, feed, now, surge=True):
    stage = analytics_stage.AnalyticsStage.from_parameters(demo.EXPERT_PARAMETERS)
    assert analytics_stage.load_state(stage, tmp_path / "state.json") == []
    journal = analytics_stage.AlertJournal(tmp_path / "alerts.jsonl")
    for line in feed.read_text().splitlines():
        event = json.loads(line)
        event["sharing.tlp"] = event.pop("tlp")
        alerts, _ = stage.observe(event, now)
        for alert in alerts:
            journal.append(alert, stage.series_of(alert))
    return tmp_path / "alerts.jsonl"


def test_the_injected_surge_is_detected_with_its_delay(tmp_path):
    now = NOW
    assert demo.seed_state(tmp_path / "state.json", now) > 5000
    injected = demo.write_feed(tmp_path / "feed.jsonl", now)
    assert injected["countries"] == ["AT", "DE"] and injected["start"] < now
    journal = replay(tmp_path, tmp_path / "feed.jsonl", now)
    result = demo.summarise(journal, injected)
    assert result["detected"], result["line"]
    assert 0 < result["delay_s"] <= demo.SURGE_HOURS * 3600
    assert "detected" in result["line"] and "after it began" in result["line"]
    assert result["observed"] > result["expected"]


def test_background_alone_raises_nothing(tmp_path):
    now = NOW
    demo.seed_state(tmp_path / "state.json", now)
    feed_start, surge_start, end = demo._window(now)
    events = demo.background(feed_start, end, seed=5)
    path = tmp_path / "feed.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    journal = replay(tmp_path, path, now)
    result = demo.summarise(journal, {"type": demo.SURGE_TYPE, "countries": list(demo.COUNTRIES),
                                      "start": surge_start})
    assert not result["detected"] and "NOT detected" in result["line"]


def test_the_feed_is_what_the_demo_parser_reads(tmp_path):
    injected = demo.write_feed(tmp_path / "feed.jsonl", NOW)
    lines = (tmp_path / "feed.jsonl").read_text().splitlines()
    assert len(lines) == injected["events"]
    for line in lines:
        event = json.loads(line)
        assert set(event) == {"feed.name", "classification.type", "classification.taxonomy", "source.ip",
                              "source.geolocation.cc", "tlp", "time.source"}


def test_the_report_shows_the_surge_with_its_plot(tmp_path):
    demo.seed_state(tmp_path / "state.json", NOW)
    injected = demo.write_feed(tmp_path / "feed.jsonl", NOW)
    journal = replay(tmp_path, tmp_path / "feed.jsonl", NOW)
    day = demo._dt.datetime.fromtimestamp(NOW, demo._dt.timezone.utc).date().isoformat()
    page = demo.write_report(journal, tmp_path / "report", day=day).read_text()
    section = page[page.index("Surges and campaigns detected"):page.index("<h2>Contributions")]
    assert "ddos" in section and "AT, DE" in section and section.count("<img") == 1
    assert demo.summarise(journal, injected)["detected"]
