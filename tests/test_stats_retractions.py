"""Retractions per contributor in ``intelmq-crossborder stats contributions`` (table, CSV, JSON),
``stats record`` (retraction lines) and the daily report (the ``retracted`` column)."""
import json

from intelmq_crossborder.cli import main
from intelmq_crossborder.policy.retraction import new_retraction

U1, U2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def line(arrived, event):
    return json.dumps({"arrived_at": arrived, "event": event})


def write_input(path):
    events = [
        {"provenance.originator": "cert-a", "provenance.origin_hub": "hub-at", "sharing.tlp": "GREEN",
         "classification.type": "scanner", "source.ip": "192.0.2.1", "provenance.event_uuid": U1},
        {"provenance.originator": "cert-b", "provenance.origin_hub": "hub-be", "sharing.tlp": "AMBER",
         "classification.type": "phishing", "source.url": "http://b.example/x", "provenance.event_uuid": U2},
    ]
    retractions = [new_retraction("withdraw", "false positive", "hub-at", target_event_uuid=U1,
                                  time="2026-11-20T12:00:00+00:00"),
                   new_retraction("erase", "personal data", "hub-be", target_event_uuid=U2,
                                  time="2026-11-20T12:05:00+00:00")]
    lines = [line("2026-11-20T10:00:00+00:00", e) for e in events]
    lines += [line("2026-11-20T12:00:00+00:00", r.to_event()) for r in retractions]
    path.write_text("\n".join(lines) + "\n")


def test_stats_show_retractions_per_contributor(tmp_path, capsys):
    src, db = tmp_path / "in.jsonl", tmp_path / "store.sqlite"
    write_input(src)
    assert main(["stats", "record", "--db", str(db), str(src)]) == 0
    capsys.readouterr()
    assert main(["stats", "contributions", "--db", str(db), "--format", "json"]) == 0
    rows = {r["contributor"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["cert-a"]["retracted"] == {"withdraw": 1} and rows["cert-b"]["retracted"] == {"erase": 1}
    assert main(["stats", "contributions", "--db", str(db), "--format", "csv"]) == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[0].endswith(",retracted") and csv_lines[1].endswith(",withdraw=1")
    assert main(["stats", "contributions", "--db", str(db)]) == 0
    table = capsys.readouterr().out
    assert "retracted" in table.splitlines()[0] and "erase:1" in table
    # under TLP:GREEN the erase of an AMBER event is not shown (it would tell that the event existed)
    assert main(["stats", "contributions", "--db", str(db), "--format", "json", "--tlp-ceiling", "GREEN"]) == 0
    rows = {r["contributor"]: r for r in json.loads(capsys.readouterr().out)}
    assert "cert-b" not in rows and rows["cert-a"]["retracted"] == {"withdraw": 1}
    # the erased value is gone from the store
    assert b"http://b.example/x" not in db.read_bytes()


def test_daily_report_has_the_retracted_column(tmp_path):
    src, db = tmp_path / "in.jsonl", tmp_path / "store.sqlite"
    write_input(src)
    assert main(["stats", "record", "--db", str(db), str(src)]) == 0
    assert main(["report", "daily", "--db", str(db), "--out", str(tmp_path), "--date", "2026-11-20",
                 "--tlp-ceiling", "AMBER"]) == 0
    page = (tmp_path / "daily-2026-11-20.html").read_text("utf-8")
    assert "<th>retracted</th>" in page and "withdraw:1" in page and "erase:1" in page


def test_a_bad_retraction_line_is_named(tmp_path, capsys):
    src, db = tmp_path / "in.jsonl", tmp_path / "store.sqlite"
    bad = new_retraction("withdraw", "x", "hub-at", target_event_uuid=U1).to_event()
    bad["source.ip"] = "192.0.2.1"
    src.write_text(line("2026-11-20T12:00:00+00:00", bad) + "\n")
    assert main(["stats", "record", "--db", str(db), str(src)]) == 1
    err = capsys.readouterr().err
    assert "in.jsonl:1: field source.ip: a retraction carries no event content" in err
