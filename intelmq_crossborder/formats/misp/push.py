"""Writing to MISP: IntelMQ events grouped into MISP events, idempotently; retries; feed files.

Shared by the MISP output bot (a peer's MISP through PyMISP) and the MISP feed
bot (a feed directory).  No IntelMQ Bot classes here.

Idempotency
    Every UUID written is derived (uuid5) from what identifies it: the MISP
    event from the recipient and the grouping key, an attribute from its event,
    MISP type and value.  :func:`merge` computes the desired event from the
    current one (``None`` when it does not exist) and one incoming IntelMQ
    event; :func:`projection` of both says whether anything changed.  Running the
    same exchange twice therefore writes nothing the second time.

Sightings
    An indicator is "seen again" when its attribute already exists, the
    incoming event's observation time (``extra.misp_last_seen``, else
    ``time.source``, else ``time.observation``) is later than the attribute's
    ``first_seen``, and no sighting with that time exists yet.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pymisp import MISPAttribute, MISPEvent, MISPOrganisation, MISPSighting, MISPTag

from intelmq_crossborder.core import inputs, tlp

from intelmq_crossborder.formats.misp import convert as misp

from intelmq_crossborder.policy.agreements import AgreementError, load_agreement, tlp_ceiling
from intelmq_crossborder.policy.decide import decide
from intelmq_crossborder.core.secrets import secret_bytes
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.core.errors import CrossBorderError

__all__ = ["PushSettings", "target_event_uuid", "load_agreement_checked", "Planned", "merge", "projection", "observation_time", "RetryingCaller",
           "TransientMISPError", "PermanentMISPError", "FeedWriter", "RedactingFilter", "redact_secret"]


@dataclass
class PushSettings:
    """What the recipient's configuration says about the events written."""

    recipient: str
    grouping: str = "feed_day"                 # feed_day | incident
    incident_field: str = "extra.incident_id"
    event_info: str = "{feed} {day}"
    distribution: int = 0
    sharing_group_id: Optional[int] = None
    threat_level_id: int = 4
    analysis: int = 0
    org_name: str = ""
    org_uuid: str = ""
    extra_tags: list = field(default_factory=list)
    #: The hub's HMAC key (the agreement's pseudonymisation key), if configured: keys the event
    #: UUID when the grouping key holds what the recipient's agreement hides (target_event_uuid).
    uuid_key: Optional[bytes] = None


@dataclass
class Planned:
    """Outcome of :func:`merge`: the desired event, whether it is new, whether it changed,
    the attribute written and the sighting time to add (epoch seconds) if any."""

    event: MISPEvent
    is_new: bool
    changed: bool
    attribute_uuid: str
    sighting: Optional[int] = None
    new_attribute: Optional[MISPAttribute] = None      # to add to an existing event
    changed_attribute: Optional[MISPAttribute] = None  # to update in an existing event
    meta_changed: bool = False                         # event info/distribution/sharing group/tags

    def metadata_event(self) -> MISPEvent:
        """The desired event without attributes and objects (for a metadata-only update)."""
        meta = MISPEvent()
        data = json.loads(self.event.to_json())
        data.pop("Attribute", None)
        data.pop("Object", None)
        meta.from_dict(**data)
        return meta


def _epoch(value) -> Optional[int]:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, _dt.datetime):
        return int(value.timestamp())
    text = str(value)
    if text.isdigit():
        return int(text)
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return int(parsed.timestamp())


def observation_time(event: dict) -> Optional[int]:
    for name in ("extra.misp_last_seen", "time.source", "time.observation"):
        ts = _epoch(event.get(name))
        if ts:
            return ts
    return None


def _info(settings: PushSettings, event: dict, key: str) -> str:
    day = key.rsplit(":", 1)[-1] if key.startswith("feed:") else ""
    values = {"key": key, "feed": event.get("feed.name") or "intelmq-crossborder", "day": day,
              "incident": event.get(settings.incident_field) or "", "recipient": settings.recipient}
    try:
        return settings.event_info.format(**values)
    except (KeyError, IndexError, ValueError):
        return f"{values['feed']} {day}".strip()


def _tlp_of_tags(names) -> Optional[tlp.Level]:
    level, _ = tlp.parse_tags(names)
    return level


