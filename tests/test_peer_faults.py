"""A peer's HTTP endpoint that is slow, answers 500, drops the connection or trickles bytes.

Against a local misbehaving server (tests/fault_server.py): the CSAF provider fetcher and the
bundle push. Every call ends within its time bound with a clear error naming the URL; a
bundle that could not be pushed stays in the outbox (signed, complete) and is pushed, in
sequence order, once the peer answers again. Nothing hangs: each test has a hard alarm.
"""
import logging
import time

import pytest
import requests

import fuzzing
from fault_server import FaultServer
from intelmq_crossborder import bundle as b
from intelmq_crossborder import exchange
from intelmq_crossborder.csaf_distribution import Fetcher, FetchError

FAULTS = ["slow", "error", "drop", "trickle"]


@pytest.fixture
def server():
    srv = FaultServer()
    srv.delay = 3.0
    yield srv
    srv.close()


def _limit(mode):
    return 4.5 if mode == "trickle" else 2.5


@pytest.mark.parametrize("mode", FAULTS)
def test_csaf_fetch_fails_fast_with_the_url(server, mode):
    server.mode = mode
    server.delay = 0.2 if mode == "trickle" else 3.0
    fetcher = Fetcher(requests.Session(), timeout=1.0, max_seconds=3.0)
    started = time.monotonic()
    with fuzzing.time_guard(15), pytest.raises(FetchError) as info:
        fetcher.get(server.url + "/.well-known/csaf/white/2024/a.json")
    assert time.monotonic() - started < _limit(mode)
    assert "/.well-known/csaf/white/2024/a.json" in str(info.value)
    if mode == "error":
        assert info.value.status == 500


def _outbox(tmp_path, n=3):
    key = b.generate_private_key()
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    for seq in range(1, n + 1):
        b.write_bundle(outbox, "de-hub", "fr-hub", seq, key, [{"extra.n": seq}], fsync=False)
    return outbox


@pytest.mark.parametrize("mode", FAULTS)
def test_bundle_push_keeps_the_bundles_and_recovers(server, tmp_path, mode, caplog):
    outbox = _outbox(tmp_path)
    names = sorted(p.name for p in outbox.glob("*.xbundle"))
    server.mode = mode
    server.delay = 0.2 if mode == "trickle" else 3.0
    log = logging.getLogger("push-test")
    started = time.monotonic()
    with fuzzing.time_guard(15), caplog.at_level(logging.WARNING, "push-test"):
        pushed = exchange.push_outbox(outbox, server.url + "/inbox", requests.Session(), sent_dir=tmp_path / "sent",
                                      timeout=1.0, logger=log)
    assert time.monotonic() - started < _limit(mode)
    if mode == "trickle":     # the peer answered 200 and then dribbles a body we never need to read
        assert pushed == names
        return
    assert pushed == []                                   # the first failure stops the run (sequence order)
    assert len(server.requests) == 1
    assert sorted(p.name for p in outbox.glob("*.xbundle")) == names
    assert names[0] in caplog.text and "kept in the outbox" in caplog.text
    server.mode = "ok"                                    # the peer is back
    pushed = exchange.push_outbox(outbox, server.url + "/inbox", requests.Session(), sent_dir=tmp_path / "sent",
                                  timeout=1.0, logger=log)
    assert pushed == names and not list(outbox.glob("*.xbundle"))
    assert [p for _, p, m in server.requests if m == "ok"] == [f"/inbox/{n}" for n in names]
    assert server.received[f"/inbox/{names[0]}"] == (tmp_path / "sent" / names[0]).read_bytes()
