"""Sender spool and importer: crash safety, sequence numbers, replay, quarantine, HTTPS with mutual TLS."""
import datetime as dt
import hashlib
import json
import os

import pytest

from tests.exchange_helpers import ExchangeServer, events, make_pki, resign, write_trust
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.exchange import importer as imp, seal, spool as sp, transfer as x
from intelmq_crossborder.exchange.state import StateError
def line(i):
    return json.dumps({"extra.n": i, "source.ip": "192.0.2.1"}, sort_keys=True).encode()


@pytest.fixture()
def keys():
    return {"de-hub": b.generate_private_key(), "fr-hub": b.generate_private_key()}


@pytest.fixture()
def trust(tmp_path, keys):
    return write_trust(tmp_path / "trust.yaml", keys)


def spool(tmp_path, keys, **kw):
    return sp.Spool(tmp_path / "spool", tmp_path / "outbox", "de-hub", "fr-hub", keys["de-hub"],
                   sent_dir=tmp_path / "sent", **kw)


def bundle_lines(path, trust):
    with b.open_bundle(path, trust, "fr-hub") as opened:
        opened.verify_data()
        return [json.loads(l)["extra.n"] for _, l in opened.iter_lines()]


# --- spool --------------------------------------------------------------------------------------

def test_spool_seals_in_sequence(tmp_path, keys, trust):
    s = spool(tmp_path, keys)
    s.recover()
    assert s.seal() is None, "an empty spool is not sealed by default"
    for i in range(3):
        s.append(line(i))
    first = s.seal()
    for i in range(3, 5):
        s.append(line(i))
    second = s.seal()
    assert b.verify_bundle(first, trust).sequence == 1 and b.verify_bundle(second, trust).sequence == 2
    assert bundle_lines(first, trust) == [0, 1, 2] and bundle_lines(second, trust) == [3, 4]
    assert not (tmp_path / "spool" / "spool.jsonl").exists()


def test_spool_survives_restart_and_cuts_partial_line(tmp_path, keys, trust):
    s = spool(tmp_path, keys)
    s.recover()
    for i in range(4):
        s.append(line(i))
    # the process dies in the middle of writing a fifth line (never acknowledged)
    with open(tmp_path / "spool" / "spool.jsonl", "ab") as fh:
        fh.write(b'{"extra.n": 4, "sou')
    s2 = spool(tmp_path, keys)
    s2.recover()
    assert s2.count == 4 and json.loads(s2.last_line)["extra.n"] == 3
    s2.append(line(5))
    assert bundle_lines(s2.seal(), trust) == [0, 1, 2, 3, 5]


@pytest.mark.parametrize("crash_point", ["after_rename", "after_bundle"])
def test_interrupted_seal_is_finished_once(tmp_path, keys, trust, crash_point, monkeypatch):
    s = spool(tmp_path, keys)
    s.recover()
    for i in range(3):
        s.append(line(i))
    if crash_point == "after_rename":
        real = sp.Spool._finish_seal
        monkeypatch.setattr(sp.Spool, "_finish_seal", lambda self: (_ for _ in ()).throw(SystemExit("killed")))
        with pytest.raises(SystemExit):
            s.seal()
        monkeypatch.setattr(sp.Spool, "_finish_seal", real)
        assert not list((tmp_path / "outbox").glob("*.xbundle"))
    else:
        monkeypatch.setattr(sp.Spool, "_save_state", _crash_on_commit(sp.Spool._save_state))
        with pytest.raises(SystemExit):
            s.seal()
        monkeypatch.undo()
        assert len(list((tmp_path / "outbox").glob("*.xbundle"))) == 1
    s2 = spool(tmp_path, keys)
    sealed = s2.recover()
    bundles = sorted((tmp_path / "outbox").glob("*.xbundle"))
    assert len(bundles) == 1, "sealed exactly once"
    assert bundle_lines(bundles[0], trust) == [0, 1, 2]
    assert s2.next_sequence == 2 and s2.count == 0
    s2.append(line(9))
    assert b.verify_bundle(s2.seal(), trust).sequence == 2
    assert sealed == [] or sealed == bundles