def target_event_uuid(event: dict, settings: PushSettings, shown_event: Optional[dict] = None) -> str:
    """The UUID of the MISP event that ``event`` (flat dict, the hub's copy) goes into for this
    recipient.  ``shown_event`` is the recipient's copy of it (what is written).

    The UUID is a uuid5 of the recipient and the grouping key, so that every hub and every run
    finds the same MISP event.  When the hub's grouping key differs from the one of the
    recipient's copy (it holds what the agreement hides, e.g. the feed name), an unkeyed hash
    would let the recipient confirm a guessed value: the key is then hashed with
    ``settings.uuid_key`` (HMAC-SHA256), or, without a key, the recipient's copy is grouped
    instead (hidden feeds of a day share one MISP event)."""
    key = misp.group_key(event, settings.grouping, settings.incident_field)
    if shown_event is not None and shown_event is not event:
        shown = misp.group_key(shown_event, settings.grouping, settings.incident_field)
        if shown != key:
            if not settings.uuid_key:
                return misp.deterministic_uuid(settings.recipient, shown)
            keyed = hmac.new(settings.uuid_key, key.encode("utf-8"), hashlib.sha256).hexdigest()
            return misp.deterministic_uuid(settings.recipient, "hmac-sha256:" + keyed)
    return misp.deterministic_uuid(settings.recipient, key)


def load_agreement_checked(path: str):
    """The recipient's agreement (intelmq_crossborder.policy.agreements), or ValueError naming the problem."""
    if not path:
        raise ValueError("parameter agreement_file is required: the output refuses to push without the "
                         "recipient's sharing agreement")
    try:
        return load_agreement(path)
    except AgreementError as exc:
        raise ValueError(str(exc)) from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None


def agreement_and_key(agreement_file: str, hmac_key_env: Optional[str]) -> tuple:
    """The recipient's agreement and the HMAC key its pseudonyms need (None if it needs
    none); ValueError when the agreement is bad or needs a key that is not set."""
    agreement = load_agreement_checked(agreement_file)
    key = secret_bytes(None, hmac_key_env or None)
    if agreement.needs_key and not key:
        raise ValueError(f"Agreement {agreement.recipient} pseudonymises fields: set hmac_key_env "
                         "to an environment variable holding the key.")
    return agreement, key


def admission(flat: dict, agreement, hmac_key, refused_distributions) -> tuple:
    """Whether an event may go to this recipient's MISP or feed: its effective TLP
    (:func:`tlp.event_tlp`), the agreement's decision (defence in depth after the router),
    then the source distribution.

    RED never goes (not forwarded automatically), AMBER+STRICT only under an agreement
    whose relation is ``same-organisation``.  The copy returned carries the effective
    level in ``sharing.tlp`` (never lower than any label of the hub's copy) and, when the
    source is hidden (the event's flag or ``tlp:ex:chr``, or the agreement's
    ``disclose_source: false``), none of the hub's values of :data:`tlp.SOURCE_FIELDS`.

    Returns ``(event_out, None, None)`` when it may, else ``(None, field, reason)`` naming
    the field that forbids it (the label's field, ``sharing.tlp`` for the agreement,
    ``misp.distribution``)."""
    try:
        labels = tlp.event_tlp(flat)
    except tlp.LabelError as exc:
        return None, exc.field, exc.reason
    refusal = _level_refusal(labels, agreement)
    if refusal:
        return (None, *refusal)
    decision = decide(flat, agreement, hmac_key=hmac_key)
    if not decision.allowed:
        return None, "sharing.tlp", (f"the agreement of {agreement.recipient} forbids this event "
                                     f"({'; '.join(decision.reasons)})")
    refusal = distribution_refusal(flat, refused_distributions)
    if refusal:
        return None, "misp.distribution", refusal
    return _recipient_copy(flat, decision.event_out, labels, agreement)


def _level_refusal(labels: tlp.EventTLP, agreement) -> Optional[tuple]:
    """``(field, reason)`` when the effective level may never go to this recipient, else None."""
    level = labels.level
    if level is None or level < tlp.Level.AMBER_STRICT:
        return None
    field = labels.field
    if level is tlp.Level.RED:
        return field, "TLP:RED is never forwarded automatically"
    if agreement.relation != "same-organisation":
        return field, (f"TLP:AMBER+STRICT never leaves the organisation (the agreement of "
                       f"{agreement.recipient} is {agreement.relation})")
    return None


