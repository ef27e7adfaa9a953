"""`stats contributions`, `stats record`, `stats import-dumps` and `report daily` on hostile input:
a clear message naming the file, line and field, exit 1 for input checked and found bad, 2 for
usage or configuration, and never a traceback (issue 12, section 3)."""
import json
import re
import sqlite3
import subprocess
import sys

import pytest

from intelmq_crossborder.analytics import contributions as cb
from tests.clirun import run

GOOD = {"classification.type": "scanner", "source.ip": "192.0.2.1", "sharing.tlp": "GREEN",
        "provenance.originator": "cert-a", "provenance.origin_hub": "hub-at"}



def record(tmp_path, capsys, body, *extra):
    path = tmp_path / "events.jsonl"
    path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return run(["stats", "record", "--db", str(tmp_path / "s.sqlite"), str(path), *extra], capsys)


def recorded(tmp_path):
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    try:
        return (conn.execute("SELECT COUNT(*) FROM events").fetchone()[0],
                conn.execute("SELECT tlp, reason FROM invalid").fetchall())
    finally:
        conn.close()


BAD_LINES = {
    "huge integer": ('{"source.port": 1' + "9" * 5000 + "}", "number of 5001 characters"),
    "deep nesting": ('{"extra.x": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    "lone surrogate": ('{"comment": "\\ud800"}', "surrogate"),
    "a list, not an event": ("[1, 2]", "an event is a JSON object, not a list"),
    "event is a list": ('{"arrived_at": "2026-11-20T10:00:00+00:00", "event": [1]}', "field event:"),
    "bad arrival": ('{"arrived_at": 5, "event": {}}', "field arrived_at: not an ISO time"),
    "a list where a value is": ('{"classification.type": ["scanner"]}', "field classification.type: a list"),
    "duplicate key": ('{"sharing.tlp": "RED", "sharing.tlp": "CLEAR"}', "duplicate key 'sharing.tlp'"),
    "flat and nested": ('{"sharing.tlp": "CLEAR", "sharing": {"tlp": "RED"}}', "field sharing.tlp: given twice"),
    "not JSON": ("{nope", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_record_names_the_bad_line_and_goes_on(tmp_path, capsys, case):
    line, expected = BAD_LINES[case]
    status, out, err = record(tmp_path, capsys, json.dumps(GOOD) + "\n" + line + "\n" + json.dumps(GOOD) + "\n")
    assert status == 1, err
    assert "events.jsonl:2:" in err and expected in err, err
    assert recorded(tmp_path)[0] == 2, "the good lines before and after are recorded"
    assert "2 events recorded; 1 line(s) not recorded" in out


def test_record_non_utf8_file(tmp_path, capsys):
    status, _, err = record(tmp_path, capsys, json.dumps(GOOD).encode() + b"\n" + b'{"comment": "\xff\xfe"}\n')
    assert status == 1 and "events.jsonl:2:" in err and "not UTF-8" in err, err
    assert recorded(tmp_path)[0] == 1


def test_record_counts_an_unreadable_label_as_refused_never_as_unlabelled(tmp_path, capsys):
    lookalike = dict(GOOD, **{"extra.misp_tags": [{"name": "tlp\u200b:red"}]})
    del lookalike["sharing.tlp"]
    status, _, err = record(tmp_path, capsys, json.dumps(lookalike) + "\n" + json.dumps(GOOD) + "\n")
    assert status == 1 and "events.jsonl:1: field extra.misp_tags[0].name: refused" in err, err
    events, invalid = recorded(tmp_path)
    assert events == 1 and [label for label, _ in invalid] == [cb.UNREADABLE]
    conn = cb.connect(tmp_path / "s.sqlite")
    rows = cb.contributions(conn)
    assert [(r.events, r.invalid, r.by_tlp) for r in rows] == [(1, 1, {"GREEN": 1})]
    from intelmq_crossborder.core import tlp
    assert [r.invalid for r in cb.contributions(conn, ceiling=tlp.Level.RED)] == [0], \
        "an unreadable event is never shown under a ceiling, not even as a count"


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_record_unusable_file_is_exit_2(tmp_path, capsys, kind):
    path = tmp_path / "nowhere" / "x.jsonl" if kind == "missing" else tmp_path
    status, _, err = run(["stats", "record", "--db", str(tmp_path / "s.sqlite"), str(path)], capsys)
    assert status == 2 and str(path) in err


def test_local_hub_must_be_text(tmp_path, capsys):
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(GOOD) + "\n")
    for hub in ("\udcff", "", "a\nb"):
        status, _, err = run(["stats", "record", "--local-hub", hub, "--db", str(tmp_path / "s"), str(path)], capsys)
        assert status == 2 and "not a hub id" in err


def _bad_stores(tmp_path):
    text = tmp_path / "text.sqlite"
    text.write_text("this is not SQLite\n" * 100)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, something TEXT)")
    conn.commit()
    conn.close()
    return {"a directory": (tmp_path, "is a directory"), "not SQLite": (text, "not a usable contributions store"),
            "another schema": (other, "not a usable contributions store")}


@pytest.mark.parametrize("command", [["stats", "contributions"], ["stats", "record"], ["stats", "import-dumps"],
                                     ["report", "daily"]])
def test_db_that_is_not_a_store_is_exit_2(tmp_path, capsys, command):
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps(GOOD) + "\n")
    dump = tmp_path / "x.dump"
    dump.write_text("{}")
    args = {"stats record": [str(events)], "stats import-dumps": [str(dump)],
            "report daily": ["--out", str(tmp_path / "out")]}.get(" ".join(command), [])
    for name, (db, expected) in _bad_stores(tmp_path).items():
        status, _, err = run(command + args + ["--db", str(db)], capsys)
        assert status == 2, (name, err)
        assert str(db) in err and expected in err, (name, err)