def _crash_on_commit(real):
    def save(self):
        if self.state.get("last_bundle"):
            raise SystemExit("killed before the sequence number was committed")
        real(self)
    return save


def test_leftover_temp_files_removed(tmp_path, keys):
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / ".abc.xbundle.tmp").write_bytes(b"half")
    spool(tmp_path, keys).recover()
    assert not list((tmp_path / "outbox").iterdir())


# --- seal schedule and redelivery (the exchange output's logic, no IntelMQ) -------------------

def _utc(*args):
    return dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()


def test_last_cut_is_the_latest_daily_cut_at_or_before_now():
    now = _utc(2026, 11, 23, 1, 30)
    assert seal.last_cut("02:00", now) == _utc(2026, 11, 22, 2, 0)
    assert seal.last_cut("01:00", now) == _utc(2026, 11, 23, 1, 0)
    assert seal.last_cut("01:30", now) == now
    assert seal.last_cut(" 2:5 ", now) == _utc(2026, 11, 22, 2, 5)


@pytest.mark.parametrize("value", ["25:00", "02:60", "2", "aa:bb", "1:2:3", "-1:00", "", None, 200])
def test_seal_at_must_be_a_time_of_day(value):
    with pytest.raises(ValueError):
        seal.parse_seal_at(value)


def test_seal_schedule_due():
    opened = _utc(2026, 11, 22, 12, 0)
    by_size = seal.SealSchedule(max_events=3, max_age=0)
    assert not by_size.due(2, opened, opened + 10 ** 6)
    assert by_size.due(3, opened, opened)
    by_age = seal.SealSchedule(max_events=100, max_age=3600)
    assert not by_age.due(0, opened, opened + 7200), "an empty spool is never due"
    assert not by_age.due(1, opened, opened + 3599)
    assert by_age.due(1, opened, opened + 3600)
    nightly = seal.SealSchedule(max_events=100, max_age=0, seal_at="02:00")
    assert not nightly.due(5, opened, _utc(2026, 11, 23, 1, 59))
    assert nightly.due(5, opened, _utc(2026, 11, 23, 2, 0))
    assert not nightly.due(5, _utc(2026, 11, 23, 2, 0), _utc(2026, 11, 23, 2, 1)), "opened at the cut"
    assert not seal.SealSchedule(max_events=100, max_age=0).due(5, opened, opened + 10 ** 9)


def test_seal_schedule_parameters_as_the_manager_saves_them():
    assert seal.SealSchedule.from_parameters("", "", "") == seal.SealSchedule(100000, 86400, None)
    assert seal.SealSchedule.from_parameters(None, 0, " 02:00 ") == seal.SealSchedule(100000, 0, "02:00")
    assert seal.schedule_problems("", "", "") == []
    assert seal.schedule_problems(0, -1, "25:00") == [
        "Parameter seal_at must be a UTC time of day HH:MM, e.g. 02:00.",
        "Parameter max_bundle_events must be a positive integer.",
        "Parameter max_bundle_age must be a positive integer."]
    assert seal.schedule_problems(True, 1.5, None) == [
        "Parameter max_bundle_events must be a positive integer.",
        "Parameter max_bundle_age must be a positive integer."]
    with pytest.raises(ValueError, match="seal_at"):
        seal.SealSchedule(seal_at="24:00")


def test_redelivery_digest_of_the_last_spooled_and_the_last_sealed_line(tmp_path, keys):
    s = spool(tmp_path, keys)
    s.recover()
    assert s.redelivery_digest() is None
    s.append(line(1))
    s.append(line(2))
    s.close()
    s = spool(tmp_path, keys)
    s.recover()
    expected = hashlib.sha256(line(2)).hexdigest()
    assert s.redelivery_digest() == expected
    s.seal()
    s = spool(tmp_path, keys)          # the spool is empty now: the digest comes from the state
    s.recover()
    assert s.count == 0 and s.redelivery_digest() == expected
    guard = sp.RedeliveryGuard(s.redelivery_digest())
    assert guard.is_repeat(line(2))
    assert not guard.is_repeat(line(2)), "only the first message after a start is compared"
    guard = sp.RedeliveryGuard(expected)
    assert not guard.is_repeat(line(3)) and not guard.is_repeat(line(2))
    assert not sp.RedeliveryGuard(None).is_repeat(line(2))


