"""The retraction message: withdraw, relabel or erase an event everywhere it went.

A retraction is an IntelMQ event whose fields are all in the ``retraction.*`` namespace
(plus the routing fields of :data:`ROUTING_FIELDS`); it names its target only by the ids
the hubs already share (``provenance.event_uuid``, ``provenance.fingerprint``) and never
carries the retracted event's content: a recipient that never held the event learns nothing
from it, not even the indicator value.  docs/retraction.md states the rules.

- :func:`is_retraction` tells a retraction (or a confirmation of one) from an event. Every
  module that meets one asks this FIRST: a retraction is never read with
  :func:`intelmq_crossborder.core.tlp.event_tlp` (its ``retraction.new_tlp`` is a field
  whose name says TLP, which the label reader refuses) nor decided by an agreement.
- :meth:`Retraction.from_event` reads one strictly (hostile input: wrong types, trailing
  white space, look-alike characters, unknown ``retraction.*`` fields, any content field)
  and raises :class:`RetractionError` naming the field.
- :meth:`Retraction.to_event` writes it back; :func:`new_retraction` builds a new one.
- :func:`instruction` says what an output holding an event does with a retraction:
  :data:`KEEP`, :data:`TOMBSTONE`, :data:`REMOVE` or :data:`RELABEL`.
- :meth:`Retraction.check_relabel` refuses a relabel that would lower a label or widen
  exposure, compared with :mod:`intelmq_crossborder.core.tlp`'s levels.
- A confirmation (``retraction.confirmed_by``) is the receiving hub's answer that it applied
  a retraction; it travels back in the next bundle. :func:`confirmation` builds one.
"""
from __future__ import annotations

import datetime as _dt
import re
import uuid as _uuid
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.inputs import kind_of

__all__ = ["ACTIONS", "SCOPES", "FIELDS", "ROUTING_FIELDS", "KEEP", "TOMBSTONE", "REMOVE", "RELABEL",
           "RetractionError", "Retraction", "is_retraction", "is_confirmation", "new_retraction",
           "confirmation", "instruction", "PAP_ORDER"]

WITHDRAW, RELABEL_ACTION, ERASE = "withdraw", "relabel", "erase"
ACTIONS = (WITHDRAW, RELABEL_ACTION, ERASE)
SCOPES = ("event", "indicator")

#: What an output does with an event a retraction names (:func:`instruction`).
KEEP = "keep"              # the retraction does not concern this copy
TOMBSTONE = "tombstone"    # withdraw: out of active use; keep the ids and the retraction (MISP: tag, clear to_ids)
REMOVE = "remove"          # erase (or no longer entitled): delete every value; only the ids' tombstone remains
RELABEL = "relabel"        # relabel within the holder's entitlement: keep it, write the new, higher labels

PREFIX = "retraction."
#: Every field of the namespace, with the harmonization's names.
FIELDS = ("retraction.id", "retraction.action", "retraction.reason", "retraction.time", "retraction.originator",
          "retraction.target_event_uuid", "retraction.target_fingerprint", "retraction.scope",
          "retraction.new_tlp", "retraction.new_pap", "retraction.new_do_not_disclose_source",
          "retraction.confirmed_by", "retraction.confirmed_time", "retraction.holders_reached")
#: Fields other than ``retraction.*`` a retraction may carry: where it travelled (the loop
#: guard's hub path, the hub it entered the exchange at) and the recipient the router sent
#: it to.  IntelMQ's own ``time.observation`` and ``__type`` are tolerated.  Anything else
#: would be content: refused.
ROUTING_FIELDS = ("provenance.hub_path", "provenance.origin_hub", "sharing.agreement", "time.observation", "__type")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HUB = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(\+00:00|Z)")
PAP_ORDER = {"CLEAR": 0, "GREEN": 1, "AMBER": 2, "RED": 3}
MAX_REASON = 1000


class RetractionError(CrossBorderError, ValueError):
    """A retraction that cannot be read or must not be applied; ``field`` names the field."""

    def __init__(self, field_name: Optional[str], reason: str):
        self.field = field_name
        self.reason = reason
        super().__init__(f"retraction field {field_name}: {reason}" if field_name else f"retraction: {reason}")