def _recipient_copy(flat: dict, out: dict, labels: tlp.EventTLP, agreement) -> tuple:
    """The agreement's copy, made safe whatever the router did: the effective level, no
    hidden source value left in clear.  ``(out, None, None)`` or ``(None, field, reason)``."""
    try:
        decided = tlp.event_tlp(out).level
    except tlp.LabelError as exc:
        return None, exc.field, exc.reason
    levels = [lvl for lvl in (labels.level, decided) if lvl is not None]
    if not levels:
        return None, "sharing.tlp", "the event has no TLP label"
    level = max(levels)
    if level > tlp_ceiling(agreement):
        return None, "sharing.tlp", (f"TLP:{level.label} is above what the agreement of {agreement.recipient} "
                                     f"admits (TLP:{tlp_ceiling(agreement).label})")
    out = dict(out)
    out["sharing.tlp"] = level.label
    if labels.hide_source or not agreement.disclose_source:
        # a value the agreement pseudonymised differs from the hub's; one still equal is in clear
        for name in tlp.SOURCE_FIELDS:
            if name in out and out[name] == flat.get(name):
                del out[name]
        out.pop("raw", None)
    if labels.hide_source:
        out[tlp.HIDE_SOURCE_FIELD] = True
    return out, None, None


def api_key(url: Optional[str], token: Optional[str], env_name: Optional[str], logger) -> str:
    """The MISP API key from the parameter or the environment, registered for redaction
    in our, PyMISP's and urllib3's log records.  Raises ValueError when the URL or the
    key is missing."""
    key = token or os.environ.get(env_name or "", "")
    redact_secret(key, logger, logging.getLogger("pymisp"), logging.getLogger("urllib3"))
    if not url:
        raise ValueError("Parameter misp_url is required.")
    if not key:
        raise ValueError(f"No MISP API key: set parameter misp_api_token or the environment "
                         f"variable {env_name}.")
    return key


def distribution_refusal(event: dict, refused) -> Optional[str]:
    """Why an event may not leave by MISP because of its source distribution, or None.

    ``misp.distribution`` is the distribution the originator gave the attribute on
    its own MISP (the parser writes it).  0 means "your organisation only": by
    default such an attribute does not go to another organisation's MISP or feed."""
    value = event.get("misp.distribution")
    if value is None or not refused:
        return None
    try:
        level = int(value)
    except (TypeError, ValueError):
        return f"misp.distribution {value!r} is not a MISP distribution level"
    if level in {int(r) for r in refused}:
        return (f"the source set MISP distribution {level} ({misp.DISTRIBUTION_NAMES.get(level, '?')}), "
                f"which refuse_distributions does not let out")
    return None


def check_agreement_parameter(parameters: dict) -> list:
    """check() findings for the agreement_file parameter of the MISP outputs."""
    path = str(parameters.get("agreement_file") or "")
    if "${" in path:
        return [["warning", f"Parameter agreement_file {path!r} holds an unexpanded variable; "
                            "the file is checked when the bot starts."]]
    try:
        load_agreement_checked(path)
    except ValueError as exc:
        return [["error", f"Parameter agreement_file: {exc}."]]
    return []


