"""Provenance and loop guard: THE place for hub paths, provenance stamps and de-duplication keys.

Used by the provenance expert (``intelmq_crossborder/bots/experts/provenance``): on the way out a hub stamps
its events (event UUID, origin hub/originator/country, fingerprint, hub path); on the
way in it drops events that already passed through it or travelled too far, and, with
a de-duplication window, events whose fingerprint it has already seen from another
peer.  The fingerprint itself is computed in :mod:`intelmq_crossborder.core.fingerprint`.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any, Mapping, MutableMapping, Optional

from intelmq_crossborder.core.fingerprint import fingerprint

__all__ = ["DIRECTIONS", "hub_path", "loop_reason", "stamp", "retry_token", "dedup_key",
           "parameter_problems"]

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
    """SHA-256 of the message as received (before stamping): tells a retry of this very
    message (same content, e.g. after a restart before the acknowledgement) from the same
    event arriving again, from another peer or with another observation time."""
    return hashlib.sha256(json.dumps(dict(event), sort_keys=True, default=str).encode("utf-8")).hexdigest()


def dedup_key(prefix: str, direction: str, event_fingerprint: str) -> str:
    """The Redis key of a fingerprint.  The direction is part of it: an inbound expert must
    not take the fingerprints an outbound one stored on the same Redis for duplicates (it
    would drop every peer report of something this hub also saw)."""
    return f"{prefix}{direction}:{event_fingerprint}"


def parameter_problems(params: Mapping[str, Any], defaults: Mapping[str, Any]) -> list:
    """What is wrong with the provenance expert's parameters (``defaults`` fill the gaps)."""
    out = []
    direction = params.get("direction", defaults.get("direction"))
    if direction not in DIRECTIONS:
        out.append(f"parameter direction must be inbound or outbound, not {direction!r}")
    hub = params.get("hub_id")
    if not hub or not _HUB_RE.match(str(hub)):
        out.append(f"parameter hub_id must be a hub id like 'at-hub' ([a-z0-9][a-z0-9._-]*), not {hub!r}")
    country = params.get("origin_country")
    if country and not _COUNTRY_RE.match(str(country)):
        out.append(f"parameter origin_country must be an ISO 3166-1 alpha-2 code, not {country!r}")
    for name in ("max_hops", "dedup_window"):
        value = params.get(name, defaults.get(name))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            out.append(f"parameter {name} must be a non-negative integer, not {value!r}")
    return out