def test_spool_state_with_a_bad_redelivery_digest_is_refused(tmp_path, keys):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "state.json").write_text(json.dumps({"next_sequence": 2, "last_line_sha256": 7}))
    with pytest.raises(StateError, match="last_line_sha256"):
        spool(tmp_path, keys)


# --- importer -----------------------------------------------------------------------------------

class Sink:
    def __init__(self, fail_after=None):
        self.lines, self.calls, self.fail_after = [], 0, fail_after

    def __call__(self, lines, manifest, first, chunk):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise SystemExit("killed")
        self.calls += 1
        assert first == len(self.lines) or True
        self.lines.extend(json.loads(l)["extra.n"] for l in lines)


def importer(tmp_path, trust, **kw):
    return imp.Importer("fr-hub", trust, tmp_path / "state", tmp_path / "quarantine", tmp_path / "archive",
                      chunk_lines=kw.pop("chunk_lines", 4), **kw)


def send(tmp_path, keys, seq, n=10, start=0, recipient="fr-hub", sender="de-hub"):
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return b.write_bundle(inbox, sender, recipient, seq, keys[sender], events(n, start))


def quarantined(tmp_path):
    return {p.name: json.loads(p.read_text())["reason"] for p in (tmp_path / "quarantine").glob("*.reason.json")}


def test_import_in_sequence_and_idempotent(tmp_path, keys, trust):
    first = send(tmp_path, keys, 1, 10)
    send(tmp_path, keys, 2, 5, start=10)
    sink = Sink()
    results = importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    assert [r.status for r in results] == ["imported", "imported"]
    assert sink.lines == list(range(15))
    # the same bundle delivered again (e.g. pushed twice): nothing added, not quarantined
    (tmp_path / "inbox" / first.name).write_bytes((tmp_path / "archive" / first.name).read_bytes())
    results = importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    assert [r.status for r in results] == ["duplicate"] and sink.lines == list(range(15))
    assert quarantined(tmp_path) == {}


def test_replay_of_used_sequence_is_quarantined(tmp_path, keys, trust):
    send(tmp_path, keys, 1, 3)
    sink = Sink()
    importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    replay = send(tmp_path, keys, 1, 3, start=100)       # new bundle id, old sequence number
    results = importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    assert [r.reason_code for r in results] == ["replay"]
    assert sink.lines == [0, 1, 2]
    assert quarantined(tmp_path) == {replay.name + ".reason.json": "replay"}
    assert (tmp_path / "quarantine" / replay.name).exists() and not replay.exists()


def test_out_of_sequence_is_quarantined(tmp_path, keys, trust):
    send(tmp_path, keys, 1, 2)
    gap = send(tmp_path, keys, 3, 2, start=10)
    sink = Sink()
    results = importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    assert [(r.status, r.reason_code) for r in results] == [("imported", ""), ("rejected", "out-of-sequence")]
    reason = json.loads((tmp_path / "quarantine" / (gap.name + ".reason.json")).read_text())
    assert "expected sequence 2 from de-hub, got 3" in reason["message"] and reason["manifest"]["sequence"] == 3


def test_bundles_sorted_by_sequence_not_arrival(tmp_path, keys, trust):
    send(tmp_path, keys, 2, 2, start=10)
    send(tmp_path, keys, 1, 2)
    sink = Sink()
    importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    assert sink.lines == [0, 1, 10, 11]


def test_first_sequence_rules(tmp_path, keys, trust):
    send(tmp_path, keys, 5, 1)
    assert importer(tmp_path, trust).run(tmp_path / "inbox", Sink())[0].reason_code == "out-of-sequence"
    send(tmp_path, keys, 6, 1)
    assert importer(tmp_path, trust, accept_first_sequence=True).run(tmp_path / "inbox", Sink())[0].status == "imported"


@pytest.mark.parametrize("make_bad, code", [
    (lambda tp, k: send(tp, k, 1, recipient="at-hub"), "wrong-recipient"),
    (lambda tp, k: resign(send(tp, k, 1), k["fr-hub"], lambda m: None), "unknown-key"),
])
def test_bad_bundles_quarantined_others_imported(tmp_path, keys, trust, make_bad, code):
    make_bad(tmp_path, keys)
    sink = Sink()
    results = importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    assert [r.reason_code for r in results] == [code] and sink.lines == []
    assert list(quarantined(tmp_path).values()) == [code]