def merge(current: Optional[MISPEvent], event: dict, settings: PushSettings,
          key_event: Optional[dict] = None) -> Planned:
    """The MISP event that ``current`` must become to hold IntelMQ ``event`` (flat dict).

    ``key_event`` (default ``event``) is the event the grouping key is computed
    from: the hub's own copy, when ``event`` is the recipient's copy with the
    originator fields (feed.name...) removed by the agreement.  Nothing of
    ``key_event`` is written: the event title (``{key}`` included) is made from
    ``event``, the UUIDs are hashes.

    The TLP written is the effective TLP of ``event`` (:func:`tlp.event_tlp`); when its
    source is hidden, nothing of :data:`tlp.SOURCE_FIELDS` is read from it.

    Raises ValueError when the event has no field that maps to a MISP attribute type
    or no TLP label, :class:`tlp.LabelError` (a ValueError) for an unreadable one."""
    labels = tlp.event_tlp(event)
    level = labels.level
    if level is None:
        raise ValueError("the event has no TLP label: run the TLP expert before this output")
    key_event = event if key_event is None else key_event
    if labels.hide_source:
        event = {name: value for name, value in event.items() if name not in tlp.SOURCE_FIELDS}
    found = misp.indicator(event)
    if found is None:
        raise ValueError("no field of the event maps to a MISP attribute type "
                         "(" + ", ".join(f for f, _ in misp.FIELD_TYPES) + ")")
    atype, value, category = found
    key = misp.group_key(key_event, settings.grouping, settings.incident_field)
    event_uuid = target_event_uuid(key_event, settings, shown_event=event)
    attr_uuid = misp.deterministic_uuid(event_uuid, atype, value)

    is_new = current is None
    if is_new:
        desired = MISPEvent()
        desired.uuid = event_uuid
        # The title shows the recipient's copy only: the hub's key may hold what the agreement
        # hides (the feed name, a removed incident id).
        shown_key = key if key_event is event else misp.group_key(event, settings.grouping, settings.incident_field)
        desired.info = _info(settings, event, shown_key)
        day = key.rsplit(":", 1)[-1] if key.startswith("feed:") else None
        desired.date = day or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
        desired.threat_level_id = settings.threat_level_id
        desired.analysis = settings.analysis
        if settings.org_name:
            desired.Orgc = {"name": settings.org_name, "uuid": settings.org_uuid or
                            misp.deterministic_uuid("org", settings.org_name)}
    else:
        desired = MISPEvent()
        desired.from_dict(**json.loads(current.to_json()))
    desired.distribution = settings.distribution
    if settings.distribution == 4 and settings.sharing_group_id is not None:
        desired.sharing_group_id = settings.sharing_group_id

    existing = None
    for attr in desired.attributes:
        if getattr(attr, "uuid", None) == attr_uuid:
            existing = attr
            break
    seen = observation_time(event)
    rsit = misp.rsit_tag(event.get("classification.type"), event.get("classification.taxonomy"))
    wanted_tags = [tlp.to_misp_tag(level)] + ([rsit] if rsit else [])
    if labels.hide_source:
        wanted_tags.append(tlp.CHATHAM_HOUSE_TAG)
    to_ids = event.get("extra.misp_to_ids")
    to_ids = True if to_ids is None else bool(to_ids)
    comment = event.get("comment") or event.get("event_description.text") or ""
    sighting = None
    new_attribute = changed_attribute = None
    before = _attr_projection(existing) if existing is not None else None
    if existing is None:
        attr = MISPAttribute()
        attr.from_dict(type=atype, value=value, category=category, uuid=attr_uuid, to_ids=to_ids,
                       comment=comment, distribution=5, disable_correlation=False)
        if seen:
            attr.first_seen = _dt.datetime.fromtimestamp(seen, _dt.timezone.utc)
        attr.tags = _misp_tags(wanted_tags)
        desired.attributes.append(attr)
        new_attribute = attr
    else:
        # keep what is there; tighten the TLP tag if the new copy is more restrictive
        names = [t.name for t in existing.tags]
        old_level = _tlp_of_tags(names)
        if old_level is None or level > old_level:
            existing.tags = [t for t in existing.tags if not t.name.lower().startswith("tlp:")
                             or t.name == tlp.CHATHAM_HOUSE_TAG]
            existing.add_tag(tlp.to_misp_tag(level))
        for name in wanted_tags[1:]:
            if name not in names:
                existing.add_tag(name)
        if existing.comment != comment and comment:
            existing.comment = comment
        if bool(existing.to_ids) != to_ids:
            existing.to_ids = to_ids
        first = _epoch(getattr(existing, "first_seen", None))
        if seen and first and seen > first:
            dates = {_epoch(s.get("date_sighting") or s.get("timestamp"))
                     for s in (getattr(existing, "sightings", None) or [])}
            if seen not in dates:
                sighting = seen

    # event tags: the most restrictive attribute TLP, the classifications, configured extras
    levels = [_tlp_of_tags([t.name for t in a.tags]) for a in desired.attributes]
    levels = [lvl for lvl in levels if lvl is not None]
    event_tags = [tlp.to_misp_tag(max(levels))] if levels else []
    for a in desired.attributes:
        for t in a.tags:
            if (t.name.startswith("rsit:") or t.name == tlp.CHATHAM_HOUSE_TAG) and t.name not in event_tags:
                event_tags.append(t.name)
    event_tags += [t for t in settings.extra_tags if t not in event_tags]
    desired.tags = _misp_tags(event_tags)

    if existing is not None and _attr_projection(existing) != before:
        changed_attribute = existing
    meta_changed = not is_new and projection(current)[:5] != projection(desired)[:5]
    changed = is_new or projection(current) != projection(desired)
    return Planned(desired, is_new, changed, attr_uuid, sighting,
                   new_attribute if not is_new else None, changed_attribute, meta_changed)


