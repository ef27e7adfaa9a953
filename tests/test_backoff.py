"""intelmq_crossborder.core.retry.Backoff and the retry loops built on it (MISP calls)."""
import pytest
import requests

from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.formats.misp.push import PermanentMISPError, RetryingCaller, TransientMISPError


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_delay_doubles_from_the_initial_wait_up_to_the_cap():
    backoff = Backoff(1.5, 10)
    assert [backoff.delay(n) for n in range(0, 6)] == [0.0, 1.5, 3.0, 6.0, 10.0, 10.0]
    assert Backoff(2).delay(5) == 32.0                     # no cap
    assert Backoff(1, 60).delay(10 ** 6) == 60.0           # no overflow for a long outage


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        Backoff(-1)
    with pytest.raises(ValueError, match="below the initial"):
        Backoff(10, 5)


def test_state_between_calls():
    clock = Clock()
    backoff = Backoff(2, 5, clock=clock)
    assert backoff.ready() and backoff.remaining() == 0.0
    assert backoff.failed() == 2 and backoff.failures == 1
    assert not backoff.ready() and backoff.remaining() == 2
    clock.now += 1.9
    assert not backoff.ready()
    clock.now += 0.1
    assert backoff.ready()
    assert [backoff.failed(), backoff.failed(), backoff.failed()] == [4, 5, 5]
    assert not backoff.ready()
    backoff.succeeded()
    assert backoff.ready() and backoff.failures == 0
    assert backoff.failed() == 2                           # starts again from the initial wait


def test_misp_calls_retry_with_the_backoff_and_name_the_url():
    waits = []
    calls = []

    def down(*args):
        calls.append(args)
        raise requests.ConnectionError("Connection refused")

    caller = RetryingCaller(3, 0.5, sleep=waits.append, url="https://misp.peer.example/")
    with pytest.raises(TransientMISPError) as info:
        caller("event lookup", down, "uuid")
    assert len(calls) == 4 and waits == [0.5, 1.0, 2.0]
    assert str(info.value) == ("MISP event lookup failed after 4 attempt(s) at https://misp.peer.example/: "
                               "ConnectionError: Connection refused")


def test_misp_calls_4xx_not_retried():
    waits = []
    caller = RetryingCaller(3, 0.5, sleep=waits.append)
    with pytest.raises(PermanentMISPError):
        caller("event creation", lambda: {"errors": (403, {"message": "Could not add Event"})})
    assert waits == []
