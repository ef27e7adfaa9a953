"""Early warnings towards EU-CyCLONe and the CSIRTs Network.

Two triggers (see docs/bots/analytics.md, "Cross-border early-warning expert"):

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

import datetime as _dt
import json
import time
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Sequence

from intelmq_crossborder.core import fingerprint, tlp
from intelmq_crossborder.policy.agreements import PAP_LEVELS
from intelmq_crossborder.policy.decide import parse_pap
from intelmq_crossborder.core.parameters import as_list, is_unset, optional

__all__ = ["DEFAULT_KEY_FIELDS", "DEFAULT_FLAG_FIELDS", "indicator_key", "Contribution", "Spread", "Tracker",
           "build_warning", "is_flagged", "most_restrictive_pap", "read_level", "Settings", "parameter_problems",
           "EarlyWarning", "Evaluator", "event_ids", "build_correction", "CORRECTION_IDENTIFIER"]

#: Fields that identify "the same indicator or incident", in order of preference.
#: ``fingerprint`` is the event's identity from :mod:`intelmq_crossborder.core.fingerprint`
#: (``provenance.fingerprint`` when the provenance expert set it): the same event
#: reported by several hubs, for events that carry none of the indicators before it.
DEFAULT_KEY_FIELDS = (
    "extra.incident_id", "malware.hash.sha256", "malware.hash.sha1", "malware.hash.md5",
    "source.url", "source.fqdn", "source.ip", "product.vulnerabilities", "csaf.tracking_id",
    "fingerprint",
)
#: Fields whose true value flags an event as large-scale on its own.
DEFAULT_FLAG_FIELDS = ("extra.large_scale", "extra.crossborder_large_scale")
FINGERPRINT_KEY = "fingerprint"
_CASE_SENSITIVE = {"source.url", "extra.incident_id", "csaf.tracking_id"}


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
        hashed = fingerprint.digest(f"{key[0]}\x00{key[1]}".encode("utf-8"))    # the Redis key names: keep
        return f"{self.prefix}{kind}:{hashed}"

    def record(self, key: tuple, contribution: Contribution, now: Optional[float] = None,
               ids: Optional[str] = None) -> Spread:
        """Record a contribution for ``key`` and return the spread in the window; with ``ids``
        (:func:`event_ids`), remember in the same round trip that the event counted for ``key``."""
        now = time.time() if now is None else now
        zkey = self._key("seen", key)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(zkey, {contribution.member(): now})
        pipe.zremrangebyscore(zkey, "-inf", now - self.window)
        pipe.zrange(zkey, 0, -1)
        pipe.expire(zkey, self.window + 60)
        if ids:
            self._remember_ids(pipe, key, ids, now)
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

    # --- what a warning was raised on, for corrections after a retraction (docs/retraction.md) ---
    def _remember_ids(self, pipe, key: tuple, ids: str, now: float) -> None:
        """Queue on ``pipe``: the event ``ids`` (:func:`event_ids`) counted for ``key`` in the window."""
        zkey = self._key("ids", key)
        pipe.zadd(zkey, {ids: now})
        pipe.zremrangebyscore(zkey, "-inf", now - self.window)
        pipe.expire(zkey, self.window + 60)

    def ids_of(self, key: tuple) -> list:
        return [m.decode() if isinstance(m, bytes) else m for m in self.redis.zrange(self._key("ids", key), 0, -1)]

    def mark_warned(self, ids: Iterable[str], record: dict, ttl: int) -> None:
        """Remember, for ``ttl`` seconds, that warning ``record`` was raised on the events ``ids``."""
        text = json.dumps(record, sort_keys=True, separators=(",", ":"))
        pipe = self.redis.pipeline(transaction=False)
        for one in ids:
            for part in one.split(" "):
                if part:
                    name = f"{self.prefix}raised-on:{part}"
                    pipe.sadd(name, text)
                    pipe.expire(name, ttl)
        pipe.execute()

    def warned(self, ids: Iterable[str]) -> list:
        """The warning records raised on any of ``ids`` (event uuids or fingerprints)."""
        found: dict = {}
        for part in ids:
            for raw in self.redis.smembers(f"{self.prefix}raised-on:{part}"):
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("id"), str):
                    found[record["id"]] = record
        return [found[k] for k in sorted(found)]

    def claim_correction(self, warning_id: str, retraction_id: str, ttl: int) -> bool:
        """True the first time a correction of ``warning_id`` for ``retraction_id`` is sent."""
        return bool(self.redis.set(f"{self.prefix}corrected:{warning_id}:{retraction_id}", "1", nx=True, ex=ttl))


def most_restrictive_pap(values: Iterable[Optional[str]]) -> Optional[str]:
    """The most restrictive PAP 2.0 label of ``values`` (:func:`policy.decide.parse_pap`
    spellings; what it cannot read is left out), or None."""
    ranked = []
    for value in values:
        if value:
            try:
                ranked.append(parse_pap(value))
            except ValueError:
                continue
    return max(ranked, key=PAP_LEVELS.index) if ranked else None


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


# --- the expert's evaluation ---------------------------------------------------------

def _number(params: Mapping[str, Any], name: str, default: int) -> Any:
    """An integer parameter ('' and None: ``default``; "30" as from IntelMQ Manager: 30), or the
    value as given when it is not one (so that :func:`parameter_problems` can name it)."""
    value = optional(params.get(name), default)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class Settings:
    """The early-warning expert's parameters, read as IntelMQ Manager saves them ('' is unset)."""

    min_hubs: int = 3
    min_countries: int = 3
    window: int = 86400
    key_fields: tuple = DEFAULT_KEY_FIELDS
    flag_fields: tuple = DEFAULT_FLAG_FIELDS
    severity_field: Optional[str] = "extra.severity"
    severity_values: tuple = ("critical",)
    max_level: tlp.Level = tlp.Level.AMBER
    default_level: tlp.Level = tlp.Level.RED
    include_indicator: bool = True
    hub_id: Optional[str] = None
    country: Optional[str] = None

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> "Settings":
        """Settings of a parameter mapping; ValueError naming the first problem (:func:`parameter_problems`)."""
        errors = [text for level, text in parameter_problems(params) if level == "error"]
        if errors:
            raise ValueError(errors[0])
        d = cls()

        def listed(name: str, default: tuple) -> tuple:
            value = params.get(name)
            return default if is_unset(value) else tuple(as_list(value))
        return cls(
            min_hubs=_number(params, "min_hubs", d.min_hubs), min_countries=_number(params, "min_countries",
                                                                                      d.min_countries),
            window=_number(params, "window", d.window), key_fields=listed("key_fields", d.key_fields),
            flag_fields=listed("flag_fields", d.flag_fields),
            severity_field=optional(params.get("severity_field"), d.severity_field),
            severity_values=listed("severity_values", d.severity_values),
            max_level=tlp.parse_level(optional(params.get("max_tlp"), d.max_level.label), "parameter max_tlp"),
            default_level=tlp.parse_level(optional(params.get("default_tlp"), d.default_level.label),
                                          "parameter default_tlp"),
            include_indicator=bool(optional(params.get("include_indicator"), d.include_indicator)),
            hub_id=optional(params.get("hub_id")), country=optional(params.get("country")))