def _misp_tags(names) -> list:
    """MISPTag objects for distinct ``names`` (add_tag() compares each new tag with every tag
    already there, through to_dict(): quadratic, about a fifth of the cost of a new event)."""
    tags = []
    for name in dict.fromkeys(names):
        tag = MISPTag()
        tag.from_dict(name=name)
        tags.append(tag)
    return tags


def _attr_projection(a: MISPAttribute) -> tuple:
    return (str(a.uuid), a.type, str(a.value), str(getattr(a, "category", "")), bool(a.to_ids),
            str(getattr(a, "comment", "") or ""), _tagset(a))


def _tagset(block) -> list:
    return sorted(t.name for t in (getattr(block, "tags", None) or []))


def projection(event: Optional[MISPEvent]) -> Any:
    """What the output controls of an event, in a comparable form."""
    if event is None:
        return None
    attrs = sorted(_attr_projection(a) for a in event.attributes)
    sg = getattr(event, "sharing_group_id", None)
    return (str(event.uuid), str(getattr(event, "info", "")), int(getattr(event, "distribution", 0) or 0),
            str(sg) if sg not in (None, "", "0", 0) and int(getattr(event, "distribution", 0) or 0) == 4 else None,
            _tagset(event), attrs)


def sighting_for(attribute_uuid: str, when: int, source: str) -> MISPSighting:
    s = MISPSighting()
    s.from_dict(uuid=attribute_uuid, timestamp=when, source=source, type="0")
    return s


# --- HTTP errors -----------------------------------------------------------------------

class TransientMISPError(CrossBorderError, RuntimeError):
    """The MISP server failed with 5xx or could not be reached, after all retries."""


class PermanentMISPError(CrossBorderError, RuntimeError):
    """The MISP server refused the request (4xx); ``status`` and ``text`` are the server's."""

    def __init__(self, status, text):
        self.status, self.text = status, text
        super().__init__(f"HTTP {status}: {text}")


def _errors_of(result) -> Optional[tuple]:
    if isinstance(result, dict) and "errors" in result:
        err = result["errors"]
        if isinstance(err, (list, tuple)) and len(err) == 2:
            status, body = err
        else:
            status, body = "?", err
        if isinstance(body, dict):
            text = body.get("message") or body.get("name") or ""
            extra = body.get("errors")
            if extra:
                text = f"{text} {json.dumps(extra, sort_keys=True)}".strip()
            text = text or json.dumps(body, sort_keys=True)
        else:
            text = str(body)
        return status, text
    return None


