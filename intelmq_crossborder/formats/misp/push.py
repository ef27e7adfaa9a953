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
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pymisp import MISPAttribute, MISPEvent, MISPOrganisation, MISPSighting, MISPTag

from intelmq_crossborder.core import inputs, tlp

from intelmq_crossborder.formats.misp import convert as misp

from intelmq_crossborder.policy.agreements import AgreementError, load_agreement, tlp_ceiling
from intelmq_crossborder.policy.decide import decide
from intelmq_crossborder.policy import retraction as policy
from intelmq_crossborder.core.secrets import redact_in_logs, secret, secret_bytes
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.files import atomic_write_text
from intelmq_crossborder.core.parameters import as_float, as_int, as_list, optional

__all__ = ["PushSettings", "target_event_uuid", "load_agreement_checked", "Planned", "merge", "projection", "observation_time", "RetryingCaller",
           "TransientMISPError", "PermanentMISPError", "FeedWriter", "Pusher", "PlanError",
           "pymisp_connector", "apply_retraction", "holder_instruction", "RetractionOutcome", "RETRACTION_WAYS",
           "WITHDRAW_MODES", "RETRACTED_TAG",
           "refused_distributions", "check_parameters"]


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


def _tlp_of_tags(names, where: str = "") -> Optional[tlp.Level]:
    """The most restrictive TLP level among MISP tag names (None: no TLP tag), read by the TLP
    core's one reader.  Fails closed: a look-alike or unknown TLP tag raises ValueError naming
    ``where`` (an attribute or event on the recipient's MISP), it is never read as no label."""
    try:
        return tlp.event_tlp({tlp.TAG_FIELDS[0]: list(names)}).level
    except tlp.LabelError as exc:
        raise ValueError(f"{where or 'MISP tags'}: {exc.reason}") from None


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
    key = secret(token, env_name) or ""
    redact_in_logs(key, logger, logging.getLogger("pymisp"), logging.getLogger("urllib3"))
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


# --- bot parameters (IntelMQ Manager saves an untouched optional one as '': unset) ----------

def refused_distributions(value: Any) -> list:
    """The ``refuse_distributions`` parameter as integers; unset (``''``, None) is the default
    ``[0]`` (an empty list, ``[]``, refuses none).  ValueError for a value that is not 0-5."""
    items = as_list(optional(value, [0]))
    out = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or text not in ("0", "1", "2", "3", "4", "5"):
            raise ValueError(f"Parameter refuse_distributions: {item!r} is not a MISP distribution level (0-5)")
        out.append(int(text))
    return out


def check_parameters(parameters: dict, flags: Optional[dict] = None, numbers: Optional[dict] = None) -> list:
    """check() findings shared by the MISP bots: ``grouping``, ``refuse_distributions`` and
    ``extra_tags`` when given, each of ``flags`` (name -> default) a boolean, each of
    ``numbers`` (name -> (int or float, minimum)) a number of at least the minimum.  An unset
    value (``''``, None, missing) takes the default and is no finding."""
    results = []
    if "grouping" in parameters and optional(parameters["grouping"], "feed_day") not in ("feed_day", "incident"):
        results.append(["error", "Parameter grouping must be feed_day or incident."])
    if "refuse_distributions" in parameters:
        try:
            refused_distributions(parameters["refuse_distributions"])
        except ValueError as exc:
            results.append(["error", f"{exc}."])
    for name in ("extra_tags", "search_tags"):
        if name in parameters:
            try:
                as_list(parameters[name])
            except ValueError as exc:
                results.append(["error", f"Parameter {name}: {exc}."])
    for name, default in (flags or {}).items():
        if not isinstance(optional(parameters.get(name), default), bool):
            results.append(["error", f"Parameter {name} must be true or false."])
    for name, (kind, minimum) in (numbers or {}).items():
        reader = as_int if kind is int else as_float
        try:
            value = reader(parameters.get(name), None, name)
        except ValueError as exc:
            results.append(["error", f"{exc}."])
            continue
        if value is not None and value < minimum:
            results.append(["error", f"Parameter {name} must be at least {minimum}."])
    return results