def parameter_problems(params: Mapping[str, Any]) -> List[list]:
    """``[level, text]`` for each problem of the expert's parameters (IntelMQ's ``check()`` form)."""
    d = Settings()
    results = []
    for name in ("min_hubs", "min_countries"):
        value = _number(params, name, getattr(d, name))
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            results.append(["error", f"Parameter {name} must be an integer >= 0 (0 disables it)."])
    if _number(params, "min_hubs", 1) == 0 and _number(params, "min_countries", 1) == 0:
        results.append(["warning", "Both min_hubs and min_countries are 0: only flagged events raise warnings."])
    window = _number(params, "window", d.window)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        results.append(["error", "Parameter window must be a positive number of seconds."])
    for name, default in (("max_tlp", d.max_level.label), ("default_tlp", d.default_level.label)):
        try:
            level = tlp.parse_level(optional(params.get(name), default), f"parameter {name}")
            if name == "max_tlp" and level >= tlp.Level.AMBER_STRICT:
                results.append(["error", f"Parameter max_tlp: TLP:{level.label} cannot go to EU-CyCLONe or the "
                                         "CSIRTs Network automatically; use AMBER or lower."])
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter {name}: {exc}."])
    for name in ("key_fields", "flag_fields", "severity_values"):
        value = params.get(name)
        if not is_unset(value):
            try:
                items = as_list(value)
            except ValueError:
                items = None
            if items is None or not all(isinstance(i, str) for i in items) or (name == "key_fields" and not items):
                results.append(["error", f"Parameter {name} must be a "
                                         f"{'non-empty ' if name == 'key_fields' else ''}list of "
                                         f"{'values' if name == 'severity_values' else 'field names'}."])
    return results


