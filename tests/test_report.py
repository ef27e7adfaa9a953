"""The daily situational-awareness report, generated from the demo data."""
import base64
import re
from pathlib import Path

import pytest

from intelmq_crossborder.analytics import contributions as cb
from intelmq_crossborder.analytics import report
from intelmq_crossborder.core import tlp
from intelmq_crossborder.cli import main

SAMPLE = Path(__file__).resolve().parent.parent / "intelmq_crossborder" / "pipelines" / "samples" / "situational-awareness.jsonl"
# Only events above TLP:GREEN carry these (see intelmq_crossborder/pipelines/samples/situational-awareness.jsonl)
# and would show in the page's text (contribution table, warnings, TLP mixes); the KP country
# and the 203.0.113.20x addresses are checked in the data behind the plots.
ABOVE_GREEN = ["restricted-partner", "hub-restricted", "SECRET-WARNING", "AMBER+STRICT", "RED:", "AMBER:"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("sa") / "store.sqlite"
    assert main(["stats", "record", "--db", str(path), str(SAMPLE)]) == 0
    return path


def generate(db, out, ceiling):
    assert main(["report", "daily", "--db", str(db), "--out", str(out), "--date", "2026-11-20",
                 "--tlp-ceiling", ceiling]) == 0
    return (out / "daily-2026-11-20.html").read_text("utf-8")


def test_green_report_names_ceiling_and_holds_nothing_above(db, tmp_path):
    page = generate(db, tmp_path, "GREEN")
    header = page.split("</header>")[0]
    assert '<span class="tlp" id="tlp-ceiling">TLP:GREEN</span>' in header
    assert "TLP ceiling of this report: <strong>TLP:GREEN</strong>" in header
    for marker in ABOVE_GREEN + ["203.0.113.20"]:
        assert marker not in page, marker
    # self-contained: three embedded PNGs, no external references
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "http://" not in page and "https://" not in page
    assert "Cross-border early warning: scanner reported by 3 hubs" in page
    assert "192.0.2." in page   # shared indicators reported by several hubs are listed


def test_data_behind_the_plots_respects_the_ceiling(db):
    conn = cb.connect(db)
    data = report.collect(conn, "2026-11-20", days=7, ceiling=tlp.Level.GREEN)
    assert set(data.tlp_mix) <= {"CLEAR", "GREEN"}
    assert "KP" not in data.by_country
    assert all(not ind.startswith("source.ip=203.0.113.") for ind, _, _ in data.multi_hub)
    assert all(c.contributor != "restricted-partner" for c in data.contributions)
    assert [w["level"] for w in data.warnings] == ["GREEN"]
    assert all(len(hubs) >= 2 for _, hubs, _ in data.multi_hub)
    # the numbers add up: every event at or below the ceiling is in the TLP mix once
    assert sum(data.tlp_mix.values()) == data.events_in_period == sum(c.events for c in data.contributions)


def test_red_report_does_show_them(db, tmp_path):
    """The markers really are in the data: a RED report shows them (so the test above can fail)."""
    page = generate(db, tmp_path, "RED")
    assert "TLP ceiling of this report: <strong>TLP:RED</strong>" in page
    for marker in ABOVE_GREEN:
        assert marker in page, marker


def test_missing_store_is_a_usage_error(tmp_path, capsys):
    assert main(["report", "daily", "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path)]) == 2
    assert "no contributions store" in capsys.readouterr().err
