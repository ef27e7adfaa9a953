"""Early warnings towards EU-CyCLONe and the CSIRTs Network.

Two triggers (see docs/bots/exchange.md, "Early-warning expert"):

* **Spread**: the same indicator or incident reported by at least ``min_hubs``
  hubs or ``min_countries`` countries within ``window`` seconds.  State is a Redis
  sorted set per indicator key: one member per (hub, country, TLP, do-not-disclose)
  scored by the time it was last seen; members older than the window are trimmed
  on every update.  A hub that reports the same thing again does not count twice,
  and a relayed copy counts for its ``provenance.origin_hub``, not for the relay.
* **Flag**: the event itself says it is large-scale or severe.

What the warning may carry is decided here, never by the recipients:

1. An input's level and "do not disclose the source" flag are what
   :func:`intelmq_crossborder.core.tlp.event_tlp` reads (every label counts, the most
   restrictive wins); an input whose labels cannot be read raises
   :class:`~intelmq_crossborder.core.tlp.LabelError` (the expert dumps it).
2. Inputs above ``max_tlp`` (what the early-warning recipients may see) do not
   count and do not appear at all, not even as a number: a TLP:RED report must
   not be what makes a warning go out.  Events without any label are treated
   as ``default_tlp``.
3. The warning's ``sharing.tlp`` is the most restrictive TLP of the inputs that
   counted (so it never exceeds ``max_tlp``); ``sharing.pap`` likewise.
4. Inputs whose source is hidden count, but neither their hub nor their country
   is named (one hub per country would name it): they appear only as a number
   of undisclosed contributors.  When one is hidden, the indicator is not copied
   either if its field names or points at the originator (:data:`tlp.SOURCE_FIELDS`,
   e.g. ``csaf.tracking_id``).
5. The warning copies no details of the inputs except, with ``include_indicator``,
   the one field that is the indicator key (e.g. ``source.ip``).  Never copied:
   ``raw``, ``comment``, ``extra.*``, ``feed.*``, ``provenance.originator``, other
   ``source.*``/``destination.*`` fields.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from intelmq_crossborder.core import fingerprint, tlp
__all__ = ["DEFAULT_KEY_FIELDS", "indicator_key", "Contribution", "Spread", "Tracker", "build_warning",
           "is_flagged", "PAP_ORDER", "read_level"]

#: Fields that identify "the same indicator or incident", in order of preference.
#: ``fingerprint`` is the event's identity from :mod:`intelmq_crossborder.core.fingerprint`
#: (``provenance.fingerprint`` when the provenance expert set it): the same event
#: reported by several hubs, for events that carry none of the indicators before it.
DEFAULT_KEY_FIELDS = (
    "extra.incident_id", "malware.hash.sha256", "malware.hash.sha1", "malware.hash.md5",
    "source.url", "source.fqdn", "source.ip", "product.vulnerabilities", "csaf.tracking_id",
    "fingerprint",
)
FINGERPRINT_KEY = "fingerprint"
_CASE_SENSITIVE = {"source.url", "extra.incident_id", "csaf.tracking_id"}
PAP_ORDER = ("CLEAR", "WHITE", "GREEN", "AMBER", "RED")


def indicator_key(event, fields: Sequence[str] = DEFAULT_KEY_FIELDS) -> Optional[tuple]:
    """``(field, normalised value)`` of the first key field the event has, or None.

    The pseudo-field ``fingerprint`` stands for the event's fingerprint
    (:func:`intelmq_crossborder.core.fingerprint.fingerprint`).

    Hashes, host names and CVE ids are compared case-insensitively; a CVE list is
    sorted and deduplicated.  URLs keep their case (paths are case-sensitive).
    """
    for name in fields:
        if name == FINGERPRINT_KEY:
            value = event.get("provenance.fingerprint")
            if not value and fingerprint.has_identity(event):
                value = fingerprint.fingerprint(event)
            if value:
                return FINGERPRINT_KEY, str(value).lower()
            continue
        value = event.get(name)
        if value is None or value == "":
            continue
        text = str(value).strip()
        if name not in _CASE_SENSITIVE:
            text = text.lower()
        if name == "product.vulnerabilities":
            text = ";".join(sorted({v.strip() for v in text.split(";") if v.strip()}))
        if name == "source.fqdn":
            text = text.rstrip(".")
        if text:
            return name, text
    return None


def is_flagged(event, flag_fields: Iterable[str], severity_field: str, severity_values: Iterable[str]):
    """The flag that makes this event an early warning on its own, as a short text, or None."""
    for name in flag_fields:
        value = event.get(name)
        if value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1")) \
                or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1):
            return name
    if severity_field:
        value = event.get(severity_field)
        wanted = {str(v).strip().lower() for v in severity_values}
        if value is not None and str(value).strip().lower() in wanted:
            return f"{severity_field}={str(value).strip().lower()}"
    return None


def read_level(event, default_level: tlp.Level) -> tuple:
    """``(level, hide_source)`` of an input event, read by :func:`tlp.event_tlp`: the most
    restrictive label it carries, ``default_level`` when it carries none.  Raises
    :class:`tlp.LabelError` (naming the field) for labels that cannot be read."""
    read = tlp.event_tlp(event)
    return (read.level if read.level is not None else default_level), read.hide_source


@dataclass(frozen=True)
class Contribution:
    hub: str
    country: Optional[str]
    level: tlp.Level
    undisclosed: bool
    pap: Optional[str] = None

    def member(self) -> str:
        return json.dumps([self.hub, self.country, self.level.label, self.undisclosed, self.pap],
                          separators=(",", ":"))

    @classmethod
    def from_member(cls, raw) -> "Contribution":
        hub, country, label, undisclosed, pap = json.loads(raw)
        return cls(hub, country, tlp.Level.from_label(label), bool(undisclosed), pap)


@dataclass
class Spread:
    contributions: list = field(default_factory=list)

    @property
    def hubs(self) -> set:
        return {c.hub for c in self.contributions}

    @property
    def countries(self) -> set:
        return {c.country for c in self.contributions if c.country}

    def named_hubs(self) -> list:
        hidden = {c.hub for c in self.contributions if c.undisclosed}
        return sorted(self.hubs - hidden)

    def named_countries(self) -> list:
        hidden = {c.country for c in self.contributions if c.undisclosed}
        return sorted(self.countries - hidden)

    def undisclosed_hubs(self) -> int:
        return len(self.hubs) - len(self.named_hubs())


class Tracker:
    """Redis state of the spread trigger.  ``redis`` is a ``redis.Redis`` client."""

    def __init__(self, redis, window: int, prefix: str = "crossborder:ew:"):
        self.redis = redis
        self.window = int(window)
        self.prefix = prefix

    def _key(self, kind: str, key: tuple) -> str:
        digest = hashlib.sha256(f"{key[0]}\x00{key[1]}".encode("utf-8")).hexdigest()
        return f"{self.prefix}{kind}:{digest}"

    def record(self, key: tuple, contribution: Contribution, now: Optional[float] = None) -> Spread:
        now = time.time() if now is None else now
        zkey = self._key("seen", key)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(zkey, {contribution.member(): now})
        pipe.zremrangebyscore(zkey, "-inf", now - self.window)
        pipe.zrange(zkey, 0, -1)
        pipe.expire(zkey, self.window + 60)
        members = pipe.execute()[2]
        spread = Spread()
        for raw in members:
            try:
                spread.contributions.append(Contribution.from_member(raw))
            except (ValueError, TypeError, tlp.UnknownTLPError):
                continue
        return spread

    def claim(self, key: tuple, kind: str) -> bool:
        """True the first time in a window a warning of ``kind`` is raised for ``key``."""
        return bool(self.redis.set(self._key("warned-" + kind, key), "1", nx=True, ex=self.window))


def most_restrictive_pap(values: Iterable[Optional[str]]) -> Optional[str]:
    ranked = [v.upper() for v in values if v and v.upper() in PAP_ORDER]
    if not ranked:
        return None
    worst = max(ranked, key=PAP_ORDER.index)
    return "CLEAR" if worst == "WHITE" else worst


def _human_window(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"


def build_warning(trigger: str, key: Optional[tuple], spread: Spread, classification_type: Optional[str],
                  window: int, local_hub: Optional[str], local_country: Optional[str],
                  include_indicator: bool, flag: Optional[str] = None) -> dict:
    """The fields of the early-warning event (flat IntelMQ keys), following the module's rules."""
    levels = [c.level for c in spread.contributions]
    level = tlp.most_restrictive(levels)
    named_hubs, named_countries = spread.named_hubs(), spread.named_countries()
    undisclosed = spread.undisclosed_hubs()
    hidden = any(c.undisclosed for c in spread.contributions)
    who = ", ".join(named_hubs) if named_hubs else ""
    if undisclosed:
        who = (who + " and " if who else "") + f"{undisclosed} undisclosed hub{'s' if undisclosed > 1 else ''}"
    what = f"{key[0]} indicator" if key else "event"
    kind = f" ({classification_type})" if classification_type else ""
    if trigger == "flag":
        summary = f"Early warning: {what}{kind} flagged {flag} reported by {who}."
    else:
        countries = f" in {len(spread.countries)} countries" + (f" ({', '.join(named_countries)})"
                                                                if named_countries else "")
        summary = (f"Early warning: same {what}{kind} reported by {len(spread.hubs)} hubs{countries} within "
                   f"{_human_window(window)}: {who}.")
    fields = {
        "classification.taxonomy": "other",
        "classification.type": "other",
        "classification.identifier": "crossborder-early-warning",
        "comment": summary,
        "feed.name": "Cross-border early warning",
        "sharing.tlp": level.label,
        "tlp": tlp.to_intelmq_stock(level),
        "extra.early_warning_trigger": trigger,
        "extra.contributing_hubs": named_hubs,
        "extra.contributing_countries": named_countries,
        "extra.undisclosed_contributors": undisclosed,
        "extra.hub_count": len(spread.hubs),
        "extra.country_count": len(spread.countries),
        "extra.window_seconds": int(window),
    }
    if flag:
        fields["extra.early_warning_flag"] = flag
    if classification_type:
        fields["extra.reported_classification_type"] = classification_type
    pap = most_restrictive_pap(c.pap for c in spread.contributions)
    if pap:
        fields["sharing.pap"] = pap
    if key:
        fields["extra.indicator_type"] = key[0]
        # an indicator that names or points at the originator (csaf.tracking_id, say)
        # would name a hidden source
        if include_indicator and not (hidden and key[0] in tlp.SOURCE_FIELDS):
            fields[key[0]] = key[1]
    if local_hub:
        fields["provenance.origin_hub"] = local_hub
    if local_country:
        fields["provenance.origin_country"] = local_country
    return fields
