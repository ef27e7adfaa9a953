"""formats/event_file.py without IntelMQ: retractions applied to a file output's JSON lines.

An erase (or a relabel above the ceiling) takes every line of its target out, matched by the
library's rule (``policy.retraction.instruction`` on provenance.event_uuid / fingerprint), and
rewrites the file atomically; everything else stays byte for byte; hostile lines are kept and
counted, never a crash, except a damaged line naming an erased target's id, which goes too."""
import json
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats import event_file as ef
from intelmq_crossborder.policy.retraction import confirmation, new_retraction

U1, U2 = str(uuid.uuid4()), str(uuid.uuid4())
F1, F2 = "a1" * 32, "b2" * 32


def event(u, f, ip="198.51.100.7", **extra):
    rec = {"classification.type": "phishing", "source.ip": ip, "source.account": "jane.doe@example.org",
           "sharing.tlp": "GREEN", "provenance.fingerprint": f}
    if u:
        rec["provenance.event_uuid"] = u
    rec.update(extra)
    return rec


def line(obj) -> bytes:
    return json.dumps(obj, sort_keys=True).encode() + b"\n"


def hierarchical(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def erase(u=U1, f=F1, **kw):
    return new_retraction("erase", "personal data", "de-hub", target_event_uuid=u, target_fingerprint=f, **kw)


def write(tmp_path, *lines: bytes, name="events.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(lines))
    return path


def test_erase_removes_every_line_of_the_target_and_nothing_else(tmp_path):
    msg = erase()
    keep = [line(event(U2, F2, ip="192.0.2.1", **{"source.account": "other@example.net"})),
            line(erase(U2, F2).to_event())]
    target = [line(event(U1, F1)), line(event(U1, F1, comment="again"))]
    path = write(tmp_path, target[0], keep[0], target[1], keep[1])
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    done = ef.purge(path, [msg])
    assert done.removed[msg.id] == 2 and done.removed_ids[msg.id] == {U1} and done.rewritten
    assert done.tombstones == 1 and done.unreadable == 0
    assert path.read_bytes() == b"".join(keep)
    assert b"198.51.100.7" not in path.read_bytes() and b"jane.doe" not in path.read_bytes()
    assert path.stat().st_ino != inode                   # replaced by a rename, permissions kept
    assert path.stat().st_mode & 0o777 == 0o640
    again = ef.purge(path, [msg])                         # idempotent: nothing left, no rewrite
    assert again.total_removed == 0 and not again.rewritten and path.read_bytes() == b"".join(keep)


def test_dry_run_finds_but_does_not_rewrite(tmp_path):
    data = line(event(U1, F1)) + line(event(U2, F2))
    path = write(tmp_path, data)
    done = ef.purge(path, [erase()], dry_run=True)
    assert done.total_removed == 1 and not done.rewritten and path.read_bytes() == data


def test_a_copy_without_uuid_is_found_by_fingerprint_and_a_uuid_wins_over_it(tmp_path):
    other_event_same_indicator = line(event(U2, F1))
    path = write(tmp_path, line(event(None, F1)), other_event_same_indicator)
    done = ef.purge(path, [erase(U1, F1)])
    assert done.total_removed == 1 and path.read_bytes() == other_event_same_indicator


def test_an_indicator_erase_takes_every_event_with_the_fingerprint(tmp_path):
    rest = line(event(U2, F2))
    path = write(tmp_path, line(event(U1, F1)), line(event(U2, F1)), rest)
    msg = new_retraction("erase", "pd", "de-hub", target_fingerprint=F1, scope="indicator")
    assert ef.purge(path, [msg]).removed[msg.id] == 2
    assert path.read_bytes() == rest


def test_hierarchical_lines_are_read(tmp_path):
    rest = line(hierarchical(event(U2, F2)))
    path = write(tmp_path, line(hierarchical(event(U1, F1))), rest, line(hierarchical(erase().to_event())))
    done = ef.purge(path, [erase()])
    assert done.total_removed == 1 and done.tombstones == 1
    assert path.read_bytes().startswith(rest)


def test_withdraw_and_confirmation_change_nothing(tmp_path):
    data = line(event(U1, F1)) + line(event(U2, F2))
    path = write(tmp_path, data)
    inode = path.stat().st_ino
    w = new_retraction("withdraw", "fp", "de-hub", target_event_uuid=U1)
    done = ef.purge(path, [w, confirmation(erase(), "at-hub", 1)])
    assert done.held[w.id] == 1 and done.total_removed == 0 and not done.rewritten
    assert path.read_bytes() == data and path.stat().st_ino == inode


def test_relabel_removes_above_the_ceiling_only(tmp_path):
    data = line(event(U1, F1)) + line(event(U2, F2))
    path = write(tmp_path, data)
    amber = new_retraction("relabel", "too low", "de-hub", target_event_uuid=U1, new_tlp="AMBER")
    red = new_retraction("relabel", "too low", "de-hub", target_event_uuid=U1, new_tlp="RED")
    assert ef.purge(path, [red]).total_removed == 0                       # no ceiling: kept (tombstone follows)
    assert ef.purge(path, [amber], ceiling=tlp.Level.AMBER).total_removed == 0
    assert path.read_bytes() == data
    assert ef.purge(path, [red], ceiling=tlp.Level.AMBER).removed[red.id] == 1
    assert path.read_bytes() == line(event(U2, F2))


def test_relabel_of_a_copy_with_unreadable_labels_fails_closed(tmp_path):
    path = write(tmp_path, line(event(U1, F1, **{"sharing.tlp": "AMBRE"})), line(event(U2, F2)))
    amber = new_retraction("relabel", "too low", "de-hub", target_event_uuid=U1, new_tlp="AMBER")
    assert ef.purge(path, [amber], ceiling=tlp.Level.RED).total_removed == 1


HOSTILE = [b"not json at all\n", b"\xff\xfe\x00 not utf-8\n", b"[1, 2, 3]\n", b'"a string"\n',
           b'{"a": 1, "a": 2}\n', b'{"n": 1' + b"0" * 500 + b"}\n", b"[" * 5000 + b"]" * 5000 + b"\n",
           b'{"provenance.event_uuid": 12345, "source.ip": "203.0.113.5"}\n',
           b'{"provenance": {"fingerprint": ["x"]}}\n', b"\n", b"   \n"]


def test_hostile_lines_are_kept_byte_for_byte_and_counted(tmp_path):
    target = line(event(U1, F1))
    path = write(tmp_path, *HOSTILE, target, b'{"half": "writ')
    done = ef.purge(path, [erase()])
    assert done.total_removed == 1
    assert path.read_bytes() == b"".join(HOSTILE) + b'{"half": "writ'
    assert done.unreadable == 10 and len(done.problems) == 10   # 9 hostile + the half-written last line
    assert all(str(path) in p for p in done.problems)


def test_a_damaged_line_naming_the_erased_target_goes_too(tmp_path):
    half = json.dumps(event(U1, F1))[:-20].encode()            # a half-written copy of the target
    wrong = b'{"provenance.event_uuid": 1, "note": "' + F1.encode() + b'"}\n'
    keep = b"garbage that names nothing\n"
    path = write(tmp_path, keep, wrong, half)
    done = ef.purge(path, [erase()])
    assert done.unreadable_removed == 2 and done.unreadable == 1
    assert path.read_bytes() == keep


def test_a_retraction_line_with_content_is_no_tombstone(tmp_path):
    """A line that looks like a retraction but carries the target's values (the stock output writes
    what it gets) is not kept as a tombstone: on an erase it names the target's id, so it goes."""
    smuggled = line(dict(erase().to_event(), **{"source.ip": "198.51.100.7"}))
    harmless = line(dict(erase(U2, F2).to_event(), **{"source.ip": "192.0.2.1"}))
    tomb = line(erase().to_event())
    path = write(tmp_path, smuggled, harmless, tomb)
    done = ef.purge(path, [erase()])
    assert done.tombstones == 1 and done.unreadable_removed == 1 and done.unreadable == 1
    assert path.read_bytes() == harmless + tomb


def test_a_huge_line_is_streamed_kept_or_removed_by_id(tmp_path):
    big_other = b'{"x": "' + b"y" * 300_000 + b'"}\n'
    big_target = b'{"x": "' + b"y" * 100_000 + U1.encode() + b"z" * 200_000 + b'"}\n'
    # the id straddles the first read's boundary
    straddle = b'{"x": "' + b"y" * (4096 - 7 - 10) + U1.encode() + b'"}\n'
    path = write(tmp_path, big_other, big_target, straddle, line(event(U2, F2)))
    done = ef.purge(path, [erase()], max_line=4096)
    assert done.unreadable == 1 and done.unreadable_removed == 2
    assert path.read_bytes() == big_other + line(event(U2, F2))


def test_a_file_that_changes_during_the_purge_is_not_replaced(tmp_path):
    path = write(tmp_path, line(event(U1, F1)))
    before = os.stat(path)
    with open(path, "ab") as fh:
        fh.write(line(event(U2, F2)))
    with pytest.raises(OSError, match="changed while it was read"):
        ef._rewrite(path, [(0, 10)], before, False)
    assert path.read_bytes() == line(event(U1, F1)) + line(event(U2, F2))


def test_missing_file_holds_nothing(tmp_path):
    assert ef.purge(tmp_path / "nope.txt", [erase()]).total_removed == 0


def test_tombstones_are_read_strictly(tmp_path):
    good = erase()
    bad = dict(erase().to_event(), **{"source.ip": "192.0.2.1"})
    path = write(tmp_path, line(event(U1, F1)), line(good.to_event()), line(bad),
                 line(confirmation(good, "at-hub", 1).to_event()), line(hierarchical(good.to_event())), b"junk\n")
    found, problems = ef.tombstones(path)
    assert [(n, m.id) for n, m in found] == [(2, good.id), (5, good.id)]
    assert len(problems) == 1 and f"{path}:3:" in problems[0] and "source.ip" in problems[0]


def test_rotated_siblings(tmp_path):
    base = tmp_path / "events.txt"
    names = ["events.txt", "events.txt.1", "events.txt.2.gz", "events.txt-20261201", "events.txt-2026120112.xz",
             "events.txt.bak", "events.txt.1.tmp", "events.txtx", "other.txt.1"]
    for n in names:
        (tmp_path / n).write_text("x\n")
    plain, packed = ef.rotated(base)
    assert [p.name for p in plain] == ["events.txt-20261201", "events.txt.1"]
    assert [p.name for p in packed] == ["events.txt-2026120112.xz", "events.txt.2.gz"]


def test_format_name_fills_in_and_refuses_escapes(tmp_path):
    pattern = str(tmp_path / "{event[feed.name]}-{event[time.source]:%Y-%m-%d}.txt")
    ev = {"feed.name": "Phish", "time.source": "2026-12-01T10:00:00+00:00"}
    assert ef.format_name(pattern, ev) == tmp_path / "Phish-2026-12-01.txt"
    for bad in ("../../etc/cron.d/x", "a/b", ".hidden", "x\x00y", "a\\b", "y" * 300):
        with pytest.raises(ef.FileNameError):
            ef.format_name(pattern, dict(ev, **{"feed.name": bad}))
    with pytest.raises(ef.FileNameError, match="cannot fill it in"):
        ef.format_name(pattern, {"feed.name": "x"})
    with pytest.raises(ef.FileNameError):
        ef.format_name(str(tmp_path / "{event[feed.name]"), ev)
    (tmp_path / "Phish-2026-12-01.txt").write_text("")
    (tmp_path / "Other-2026-11-30.txt").write_text("")
    (tmp_path / "unrelated.log").write_text("")
    assert [p.name for p in ef.pattern_glob(pattern)] == ["Other-2026-11-30.txt", "Phish-2026-12-01.txt"]


def test_event_file_appends_durably_and_after_a_half_written_line(tmp_path):
    path = tmp_path / "sub" / "events.txt"
    out = ef.EventFile(path, fsync=True)
    out.append(b'{"a": 1}')
    out.close()
    with open(path, "ab") as fh:
        fh.write(b'{"half')
    out = ef.EventFile(path)
    out.append(b'{"b": 2}')
    assert path.read_bytes() == b'{"a": 1}\n{"half\n{"b": 2}\n'
    with pytest.raises(ValueError):
        out.append(b"two\nlines")
    os.replace(path, tmp_path / "sub" / "events.txt.1")        # rotated under the output
    out.reopen_if_moved()
    out.append(b'{"c": 3}')
    out.close()
    assert path.read_bytes() == b'{"c": 3}\n'


_records = st.one_of(
    st.builds(lambda u, f, ip: line(event(u, f, ip=ip)), st.sampled_from([U1, U2, None]), st.sampled_from([F1, F2]),
              st.sampled_from(["192.0.2.1", "198.51.100.7"])),
    st.sampled_from(HOSTILE),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"") + b"\n"))


@settings(max_examples=int(os.environ.get("XB_HOSTILE_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_records, max_size=25))
def test_purge_keeps_exactly_what_is_not_the_target(tmp_path, lines):
    path = tmp_path / "fuzz.txt"
    path.write_bytes(b"".join(lines))
    ef.purge(path, [erase()])
    expected = []
    for raw in lines:
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("provenance.event_uuid", ""), (str, type(None))) and (
                rec.get("provenance.event_uuid") == U1 or (rec.get("provenance.event_uuid") is None
                                                           and rec.get("provenance.fingerprint") == F1)):
            continue
        if (U1.encode() in raw or F1.encode() in raw) and not (isinstance(rec, dict) and "provenance.fingerprint"
                                                              in rec and isinstance(rec.get("provenance.event_uuid",
                                                                                            ""), str)):
            continue
        expected.append(raw)
    assert path.read_bytes() == b"".join(expected)
