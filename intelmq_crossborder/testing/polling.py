"""The one way tests (and test doubles) wait for a condition: poll it, never sleep a fixed time.

``wait_until(lambda: queue_empty(), 30, "the queue to drain")`` returns the first truthy
value of the predicate, or raises :class:`WaitTimeout` naming what it waited for.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar, Union

from intelmq_crossborder.core.errors import CrossBorderError

T = TypeVar("T")


class WaitTimeout(CrossBorderError, AssertionError):
    """The condition did not hold in time; an AssertionError, so a test reports it as a failure."""


def wait_until(predicate: Callable[[], T], timeout: float = 10.0,
               message: Union[str, Callable[[], str]] = "the condition", *, interval: float = 0.1) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value; return that value.

    The predicate is called once more at the deadline, so a condition that becomes true during the
    last interval is not missed.  After ``timeout`` seconds raise :class:`WaitTimeout` with
    ``message`` (or ``message()``, evaluated then: e.g. the current queue lengths)."""
    if timeout < 0 or interval <= 0:
        raise ValueError("timeout must be >= 0 and interval > 0")
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = message() if callable(message) else message
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(min(interval, remaining))
