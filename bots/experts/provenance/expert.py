"""Cross-border provenance / loop-guard expert: stamp on the way out, guard on the way in."""
from __future__ import annotations

import collections
import hashlib
import json
import re
import time
import uuid

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError

from intelmq_crossborder.fingerprint import fingerprint, has_identity

_HUB_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


def hub_path(event) -> list:
    """The hubs an event passed through (``provenance.hub_path``), oldest first."""
    value = event.get("provenance.hub_path")
    return [h for h in (value.split(",") if isinstance(value, str) else []) if h]


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
    the log every counts_interval seconds.
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
        self._dropped = collections.Counter()
        self._passed = 0
        self._no_identity = 0
        self._last_counts = time.monotonic()

    @classmethod
    def _problems(cls, params: dict) -> list:
        out = []
        direction = params.get("direction", cls.direction)
        if direction not in ("inbound", "outbound"):
            out.append(f"parameter direction must be inbound or outbound, not {direction!r}")
        hub = params.get("hub_id")
        if not hub or not _HUB_RE.match(str(hub)):
            out.append(f"parameter hub_id must be a hub id like 'at-hub' ([a-z0-9][a-z0-9._-]*), not {hub!r}")
        country = params.get("origin_country")
        if country and not _COUNTRY_RE.match(str(country)):
            out.append(f"parameter origin_country must be an ISO 3166-1 alpha-2 code, not {country!r}")
        for name in ("max_hops", "dedup_window"):
            value = params.get(name, getattr(cls, name))
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                out.append(f"parameter {name} must be a non-negative integer, not {value!r}")
        return out

    def process(self):
        event = self.receive_message()
        reason = self._inbound_reason(event) if self.direction == "inbound" else None
        if reason is None:
            # The token tells a retry of this very message (same content, e.g. after a
            # restart) from the same event arriving again from another peer.
            token = self._token(event) if self._redis is not None else None
            self._stamp(event)
            reason = self._duplicate_reason(event, token)
        if reason is None:
            self._passed += 1
            self.send_message(event)
        else:
            self._dropped[reason] += 1
            self.logger.debug("Dropped event %s: %s.", event.get("provenance.event_uuid", "(no uuid)"), reason)
        self.acknowledge_message()
        if self.counts_interval and time.monotonic() - self._last_counts >= self.counts_interval:
            self.log_counts()

    def _inbound_reason(self, event):
        path = hub_path(event)
        if self.hub_id in path or event.get("provenance.origin_hub") == self.hub_id:
            return "loop"
        if len(path) > int(self.max_hops):
            return "hop-limit"
        return None

    def _stamp(self, event) -> None:
        if not event.get("provenance.event_uuid"):
            event.add("provenance.event_uuid", str(uuid.uuid4()))
        if not event.get("provenance.fingerprint"):
            event.add("provenance.fingerprint", fingerprint(event))
        if self.direction == "outbound":
            if not event.get("provenance.origin_hub"):
                event.add("provenance.origin_hub", self.hub_id)
            if self.originator and not event.get("provenance.originator"):
                event.add("provenance.originator", self.originator)
            if self.origin_country and not event.get("provenance.origin_country"):
                event.add("provenance.origin_country", self.origin_country)
            path = hub_path(event)
            if not path or path[-1] != self.hub_id:
                event.add("provenance.hub_path", ",".join(path + [self.hub_id]), overwrite=True)

    @staticmethod
    def _token(event) -> str:
        return hashlib.sha256(json.dumps(dict(event), sort_keys=True, default=str).encode("utf-8")).hexdigest()

    def _duplicate_reason(self, event, token):
        if self._redis is None:
            return None
        if not has_identity(event):
            self._no_identity += 1
            return None
        # The direction is part of the key: an inbound expert must not take the
        # fingerprints an outbound one stored on the same Redis for duplicates (it
        # would drop every peer report of something this hub also saw).
        key = f"{self.dedup_key_prefix}{self.direction}:{event['provenance.fingerprint']}"
        tx = self._redis.pipeline(transaction=True)
        tx.set(key, token, nx=True, ex=int(self.dedup_window))
        tx.get(key)
        created, stored = tx.execute()
        if created or (stored is not None and stored.decode() == token):
            return None
        return "duplicate"

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
