"""The daily report's section of surges and campaigns (analytics.report_detections): TLP-capped, a plot per surge."""
import base64
import json
from datetime import datetime, timezone

import pytest

from intelmq_crossborder.analytics import contributions as cb
from intelmq_crossborder.analytics import report, report_detections
from intelmq_crossborder.analytics.alerts import Alert
from intelmq_crossborder.analytics.stage import AlertJournal
from intelmq_crossborder.core import tlp

DAY = "2026-11-30"
NOON = datetime(2026, 11, 30, 12, tzinfo=timezone.utc).timestamp()


def surge(level="GREEN", raised=NOON, start=NOON - 7200):
    return Alert("surge", "surge", start, raised, "ddos", ("DE", "FR"),
                 {"model": "cusum", "count": "indicators", "bucket_s": 3600, "window_s": 21600,
                  "countries": {"DE": {"expected": 4.0, "observed": 31, "since": start},
                                "FR": {"expected": 3.5, "observed": 22, "since": start}},
                  "expected": 7.5, "observed": 53, "undisclosed_countries": 1}, hubs=3, undisclosed=1, tlp=level)


def campaign(level="AMBER", raised=NOON + 600):
    return Alert("campaign", "campaign", NOON - 3600, raised, "phishing", ("AT", "IT", "PL"),
                 {"campaign_id": "campaign-0123456789abcdef0123", "observed_countries": 3, "min_countries": 3,
                  "observed_hubs": 3, "min_hubs": 3, "events": 17, "keys": 4}, hubs=3, undisclosed=0, tlp=level)


SERIES = {"DE": [[NOON - 3600 * i, 4 if i > 2 else 30, 4.0] for i in range(8, 0, -1)],
          "FR": [[NOON - 3600 * i, 3 if i > 2 else 20, 3.5] for i in range(8, 0, -1)]}


@pytest.fixture
def journal(tmp_path):
    path = tmp_path / report_detections.JOURNAL_NAME
    j = AlertJournal(path)
    j.append(surge(), SERIES)
    j.append(campaign())
    j.append(surge(level="RED", raised=NOON + 1200))
    j.append(surge(level=None, raised=NOON + 1300), sent=False)
    j.append(surge(raised=NOON - 3 * 86400))                        # before the period
    with open(path, "a") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({"alert": {"kind": "surge", "start": "yesterday"}}) + "\n")
    return path


def test_green_report_shows_only_what_green_readers_may_see(journal):
    data = report_detections.collect(journal, "2026-11-30", DAY, tlp.Level.GREEN)
    assert [r["alert"]["kind"] for r in data.alerts] == ["surge"]
    assert data.withheld == 3, "AMBER, RED and the alert without a level"
    assert len(data.problems) == 2 and all(str(journal) in p for p in data.problems)
    page = report_detections.render_section(data, tlp.Level.GREEN)
    assert "Surges and campaigns detected" in page
    assert "campaign-0123456789abcdef0123" not in page and "phishing" not in page
    assert "withheld" not in page and "above" not in page, "nothing says that something above the ceiling exists"
    assert "DE, FR (+1 not named)" in page
    assert "2h00m" in page, "the delay from the start of the activity"
    assert "7.5 / 53" in page
    assert "2 line(s) of the alert journal could not be read" in page
    images = page.count("<img")
    assert images == 1, "one plot per surge"


def test_amber_report_shows_the_campaign(journal):
    data = report_detections.collect(journal, "2026-11-30", DAY, tlp.Level.AMBER)
    assert [r["alert"]["kind"] for r in data.alerts] == ["surge", "campaign"]
    page = report_detections.render_section(data, tlp.Level.AMBER)
    assert "campaign-0123456789abcdef0123" in page and "AT, IT, PL" in page and "17 events" in page


def test_the_plot_is_a_png_with_and_without_a_series(journal):
    data = report_detections.collect(journal, "2026-11-30", DAY, tlp.Level.GREEN)
    with_series = base64.b64decode(report_detections.plot_surge(data.alerts[0]))
    without = base64.b64decode(report_detections.plot_surge({**data.alerts[0], "series": {}}))
    assert with_series.startswith(b"\x89PNG") and without.startswith(b"\x89PNG")
    assert with_series != without


def test_the_daily_report_finds_the_journal_beside_its_store(tmp_path):
    store = tmp_path / "contributions.sqlite"
    conn = cb.connect(store)
    AlertJournal(tmp_path / report_detections.JOURNAL_NAME).append(surge(), SERIES)
    out = report.write_daily(conn, tmp_path / "out", day=DAY, days=2, ceiling=tlp.Level.GREEN)
    page = out.read_text()
    assert page.index("Early warnings raised") < page.index("Surges and campaigns detected") < \
        page.index("<h2>Contributions")
    assert "ddos" in page and "2h00m" in page
    conn.close()


def test_without_a_journal_the_section_says_so(tmp_path):
    conn = cb.connect(tmp_path / "contributions.sqlite")
    page = report.render_html(report.collect(conn, DAY, days=1), "t")
    assert "None in this period." in page
    data = report.collect(cb.connect(":memory:"), DAY, days=1)
    assert "No alert journal" in report.render_html(data, "t")


@pytest.mark.parametrize("line", [
    "[]", "{}", '{"alert": []}', '{"alert": {"kind": "surge"}}',
    json.dumps({"alert": {**surge().as_dict(), "raised": "noon"}}),
    json.dumps({"alert": {**surge().as_dict(), "countries": "DE"}}),
    json.dumps({"alert": surge().as_dict(), "series": {"DE": [[1, 2]]}}),
    json.dumps({"alert": surge().as_dict(), "series": {"DE": [[1, 2, "x"]]}}),
    '{"alert": {"a": 1, "a": 2}}', "[" * 3000 + "]" * 3000, "1" * 5000,
])
def test_hostile_journal_lines_are_counted_never_fatal(tmp_path, line):
    path = tmp_path / "j.jsonl"
    path.write_text(line + "\n")
    data = report_detections.collect(path, "2026-11-30", DAY, tlp.Level.AMBER)
    assert data.alerts == [] and len(data.problems) == 1
    assert str(path) in data.problems[0]


def test_invalid_utf8_in_the_journal(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(json.dumps({"alert": surge().as_dict()}).encode() + b"\n\xff\xfe\n")
    data = report_detections.collect(path, "2026-11-30", DAY, tlp.Level.AMBER)
    assert len(data.alerts) == 1 and len(data.problems) == 1