def merge(current: Optional[MISPEvent], event: dict, settings: PushSettings,
          key_event: Optional[dict] = None, event_uuid: Optional[str] = None) -> Planned:
    """The MISP event that ``current`` must become to hold IntelMQ ``event`` (flat dict).

    ``key_event`` (default ``event``) is the event the grouping key is computed
    from: the hub's own copy, when ``event`` is the recipient's copy with the
    originator fields (feed.name...) removed by the agreement.  Nothing of
    ``key_event`` is written: the event title (``{key}`` included) is made from
    ``event``, the UUIDs are hashes.  ``event_uuid`` is :func:`target_event_uuid` of the two,
    when the caller already has it (it looked ``current`` up under it).

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
    if event_uuid is None:
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
        old_level = _tlp_of_tags(names, f"attribute {attr_uuid} of MISP event {event_uuid}")
        if old_level is None or level > old_level:
            # every tag that reads as a level goes (all of them were readable just above)
            existing.tags = [t for t in existing.tags if _tlp_of_tags([t.name]) is None]
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

    desired.tags = _misp_tags(_event_tags(desired, settings.extra_tags, event_uuid))

    if existing is not None and _attr_projection(existing) != before:
        changed_attribute = existing
    meta_changed = not is_new and projection(current)[:5] != projection(desired)[:5]
    changed = is_new or projection(current) != projection(desired)
    return Planned(desired, is_new, changed, attr_uuid, sighting,
                   new_attribute if not is_new else None, changed_attribute, meta_changed)


def _event_tags(desired: MISPEvent, extra_tags, event_uuid: str, floor: Optional[tlp.Level] = None) -> list:
    """The tags of a MISP event: the most restrictive TLP of its attributes (at least ``floor``),
    the classifications and the Chatham House flag of its attributes, the configured extras."""
    levels = [_tlp_of_tags([t.name for t in a.tags], f"attribute {a.uuid} of MISP event {event_uuid}")
              for a in desired.attributes]
    levels = [lvl for lvl in levels + [floor] if lvl is not None]
    event_tags = [tlp.to_misp_tag(max(levels))] if levels else []
    for a in desired.attributes:
        for t in a.tags:
            if (t.name.startswith("rsit:") or t.name == tlp.CHATHAM_HOUSE_TAG) and t.name not in event_tags:
                event_tags.append(t.name)
    event_tags += [t for t in extra_tags if t not in event_tags]
    return event_tags


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

    event_uuid: str = ""        # the MISP event written, when the caller knows it (Pusher.push)

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


class PlanError(CrossBorderError, ValueError):
    """An IntelMQ event that cannot become (part of) MISP event ``event_uuid``: no indicator,
    no TLP label, an unreadable TLP tag on the recipient's copy of the MISP event."""

    def __init__(self, event_uuid: str, reason: str):
        self.event_uuid = event_uuid
        super().__init__(reason)


