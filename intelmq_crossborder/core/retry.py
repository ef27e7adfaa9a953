"""Bounded exponential backoff: the one implementation every peer-facing component uses.

The wait after the n-th consecutive failure is ``initial * 2**(n-1)`` seconds, capped at
``maximum`` (``None``: no cap).  Two ways to use it:

* a loop that retries one call a bounded number of times asks :meth:`Backoff.delay` for the
  wait before each retry (the MISP calls in ``misp_push.RetryingCaller``, the CSAF downloads
  in ``csaf_distribution.Fetcher``, the data lake's bulk retries in ``datalake.indexer.BulkIndexer``);
* a component that keeps a peer's state between calls (the exchange push,
  ``exchange.Pusher``) records :meth:`failed` and :meth:`succeeded` and asks :meth:`ready`
  before it contacts the peer again.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

__all__ = ["Backoff"]

_MAX_EXPONENT = 60        # 2**60 x any sensible initial is beyond any cap; avoids float overflow


class Backoff:
    def __init__(self, initial: float, maximum: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        initial = float(initial)
        if initial < 0:
            raise ValueError(f"backoff initial wait must be >= 0, got {initial}")
        if maximum is not None:
            maximum = float(maximum)
            if maximum < initial:
                raise ValueError(f"backoff maximum {maximum} is below the initial wait {initial}")
        self.initial, self.maximum, self.clock = initial, maximum, clock
        self.failures = 0
        self.next_at: Optional[float] = None

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (0: none)."""
        if failures <= 0:
            return 0.0
        wait = self.initial * 2.0 ** min(failures - 1, _MAX_EXPONENT)
        return wait if self.maximum is None else min(wait, self.maximum)

    # --- state between calls ----------------------------------------------------------
    def failed(self) -> float:
        """Record one more consecutive failure; returns the wait before the next attempt."""
        self.failures += 1
        wait = self.delay(self.failures)
        self.next_at = self.clock() + wait
        return wait

    def succeeded(self) -> None:
        self.failures, self.next_at = 0, None

    def remaining(self) -> float:
        """Seconds until the next attempt is due (0 when it is)."""
        if self.next_at is None:
            return 0.0
        return max(0.0, self.next_at - self.clock())

    def ready(self) -> bool:
        return self.remaining() == 0.0