@dataclass(frozen=True)
class EarlyWarning:
    """One warning to raise: its trigger (``spread``/``flag``), TLP and fields (flat IntelMQ keys)."""

    trigger: str
    level: tlp.Level
    fields: dict


class Evaluator:
    """The early-warning expert's evaluation of one input event, without IntelMQ.

    :meth:`evaluate` reads the event's level (:func:`read_level`; raises
    :class:`tlp.LabelError` for labels that cannot be read), withholds it above
    ``max_level``, records its contribution in the :class:`Tracker` and returns the
    warnings it raises (at most one per key, trigger and window).
    """

    #: how long the events a warning was raised on are remembered for corrections (30 days)
    correction_ttl: int = 30 * 86400

    def __init__(self, settings: Settings, tracker: Tracker):
        self.settings = settings
        self.tracker = tracker
        self.withheld = 0

    def evaluate(self, event: Mapping[str, Any], now: Optional[float] = None) -> List[EarlyWarning]:
        s = self.settings
        level, hidden = read_level(event, s.default_level)
        if level > s.max_level:
            self.withheld += 1
            return []
        key = indicator_key(event, s.key_fields)
        flag = is_flagged(event, s.flag_fields, s.severity_field, s.severity_values)
        if key is None and flag is None:
            return []
        hub_path = (event.get("provenance.hub_path") or "").split(",")
        hub = event.get("provenance.origin_hub") or hub_path[0] or s.hub_id or "unknown"
        country = event.get("provenance.origin_country") or (s.country if hub == s.hub_id else None)
        contribution = Contribution(hub, country, level, hidden, event.get("sharing.pap"))
        classification = event.get("classification.type")
        ids = event_ids(event)
        warnings = []
        if flag is not None:
            event_uuid = event.get("provenance.event_uuid")
            claim_key = key or (("provenance.event_uuid", event_uuid) if event_uuid else None)
            if claim_key is None or self.tracker.claim(claim_key, "flag"):
                warnings.append(self._warning("flag", key, Spread([contribution]), classification, flag))
                self._raised_on(warnings[-1], [ids])
        if key is not None:
            spread = self.tracker.record(key, contribution, now, ids=ids)
            hit = (s.min_hubs and len(spread.hubs) >= s.min_hubs) or \
                  (s.min_countries and len(spread.countries) >= s.min_countries)
            if hit and self.tracker.claim(key, "spread"):
                warnings.append(self._warning("spread", key, spread, classification))
                self._raised_on(warnings[-1], self.tracker.ids_of(key))
        return warnings

    def _raised_on(self, warning: "EarlyWarning", ids: Iterable[str]) -> None:
        """Remember which events ``warning`` was raised on (ids only), for :meth:`correct`."""
        record = {"id": warning.fields["extra.early_warning_id"], "time": warning.fields["time.observation"],
                  "trigger": warning.trigger, "level": warning.level.label,
                  "pap": warning.fields.get("sharing.pap"), "indicator_type": warning.fields.get("extra.indicator_type")}
        self.tracker.mark_warned([i for i in ids if i], record, self.correction_ttl)

    def correct(self, retraction) -> List["EarlyWarning"]:
        """The corrections to send after ``retraction`` (a
        :class:`~intelmq_crossborder.policy.retraction.Retraction`): one per warning raised on an
        event it names (by uuid, or by fingerprint for an indicator-wide one), once per warning and
        retraction.  A relabel corrects only when the new level is above ``max_tlp`` (the warning
        told the recipients what they may no longer see); a confirmation corrects nothing."""
        s = self.settings
        if retraction.is_confirmation:
            return []
        if retraction.action == "relabel" and (retraction.new_tlp is None or retraction.new_tlp <= s.max_level):
            return []
        if retraction.scope == "event" and retraction.target_event_uuid:
            names = [retraction.target_event_uuid]
        else:
            names = [f"fp:{retraction.target_fingerprint}"] if retraction.target_fingerprint else []
        out = []
        for record in self.tracker.warned(names):
            if self.tracker.claim_correction(record["id"], retraction.id, self.correction_ttl):
                fields = build_correction(record, retraction, s.hub_id, s.country)
                out.append(EarlyWarning("correction", tlp.Level.from_label(record["level"]), fields))
        return out

    def _warning(self, trigger: str, key: Optional[tuple], spread: Spread, classification: Optional[str],
                 flag: Optional[str] = None) -> EarlyWarning:
        s = self.settings
        fields = build_warning(trigger, key, spread, classification, s.window, s.hub_id, s.country,
                               s.include_indicator, flag)
        fields["time.observation"] = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        fields["extra.early_warning_id"] = str(_uuid.uuid4())
        return EarlyWarning(trigger, tlp.most_restrictive(c.level for c in spread.contributions), fields)


