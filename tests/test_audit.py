"""Unit tests of the audit trail: one line per event listing its decisions, old per-decision files still
read, append across restarts, rotation loses nothing."""
import json

import pytest

from intelmq_crossborder.core import inputs
from intelmq_crossborder.policy import audit
from intelmq_crossborder.policy.decide import Decision


def decisions(n, start=0):
    return [Decision(i % 2 == 0, [f"reason-{i}: text"], None, f"r{i}") for i in range(start, start + n)]


def test_one_line_per_event(tmp_path):
    path = tmp_path / "audit.jsonl"
    with audit.AuditTrail(path, bot="router") as trail:
        assert trail.write_decisions(decisions(3), event_uuid="u-1", fingerprint="f" * 64, tlp="AMBER",
                                     tlp_from="sharing.tlp") == 3
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert set(rec) == {"time", "event_uuid", "fingerprint", "bot", "tlp", "tlp_from", "decisions"}
    assert (rec["event_uuid"], rec["fingerprint"], rec["bot"], rec["tlp"], rec["tlp_from"]) == \
        ("u-1", "f" * 64, "router", "AMBER", "sharing.tlp")
    assert rec["decisions"] == [{"recipient": f"r{i}", "allowed": i % 2 == 0, "reasons": [f"reason-{i}: text"]}
                                for i in range(3)]
    flat = list(audit.read_records(path))
    assert [(r["recipient"], r["allowed"], r["reasons"], r["event_uuid"], r["bot"], r["tlp"], r["tlp_from"])
            for r in flat] == [(f"r{i}", i % 2 == 0, [f"reason-{i}: text"], "u-1", "router", "AMBER", "sharing.tlp")
                               for i in range(3)]
    assert all(r["time"] == rec["time"] and r["fingerprint"] == "f" * 64 for r in flat)


def test_old_per_decision_lines_still_read(tmp_path):
    """Files written before the per-event record (one line per decision), and a file that has both."""
    path = tmp_path / "audit.jsonl"
    old = [audit.record(d, event_uuid="u-0", fingerprint=None, bot="router", time="2026-11-23T03:50:01+00:00")
           for d in decisions(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    with audit.AuditTrail(path, bot="router") as trail:
        trail.write_decisions(decisions(2, 2), event_uuid="u-1", fingerprint=None)
    records = list(audit.read_records(path))
    assert records[:2] == old
    assert [(r["recipient"], r["event_uuid"]) for r in records] == [("r0", "u-0"), ("r1", "u-0"), ("r2", "u-1"),
                                                                   ("r3", "u-1")]
    assert set(records[2]) == set(old[0])


@pytest.mark.parametrize("line, reason", [(b'{"decisions": {"recipient": "r9"}}', "decisions is not a list"),
                                          (b'{"decisions": ["r9"]}', "a decision is not a JSON object"),
                                          (b'["r9"]', "an audit record is a JSON object")])
def test_a_malformed_record_is_named(tmp_path, line, reason):
    path = tmp_path / "audit.jsonl"
    path.write_bytes(line + b"\n")
    with pytest.raises(inputs.InputError) as info:
        list(audit.read_records(path))
    assert reason in str(info.value) and info.value.line == 1


def test_restart_appends(tmp_path):
    path = tmp_path / "audit.jsonl"
    trail = audit.AuditTrail(path)
    trail.write_decisions(decisions(2), event_uuid=None, fingerprint=None)
    # no close(): a crash. The record is in the file already (unbuffered writes).
    assert len(path.read_text().splitlines()) == 1
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
    rec, = audit.read_records(path)
    assert rec == audit.record(d, event_uuid="u", fingerprint=None, bot="b", time=rec["time"])


def test_a_damaged_record_is_named_not_skipped(tmp_path):
    path = tmp_path / "audit.jsonl"
    with audit.AuditTrail(path) as trail:
        trail.write_decisions(decisions(2), event_uuid="u", fingerprint=None)
    with open(path, "ab") as fh:
        fh.write(b'{"recipient": "r9", "allowed": tru\n')
    with pytest.raises(inputs.InputError) as info:
        list(audit.read_records(path))
    assert "audit.jsonl" in str(info.value) and info.value.line == 2