class Pusher:
    """Brings a peer's MISP events, through PyMISP, to the state that holds each incoming event.

    ``connect`` builds the API client (PyMISP, or a stand-in with its methods); it is called
    through ``call`` (:class:`RetryingCaller`) on first use, and with ``settings.distribution``
    4 the sharing group (``sharing_group``: an id, else looked up by UUID) is resolved then.

    Plan cache: the desired state of the last ``cache_size`` MISP events written is kept
    (least recently used first out), so consecutive events of one group cost no lookup; an
    event that got a sighting or whose write failed is dropped from it and read again.

    :meth:`push` writes only what changed (event creation, attribute creation or update,
    metadata update), publishes with ``publish`` after a change (or when the server copy is
    unpublished), and adds the sighting :func:`merge` asks for.  A write refused with 4xx may
    be a retry of one the server did although its answer was lost (5xx, timeout): the event
    is read again and planned once more; what is still refused raises.
    """

    def __init__(self, connect: Callable[[], Any], settings: Optional[PushSettings], call: RetryingCaller, *,
                 sharing_group: str = "", publish: bool = False, sighting_source: str = "intelmq-crossborder",
                 cache_size: int = 256, logger: Optional[logging.Logger] = None):
        self.connect, self.settings, self.call = connect, settings, call
        self.sharing_group, self.publish, self.sighting_source = str(sharing_group or "").strip(), publish, \
            sighting_source
        if settings is not None and settings.distribution == 4 and settings.sharing_group_id is None \
                and not self.sharing_group:
            raise ValueError("Parameter sharing_group (id or uuid) is required with distribution 4.")
        self.cache_size = max(1, int(cache_size))
        self.logger = logger or logging.getLogger(__name__)
        self.cache: "OrderedDict[str, MISPEvent]" = OrderedDict()
        self._api = None
        self.retraction_tag = RETRACTED_TAG

    @property
    def api(self):
        """The API client, connected (and the sharing group resolved) on first use."""
        if self._api is None:
            api = self.call("connection", self.connect)
            if self.settings.distribution == 4 and self.settings.sharing_group_id is None:
                self.settings.sharing_group_id = self._sharing_group_id(api)
            self._api = api
        return self._api

    def _sharing_group_id(self, api) -> int:
        if self.sharing_group.isdigit():
            return int(self.sharing_group)
        found = self.call("sharing group lookup", api.get_sharing_group, self.sharing_group)
        try:
            return int(found["SharingGroup"]["id"])
        except (TypeError, KeyError, ValueError):
            raise PermanentMISPError("?", f"sharing group {self.sharing_group}: the answer names no sharing "
                                          "group id") from None

    def push(self, out: dict, flat: dict) -> Planned:
        """Write ``out`` (the recipient's copy, from :func:`admission`) of ``flat`` (the hub's
        copy, for the grouping key).  Raises :class:`PlanError`, :class:`PermanentMISPError`
        (with ``event_uuid`` set) or :class:`TransientMISPError`; the plan cache forgets the
        event on every error."""
        event_uuid = target_event_uuid(flat, self.settings, shown_event=out)
        try:
            try:
                return self._apply(event_uuid, out, flat)
            except PermanentMISPError as exc:
                self.cache.pop(event_uuid, None)
                self.logger.info("MISP refused a write for event %s (%s); re-reading it and planning again.",
                                 event_uuid, exc.status)
                return self._apply(event_uuid, out, flat, again=True)
        except PermanentMISPError as exc:
            self.cache.pop(event_uuid, None)
            exc.event_uuid = event_uuid
            raise
        except (TransientMISPError, PlanError):
            self.cache.pop(event_uuid, None)
            raise

    def _current(self, event_uuid: str) -> Optional[MISPEvent]:
        if event_uuid in self.cache:
            self.cache.move_to_end(event_uuid)
            return self.cache[event_uuid]
        return self.call("event lookup", self.api.get_event, event_uuid, pythonify=True, allow=(404,))

    def _remember(self, event: MISPEvent) -> None:
        self.cache[str(event.uuid)] = event
        self.cache.move_to_end(str(event.uuid))
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def _apply(self, event_uuid: str, out: dict, flat: dict, again: bool = False) -> Planned:
        current = self._current(event_uuid)
        try:
            planned = merge(current, out, self.settings, key_event=flat, event_uuid=event_uuid)
        except ValueError as exc:
            raise PlanError(event_uuid, str(exc)) from None
        api = self.api
        if planned.is_new:
            self.call("event creation", api.add_event, planned.event, pythonify=True)
            self.logger.debug("MISP event %s created.", event_uuid)
        else:
            if planned.new_attribute is not None:
                try:
                    self.call("attribute creation", api.add_attribute, event_uuid, planned.new_attribute)
                except PermanentMISPError:
                    # Refused again after a fresh read that does not show the attribute: a soft-deleted
                    # attribute (a withdrawn event's, docs/retraction.md) holds its UUID. Another event
                    # reports the indicator now: restore it and write it as planned.
                    if not again or self.call("attribute restore", api.restore_attribute,
                                              planned.attribute_uuid, allow=(403, 404)) is None:
                        raise
                    self.logger.info("Attribute %s of MISP event %s was deleted by a retraction; another event "
                                     "reports it: restored.", planned.attribute_uuid, event_uuid)
                    self.call("attribute update", api.update_attribute, planned.new_attribute,
                              planned.attribute_uuid)
            if planned.changed_attribute is not None:
                self.call("attribute update", api.update_attribute, planned.changed_attribute,
                          planned.attribute_uuid)
            if planned.meta_changed:
                self.call("event update", api.update_event, planned.metadata_event(),
                          event_id=event_uuid, metadata=True)
            if planned.changed:
                self.logger.debug("MISP event %s updated.", event_uuid)
        if self.publish and (planned.changed or getattr(current, "published", None) is False):
            # MISP unpublishes an event on every edit; publish once after what this message changed.
            # A server copy that is still unpublished (an earlier publish failed) is published too.
            self.call("event publication", api.publish, event_uuid)
            planned.event.published = True
            self.logger.debug("MISP event %s published.", event_uuid)
        self._remember(planned.event)
        if planned.sighting:
            self.call("sighting", api.add_sighting,
                      sighting_for(planned.attribute_uuid, planned.sighting, self.sighting_source),
                      planned.attribute_uuid)
            self.cache.pop(event_uuid, None)
        return planned


    def retract(self, event_uuid: str, attributes: set, how: str, level: Optional[tlp.Level] = None,
                hide: bool = False) -> int:
        """Apply one retraction to ``attributes`` (UUIDs) of MISP event ``event_uuid`` on the
        peer's MISP; ``how`` is one of :data:`RETRACTION_WAYS` (:func:`apply_retraction`).
        Returns how many attributes it changed (0: none left there).  Raises like :meth:`push`;
        the plan cache forgets the event either way."""
        self.cache.pop(event_uuid, None)
        try:
            return self._retract(event_uuid, attributes, how, level, hide)
        except PermanentMISPError as exc:
            exc.event_uuid = event_uuid
            raise
        finally:
            self.cache.pop(event_uuid, None)

    def _retract(self, event_uuid: str, attributes: set, how: str, level: Optional[tlp.Level], hide: bool) -> int:
        current = self._current(event_uuid)
        if current is None:
            return 0
        api = self.api
        present = [a for a in current.attributes if str(a.uuid) in attributes and not getattr(a, "deleted", False)]
        if how in (DELETE, ERASE):
            for attr in present:
                # a hard delete takes the attribute's sightings with it: nothing of the value remains
                self.call("attribute deletion", api.delete_attribute, str(attr.uuid), hard=how == ERASE,
                          allow=(404,))
            left = [a for a in current.attributes if str(a.uuid) not in attributes and not getattr(a, "deleted", False)]
            if how == ERASE and not left:
                self.call("event deletion", api.delete_event, event_uuid, allow=(404,))
                return len(present)
        else:
            where = f"MISP event {event_uuid}"
            floor = _tlp_of_tags([t.name for t in current.tags], where)
            desired = MISPEvent()
            desired.from_dict(**json.loads(current.to_json()))
            for attr in desired.attributes:
                if str(attr.uuid) not in attributes or getattr(attr, "deleted", False):
                    continue
                if _retract_attribute(attr, how, level, hide, self.retraction_tag, where):
                    self.call("attribute update", api.update_attribute, attr, str(attr.uuid))
            tags = _event_tags(desired, self.settings.extra_tags if self.settings else [], event_uuid, floor)
            # a retraction adds tags, it never takes one away (but the old TLP tag, now higher)
            tags += [name for name in _tagset(current) if name not in tags and _tlp_of_tags([name]) is None]
            if sorted(tags) != _tagset(current):
                desired.tags = _misp_tags(tags)
                self.call("event update", api.update_event, Planned(desired, False, True, "").metadata_event(),
                          event_id=event_uuid, metadata=True)
        if present and self.publish:
            self.call("event publication", api.publish, event_uuid)
        return len(present)