class RetryingCaller:
    """Call a PyMISP method; retry 5xx/connection errors/timeouts with exponential backoff.

    ``attempts`` retries after the first try, waiting ``backoff * 2**i`` seconds
    (:class:`intelmq_crossborder.core.retry.Backoff`); then :class:`TransientMISPError`
    naming the call, the number of attempts and ``url`` (the MISP server).
    4xx answers (PyMISP returns ``{"errors": (status, body)}``) raise
    :class:`PermanentMISPError` at once, except the statuses in ``allow``.
    """

    def __init__(self, attempts: int = 3, backoff: float = 2.0, logger: Optional[logging.Logger] = None,
                 sleep: Callable[[float], None] = time.sleep, url: str = ""):
        self.attempts, self.logger, self.sleep, self.url = attempts, logger, sleep, url
        self.backoff = Backoff(backoff)
        self.retries = 0

    def __call__(self, what: str, func, *args, allow=(), **kwargs):
        import requests
        from pymisp.exceptions import MISPServerError, PyMISPError

        last = None
        for attempt in range(self.attempts + 1):
            try:
                result = func(*args, **kwargs)
            except (MISPServerError, requests.ConnectionError, requests.Timeout) as exc:
                last = exc
            except PyMISPError as exc:
                if "Unable to connect" in str(exc) or "Error code 5" in str(exc):
                    last = exc
                else:
                    raise
            else:
                err = _errors_of(result)
                if err is not None:
                    if err[0] in allow:
                        return None
                    raise PermanentMISPError(*err)
                return result
            if attempt < self.attempts:
                wait = self.backoff.delay(attempt + 1)
                self.retries += 1
                if self.logger:
                    self.logger.warning("MISP %s failed (%s), retry %d of %d in %.2f s%s.", what,
                                        type(last).__name__, attempt + 1, self.attempts, wait,
                                        f" ({self.url})" if self.url else "")
                self.sleep(wait)
        first_line = str(last).strip().splitlines()[0] if str(last).strip() else ""
        where = f" at {self.url}" if self.url else ""
        raise TransientMISPError(f"MISP {what} failed after {self.attempts + 1} attempt(s){where}: "
                                 f"{type(last).__name__}" + (f": {first_line}" if first_line else ""))


class RedactingFilter(logging.Filter):
    """Replace secrets in log records (message and arguments) with ``***``."""

    def __init__(self, secrets):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for s in self.secrets:
                text = text.replace(s, "***")
            record.msg, record.args = text, ()
        return True


_REDACTION = RedactingFilter([])


def redact_secret(secret: str, *loggers: logging.Logger) -> None:
    """Hide ``secret`` in every record of ``loggers`` (one shared filter; adding twice is harmless)."""
    if secret and secret not in _REDACTION.secrets:
        _REDACTION.secrets.append(secret)
    for logger in loggers:
        if _REDACTION not in logger.filters:
            logger.addFilter(_REDACTION)


# --- feed directory --------------------------------------------------------------------

class FeedWriter:
    """A MISP feed directory: ``manifest.json``, ``<uuid>.json`` per event, ``hashes.csv``.

    Files are replaced atomically (write to a temporary file, then rename), so a
    MISP instance fetching the feed never reads half a file.  ``hashes.csv`` is
    rewritten with the event's lines when the event changes.
    """

    def __init__(self, directory, org_name: str, org_uuid: str = ""):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.org = {"name": org_name, "uuid": org_uuid or misp.deterministic_uuid("org", org_name)}
        manifest = self.dir / "manifest.json"
        self.manifest = inputs.read_json(manifest, what="MISP feed manifest") if manifest.exists() else {}
        if not isinstance(self.manifest, dict):
            raise inputs.InputError(manifest, "a MISP feed manifest must be a JSON object")
        self.hashes: dict = {}
        hashes = self.dir / "hashes.csv"
        if hashes.exists():
            for line in hashes.read_text(encoding="utf-8").splitlines():
                digest, _, uuid = line.partition(",")
                if uuid:
                    self.hashes.setdefault(uuid, []).append(digest)

    def load(self, event_uuid: str) -> Optional[MISPEvent]:
        path = self.dir / f"{event_uuid}.json"
        if not path.exists():
            return None
        event = MISPEvent()
        event.load_file(str(path))
        return event

    def _write(self, name: str, text: str) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.dir / name)

    def write(self, event: MISPEvent) -> None:
        org = MISPOrganisation()
        org.from_dict(**self.org)
        event.Orgc = org
        event.timestamp = _dt.datetime.now(_dt.timezone.utc)
        feed = event.to_feed(with_meta=True)["Event"]
        hashes = feed.pop("_hashes", [])
        manifest = feed.pop("_manifest", {})
        self._write(f"{event.uuid}.json", json.dumps({"Event": feed}, indent=1, sort_keys=True))
        self.manifest.update(manifest)
        self._write("manifest.json", json.dumps(self.manifest, indent=1, sort_keys=True))
        self.hashes[str(event.uuid)] = list(hashes)
        self._write("hashes.csv", "".join(f"{h},{u}\n" for u, hs in self.hashes.items() for h in hs))
