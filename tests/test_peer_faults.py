"""A peer's HTTP endpoint that is slow, answers 500, drops the connection or trickles bytes.

Against a local misbehaving server (tests/fault_server.py), in-process: the CSAF provider
fetcher (bounded retries with backoff) and the bundle push (exchange.Pusher backs off while
the peer fails). Every call ends within its time bound with a clear error naming the URL; a
bundle that could not be pushed stays in the outbox (signed, complete) and is pushed, in
sequence order, once the peer answers again. Nothing hangs: each test has a hard alarm.
The same faults against real bot processes: tests/test_peer_faults_integration.py.
"""
import logging
import time

import pytest
import requests

from tests import fuzzing
from tests.fault_server import FaultServer
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.exchange import transfer as exchange
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.formats.csaf.distribution import Fetcher, FetchError

FAULTS = ["slow", "error", "drop", "trickle"]


@pytest.fixture
def server():
    srv = FaultServer().start()
    srv.delay = 3.0
    yield srv
    srv.stop()


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


# --- retries with backoff -------------------------------------------------------------------

RETRIED = ["slow", "error", "drop", "cut", "stall"]


def _fault(server, mode):
    """``stall``: headers, then silence longer than the client's read timeout (0.5 s here)."""
    server.mode = "trickle" if mode == "stall" else mode
    server.delay = 2.0 if mode in ("slow", "stall") else 3.0
    server.body = b'{"document": {"title": "an advisory long enough to be cut in half"}}'


@pytest.mark.parametrize("mode", RETRIED)
def test_csaf_fetch_retries_transient_faults_with_backoff(server, mode, caplog):
    _fault(server, mode)
    waits = []
    fetcher = Fetcher(requests.Session(), timeout=0.5, attempts=3, retry_backoff=0.05,
                      logger=logging.getLogger("fetch-test"), sleep=lambda s: (waits.append(s), time.sleep(s)))
    url = server.url + "/.well-known/csaf/white/2024/a.json"
    with fuzzing.time_guard(15), caplog.at_level(logging.WARNING, "fetch-test"), \
            pytest.raises(FetchError) as info:
        fetcher.get(url)
    assert server.count(path="/a.json") == 3
    assert waits == [0.05, 0.1]
    assert info.value.url == url and info.value.transient and "3 attempts" in info.value.reason
    assert caplog.text.count(f"GET {url}: ") == 2 and "retry 2 of 2 in 0.10 s" in caplog.text


def test_csaf_fetch_peer_back_after_a_retry(server):
    server.mode, server.status = "error", 503
    fetcher = Fetcher(requests.Session(), timeout=1, attempts=3, retry_backoff=0.05,
                      sleep=lambda s: setattr(server, "mode", "ok"))
    with fuzzing.time_guard(15):
        assert fetcher.get(server.url + "/x.json") == b"{}"
    assert [m for _, _, m in server.requests] == ["error", "ok"]


@pytest.mark.parametrize("status", [404, 403])
def test_csaf_fetch_does_not_retry_4xx(server, status):
    server.mode, server.status = "error", status
    fetcher = Fetcher(requests.Session(), timeout=1, attempts=3, retry_backoff=0.05)
    with fuzzing.time_guard(15), pytest.raises(FetchError) as info:
        fetcher.get(server.url + "/x.json")
    assert server.count() == 1 and info.value.status == status and not info.value.transient


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize("mode", FAULTS[:3])
def test_pusher_backs_off_while_the_peer_fails_then_pushes_all_in_order(server, tmp_path, mode, caplog):
    outbox = _outbox(tmp_path)
    names = sorted(p.name for p in outbox.glob("*.xbundle"))
    server.mode = mode
    server.delay = 3.0
    clock = Clock()
    sessions = []

    def session():
        sessions.append(requests.Session())
        return sessions[-1]

    log = logging.getLogger("pusher-test")
    pusher = exchange.Pusher(outbox, server.url + "/inbox/", session, Backoff(10, 40, clock=clock),
                             sent_dir=tmp_path / "sent", timeout=1.0, logger=log, wall_clock=lambda: 1.8e9)
    waits = []
    with fuzzing.time_guard(30), caplog.at_level(logging.INFO, "pusher-test"):
        for _ in range(4):
            clock.now += waits[-1] if waits else 0
            assert pusher.due()
            assert pusher.push() == []
            waits.append(pusher.backoff.remaining())
            assert not pusher.due()
            for _ in range(3):                       # while backing off: no request at all
                assert pusher.push() is None
            clock.now += waits[-1] - 0.01
            assert pusher.push() is None
            clock.now -= waits[-1] - 0.01
        assert waits == [10, 20, 40, 40]
        assert server.count() == 4                   # one request per round: the first bundle
        assert sorted(p.name for p in outbox.glob("*.xbundle")) == names
        assert caplog.text.count(f"Push of {names[0]} to {server.url}/inbox failed, kept in the outbox") == 4
        assert "3 bundle(s) waiting" in caplog.text
        assert "Failure 3 in a row; next attempt in 40 s, at 2027-01-15T08:00:40Z." in caplog.text
        server.mode = "ok"
        pusher.mark_pending()                        # a new seal does not shorten the wait
        assert pusher.push() is None
        clock.now += 40
        assert pusher.push() == names
    assert [p for _, p, m in server.requests if m == "ok"] == [f"/inbox/{n}" for n in names]
    assert not list(outbox.glob("*.xbundle")) and sorted(p.name for p in (tmp_path / "sent").iterdir()) == names
    assert pusher.backoff.failures == 0 and not pusher.due()
    assert "works again after 4 failed attempt(s)" in caplog.text
    assert len(sessions) == 5                        # a fresh session per round (closed by the pusher)