def pymisp_connector(url: str, key: str, verify_ssl: bool = True, timeout: float = 60) -> Callable[[], Any]:
    """A ``connect`` for :class:`Pusher` (and the collector): builds PyMISP for ``url``."""
    from pymisp import PyMISP

    return lambda: PyMISP(url, key, ssl=verify_ssl, timeout=timeout, tool="intelmq-crossborder")


# --- feed directory --------------------------------------------------------------------

class FeedWriter:
    """A MISP feed directory: ``manifest.json``, ``<uuid>.json`` per event, ``hashes.csv``.

    Files are replaced atomically and durably (:func:`intelmq_crossborder.core.files.atomic_write`),
    so a MISP instance fetching the feed never reads half a file; they are readable by all
    (0644) for the web server that serves the feed.  ``hashes.csv`` is rewritten with the
    event's lines when the event changes.
    """

    #: permissions of the files written
    FILE_MODE = 0o644

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
        atomic_write_text(self.dir / name, text, mode=self.FILE_MODE)

    def push(self, out: dict, flat: dict, settings: PushSettings) -> Planned:
        """Merge ``out`` (the recipient's copy, from :func:`admission`) of ``flat`` (the hub's
        copy) into its feed event and write that when it changed; :class:`PlanError` when it
        cannot be planned."""
        event_uuid = target_event_uuid(flat, settings, shown_event=out)
        current = self.load(event_uuid)
        try:
            planned = merge(current, out, settings, key_event=flat, event_uuid=event_uuid)
        except ValueError as exc:
            raise PlanError(event_uuid, str(exc)) from None
        if planned.changed:
            self.write(planned.event)
        return planned

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

    def retract(self, event_uuid: str, attributes: set, how: str, level: Optional[tlp.Level] = None,
                hide: bool = False) -> int:
        """Apply one retraction to ``attributes`` of feed event ``event_uuid``: removed (every
        way but :data:`RELABEL`: a feed has no soft delete), or relabelled.  An event left
        without attributes is removed from the feed with its manifest entry and hashes.
        Returns how many attributes it changed."""
        event = self.load(event_uuid)
        if event is None:
            return 0
        present = [a for a in event.attributes if str(a.uuid) in attributes]
        if not present:
            return 0
        if how == RELABEL:
            where = f"feed event {event_uuid}"
            floor = _tlp_of_tags([t.name for t in event.tags], where)
            for attr in present:
                _retract_attribute(attr, how, level, hide, RETRACTED_TAG, where)
            tags = _event_tags(event, [], event_uuid, floor)
            tags += [name for name in _tagset(event) if name not in tags and _tlp_of_tags([name]) is None]
            event.tags = _misp_tags(tags)
            self.write(event)
            return len(present)
        event.attributes = [a for a in event.attributes if str(a.uuid) not in attributes]
        if event.attributes:
            self.write(event)
            return len(present)
        self.remove(event_uuid)
        return len(present)

    def remove(self, event_uuid: str) -> None:
        """Take event ``event_uuid`` out of the feed: its file, its manifest entry, its hashes."""
        self.manifest.pop(event_uuid, None)
        self._write("manifest.json", json.dumps(self.manifest, indent=1, sort_keys=True))
        self.hashes.pop(event_uuid, None)
        self._write("hashes.csv", "".join(f"{h},{u}\n" for u, hs in self.hashes.items() for h in hs))
        try:
            (self.dir / f"{event_uuid}.json").unlink()
        except FileNotFoundError:
            pass