def dump_file(tmp_path, content):
    path = tmp_path / "bot.dump"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


BAD_DUMPS = {
    "a list": ("[1, 2]", "not an IntelMQ dump file: a JSON object of timestamp -> entry expected, not a list"),
    "huge integer": ('{"2026-11-20T12:00:00": {"n": 1' + "0" * 4000 + "}}", "number of 4001 characters"),
    "deep nesting": ('{"a": ' + "[" * 3000 + "]" * 3000 + "}", "nested"),
    "duplicate key": ('{"2026-11-20T12:00:00": {}, "2026-11-20T12:00:00": {}}', "duplicate key"),
    "lone surrogate": ('{"\\udc00": {}}', "surrogate"),
}


@pytest.mark.parametrize("case", sorted(BAD_DUMPS))
def test_import_dumps_names_a_bad_file_exit_1(tmp_path, capsys, case):
    content, expected = BAD_DUMPS[case]
    bad = dump_file(tmp_path, content)
    good = tmp_path / "good.dump"
    good.write_text(json.dumps({"2026-11-20T12:00:00": {"bot_id": "x", "traceback": ["boom"],
                                                        "message": json.dumps(GOOD)}}))
    status, out, err = run(["stats", "import-dumps", "--db", str(tmp_path / "s.sqlite"), str(bad), str(good)],
                           capsys)
    assert status == 1, err
    assert "bot.dump" in err and expected in err, err
    assert "1 invalid events recorded" in out, "the good file is imported"


def test_import_dumps_non_utf8_and_entry_shapes(tmp_path, capsys):
    bad = dump_file(tmp_path, b'{"x": "\xff"}')
    status, _, err = run(["stats", "import-dumps", "--db", str(tmp_path / "s.sqlite"), str(bad)], capsys)
    assert status == 1 and "not UTF-8" in err
    bad = dump_file(tmp_path, json.dumps({"2026-11-20T12:00:00": ["not", "an", "entry"],
                                          "2026-11-20T13:00:00": {"message": json.dumps(GOOD), "traceback": 5}}))
    status, out, err = run(["stats", "import-dumps", "--db", str(tmp_path / "s.sqlite"), str(bad)], capsys)
    assert status == 1 and "bot.dump: field 2026-11-20T12:00:00: a dump entry is a JSON object, not a list" in err
    assert "1 invalid events recorded" in out


