"""The Redis client of a bot's own state (de-duplication cache, early-warning windows, the
Elasticsearch journal): THE place such a client is built.

The parameters follow IntelMQ's ``redis_cache_*`` convention: a host starting with ``/`` is
a Unix socket; an empty password (as IntelMQ Manager saves it) means none. redis-py is kept
below 6 (docs/reliability.md): its default retries would repeat non-idempotent commands.
"""
from __future__ import annotations

from typing import Any, Optional

from intelmq_crossborder.core.parameters import as_int, optional

__all__ = ["redis_client"]

DEFAULT_SOCKET_TIMEOUT = 30.0


def redis_client(host: Any = "127.0.0.1", port: Any = 6379, db: Any = 0, password: Optional[str] = None,
                 socket_timeout: float = DEFAULT_SOCKET_TIMEOUT):
    """A ``redis.Redis`` for a bot's state; raises ValueError for a port or db that is not a number."""
    import redis        # imported here: the library's pure parts do not need it

    host = optional(host, "127.0.0.1")
    conn: dict = ({"unix_socket_path": host} if str(host).startswith("/")
                  else {"host": host, "port": as_int(port, 6379, "port")})
    return redis.Redis(db=as_int(db, 0, "db"), password=optional(password), socket_timeout=socket_timeout,
                       **conn)
