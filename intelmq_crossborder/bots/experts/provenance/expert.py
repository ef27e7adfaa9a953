"""Cross-border provenance / loop-guard expert: stamp on the way out, guard on the way in."""
from __future__ import annotations

import time

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError

from intelmq_crossborder.policy import provenance
from intelmq_crossborder.runtime import fanout
from intelmq_crossborder.core.parameters import as_int, optional
from intelmq_crossborder.runtime.state_store import redis_client

_PARAMETERS = ("direction", "hub_id", "originator", "origin_country", "max_hops", "dedup_window", "dedup_key_prefix")


class CrossBorderProvenanceExpertBot(ExpertBot):
    """Stamp provenance on outgoing events (event UUID, origin hub, originator, country, fingerprint, hub path) and, on incoming ones, drop loops, paths longer than max_hops and, within dedup_window seconds, duplicates by fingerprint (kept in Redis per direction); details in docs/bots/routing.md."""

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

    _guard: provenance.ProvenanceGuard = None
    _redis = None
    _sender = None
    _reader = None

    def init(self):
        try:
            self._guard = provenance.ProvenanceGuard.from_parameters(
                {name: getattr(self, name) for name in _PARAMETERS})
            self._counts_interval = as_int(self.counts_interval, 300, "counts_interval")
            self._redis = None
            if self._guard.deduplicates:
                self._redis = redis_client(self.redis_cache_host, self.redis_cache_port,
                                           optional(self.redis_cache_db, 7), self.redis_cache_password,
                                           socket_timeout=30)
        except ValueError as exc:
            raise ConfigurationError("provenance", str(exc)) from None
        self._sender = fanout.BatchSender(self, "pipeline")
        self._reader = fanout.EventReader(self, sender=self._sender)
        self._last_counts = time.monotonic()

    def process(self):
        received = self._reader.receive()
        event = dict(received)               # stamped as a plain dict, checked by the reader
        admission = self._guard.admit(event)
        if admission.drop is not None:
            self._dropped(event, admission.drop)
            self._sender.send_and_acknowledge([])   # acknowledged; the next message read in the same round trip
        else:
            self._reader.harmonize(event, received)
            claim = admission.claim
            guard = None if claim is None else fanout.Guard(claim.key, claim.token, claim.ttl, self._redis)
            passed = self._sender.send_and_acknowledge([("_default", fanout.serialize_event(event))], guard=guard)
            self._guard.sent(passed)
            if not passed:
                self._dropped(event, "duplicate")
        if self._counts_interval and time.monotonic() - self._last_counts >= self._counts_interval:
            self.log_counts()

    def _dropped(self, event, reason: str) -> None:
        self.logger.debug("Dropped event %s: %s.", event.get("provenance.event_uuid", "(no uuid)"), reason)

    def log_counts(self):
        reader = self._reader
        self.logger.info("%s Received %d event(s) validated from the memo of known values, %d through "
                         "IntelMQ's own receive.", self._guard.summary(), reader.fast, reader.slow)
        reader.fast = reader.slow = 0
        self._last_counts = time.monotonic()

    def shutdown(self):
        if self._guard is not None and self._guard.pending():
            self.log_counts()

    @staticmethod
    def check(parameters: dict):
        problems = provenance.parameter_problems(parameters)
        try:
            as_int(parameters.get("counts_interval"), 300, "counts_interval")
        except ValueError as exc:
            problems.append(str(exc))
        return [["error", p[0].upper() + p[1:] + "."] for p in problems] or None


BOT = CrossBorderProvenanceExpertBot