def test_import_dumps_counts_an_unreadable_message_as_unreadable(tmp_path, capsys):
    """A dumped message whose labels (or whose JSON) cannot be read is never unlabelled or CLEAR."""
    lower = dict(GOOD, **{"sharing.tlp": "CLEAR", "extra.tlp": ["RED"]})
    entries = {"2026-11-20T12:00:00": {"message": json.dumps(lower)},
               "2026-11-20T12:00:01": {"message": '{"sharing.tlp": "RED", "sharing.tlp": "CLEAR"}'},
               "2026-11-20T12:00:02": {"message": "AAEC", "message_type": "base64"},
               "2026-11-20T12:00:03": {"message": json.dumps(dict(GOOD, **{"extra.tlp_label": "tlp:amber"}))}}
    path = dump_file(tmp_path, json.dumps(entries))
    status, _, err = run(["stats", "import-dumps", "--db", str(tmp_path / "s.sqlite"), str(path)], capsys)
    assert status == 0, err
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    labels = [r[0] for r in conn.execute("SELECT tlp FROM invalid ORDER BY dump_key")]
    assert labels == [cb.UNREADABLE, cb.UNREADABLE, cb.UNREADABLE, "AMBER"]


@pytest.mark.parametrize("path", ["does-not-exist", "does/not/exist.dump"])
def test_import_dumps_missing_path_exit_2(tmp_path, capsys, path):
    status, _, err = run(["stats", "import-dumps", "--db", str(tmp_path / "s.sqlite"), str(tmp_path / path)], capsys)
    assert status == 2 and "no such file or directory" in err


@pytest.mark.parametrize("argv, expected", [
    (["--days", "0"], "not a number of days from 1 to 366"),
    (["--days", str(10 ** 9)], "not a number of days"),
    (["--days", "-3"], "not a number of days"),
    (["--days", "9" * 5000], "not a number of days"),
    (["--date", "99999-01-01"], "not a date"),
    (["--date", "2026-02-30"], "not a date"),
    (["--date", "0001-01-03", "--days", "7"], "starts before the year 1"),
])
def test_report_daily_date_and_days_out_of_range_exit_2(tmp_path, capsys, argv, expected):
    conn = cb.connect(tmp_path / "s.sqlite")
    conn.close()
    status, _, err = run(["report", "daily", "--db", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")] + argv,
                         capsys)
    assert status == 2 and expected in err, err


def test_report_daily_out_is_a_file_and_title_not_text(tmp_path, capsys):
    conn = cb.connect(tmp_path / "s.sqlite")
    conn.close()
    target = tmp_path / "a-file"
    target.write_text("x")
    status, _, err = run(["report", "daily", "--db", str(tmp_path / "s.sqlite"), "--out", str(target),
                          "--date", "2026-11-20"], capsys)
    assert status == 2 and str(target) in err
    status, _, err = run(["report", "daily", "--db", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o"),
                          "--date", "2026-11-20", "--title", "bad \udcff"], capsys)
    assert status == 2 and "--title" in err


def test_stats_contributions_since_out_of_range_exit_2(tmp_path, capsys):
    status, _, err = run(["stats", "contributions", "--since", "99999-01-01"], capsys)
    assert status == 2 and "not a date" in err


def test_as_a_process_no_traceback(tmp_path):
    """The same through the real entry point (argv bytes that are not UTF-8, a directory as --db)."""
    bad = tmp_path / "e.jsonl"
    bad.write_bytes(b'{"a": 1' + b"1" * 3000 + b"}\n[]\n\xff\n")
    proc = subprocess.run([sys.executable, "-m", "intelmq_crossborder.cli", "stats", "record", "--db",
                           str(tmp_path / "s.sqlite"), str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert [re.search(r"e\.jsonl:(\d+): ", line).group(1) for line in proc.stderr.splitlines()] == ["1", "2", "3"]
    proc = subprocess.run([sys.executable, "-m", "intelmq_crossborder.cli", "stats", "contributions", "--db",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "is a directory" in proc.stderr


def test_a_bad_field_leaves_no_partial_record(tmp_path, capsys):
    """The indicator of a line refused for a field of the wrong type is not remembered as seen."""
    bad = dict(GOOD, **{"source.ip": "198.51.100.1", "time.source": ["2026-11-20T10:00:00+00:00"]})
    status, _, err = record(tmp_path, capsys, json.dumps(bad) + "\n")
    assert status == 1 and "field time.source: a list" in err
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM indicators").fetchone()[0] == 0
    conn.close()
