"""The Redis databases of a demo or benchmark run: named by the user, or leased free ones.

``make demo`` and ``make bench`` used fixed databases (1, 5, 7, 8 and 3); two runs on one
machine, or a run next to a test run, then wrote into each other's queues.
:class:`HeldDatabases` takes them, in this order, from:

1. databases given explicitly (``--redis-dbs`` / ``--redis-db``): used as given, not locked;
2. an environment variable (``XB_DEMO_REDIS_DBS``, ``BENCH_REDIS_DB``): the same, for ``make``;
3. otherwise a :class:`~intelmq_crossborder.runtime.instance.RedisDatabaseLease` of free
   databases (the lock keys the test runs use, so tests, demos and benchmarks never share
   a database), kept alive while the run lasts and released afterwards.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Iterable, Optional, Sequence, Tuple, Union

from intelmq_crossborder.runtime.instance import DB_LOCK_KEY, RESERVED_DBS, PipelineError, RedisDatabaseLease

__all__ = ["DEMO_ENV", "BENCH_ENV", "parse_databases", "HeldDatabases", "run_on_bench_database"]

#: The demo's databases, e.g. ``XB_DEMO_REDIS_DBS=1,5,7,8``.
DEMO_ENV = "XB_DEMO_REDIS_DBS"
#: The benchmarks' database, e.g. ``BENCH_REDIS_DB=11``.
BENCH_ENV = "BENCH_REDIS_DB"

#: Seconds a lock outlives a run that was killed (a live run refreshes it every third of that).
TTL = 180


def parse_databases(value: Union[str, Sequence[int]], count: int, source: str) -> Tuple[int, ...]:
    """``count`` distinct database numbers from ``"1,5,7,8"`` or a sequence; ValueError naming
    ``source`` (the option or variable) and what is wrong.  Database 0 holds the lease locks."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    else:
        parts = list(value)
    numbers = []
    for part in parts:
        if isinstance(part, bool):
            raise ValueError(f"{source}: {part!r} is not a database number")
        if isinstance(part, str):
            if not part.isascii() or not part.isdigit() or len(part) > 5:
                raise ValueError(f"{source}: {part!r} is not a database number")
            part = int(part)
        if not isinstance(part, int) or not 1 <= part <= 99999:
            raise ValueError(f"{source}: {part!r} is not a database number from 1 up")
        numbers.append(part)
    if len(numbers) != count:
        raise ValueError(f"{source} must name {count} Redis database{'s' if count != 1 else ''} "
                         f"(comma-separated), got {len(numbers)}")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{source} names a database twice: {value!r}")
    return tuple(numbers)


class HeldDatabases:
    """``count`` Redis databases for one run (see the module docstring).

    :meth:`acquire` returns them (ValueError for a malformed ``given``/environment value,
    :class:`PipelineError` when Redis is unreachable or no databases are free within
    ``wait`` seconds); :meth:`release` gives leased ones back (idempotent).  Also a
    context manager.  ``source`` says where they came from, :meth:`describe` in words.
    """

    def __init__(self, count: int, *, given: Optional[Union[str, Iterable[int]]] = None,
                 env: Optional[str] = None, option: str = "the databases", host: str = "127.0.0.1",
                 port: int = 6379, password: Optional[str] = None, wait: float = 0,
                 exclude: Iterable[int] = RESERVED_DBS, key_format: str = DB_LOCK_KEY, client=None):
        self.count = count
        self.given = given if given is None or isinstance(given, str) else tuple(given)
        self.env = env
        self.option = option
        self.host, self.port, self.password = host, port, password
        self.wait = wait
        self.exclude = tuple(exclude)
        self.key_format = key_format
        self.client = client
        self.dbs: Tuple[int, ...] = ()
        self.source = ""
        self._lease: Optional[RedisDatabaseLease] = None

    def acquire(self) -> Tuple[int, ...]:
        if self.dbs:
            return self.dbs
        if self.given is not None:
            self.dbs, self.source = parse_databases(self.given, self.count, self.option), "given"
            return self.dbs
        from_env = os.environ.get(self.env, "").strip() if self.env else ""
        if from_env:
            self.dbs, self.source = parse_databases(from_env, self.count, self.env), self.env
            return self.dbs
        import redis
        try:
            lease = RedisDatabaseLease(self.count, host=self.host, port=self.port, password=self.password,
                                       exclude=self.exclude, ttl=TTL, keepalive=True, key_format=self.key_format,
                                       client=self.client)
            try:
                lease.acquire()
            except PipelineError as exc:
                if self.wait <= 0:
                    raise
                print(f"waiting up to {self.wait:g}s for free Redis databases ({exc})", file=sys.stderr, flush=True)
                lease.acquire(wait=self.wait)
        except redis.RedisError as exc:
            raise PipelineError(f"Redis at {self.host}:{self.port} is not usable to lease databases "
                                f"({type(exc).__name__}: {exc}); name them with {self.option}"
                                + (f" or {self.env}" if self.env else "")) from None
        self._lease = lease
        self.dbs, self.source = lease.dbs, "lease"
        return self.dbs

    def release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                lease.release()
            except Exception as exc:   # Redis gone: the locks expire after TTL seconds
                print(f"note: Redis databases {self.dbs} not released ({exc}); their locks expire by "
                      "themselves", file=sys.stderr)
        self.dbs = ()

    def describe(self) -> str:
        dbs = ", ".join(map(str, self.dbs))
        if self.source == "lease":
            return f"Redis databases {dbs} (leased for this run, released at its end)"
        if self.source == "given":
            return f"Redis databases {dbs} (from {self.option}, not locked)"
        return f"Redis databases {dbs} (from {self.source}, not locked)"

    def __enter__(self) -> Tuple[int, ...]:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_on_bench_database(redis_db: Optional[int], run: Callable[[int], int]) -> int:
    """A benchmark's ``run(db)`` on one Redis database: ``redis_db`` (its ``--redis-db``) as given, else
    :data:`BENCH_ENV`'s, else a free one leased for the run and released after; 2 (the error on
    stderr) when none can be had."""
    held = HeldDatabases(1, given=None if redis_db is None else [redis_db], env=BENCH_ENV,
                         option="--redis-db", wait=600)
    try:
        (db,) = held.acquire()
    except (ValueError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(held.describe(), flush=True)
    try:
        return run(db)
    finally:
        held.release()