# --- retractions (docs/retraction.md, "What each output does") ----------------------------

#: How a MISP output applies a retraction to an attribute: soft delete (MISP keeps a deleted
#: attribute and syncs the deletion), tag it and clear ``to_ids``, hard delete (with its
#: sightings; the event too when it is left empty), or write the new, higher labels.
DELETE, TAG, ERASE, RELABEL = "delete", "tag", "erase", "relabel"
RETRACTION_WAYS = (DELETE, TAG, ERASE, RELABEL)
#: ``withdraw_mode`` values of the MISP output: what a withdraw does on the peer's MISP
WITHDRAW_MODES = (DELETE, TAG)
#: The tag a withdrawn attribute gets in ``withdraw_mode: tag``
RETRACTED_TAG = "crossborder:retracted"
#: How the reason of the router's removal for a holder a relabel no longer admits begins
#: (:meth:`intelmq_crossborder.policy.retraction.Retraction.as_removal`)
RELABEL_REMOVAL = "relabelled: "


def _retract_attribute(attr: MISPAttribute, how: str, level: Optional[tlp.Level], hide: bool, tag: str,
                       where: str) -> bool:
    """Change ``attr`` in place for ``how`` (:data:`TAG` or :data:`RELABEL`); whether it changed."""
    before = _attr_projection(attr)
    names = [t.name for t in attr.tags]
    if how == TAG:
        attr.to_ids = False
        if tag not in names:
            attr.add_tag(tag)
    elif how == RELABEL:
        old = _tlp_of_tags(names, f"attribute {attr.uuid} of {where}")
        if level is not None and (old is None or level > old):
            attr.tags = [t for t in attr.tags if _tlp_of_tags([t.name]) is None]
            attr.add_tag(tlp.to_misp_tag(level))
        if hide and tlp.CHATHAM_HOUSE_TAG not in names:
            attr.add_tag(tlp.CHATHAM_HOUSE_TAG)
    return _attr_projection(attr) != before


