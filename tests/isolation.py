"""Per-run Redis databases and queue names, so two test runs on one machine never collide.

Test modules take their database from here, e.g. ``from tests.isolation import REDIS_DB``; the first
such access claims it (a run that never touches Redis claims nothing), and ``conftest`` gives it back
when the run ends:

* ``REDIS_DB`` -- a database held for this run by a
  :class:`~intelmq_crossborder.runtime.instance.RedisDatabaseLease` (lock key
  ``crossborder:test-db-lock:<n>`` in database 0, kept alive while the run lasts).  ``REDIS_DBS`` is
  the tuple of this run's databases.  A test that needs more (the four-hub consortium, a second
  database on the same server) takes :func:`redis_dbs` (the ``consortium_dbs`` fixture), which leases
  the others for as long as it runs.
* ``QUEUE_PREFIX`` -- a prefix unique to the run for queue names on RabbitMQ, where queue names are
  global (``prefix_queues(runtime, QUEUE_PREFIX + "member.")``).

``XB_TEST_REDIS_DBS=11,12,13,14`` uses those databases without claiming them (a CI job alone on its
Redis; name four for the consortium tests).  Without a reachable Redis nothing is claimed (nothing to
collide with) and :data:`FALLBACK` is used; the tests that need Redis then fail on their own.
"""
from __future__ import annotations

import contextlib
import os
import sys
import uuid
from typing import Iterator, Optional, Tuple

from intelmq_crossborder.demo.consortium import DEFAULT_DBS
from intelmq_crossborder.runtime.instance import RESERVED_DBS, PipelineError, RedisDatabaseLease

#: databases per run (the 8 candidates serve 8 runs at once); more per test with :func:`redis_dbs`
COUNT = 1
#: seconds a lock outlives a run that was killed (a live run refreshes it every third of that)
TTL = 180
ENV_DBS = "XB_TEST_REDIS_DBS"
ENV_PREFIX = "XB_TEST_QUEUE_PREFIX"
#: never claimed: IntelMQ's defaults and the databases of ``make demo`` (which does not lease)
EXCLUDE = tuple(sorted(set(RESERVED_DBS) | set(DEFAULT_DBS)))
#: without Redis (nothing claimed)
FALLBACK = (11, 12, 13, 14)

_lease: Optional[RedisDatabaseLease] = None
_claimed: dict = {}          # REDIS_DBS, REDIS_DB, QUEUE_PREFIX once claimed
_header: Optional[str] = None
_failure: Optional[PipelineError] = None


def __getattr__(name: str):
    """``REDIS_DB``, ``REDIS_DBS`` and ``QUEUE_PREFIX``, claimed on first use."""
    if name not in ("REDIS_DB", "REDIS_DBS", "QUEUE_PREFIX"):
        raise AttributeError(name)
    if not _claimed:
        claim()
    return _claimed[name]


def _set(dbs: Tuple[int, ...], prefix: str) -> None:
    _claimed.update(REDIS_DBS=dbs, REDIS_DB=dbs[0], QUEUE_PREFIX=prefix)
    os.environ[ENV_DBS] = ",".join(map(str, dbs))     # for subprocesses started by the tests
    os.environ[ENV_PREFIX] = prefix


def header() -> Optional[str]:
    """What this run claimed, for pytest's summary (None if it claimed nothing)."""
    return _header


def _lease_or_wait(count: int, exclude, wait: float) -> RedisDatabaseLease:
    """A lease of ``count`` databases; says on stderr when it has to wait for other runs."""
    lease = RedisDatabaseLease(count, exclude=exclude, ttl=TTL, keepalive=True)
    try:
        lease.acquire()
    except PipelineError as exc:
        print(f"tests: waiting up to {wait:g}s for free Redis databases ({exc})", file=sys.stderr, flush=True)
        lease.acquire(wait=wait)
    return lease


def claim(wait: float = 600) -> str:
    """Take this run's databases and queue prefix (idempotent); returns a line saying what it took.

    :class:`PipelineError` when other runs hold the databases for longer than ``wait`` seconds."""
    global _header, _failure
    if _failure is not None:              # no second long wait for every module that asks
        raise _failure
    if _header is None:
        try:
            _header = _claim(wait)
        except PipelineError as exc:
            _failure = exc
            raise
    return _header


def _claim(wait: float) -> str:
    global _lease
    import redis

    prefix = os.environ.get(ENV_PREFIX) or f"xbtest-{uuid.uuid4().hex[:8]}."
    given = os.environ.get(ENV_DBS)
    if given:
        dbs = tuple(int(n) for n in given.split(","))
        if len(dbs) < COUNT or len(set(dbs)) != len(dbs) or 0 in dbs:
            raise ValueError(f"{ENV_DBS} must name at least {COUNT} distinct Redis databases other than 0, "
                             f"got {given!r}")
        _set(dbs, prefix)
        return f"Redis databases {dbs} (from {ENV_DBS}, not locked), queue prefix {prefix}"
    try:
        lease = _lease_or_wait(COUNT, EXCLUDE, wait)
    except (redis.ConnectionError, redis.TimeoutError):
        _set(FALLBACK, prefix)
        return f"Redis databases {FALLBACK} (no Redis reachable: nothing claimed), queue prefix {prefix}"
    _lease = lease
    _set(lease.dbs, prefix)
    return f"Redis databases {lease.dbs} (claimed for this run), queue prefix {prefix}"


@contextlib.contextmanager
def redis_dbs(count: int, wait: float = 600) -> Iterator[Tuple[int, ...]]:
    """``count`` distinct databases: this run's, plus others leased until the ``with`` block ends."""
    claim()
    own = _claimed["REDIS_DBS"]
    extra = count - len(own)
    if extra <= 0 or _lease is None:        # enough, or chosen by XB_TEST_REDIS_DBS / no Redis
        if extra > 0:
            raise ValueError(f"this run has the Redis databases {own}; a test needs {count}")
        yield own[:count]
        return
    lease = _lease_or_wait(extra, EXCLUDE + own, wait)
    try:
        yield own + lease.dbs
    finally:
        lease.release()


def release() -> None:
    global _lease
    if _lease is not None:
        _lease.release()
        _lease = None
