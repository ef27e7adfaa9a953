"""Per-run Redis databases and queue names, so two test runs on one machine never collide.

``conftest.pytest_configure`` calls :func:`claim` before any test module is imported; test modules
then take their database numbers from here, e.g. ``from tests.isolation import REDIS_DB``:

* ``REDIS_DBS`` -- :data:`COUNT` databases held for this run by a
  :class:`~intelmq_crossborder.runtime.instance.RedisDatabaseLease` (lock keys
  ``crossborder:test-db-lock:<n>`` in database 0, kept alive while the run lasts, released at its end).
  ``REDIS_DB`` is the first: the database of the bot and integration tests; a test that needs several
  (the four-hub consortium, a second database on the same server) takes ``REDIS_DBS[i]``.
* ``QUEUE_PREFIX`` -- a prefix unique to the run for queue names on RabbitMQ, where queue names are
  global (``prefix_queues(runtime, QUEUE_PREFIX + "member.")``).

``XB_TEST_REDIS_DBS=11,12,13,14`` uses those databases without claiming them (a CI job alone on
its Redis).  Without a reachable Redis nothing is claimed (nothing to collide with) and the
defaults below are used; the tests that need Redis then fail on their own.
"""
from __future__ import annotations

import os
import uuid
from typing import Optional, Tuple

from intelmq_crossborder.demo.consortium import DEFAULT_DBS
from intelmq_crossborder.runtime.instance import RESERVED_DBS, RedisDatabaseLease

#: databases per run: the consortium tests run four hubs, each on its own database
COUNT = 4
ENV_DBS = "XB_TEST_REDIS_DBS"
ENV_PREFIX = "XB_TEST_QUEUE_PREFIX"
#: never claimed: IntelMQ's defaults and the databases of ``make demo`` (which does not lease)
EXCLUDE = tuple(sorted(set(RESERVED_DBS) | set(DEFAULT_DBS)))
#: without Redis (nothing claimed)
FALLBACK = (11, 12, 13, 14)

REDIS_DBS: Tuple[int, ...] = FALLBACK
REDIS_DB: int = FALLBACK[0]
QUEUE_PREFIX: str = "xbtest."

_lease: Optional[RedisDatabaseLease] = None


def _set(dbs: Tuple[int, ...], prefix: str) -> None:
    global REDIS_DBS, REDIS_DB, QUEUE_PREFIX
    REDIS_DBS, REDIS_DB, QUEUE_PREFIX = dbs, dbs[0], prefix
    os.environ[ENV_DBS] = ",".join(map(str, dbs))     # for subprocesses started by the tests
    os.environ[ENV_PREFIX] = prefix


def claim(wait: float = 120) -> str:
    """Take this run's databases and queue prefix; returns a line for pytest's header."""
    global _lease
    import redis

    prefix = os.environ.get(ENV_PREFIX) or f"xbtest-{uuid.uuid4().hex[:8]}."
    given = os.environ.get(ENV_DBS)
    if given:
        dbs = tuple(int(n) for n in given.split(","))
        if len(dbs) < COUNT or len(set(dbs)) != len(dbs) or 0 in dbs:
            raise ValueError(f"{ENV_DBS} must name {COUNT} distinct Redis databases other than 0, got {given!r}")
        _set(dbs, prefix)
        return f"Redis databases {dbs} (from {ENV_DBS}, not locked), queue prefix {prefix}"
    lease = RedisDatabaseLease(COUNT, exclude=EXCLUDE, keepalive=True)
    try:
        dbs = lease.acquire(wait=wait)
    except (redis.ConnectionError, redis.TimeoutError):
        _set(FALLBACK, prefix)
        return f"Redis databases {FALLBACK} (no Redis reachable: nothing claimed), queue prefix {prefix}"
    _lease = lease
    _set(dbs, prefix)
    return f"Redis databases {dbs} (claimed for this run), queue prefix {prefix}"


def release() -> None:
    global _lease
    if _lease is not None:
        _lease.release()
        _lease = None
