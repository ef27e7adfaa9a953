"""Provenance and loop guard: THE place for hub paths, provenance stamps and de-duplication decisions.

Used by the provenance expert (``intelmq_crossborder/bots/experts/provenance``), which only
adapts :class:`ProvenanceGuard` to IntelMQ: on the way out a hub stamps its events (event
UUID, origin hub/originator/country, fingerprint, hub path); on the way in it drops events
that already passed through it or travelled too far, and, with a de-duplication window,
events whose fingerprint it has already seen from another peer.  The guard says which
de-duplication claim (:class:`Claim`: Redis key, retry token, lifetime) a message makes; the
expert makes it in Redis together with the send (``runtime.fanout.Guard``).  The fingerprint
itself is computed in :mod:`intelmq_crossborder.core.fingerprint`.
"""
from __future__ import annotations

import collections
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, MutableMapping, Optional

from intelmq_crossborder.core.fingerprint import digest, fingerprint, has_identity
from intelmq_crossborder.core.parameters import as_int, is_unset, optional

__all__ = ["DIRECTIONS", "DEFAULTS", "hub_path", "loop_reason", "stamp", "retry_token", "dedup_key",
           "parameter_problems", "Claim", "Admission", "ProvenanceGuard"]

DIRECTIONS = ("inbound", "outbound")
_HUB_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


def hub_path(event: Mapping[str, Any]) -> list:
    """The hubs an event passed through (``provenance.hub_path``), oldest first."""
    value = event.get("provenance.hub_path")
    return [h for h in (value.split(",") if isinstance(value, str) else []) if h]


def loop_reason(event: Mapping[str, Any], hub_id: str, max_hops: int) -> Optional[str]:
    """Why an incoming event must not enter hub ``hub_id``: ``loop`` (it passed through this
    hub or comes from it), ``hop-limit`` (its hub path is longer than ``max_hops``), or None."""
    path = hub_path(event)
    if hub_id in path or event.get("provenance.origin_hub") == hub_id:
        return "loop"
    if len(path) > max_hops:
        return "hop-limit"
    return None


def _set(event: MutableMapping[str, Any], key: str, value: Any) -> None:
    if hasattr(event, "add"):                     # an IntelMQ message: validated by its harmonization
        event.add(key, value, overwrite=True)
    else:
        event[key] = value


def stamp(event: MutableMapping[str, Any], direction: str, hub_id: str, originator: Optional[str] = None,
          origin_country: Optional[str] = None) -> None:
    """Add what is missing of the provenance: an event UUID and the fingerprint (both
    directions); on the way out also the origin hub, originator and country (never
    overwritten) and ``hub_id`` at the end of the hub path (once)."""
    get = event.get
    if not get("provenance.event_uuid"):
        _set(event, "provenance.event_uuid", str(uuid.uuid4()))
    if not get("provenance.fingerprint"):
        _set(event, "provenance.fingerprint", fingerprint(event))
    if direction != "outbound":
        return
    if not get("provenance.origin_hub"):
        _set(event, "provenance.origin_hub", hub_id)
    if originator and not get("provenance.originator"):
        _set(event, "provenance.originator", originator)
    if origin_country and not get("provenance.origin_country"):
        _set(event, "provenance.origin_country", origin_country)
    path = hub_path(event)
    if not path or path[-1] != hub_id:
        _set(event, "provenance.hub_path", ",".join(path + [hub_id]))


def retry_token(event: Mapping[str, Any]) -> str:
    """The digest (:func:`intelmq_crossborder.core.fingerprint.digest`) of the message as
    received (before stamping): tells a retry of this very message (same content, e.g. after
    a restart before the acknowledgement) from the same event arriving again, from another
    peer or with another observation time.  Compared only within one hub's Redis."""
    return digest(dict(event))


def dedup_key(prefix: str, direction: str, event_fingerprint: str) -> str:
    """The Redis key of a fingerprint.  The direction is part of it: an inbound expert must
    not take the fingerprints an outbound one stored on the same Redis for duplicates (it
    would drop every peer report of something this hub also saw)."""
    return f"{prefix}{direction}:{event_fingerprint}"


#: The defaults of the provenance expert's optional parameters.
DEFAULTS = {"direction": "inbound", "max_hops": 8, "dedup_window": 86400,
            "dedup_key_prefix": "crossborder:fingerprint:"}


def _count(params: Mapping[str, Any], defaults: Mapping[str, Any], name: str) -> Any:
    """A non-negative integer parameter ('' and None: the default), or the value itself when it
    is not one (so that :func:`parameter_problems` can name it)."""
    value = optional(params.get(name), defaults.get(name, DEFAULTS.get(name)))
    if isinstance(value, bool):
        return value
    try:
        number = as_int(value, None, name)
    except ValueError:
        return value
    return number if number is not None and number >= 0 else value