def test_tampered_data_quarantined_before_any_event(tmp_path, keys, trust):
    from tests.exchange_helpers import replace_data_lines, rewrite
    path = send(tmp_path, keys, 1, 10)
    rewrite(path, data=replace_data_lines(lambda ls: ls[:-1]))
    sink = Sink()
    results = importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    assert results[0].reason_code == "hash-mismatch" and sink.lines == []


def test_revoked_key_quarantined(tmp_path, keys):
    trust = write_trust(tmp_path / "t.yaml", keys, revoked={b.key_id_of(keys["de-hub"])})
    send(tmp_path, keys, 1, 2)
    assert importer(tmp_path, trust).run(tmp_path / "inbox", Sink())[0].reason_code == "revoked-key"


def test_bundle_names_that_are_not_utf8_are_imported_and_quarantined(tmp_path, keys, trust):
    """A file name from outside (any bytes) ends up in the reason file and the state as text."""
    good = send(tmp_path, keys, 1, 3)
    inbox = os.fsencode(tmp_path / "inbox")
    os.rename(good, os.path.join(inbox, b"\xff-good.xbundle"))
    with open(os.path.join(inbox, b"\xfe-bad.xbundle"), "wb") as fh:
        fh.write(b"not a tar file")
    sink = Sink(fail_after=0)
    with pytest.raises(SystemExit):           # stops inside the good bundle: its name is in the state
        importer(tmp_path, trust).run(tmp_path / "inbox", sink)
    state = json.loads((tmp_path / "state" / "import-state.json").read_text(encoding="utf-8"))
    assert state["in_progress"]["file"] == "\\udcff-good.xbundle"
    (reason,) = (tmp_path / "quarantine").glob("*.reason.json")
    info = json.loads(reason.read_text(encoding="utf-8"))
    assert info["file"] == "\\udcfe-bad.xbundle" and info["reason"] == "malformed"
    assert info["message"].startswith("\\udcfe-bad.xbundle: not a bundle")
    resumed = Sink()
    assert [r.status for r in importer(tmp_path, trust).run(tmp_path / "inbox", resumed)] == ["resumed"]
    assert resumed.lines == [0, 1, 2]


@pytest.mark.parametrize("fail_after", [0, 1, 2])
def test_crash_resume_no_loss_no_duplicates(tmp_path, keys, trust, fail_after):
    send(tmp_path, keys, 1, 10)              # chunks of 4: 0-3, 4-7, 8-9
    send(tmp_path, keys, 2, 3, start=10)
    delivered = Sink(fail_after=fail_after)
    with pytest.raises(SystemExit):
        importer(tmp_path, trust).run(tmp_path / "inbox", delivered)
    state = json.loads((tmp_path / "state" / "import-state.json").read_text())
    assert state["in_progress"]["next_line"] == 4 * fail_after
    resumed = Sink()
    results = importer(tmp_path, trust).run(tmp_path / "inbox", resumed)
    assert [r.status for r in results] == ["resumed", "imported"]
    assert delivered.lines + resumed.lines == list(range(13))
    # and a third run adds nothing
    again = Sink()
    assert importer(tmp_path, trust).run(tmp_path / "inbox", again) == [] and again.lines == []


# --- HTTPS with mutual TLS -----------------------------------------------------------------------

@pytest.fixture()
def pki(tmp_path):
    return make_pki(tmp_path)