@dataclass
class RetractionOutcome:
    """What one retraction did at one MISP output: the holder's instruction
    (:func:`intelmq_crossborder.policy.retraction.instruction`), the way it was applied, the
    events it named that this output held, the attributes changed, and the attributes left in
    place because another event, not retracted, still holds the same indicator."""

    instruction: str
    way: Optional[str]
    held: int = 0
    changed: int = 0
    shared: int = 0
    misp_events: list = field(default_factory=list)


def holder_instruction(retraction, agreement) -> str:
    """What this recipient's copy of the retraction's target becomes (ids only, no content):
    the policy's :func:`~intelmq_crossborder.policy.retraction.instruction` under the
    agreement's TLP ceiling; a relabel whose new PAP is above the agreement's ``max_pap``, or
    that hides a source the agreement discloses (the MISP event title and the feed name may
    name it), removes the copy, and so does the router's withdraw-style removal for a holder
    a relabel no longer admits (its reason begins with :data:`RELABEL_REMOVAL`)."""
    what = policy.instruction(retraction, event_uuid=retraction.target_event_uuid,
                              fingerprint=retraction.target_fingerprint, ceiling=tlp_ceiling(agreement))
    if what == policy.TOMBSTONE and retraction.reason.startswith(RELABEL_REMOVAL):
        # the router's removal for a holder a relabel no longer admits (Retraction.as_removal): the
        # recipient is not entitled to keep it, not even as a deleted attribute
        return policy.REMOVE
    if what == policy.RELABEL:
        if retraction.new_pap and agreement.max_pap and \
                policy.PAP_ORDER[retraction.new_pap] > policy.PAP_ORDER[agreement.max_pap]:
            return policy.REMOVE
        if retraction.new_do_not_disclose_source and agreement.disclose_source:
            return policy.REMOVE
    return what


def apply_retraction(retraction, holdings, agreement, apply: Callable[..., int],
                     withdraw_mode: str = DELETE) -> RetractionOutcome:
    """Apply ``retraction`` (:class:`~intelmq_crossborder.policy.retraction.Retraction`) to
    what this output holds (``holdings``: :class:`~intelmq_crossborder.formats.misp.holdings.Holdings`).

    ``apply(misp_event_uuid, attribute_uuids, way, level, hide)`` is :meth:`Pusher.retract` or
    :meth:`FeedWriter.retract`.  The ways: a withdraw deletes (``withdraw_mode`` ``delete``)
    or tags (``tag``) the attribute; an erase, or a relabel the recipient is no longer
    entitled to, hard-deletes it; a relabel within the entitlement writes the new labels.
    An attribute another live event still holds (the same indicator from another event) is
    left as it is for a withdraw or a removal, and counted as ``shared``.

    The holdings are marked (and the tombstone written) only after ``apply`` succeeded: a
    retraction that failed half-way (the MISP server went down) is applied again in full
    when IntelMQ hands it over again."""
    what = holder_instruction(retraction, agreement)
    if what == policy.KEEP:
        return RetractionOutcome(what, None)
    rows = holdings.targets(retraction.scope, retraction.target_event_uuid, retraction.target_fingerprint)
    way = {policy.TOMBSTONE: withdraw_mode, policy.REMOVE: ERASE, policy.RELABEL: RELABEL}[what]
    keys = {(r.event_uuid, r.fingerprint, r.attribute) for r in rows}
    by_event: dict = {}
    shared = 0
    for row in rows:
        if way != RELABEL and holdings.still_held(row.attribute, excluding=keys):
            shared += 1
            continue
        by_event.setdefault(row.misp_event, set()).add(row.attribute)
    level = retraction.new_tlp if way == RELABEL else None
    hide = bool(retraction.new_do_not_disclose_source) if way == RELABEL else False
    changed = sum(apply(event_uuid, attributes, way, level, hide) for event_uuid, attributes in sorted(by_event.items()))
    state = {policy.TOMBSTONE: "withdrawn", policy.REMOVE: "erased" if retraction.action == "erase" else "removed",
             policy.RELABEL: "relabelled"}[what]
    holdings.mark(rows, state, retraction.id)
    if what != policy.RELABEL:
        if retraction.scope == "indicator":
            holdings.bury("indicator", retraction.target_fingerprint, retraction.id, retraction.action)
        else:
            for event_uuid in {r.event_uuid for r in rows if r.event_uuid} | {retraction.target_event_uuid} - {None}:
                holdings.bury("event", event_uuid, retraction.id, retraction.action)
    return RetractionOutcome(what, way, len(rows), changed, shared, sorted(by_event))