def parameter_problems(params: Mapping[str, Any], defaults: Mapping[str, Any] = DEFAULTS) -> list:
    """What is wrong with the provenance expert's parameters (``defaults`` fill the gaps; an
    empty string, as IntelMQ Manager saves an untouched field, is unset)."""
    out = []
    direction = optional(params.get("direction"), defaults.get("direction", DEFAULTS["direction"]))
    if direction not in DIRECTIONS:
        out.append(f"parameter direction must be inbound or outbound, not {direction!r}")
    hub = params.get("hub_id")
    if is_unset(hub) or not _HUB_RE.match(str(hub)):
        out.append(f"parameter hub_id must be a hub id like 'at-hub' ([a-z0-9][a-z0-9._-]*), not {hub!r}")
    country = optional(params.get("origin_country"))
    if country is not None and not _COUNTRY_RE.match(str(country)):
        out.append(f"parameter origin_country must be an ISO 3166-1 alpha-2 code, not {country!r}")
    for name in ("max_hops", "dedup_window"):
        value = _count(params, defaults, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            out.append(f"parameter {name} must be a non-negative integer, not {value!r}")
    return out


@dataclass(frozen=True)
class Claim:
    """The de-duplication claim of one message: ``key`` (:func:`dedup_key`) is taken with
    ``token`` (:func:`retry_token`) for ``ttl`` seconds, unless another token holds it."""

    key: str
    token: str
    ttl: int


@dataclass(frozen=True)
class Admission:
    """What to do with one message: drop it (``drop`` names the reason), or send it, with
    ``claim`` (None: no de-duplication) made in the same round trip as the send."""

    drop: Optional[str] = None
    claim: Optional[Claim] = None


class ProvenanceGuard:
    """The provenance expert's work on one event, without IntelMQ or Redis, and its counts.

    :meth:`admit` applies the loop guard (inbound), stamps the event (in place) and returns
    the :class:`Admission`; the caller sends with the claim and reports the outcome with
    :meth:`sent`.  :meth:`summary` is the log line of the counts (and resets them).
    """

    def __init__(self, direction: str, hub_id: str, originator: Optional[str] = None,
                 origin_country: Optional[str] = None, max_hops: int = DEFAULTS["max_hops"],
                 dedup_window: int = DEFAULTS["dedup_window"],
                 dedup_key_prefix: str = DEFAULTS["dedup_key_prefix"]):
        self.direction = direction
        self.hub_id = hub_id
        self.originator = optional(originator)
        self.origin_country = optional(origin_country)
        self.max_hops = int(max_hops)
        self.dedup_window = int(dedup_window)
        self.dedup_key_prefix = dedup_key_prefix
        self.dropped: collections.Counter = collections.Counter()
        self.passed = 0
        self.no_identity = 0

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> "ProvenanceGuard":
        """The guard of the expert's parameters (IntelMQ Manager's '' is unset); ValueError
        naming the first problem (:func:`parameter_problems`)."""
        problems = parameter_problems(params)
        if problems:
            raise ValueError(problems[0])
        return cls(optional(params.get("direction"), DEFAULTS["direction"]), params["hub_id"],
                   params.get("originator"), params.get("origin_country"),
                   _count(params, DEFAULTS, "max_hops"), _count(params, DEFAULTS, "dedup_window"),
                   optional(params.get("dedup_key_prefix"), DEFAULTS["dedup_key_prefix"]))

    @property
    def deduplicates(self) -> bool:
        return self.dedup_window > 0

    def admit(self, event: MutableMapping[str, Any]) -> Admission:
        """Drop (loop, hop limit) or stamp ``event`` and say which claim its send makes.  The
        retry token is taken before stamping (a retry of this very message passes again); an
        event without identifying fields is not de-duplicated (it is counted)."""
        if self.direction == "inbound":
            reason = loop_reason(event, self.hub_id, self.max_hops)
            if reason is not None:
                self.dropped[reason] += 1
                return Admission(drop=reason)
        if "retraction.id" in event:
            # a retraction (docs/retraction.md): the loop rule only; never stamped with ids of its own
            # (it names its target's) nor de-duplicated; the sharing router extends its hub path
            return Admission()
        token = None
        if self.deduplicates:
            if has_identity(event):
                token = retry_token(event)
            else:
                self.no_identity += 1
        stamp(event, self.direction, self.hub_id, self.originator, self.origin_country)
        if token is None:
            return Admission()
        key = dedup_key(self.dedup_key_prefix, self.direction, event["provenance.fingerprint"])
        return Admission(claim=Claim(key, token, self.dedup_window))

    def sent(self, passed: bool) -> None:
        """The outcome of the send: passed, or refused as a duplicate by the claim."""
        if passed:
            self.passed += 1
        else:
            self.dropped["duplicate"] += 1

    def pending(self) -> bool:
        """Whether there are counts not yet summed up."""
        return bool(self.passed or any(self.dropped.values()))

    def summary(self) -> str:
        """The counts as one log line (ending in a full stop), then reset."""
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items()) if v) or "none"
        line = (f"Provenance {self.direction}: passed {self.passed} ({self.no_identity} without identifying "
                f"fields, not de-duplicated), dropped {dropped}.")
        self.dropped.clear()
        self.passed = 0
        self.no_identity = 0
        return line