def test_push_and_pull_with_mutual_tls(tmp_path, keys, trust, pki):
    s = spool(tmp_path, keys)
    s.recover()
    s.append(line(1))
    s.seal()
    s.append(line(2))
    s.seal()
    with ExchangeServer(pki, tmp_path / "served") as server:
        session = x.https_session(pki["client_cert"], pki["client_key"], pki["ca"])
        pushed = x.push_outbox(tmp_path / "outbox", server.url, session, sent_dir=tmp_path / "sent")
        assert len(pushed) == 2 and pushed == sorted(pushed)
        assert not list((tmp_path / "outbox").glob("*.xbundle"))
        assert sorted(p.name for p in (tmp_path / "sent").iterdir()) == pushed
        assert all(req[2] and ("commonName", "client") in req[2]["subject"][0] for req in server.requests)
        inbox = tmp_path / "pulled"
        inbox.mkdir()
        fetched = x.pull_bundles(server.url, inbox, session, already=[])
        assert fetched == pushed
        assert x.pull_bundles(server.url, inbox, session, already=fetched) == []
        sink = Sink()
        importer(tmp_path, trust).run(inbox, sink)
        assert sink.lines == [1, 2]


def test_push_without_client_cert_fails_and_keeps_bundle(tmp_path, keys, pki):
    s = spool(tmp_path, keys)
    s.recover()
    s.append(line(1))
    s.seal()
    with ExchangeServer(pki, tmp_path / "served") as server:
        session = x.https_session(None, None, pki["ca"])
        assert x.push_outbox(tmp_path / "outbox", server.url, session) == []
    assert len(list((tmp_path / "outbox").glob("*.xbundle"))) == 1
    assert not list((tmp_path / "served").iterdir())


# --- property: whatever the order of appends, seals and crashes, every acknowledged line is bundled once ----

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

OPS = st.lists(st.sampled_from(["append", "append", "append", "seal", "restart", "partial-crash",
                                "crash-in-seal", "crash-before-commit"]), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(OPS)
def test_property_spool_exactly_once(tmp_path_factory, ops):
    import unittest.mock as mock
    tmp = tmp_path_factory.mktemp("spool")
    key = b.generate_private_key()
    trust = write_trust(tmp / "trust.yaml", {"de-hub": key})
    keys = {"de-hub": key}
    s = spool(tmp, keys)
    s.recover()
    acknowledged = []
    for op in ops:
        if op == "append":
            s.append(line(len(acknowledged)))
            acknowledged.append(len(acknowledged))
        elif op == "seal":
            s.seal()
        elif op == "restart":
            s.close()
            s = spool(tmp, keys)
            s.recover()
        elif op == "partial-crash":
            with open(tmp / "spool" / "spool.jsonl", "ab") as fh:
                fh.write(b'{"extra.n": 99999, "half')
            s = spool(tmp, keys)          # the old object is simply abandoned, as by a kill
            s.recover()
        else:
            target = "_finish_seal" if op == "crash-in-seal" else "_save_state"
            real = getattr(sp.Spool, target)

            def dying(self, *a, _real=real, _target=target):
                if _target == "_finish_seal" or self.state.get("last_bundle_pending"):
                    raise SystemExit("killed")
                return _real(self, *a)
            if target == "_save_state":
                # die at the commit of the sequence number, after the bundle was renamed into the outbox
                orig_finish = sp.Spool._finish_seal

                def finish(self, _orig=orig_finish):
                    self.state["last_bundle_pending"] = True
                    try:
                        return _orig(self)
                    finally:
                        self.state.pop("last_bundle_pending", None)
                patches = [mock.patch.object(sp.Spool, "_finish_seal", finish),
                           mock.patch.object(sp.Spool, "_save_state", dying)]
            else:
                patches = [mock.patch.object(sp.Spool, "_finish_seal", dying)]
            for p in patches:
                p.start()
            try:
                if s.count:
                    with pytest.raises(SystemExit):
                        s.seal()
                else:
                    s.seal()
            finally:
                for p in patches:
                    p.stop()
            s = spool(tmp, keys)
            s.recover()
    s.close()
    sealed = []
    sequences = []
    for path in sorted((tmp / "outbox").glob("*.xbundle")):
        sequences.append(b.verify_bundle(path, trust, "fr-hub").sequence)
        sealed.extend(bundle_lines(path, trust))
    spooled = []
    if (tmp / "spool" / "spool.jsonl").exists():
        spooled = [json.loads(l)["extra.n"] for l in (tmp / "spool" / "spool.jsonl").read_bytes().splitlines()]
    assert sealed + spooled == acknowledged
    assert sequences == list(range(1, len(sequences) + 1))
    assert not list((tmp / "outbox").glob(".*"))
