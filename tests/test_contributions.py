"""Contribution indicators on a hand-checked fixture (tests/fixtures/situational)."""
import json
from pathlib import Path

import pytest

from intelmq_crossborder.analytics import contributions as cb
from intelmq_crossborder.core import tlp
from intelmq_crossborder.cli import main

FIX = Path(__file__).parent / "fixtures" / "situational"


@pytest.fixture
def conn(tmp_path):
    c = cb.connect(tmp_path / "store.sqlite")
    assert cb.record_jsonl(c, FIX / "contributions.jsonl", local_hub="hub-lu") == 8
    assert cb.import_dumps(c, [FIX / "intake.dump"], local_hub="hub-lu") == (2, 0)
    yield c
    c.close()


def as_tuples(rows):
    return [(r.day, r.contributor, r.hub, r.events, dict(r.by_tlp), dict(r.by_classification),
             r.unique_indicators, r.duplicates, r.invalid, r.median_delay_seconds) for r in rows]


def test_indicators_hand_checked(conn):
    # Fixture, by hand (arrival - time.source = delay):
    # 11-20 cert-a@hub-at: #1 GREEN scanner 192.0.2.1 (09:00->10:00 = 3600 s), #2 AMBER phishing
    #   http://a.test/ (300 s), #4 GREEN scanner 192.0.2.1 again (60 s; same contributor, so
    #   not a duplicate). 3 events, 2 unique indicators, median(3600, 300, 60) = 300.
    # 11-20 cert-b@hub-be: #3 GREEN scanner 192.0.2.1 (7200 s): first seen from cert-a -> duplicate;
    #   #5 RED c2-server 198.51.100.9 without time.source (no delay). 2 unique, median(7200).
    #   One dumped GREEN message of cert-b on 11-20 -> invalid 1.
    # 11-21 Shadowserver (feed.provider, no originator) at the local hub hub-lu: #7 no TLP,
    #   infected-system 203.0.113.5, 1800 s.
    # 11-21 cert-a@hub-at: #6 CLEAR scanner 198.51.100.9 (1800 s), first seen from cert-b -> duplicate;
    #   one dumped RED message (hierarchical in the dump) -> invalid 1.
    # #8 is an early warning: a warning, not a contribution.
    # Sorted by day, contributor ('S' < 'c'), hub.
    assert as_tuples(cb.contributions(conn)) == [
        ("2026-11-20", "cert-a", "hub-at", 3, {"GREEN": 2, "AMBER": 1}, {"scanner": 2, "phishing": 1}, 2, 0, 0, 300.0),
        ("2026-11-20", "cert-b", "hub-be", 2, {"GREEN": 1, "RED": 1}, {"scanner": 1, "c2-server": 1}, 2, 1, 1, 7200.0),
        ("2026-11-21", "Shadowserver", "hub-lu", 1, {"(none)": 1}, {"infected-system": 1}, 1, 0, 0, 1800.0),
        ("2026-11-21", "cert-a", "hub-at", 1, {"CLEAR": 1}, {"scanner": 1}, 1, 1, 1, 1800.0),
    ]
    assert [(w["day"], w["trigger"], w["level"]) for w in cb.warning_rows(conn)] == [("2026-11-21", "spread", "GREEN")]


def test_indicators_under_a_ceiling(conn):
    # Ceiling GREEN (no label counts as AMBER): #2 (AMBER), #5 (RED), #7 (no label) and the RED dump
    # disappear. cert-a 11-20: #1, #4 -> median(3600, 60) = 1830. cert-b keeps its duplicate (first
    # seen in GREEN #1). cert-a 11-21: #6 was a duplicate of the RED #5: not counted, that would
    # reveal #5. Shadowserver is gone.
    assert as_tuples(cb.contributions(conn, ceiling=tlp.Level.GREEN)) == [
        ("2026-11-20", "cert-a", "hub-at", 2, {"GREEN": 2}, {"scanner": 2}, 1, 0, 0, 1830.0),
        ("2026-11-20", "cert-b", "hub-be", 1, {"GREEN": 1}, {"scanner": 1}, 1, 1, 1, 7200.0),
        ("2026-11-21", "cert-a", "hub-at", 1, {"CLEAR": 1}, {"scanner": 1}, 1, 0, 0, 1800.0),
    ]


def test_since_until(conn):
    assert [r.day for r in cb.contributions(conn, since="2026-11-21")] == ["2026-11-21"] * 2
    assert [r.day for r in cb.contributions(conn, until="2026-11-20")] == ["2026-11-20"] * 2


def test_dump_import_is_idempotent(conn):
    assert cb.import_dumps(conn, [FIX]) == (0, 2)


def test_bad_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": {}, "arrived_at": "2026-11-20T10:00:00Z"}\n{"event": {}, "arrived_at": "yesterday"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field arrived_at"):
        cb.record_jsonl(cb.connect(tmp_path / "s.sqlite"), bad)


def test_cli_formats(tmp_path, capsys):
    db = str(tmp_path / "cli.sqlite")
    assert main(["stats", "record", "--db", db, "--local-hub", "hub-lu", str(FIX / "contributions.jsonl")]) == 0
    assert main(["stats", "import-dumps", "--db", db, str(FIX / "intake.dump")]) == 0
    capsys.readouterr()
    assert main(["stats", "contributions", "--db", db, "--since", "2026-11-21", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["contributor"], d["duplicates"], d["median_delay_seconds"]) for d in data] == [
        ("Shadowserver", 0, 1800.0), ("cert-a", 1, 1800.0)]
    assert main(["stats", "contributions", "--db", db, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("day,contributor,hub,events,tlp_CLEAR,tlp_GREEN,tlp_AMBER,tlp_AMBER+STRICT,tlp_RED")
    assert lines[2] == "2026-11-20,cert-b,hub-be,2,0,1,0,0,1,0,c2-server=1;scanner=1,2,1,1,7200.0,"   # no retraction
    assert main(["stats", "contributions", "--db", db]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() [:4] == ["day", "contributor", "hub", "events"]
    assert "2h00m" in table[3] and "GREEN:1 RED:1" in table[3]


def test_cli_errors(tmp_path, capsys):
    assert main(["stats", "contributions", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no contributions store" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["stats", "contributions", "--since", "20-11-2026"])
    assert exc.value.code == 2
    bad = tmp_path / "x.dump"
    bad.write_text("not json")
    assert main(["stats", "import-dumps", "--db", str(tmp_path / "s.sqlite"), str(bad)]) == 1
    assert "x.dump:1: not an IntelMQ dump file: not valid JSON" in capsys.readouterr().err


def test_default_db_under_intelmq_var_lib():
    assert str(cb.default_db_path()).endswith("var/lib/crossborder/contributions.sqlite")
