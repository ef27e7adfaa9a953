"""Unit tests of the audit trail: one line per decision, append across restarts, rotation loses nothing."""
import json

import pytest

from intelmq_crossborder.core import inputs
from intelmq_crossborder.policy import audit
from intelmq_crossborder.policy.decide import Decision


def decisions(n, start=0):
    return [Decision(i % 2 == 0, [f"reason-{i}: text"], None, f"r{i}") for i in range(start, start + n)]


def test_one_line_per_decision(tmp_path):
    path = tmp_path / "audit.jsonl"
    with audit.AuditTrail(path, bot="router") as trail:
        assert trail.write_decisions(decisions(3), event_uuid="u-1", fingerprint="f" * 64) == 3
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    rec = json.loads(lines[1])
    assert set(rec) == {"time", "event_uuid", "fingerprint", "recipient", "allowed", "reasons", "bot"}
    assert (rec["recipient"], rec["allowed"], rec["reasons"], rec["event_uuid"], rec["bot"]) == \
        ("r1", False, ["reason-1: text"], "u-1", "router")


def test_restart_appends(tmp_path):
    path = tmp_path / "audit.jsonl"
    trail = audit.AuditTrail(path)
    trail.write_decisions(decisions(2), event_uuid=None, fingerprint=None)
    # no close(): a crash. The lines are in the file already (unbuffered writes).
    assert len(path.read_text().splitlines()) == 2
    audit.AuditTrail(path).write_decisions(decisions(2, 2), event_uuid=None, fingerprint=None)
    assert [r["recipient"] for r in audit.read_records(path)] == ["r0", "r1", "r2", "r3"]


def test_rotation_loses_nothing(tmp_path):
    path = tmp_path / "audit.jsonl"
    trail = audit.AuditTrail(path, max_bytes=600, fsync=True)
    for i in range(40):
        trail.write_decisions(decisions(1, i), event_uuid=f"u-{i}", fingerprint=None)
    trail.close()
    pieces = audit.rotated_files(path)
    assert len(pieces) > 3 and pieces[-1] == path
    assert all(p.stat().st_size <= 600 for p in pieces)
    assert [r["event_uuid"] for r in audit.read_records(path)] == [f"u-{i}" for i in range(40)]


def test_empty_write_writes_nothing(tmp_path):
    path = tmp_path / "audit.jsonl"
    assert audit.AuditTrail(path).write_decisions([], event_uuid=None, fingerprint=None) == 0
    assert path.read_text() == ""


def test_lines_parse_to_record(tmp_path):
    path = tmp_path / "audit.jsonl"
    d = Decision(True, ['allowed: "quoted" \\ and ünïcode'], {"x": 1}, "rcpt")
    with audit.AuditTrail(path, bot="b") as trail:
        trail.write_decisions([d], event_uuid="u", fingerprint=None)
    rec = json.loads(path.read_text())
    assert rec == audit.record(d, event_uuid="u", fingerprint=None, bot="b", time=rec["time"])


def test_a_damaged_record_is_named_not_skipped(tmp_path):
    path = tmp_path / "audit.jsonl"
    with audit.AuditTrail(path) as trail:
        trail.write_decisions(decisions(2), event_uuid="u", fingerprint=None)
    with open(path, "ab") as fh:
        fh.write(b'{"recipient": "r9", "allowed": tru\n')
    with pytest.raises(inputs.InputError) as info:
        list(audit.read_records(path))
    assert "audit.jsonl" in str(info.value) and info.value.line == 3