def is_retraction(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` is a retraction or a confirmation of one (any ``retraction.*`` field):
    never read as an event (no label reader, no agreement), always routed by the holdings."""
    if "retraction.id" in event:
        return True
    return any(isinstance(k, str) and k.startswith(PREFIX) for k in event.keys())


def is_confirmation(event: Mapping[str, Any]) -> bool:
    """Whether ``event`` is a receiving hub's confirmation that it applied a retraction."""
    return event.get("retraction.confirmed_by") not in (None, "")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _text(event: Mapping[str, Any], name: str, pattern: Optional[re.Pattern] = None, *, required: bool = False,
          what: str = "", max_len: int = 200) -> Optional[str]:
    value = event.get(name)
    if value is None or value == "":
        if required:
            raise RetractionError(name, "missing; a retraction needs it")
        return None
    if not isinstance(value, str):
        raise RetractionError(name, f"must be a string, not {kind_of(value)}")
    if len(value) > max_len:
        raise RetractionError(name, f"longer than {max_len} characters")
    if value != value.strip():
        raise RetractionError(name, "has leading or trailing white space; refused rather than trimmed")
    if pattern is not None and (not value.isascii() or not pattern.fullmatch(value)):
        raise RetractionError(name, f"{value[:80]!r} is not {what} (look-alike characters are refused)")
    return value


@dataclass(frozen=True)
class Retraction:
    """One retraction (or, with ``confirmed_by``, a hub's confirmation that it applied one)."""

    id: str
    action: str
    reason: str
    time: str
    originator: str
    scope: str = "event"
    target_event_uuid: Optional[str] = None
    target_fingerprint: Optional[str] = None
    new_tlp: Optional[tlp.Level] = None
    new_pap: Optional[str] = None
    new_do_not_disclose_source: Optional[bool] = None
    confirmed_by: Optional[str] = None
    confirmed_time: Optional[str] = None
    holders_reached: Optional[int] = None
    hub_path: tuple = field(default=())

    @property
    def is_confirmation(self) -> bool:
        return self.confirmed_by is not None

    @property
    def target(self) -> str:
        """The target as one short text for logs (ids only)."""
        if self.scope == "indicator":
            return f"indicator {self.target_fingerprint}"
        if self.target_event_uuid:
            return f"event {self.target_event_uuid}"
        return f"event with fingerprint {self.target_fingerprint}"

    # --- reading ---------------------------------------------------------------------------
    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> "Retraction":
        """Read a retraction strictly; :class:`RetractionError` names the first bad field."""
        if not isinstance(event, Mapping):
            raise RetractionError(None, f"a retraction is a mapping of fields, not {kind_of(event)}")
        for name in event.keys():
            if not isinstance(name, str):
                raise RetractionError(str(name)[:80], "a field name must be a string")
            if name.startswith(PREFIX):
                if name not in FIELDS:
                    raise RetractionError(name, "unknown retraction field (docs/retraction.md); refused")
            elif name not in ROUTING_FIELDS:
                raise RetractionError(name, "a retraction carries no event content, only the target's ids; "
                                            "refused")
        rid = _text(event, "retraction.id", _UUID, required=True, what="a lowercase UUID")
        action = _text(event, "retraction.action", required=True)
        if action not in ACTIONS:
            raise RetractionError("retraction.action", f"{action[:40]!r} is not one of {', '.join(ACTIONS)}")
        reason = _text(event, "retraction.reason", required=True, max_len=MAX_REASON)
        when = _text(event, "retraction.time", _TIME, required=True, what="a UTC time (ISO 8601, +00:00 or Z)")
        originator = _text(event, "retraction.originator", _HUB, required=True, what="a hub id")
        scope = _text(event, "retraction.scope") or "event"
        if scope not in SCOPES:
            raise RetractionError("retraction.scope", f"{scope[:40]!r} is not one of {', '.join(SCOPES)}")
        target_uuid = _text(event, "retraction.target_event_uuid", _UUID, what="a lowercase UUID")
        target_fp = _text(event, "retraction.target_fingerprint", _SHA256, what="a SHA-256 hex digest")
        if scope == "event" and not target_uuid and not target_fp:
            raise RetractionError("retraction.target_event_uuid", "an event retraction names the event's uuid "
                                                                  "or fingerprint")
        if scope == "indicator" and not target_fp:
            raise RetractionError("retraction.target_fingerprint", "an indicator retraction names the "
                                                                   "indicator's fingerprint")
        new_tlp = new_pap = None
        new_hide = None
        raw_tlp = _text(event, "retraction.new_tlp", max_len=20)
        if raw_tlp is not None:
            if not raw_tlp.isascii():
                raise RetractionError("retraction.new_tlp", "look-alike characters in a TLP label; refused")
            try:
                new_tlp = tlp.parse_level(raw_tlp, "retraction.new_tlp")
            except tlp.UnknownTLPError as exc:
                raise RetractionError("retraction.new_tlp", str(exc)) from None
        raw_pap = _text(event, "retraction.new_pap", max_len=20)
        if raw_pap is not None:
            text = raw_pap.upper()[4:] if raw_pap.upper().startswith("PAP:") else raw_pap.upper()
            text = "CLEAR" if text == "WHITE" else text
            if not raw_pap.isascii() or text not in PAP_ORDER:
                raise RetractionError("retraction.new_pap", f"{raw_pap[:40]!r} is not a PAP label")
            new_pap = text
        hide = event.get("retraction.new_do_not_disclose_source")
        if hide is not None and hide != "":
            if hide is not True and hide is not False:
                raise RetractionError("retraction.new_do_not_disclose_source",
                                      f"must be a boolean, not {kind_of(hide)}")
            if hide is False:
                raise RetractionError("retraction.new_do_not_disclose_source",
                                      "false would disclose a hidden source: a retraction only lowers exposure")
            new_hide = True
        relabel_fields = [n for n, v in (("retraction.new_tlp", new_tlp), ("retraction.new_pap", new_pap),
                                         ("retraction.new_do_not_disclose_source", new_hide)) if v is not None]
        if action == RELABEL_ACTION and not relabel_fields:
            raise RetractionError("retraction.new_tlp", "a relabel names a new TLP, PAP or do-not-disclose flag")
        if action != RELABEL_ACTION and relabel_fields:
            raise RetractionError(relabel_fields[0], f"only a relabel carries new labels, not a {action}")
        confirmed_by = _text(event, "retraction.confirmed_by", _HUB, what="a hub id")
        confirmed_time = _text(event, "retraction.confirmed_time", _TIME, what="a UTC time (ISO 8601, +00:00 or Z)")
        if confirmed_time and not confirmed_by:
            raise RetractionError("retraction.confirmed_by", "a confirmation names the hub that confirms")
        reached = event.get("retraction.holders_reached")
        if reached is not None and reached != "":
            if type(reached) is not int or not 0 <= reached <= 10**9:
                raise RetractionError("retraction.holders_reached", "must be a small non-negative integer")
        else:
            reached = None
        path = event.get("provenance.hub_path")
        hubs: tuple = ()
        if path not in (None, ""):
            if not isinstance(path, str) or len(path) > 2000:
                raise RetractionError("provenance.hub_path", "must be a comma-separated list of hub ids")
            hubs = tuple(path.split(","))
            if not all(_HUB.fullmatch(h) and h.isascii() for h in hubs):
                raise RetractionError("provenance.hub_path", "must be a comma-separated list of hub ids")
        return cls(rid, action, reason, when, originator, scope, target_uuid, target_fp, new_tlp, new_pap,
                   new_hide, confirmed_by, confirmed_time, reached, hubs)

    # --- writing ---------------------------------------------------------------------------
    def to_event(self) -> dict:
        """The retraction as flat IntelMQ fields (no content, no label field)."""
        out = {"retraction.id": self.id, "retraction.action": self.action, "retraction.reason": self.reason,
               "retraction.time": self.time, "retraction.originator": self.originator,
               "retraction.scope": self.scope}
        optional = (("retraction.target_event_uuid", self.target_event_uuid),
                    ("retraction.target_fingerprint", self.target_fingerprint),
                    ("retraction.new_tlp", None if self.new_tlp is None else self.new_tlp.label),
                    ("retraction.new_pap", self.new_pap),
                    ("retraction.new_do_not_disclose_source", self.new_do_not_disclose_source),
                    ("retraction.confirmed_by", self.confirmed_by),
                    ("retraction.confirmed_time", self.confirmed_time),
                    ("retraction.holders_reached", self.holders_reached),
                    ("provenance.hub_path", ",".join(self.hub_path) if self.hub_path else None))
        out.update((k, v) for k, v in optional if v is not None)
        return out

    def for_holder(self, event_uuid: Optional[str], fingerprint: Optional[str]) -> "Retraction":
        """This retraction addressed to a holder that got the event under ``event_uuid`` /
        ``fingerprint`` (a recipient's copy may carry derived ids: the router records them)."""
        if self.scope == "indicator":
            return replace(self, target_fingerprint=fingerprint or self.target_fingerprint)
        return replace(self, target_event_uuid=event_uuid or self.target_event_uuid,
                       target_fingerprint=fingerprint if fingerprint else
                       (None if event_uuid else self.target_fingerprint))

    def as_removal(self, why: str) -> "Retraction":
        """The withdraw-style removal a relabel sends to a holder whose agreement no longer
        admits the event: it does not tell the new labels."""
        return replace(self, action=WITHDRAW, reason=f"relabelled: {why}"[:MAX_REASON], new_tlp=None, new_pap=None,
                       new_do_not_disclose_source=None)

    # --- rules -----------------------------------------------------------------------------
    def matches(self, event_uuid: Optional[str] = None, fingerprint: Optional[str] = None) -> bool:
        """Whether a copy held under these ids is the target (ids only, never content)."""
        if self.scope == "indicator":
            return bool(fingerprint) and fingerprint == self.target_fingerprint
        if self.target_event_uuid and event_uuid:
            return event_uuid == self.target_event_uuid
        return bool(self.target_fingerprint) and fingerprint == self.target_fingerprint

    def new_level(self, held: Optional[tlp.Level]) -> Optional[tlp.Level]:
        """The level a holder's copy has after this relabel: never lower than it was."""
        if self.new_tlp is None:
            return held
        return self.new_tlp if held is None else max(held, self.new_tlp)

    def check_relabel(self, held_level: Optional[tlp.Level] = None, held_pap: Optional[str] = None) -> None:
        """Refuse (:class:`RetractionError`) a relabel that would lower the label or widen
        exposure of a copy held at ``held_level``/``held_pap``."""
        if self.action != RELABEL_ACTION:
            return
        if self.new_tlp is not None and held_level is not None and self.new_tlp < held_level:
            raise RetractionError("retraction.new_tlp", f"TLP:{self.new_tlp.label} is lower than the event's "
                                                        f"TLP:{held_level.label}: a retraction only lowers exposure")
        if self.new_pap is not None and held_pap is not None and held_pap in PAP_ORDER \
                and PAP_ORDER[self.new_pap] < PAP_ORDER[held_pap]:
            raise RetractionError("retraction.new_pap", f"PAP:{self.new_pap} is lower than the event's "
                                                        f"PAP:{held_pap}: a retraction only lowers exposure")


def new_retraction(action: str, reason: str, originator: str, *, target_event_uuid: Optional[str] = None,
                   target_fingerprint: Optional[str] = None, scope: str = "event", new_tlp: Any = None,
                   new_pap: Optional[str] = None, new_do_not_disclose_source: Optional[bool] = None,
                   retraction_id: Optional[str] = None, time: Optional[str] = None) -> Retraction:
    """A new retraction, checked as :meth:`Retraction.from_event` checks a received one."""
    if isinstance(new_tlp, tlp.Level):
        new_tlp = new_tlp.label
    event = {"retraction.id": retraction_id or str(_uuid.uuid4()), "retraction.action": action,
             "retraction.reason": reason, "retraction.time": time or _now(), "retraction.originator": originator,
             "retraction.scope": scope, "retraction.target_event_uuid": target_event_uuid,
             "retraction.target_fingerprint": target_fingerprint, "retraction.new_tlp": new_tlp,
             "retraction.new_pap": new_pap, "retraction.new_do_not_disclose_source": new_do_not_disclose_source}
    return Retraction.from_event({k: v for k, v in event.items() if v is not None})


def confirmation(retraction: Retraction, hub_id: str, holders_reached: int, time: Optional[str] = None) -> Retraction:
    """The confirmation hub ``hub_id`` sends back: it applied ``retraction`` and forwarded it
    to ``holders_reached`` holders of its own.  Carries the retraction's ids, no reason text."""
    if not _HUB.fullmatch(hub_id or ""):
        raise RetractionError("retraction.confirmed_by", f"{hub_id!r} is not a hub id")
    return replace(retraction, confirmed_by=hub_id, confirmed_time=time or _now(),
                   holders_reached=int(holders_reached), hub_path=())


def instruction(retraction: Retraction, *, event_uuid: Optional[str] = None, fingerprint: Optional[str] = None,
                level: Optional[tlp.Level] = None, ceiling: Optional[tlp.Level] = None) -> str:
    """What an output holding one event (its ``event_uuid``/``fingerprint``, the ``level`` it
    holds it at) does with ``retraction``: :data:`KEEP` (not the target, or a confirmation),
    :data:`TOMBSTONE` (withdraw), :data:`REMOVE` (erase; or a relabel above ``ceiling``, the
    highest level this output may hold), :data:`RELABEL` (write the new, higher labels).
    A relabel never lowers: the copy keeps the higher of its label and the new one."""
    if retraction.is_confirmation or not retraction.matches(event_uuid, fingerprint):
        return KEEP
    if retraction.action == WITHDRAW:
        return TOMBSTONE
    if retraction.action == ERASE:
        return REMOVE
    new = retraction.new_level(level)
    if ceiling is not None and new is not None and new > ceiling:
        return REMOVE
    return RELABEL
