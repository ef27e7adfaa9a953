"""Cross-border provenance / loop-guard expert: stamp on the way out, guard on the way in."""
from __future__ import annotations

import collections
import time

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError

from intelmq_crossborder.runtime import fanout

from intelmq_crossborder.policy import provenance
from intelmq_crossborder.core.fingerprint import has_identity


class CrossBorderProvenanceExpertBot(ExpertBot):
    """
    Stamp provenance on outgoing events; drop loops, over-long paths and duplicates of incoming ones.

    direction outbound (before the sharing router): sets provenance.event_uuid (a new
    UUID if the event has none), provenance.origin_hub, provenance.originator and
    provenance.origin_country (if given and not yet set), provenance.fingerprint,
    and appends hub_id to provenance.hub_path. direction inbound (after the
    collector/parser of a peer feed): drops events that already passed through this
    hub (hub_id in the hub path or as origin hub) and events whose hub path is longer
    than max_hops. In both directions, when dedup_window is above 0, an event whose
    fingerprint was already seen within dedup_window seconds is dropped (the same
    event arriving from two peers is kept once); the fingerprints are kept in Redis,
    per direction (an inbound expert never sees the outbound one's fingerprints).
    Dropped events are counted per reason, logged at debug level and summed up in
    the log every counts_interval seconds. When the fingerprint Redis is the pipeline's
    Redis server, the de-duplication, the send and the acknowledgement are one atomic
    round trip (a Lua script; otherwise a transaction of its own before the send).
    """

    direction: str = "inbound"
    hub_id: str = None
    originator: str = None
    origin_country: str = None
    max_hops: int = 8
    dedup_window: int = 86400
    dedup_key_prefix: str = "crossborder:fingerprint:"
    redis_cache_host: str = "127.0.0.1"
    redis_cache_port: int = 6379
    redis_cache_db: int = 7
    redis_cache_password: str = None
    counts_interval: int = 300

    _redis = None
    _sender = None

    def init(self):
        problems = self._problems({name: getattr(self, name) for name in
                                   ("direction", "hub_id", "origin_country", "max_hops", "dedup_window")})
        if problems:
            raise ConfigurationError("provenance", problems[0])
        self._redis = None
        if int(self.dedup_window) > 0:
            import redis
            if str(self.redis_cache_host).startswith("/"):
                conn = {"unix_socket_path": self.redis_cache_host}
            else:
                conn = {"host": self.redis_cache_host, "port": int(self.redis_cache_port)}
            self._redis = redis.Redis(db=int(self.redis_cache_db), password=self.redis_cache_password,
                                      socket_timeout=30, **conn)
        self._sender = fanout.BatchSender(self, "pipeline")
        self._dropped = collections.Counter()
        self._passed = 0
        self._no_identity = 0
        self._last_counts = time.monotonic()

    @classmethod
    def _problems(cls, params: dict) -> list:
        defaults = {name: getattr(cls, name) for name in ("direction", "max_hops", "dedup_window")}
        return provenance.parameter_problems(params, defaults)

    def process(self):
        event = self.receive_message()
        reason = None
        if self.direction == "inbound":
            reason = provenance.loop_reason(event, self.hub_id, int(self.max_hops))
        if reason is not None:
            self._drop(event, reason)
            self.acknowledge_message()
        else:
            token = self._retry_token(event)
            provenance.stamp(event, self.direction, self.hub_id, self.originator, self.origin_country)
            guard = None if token is None else fanout.Guard(
                provenance.dedup_key(self.dedup_key_prefix, self.direction, event["provenance.fingerprint"]),
                token, int(self.dedup_window), self._redis)
            if self._sender.send_one_and_acknowledge(event, guard=guard):
                self._passed += 1
            else:
                self._drop(event, "duplicate")
        if self.counts_interval and time.monotonic() - self._last_counts >= self.counts_interval:
            self.log_counts()

    def _retry_token(self, event):
        """The token of this message's de-duplication claim, taken before stamping (a retry of
        this very message passes again); None without a window or identifying fields."""
        if self._redis is None:
            return None
        if not has_identity(event):
            self._no_identity += 1
            return None
        return provenance.retry_token(event)

    def _drop(self, event, reason: str) -> None:
        self._dropped[reason] += 1
        self.logger.debug("Dropped event %s: %s.", event.get("provenance.event_uuid", "(no uuid)"), reason)

    def log_counts(self):
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self._dropped.items()) if v) or "none"
        self.logger.info("Provenance %s: passed %d (%d without identifying fields, not de-duplicated), "
                         "dropped %s.", self.direction, self._passed, self._no_identity, dropped)
        self._dropped.clear()
        self._passed = 0
        self._no_identity = 0
        self._last_counts = time.monotonic()

    def shutdown(self):
        if getattr(self, "_passed", 0) or any(getattr(self, "_dropped", {}).values()):
            self.log_counts()

    @staticmethod
    def check(parameters: dict):
        problems = CrossBorderProvenanceExpertBot._problems(parameters)
        return [["error", p[0].upper() + p[1:] + "."] for p in problems] or None


BOT = CrossBorderProvenanceExpertBot