CORRECTION_IDENTIFIER = "crossborder-early-warning-correction"


def event_ids(event: Mapping[str, Any]) -> str:
    """An event's ids as the tracker keeps them: ``"<uuid> fp:<fingerprint>"`` (either may be
    missing; empty when it has none)."""
    uuid, fp = event.get("provenance.event_uuid"), event.get("provenance.fingerprint")
    return " ".join(x for x in ((uuid if isinstance(uuid, str) else ""),
                                (f"fp:{fp}" if isinstance(fp, str) and fp else "")) if x)


def build_correction(record: Mapping[str, Any], retraction, local_hub: Optional[str],
                     local_country: Optional[str]) -> dict:
    """The correction of a warning (``record``: what :meth:`Evaluator._raised_on` kept) after
    ``retraction``: sent where the warning went (EU-CyCLONe, the CSIRTs Network), at the
    warning's TLP and PAP, naming the warning and the retraction by id.  It repeats nothing of
    the warning's content (no indicator: after an erase that would be a copy of the erased value)."""
    level = tlp.Level.from_label(record["level"])
    what = {"withdraw": "withdrawn as a false positive or an error",
            "erase": "erased (personal data): delete the indicator the warning carried",
            "relabel": "relabelled above what the warning's recipients may see: delete the warning"}
    fields = {
        "classification.taxonomy": "other",
        "classification.type": "other",
        "classification.identifier": CORRECTION_IDENTIFIER,
        "comment": (f"Correction of early warning {record['id']} ({record.get('trigger')}, {record.get('time')}): "
                    f"data it was raised on was {what.get(retraction.action, retraction.action)} by its "
                    f"originator (retraction {retraction.id}). Re-assess the warning."),
        "feed.name": "Cross-border early warning",
        "sharing.tlp": level.label,
        "tlp": tlp.to_intelmq_stock(level),
        "extra.early_warning_trigger": "correction",
        "extra.corrects_early_warning": record["id"],
        "extra.retraction_id": retraction.id,
        "extra.retraction_action": retraction.action,
        "time.observation": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    if record.get("pap"):
        fields["sharing.pap"] = record["pap"]
    if local_hub:
        fields["provenance.origin_hub"] = local_hub
    if local_country:
        fields["provenance.origin_country"] = local_country
    return fields


# --- warnings of the detectors (analytics.surge, analytics.campaign) -------------------------

DETECTION_TRIGGERS = ("surge", "campaign")
_MAX_EVIDENCE_CHARS = 16_000


def _iso_time(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).replace(microsecond=0).isoformat()


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of an alert's evidence (numbers, texts, lists, mappings with text keys)."""
    if depth > 8:
        raise ValueError("alert evidence nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return round(value, 4) if value == value and abs(value) != float("inf") else None
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    raise ValueError(f"alert evidence holds {type(value).__name__}")


def build_detection_warning(alert: Any, local_hub: Optional[str] = None, local_country: Optional[str] = None,
                            max_level: tlp.Level = tlp.Level.AMBER) -> dict:
    """The early-warning event (flat IntelMQ keys) of a detector's cross-border incident candidate,
    an :class:`intelmq_crossborder.analytics.alerts.Alert` of kind ``surge`` or ``campaign``.

    The same rules as :func:`build_warning`: the warning's TLP is the alert's (the most
    restrictive level of the events that counted; the detectors count none above their
    ``max_tlp``), and an alert without a level or above ``max_level`` raises ValueError (it is
    never sent: fail closed); hubs are counted, never named, and hidden contributors are a
    number only (``extra.undisclosed_contributors``); countries are those the alert names.  It
    carries the evidence only: the type, the countries, expected versus observed counts, no
    indicator and no event content."""
    if alert.kind not in DETECTION_TRIGGERS:
        raise ValueError(f"not a detector alert: kind {alert.kind!r}")
    if not alert.tlp:
        raise ValueError("an alert without a TLP level is not sent")
    level = tlp.Level.from_label(alert.tlp)
    if level > max_level:
        raise ValueError(f"an alert at TLP:{level.label} is above the early warning's TLP:{max_level.label}")
    evidence = _plain(alert.evidence or {})
    if len(json.dumps(evidence)) > _MAX_EVIDENCE_CHARS:
        evidence = {k: v for k, v in evidence.items() if not isinstance(v, (dict, list))}
    countries = sorted(alert.countries)
    hidden_countries = evidence.get("undisclosed_countries") if alert.kind == "surge" else None
    if alert.kind == "campaign":
        country_count = max(len(countries), int(evidence.get("observed_countries") or 0))
    else:
        country_count = len(countries) + (hidden_countries if isinstance(hidden_countries, int) else 0)
    named = ", ".join(countries)
    unnamed = country_count - len(countries)
    where = f"{country_count} countr{'ies' if country_count != 1 else 'y'}" + (f" ({named}" + (f" and {unnamed} not named" if unnamed else "") + ")"
                                            if named else "")
    hubs = f"{alert.hubs} hub{'s' if alert.hubs != 1 else ''}" + \
        (f", {alert.undisclosed} of them undisclosed" if alert.undisclosed else "")
    window = int(evidence.get("window_s") or evidence.get("window_seconds") or 0)
    if alert.kind == "surge":
        summary = (f"Early warning: surge of {alert.classification_type} in {where}, reported by {hubs}: "
                   f"observed {evidence.get('observed')} against {evidence.get('expected')} expected "
                   f"{evidence.get('count', 'indicators')} since {_iso_time(alert.start)}.")
    else:
        summary = (f"Early warning: campaign candidate ({alert.classification_type}): infrastructure shared by "
                   f"events of {where}, reported by {hubs}"
                   + (f" within {_human_window(window)}" if window else "") + ".")
    fields = {
        "classification.taxonomy": "other",
        "classification.type": "other",
        "classification.identifier": "crossborder-early-warning",
        "comment": summary,
        "event_description.text": summary,
        "feed.name": "Cross-border early warning",
        "sharing.tlp": level.label,
        "tlp": tlp.to_intelmq_stock(level),
        "extra.early_warning_trigger": alert.kind,
        "extra.detector": alert.detector,
        "extra.reported_classification_type": alert.classification_type,
        "extra.contributing_countries": countries,
        "extra.undisclosed_contributors": int(alert.undisclosed),
        "extra.hub_count": int(alert.hubs),
        "extra.country_count": country_count,
        "extra.incident_start": _iso_time(alert.start),
        "extra.detected_at": _iso_time(alert.raised),
        "extra.detection_delay_seconds": int(round(alert.raised - alert.start)),
        "extra.detection_evidence": evidence,
    }
    if window:
        fields["extra.window_seconds"] = window
    for name in ("expected", "observed"):
        if isinstance(evidence.get(name), (int, float)) and not isinstance(evidence.get(name), bool):
            fields[f"extra.{name}_count"] = evidence[name]
    if alert.kind == "campaign" and isinstance(evidence.get("campaign_id"), str):
        fields["extra.campaign_id"] = evidence["campaign_id"]
    pap = most_restrictive_pap([evidence.get("pap")] if isinstance(evidence.get("pap"), str) else [])
    if pap:
        fields["sharing.pap"] = pap
    if local_hub:
        fields["provenance.origin_hub"] = local_hub
    if local_country:
        fields["provenance.origin_country"] = local_country
    return fields
