"""``intelmq-crossborder retraction purge``: the erase tombstones of stock file output files applied
(docs/cli.md): exit 0 applied, 1 a line could not be read (named, kept), 2 a file cannot be read."""
import json
import os
import uuid

from tests.clirun import run
from intelmq_crossborder.policy.retraction import new_retraction

U1, U2 = str(uuid.uuid4()), str(uuid.uuid4())
F1, F2 = "c3" * 32, "d4" * 32


def ev(u, f, ip):
    return {"classification.type": "phishing", "source.ip": ip, "provenance.event_uuid": u,
            "provenance.fingerprint": f, "sharing.tlp": "GREEN"}


def ln(obj) -> bytes:
    return json.dumps(obj).encode() + b"\n"


ERASE = new_retraction("erase", "personal data", "de-hub", target_event_uuid=U1, target_fingerprint=F1)
WITHDRAW = new_retraction("withdraw", "false positive", "de-hub", target_event_uuid=U2)
KEEP = ln(ev(U2, F2, "192.0.2.2"))


def test_purge_removes_the_erased_lines_and_says_so(tmp_path, capsys):
    path = tmp_path / "events.txt"
    path.write_bytes(ln(ev(U1, F1, "198.51.100.1")) + KEEP + ln(WITHDRAW.to_event()) + ln(ERASE.to_event()))
    status, out, err = run(["retraction", "purge", str(path)], capsys)
    assert status == 0, err
    assert f"removed 1 line(s) of event {U1} (erase {ERASE.id}; ids {U1})" in out
    assert "2 retraction(s) found in 1 file(s): 1 erase(s) to apply" in out
    assert path.read_bytes() == KEEP + ln(WITHDRAW.to_event()) + ln(ERASE.to_event())
    status, out, _ = run(["retraction", "purge", str(path)], capsys)            # idempotent
    assert status == 0 and "removed 0 line(s) in all" in out


def test_dry_run_changes_nothing(tmp_path, capsys):
    path = tmp_path / "events.txt"
    data = ln(ev(U1, F1, "198.51.100.1")) + ln(ERASE.to_event())
    path.write_bytes(data)
    status, out, _ = run(["retraction", "purge", "--dry-run", str(path)], capsys)
    assert status == 0 and "would remove 1 line(s)" in out and path.read_bytes() == data


def test_tombstones_of_one_file_apply_to_all_and_to_rotated_siblings(tmp_path, capsys):
    new, old = tmp_path / "events.txt", tmp_path / "events.txt.1"
    other = tmp_path / "other.txt"
    old.write_bytes(ln(ev(U1, F1, "198.51.100.1")) + KEEP)
    new.write_bytes(ln(ERASE.to_event()))
    other.write_bytes(ln(ev(U1, F1, "198.51.100.1")))
    (tmp_path / "events.txt.2.gz").write_bytes(b"\x1f\x8b")
    status, out, err = run(["retraction", "purge", str(new), str(other)], capsys)
    assert status == 0, err
    assert old.read_bytes() == KEEP and other.read_bytes() == b""
    assert "events.txt.2.gz: compressed, not reached" in err
    old.write_bytes(ln(ev(U1, F1, "198.51.100.1")))
    status, _, _ = run(["retraction", "purge", "--no-rotated", str(new)], capsys)
    assert status == 0 and b"198.51.100.1" in old.read_bytes()


def test_unreadable_lines_are_kept_named_and_exit_1(tmp_path, capsys):
    path = tmp_path / "events.txt"
    bad_tomb = dict(ERASE.to_event(), **{"source.ip": "192.0.2.9"})
    path.write_bytes(b"garbage\n\xff\n" + ln(ev(U1, F1, "198.51.100.1")) + ln(bad_tomb) + ln(ERASE.to_event()))
    status, out, err = run(["retraction", "purge", str(path)], capsys)
    assert status == 1
    assert f"{path}:1:" in err and f"{path}:2:" in err
    assert f"bad tombstone: {path}:4:" in err and "source.ip" in err
    assert b"198.51.100.1" not in path.read_bytes() and path.read_bytes().startswith(b"garbage\n\xff\n")


def test_unusable_paths_exit_2(tmp_path, capsys):
    status, _, err = run(["retraction", "purge", str(tmp_path / "missing.txt")], capsys)
    assert status == 2 and "no such file" in err
    status, _, err = run(["retraction", "purge", str(tmp_path)], capsys)
    assert status == 2 and "is a directory" in err
    path = tmp_path / "locked.txt"
    path.write_bytes(b"x\n")
    os.chmod(path, 0)
    try:
        if not os.access(path, os.R_OK):             # root reads anyway
            status, _, err = run(["retraction", "purge", str(path)], capsys)
            assert status == 2 and "not readable" in err
    finally:
        os.chmod(path, 0o600)
    for bad in ("12", "many", "-5"):
        status, _, _ = run(["retraction", "purge", "--max-line-bytes", bad, str(path)], capsys)
        assert status == 2
