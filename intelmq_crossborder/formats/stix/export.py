"""IntelMQ events to STIX 2.1: one indicator (or one observed-data with its SCOs) per event.

Used by the TAXII output bot and ``intelmq-crossborder export stix``.  The objects are built with
the ``stix2`` library (which checks every pattern against the official grammar) and returned as
plain JSON dicts.

Public API
    :class:`ExportSettings`  hub id, kind (``indicator`` | ``observed-data``), recipient profile
                             (``oasis`` | ``opencti`` | ``both``), the highest level exported.
    :func:`admit`            the TLP guard every output has: the effective label of
                             ``core.tlp.event_tlp``; RED, AMBER+STRICT, no label, an unreadable
                             label or a level above ``max_tlp`` raise :class:`ExportRefused`
                             naming the field; a hidden source is removed (``policy.redact``).
    :func:`event_objects`    the STIX objects of one admitted event (:class:`Exported`).
    :class:`BundleBuilder`   events -> one bundle with the marking definitions, the TLP 2.0
                             extension definition and the identities the objects reference.
    :func:`revoked`          a new version of an exported object with ``revoked: true``.
    :func:`validation_errors`  what ``stix2-validator`` says is an error in a bundle.

Ids are deterministic: ``<type>--uuid5`` of the exporting hub and the event's identity
(``core.fingerprint`` of the copy that is exported), through the same uuid5 keying the MISP
output uses (``formats.misp.convert.deterministic_uuid``).  Sending the same event again gives
the same id with a newer ``modified``: a consumer updates the object instead of duplicating it.
The originator's identity (``created_by_ref``) is set only when the source may be known.
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional

import stix2

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.fingerprint import canonical_json, fingerprint
from intelmq_crossborder.formats.misp import convert as misp
from intelmq_crossborder.formats.stix import markings
from intelmq_crossborder.policy.redact import without_source

__all__ = ["KINDS", "PROFILES", "ExportSettings", "ExportRefused", "Exported", "admit", "event_objects",
           "marking_ids", "BundleBuilder", "revoked", "relabelled", "definitions", "make_bundle", "object_id", "identity_id", "validation_errors", "stix_timestamp"]

KINDS = ("indicator", "observed-data")
#: Recipient profiles: which marking-definition ids label the objects.  ``oasis``: the TLP 2.0
#: extension's; ``opencti``: OpenCTI's own (TLP 1.0 ids, its own AMBER+STRICT id); ``both``.
PROFILES = ("oasis", "opencti", "both")

#: IntelMQ's classification.type -> STIX 2.1 indicator-type-ov.
_INDICATOR_TYPES = {
    "scanner": "anomalous-activity", "sniffing": "anomalous-activity", "brute-force": "anomalous-activity",
    "ddos": "anomalous-activity", "dos": "anomalous-activity", "spam": "anomalous-activity",
    "compromised": "compromised", "system-compromise": "compromised", "application-compromise": "compromised",
    "account-compromise": "compromised", "unknown": "unknown", "other": "unknown", "undetermined": "unknown",
    "test": "unknown",
}
_HASHES = (("malware.hash.sha256", "SHA-256"), ("malware.hash.sha1", "SHA-1"), ("malware.hash.md5", "MD5"))
_MAX_VALUE = 8192       # longer observable values are refused (no consumer indexes them)


class ExportRefused(CrossBorderError, ValueError):
    """An event that is not exported: ``field`` names what forbids it, ``reason`` says why."""

    def __init__(self, field_name: str, value: Any, reason: str):
        self.field, self.value, self.reason = field_name, value, reason
        super().__init__(f"field {field_name}: {reason}")


@dataclass(frozen=True)
class ExportSettings:
    hub_id: str
    kind: str = "indicator"
    profile: str = "oasis"
    max_tlp: tlp.Level = tlp.Level.AMBER

    def __post_init__(self) -> None:
        if not isinstance(self.hub_id, str) or not self.hub_id.strip() or self.hub_id != self.hub_id.strip():
            raise ValueError(f"hub id {self.hub_id!r} must be a non-empty string without surrounding blanks")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.profile not in PROFILES:
            raise ValueError(f"recipient profile {self.profile!r} is not one of {', '.join(PROFILES)}")
        level = self.max_tlp if isinstance(self.max_tlp, tlp.Level) else tlp.parse_level(self.max_tlp, "max_tlp")
        if level >= tlp.Level.AMBER_STRICT:
            raise ValueError(f"max_tlp TLP:{level.label} is never exported automatically; use AMBER or lower")
        object.__setattr__(self, "max_tlp", level)


@dataclass
class Exported:
    """The objects of one event: ``primary`` (the indicator or observed-data) first, then the
    SCOs of an observed-data; ``level`` its TLP; ``identity`` the originator's, when disclosed."""

    primary: dict
    objects: List[dict]
    level: tlp.Level
    identity: Optional[dict] = None
    markings: tuple = ()


# --- the guard ----------------------------------------------------------------------------

def admit(flat: Mapping[str, Any], settings: ExportSettings) -> tuple:
    """``(copy, level)``: the copy of a flat event that may be exported and its effective level,
    or :class:`ExportRefused` naming the field.  The level is the one of ``tlp.event_tlp``."""
    try:
        labels = tlp.event_tlp(flat)
    except tlp.LabelError as exc:
        raise ExportRefused(exc.field, exc.value, f"{exc.reason}; not exported") from None
    level = labels.level
    if level is None:
        raise ExportRefused("sharing.tlp", None, "the event has no TLP label; not exported (run the "
                                                 "cross-border TLP expert before this output)")
    if level is tlp.Level.RED:
        raise ExportRefused(labels.field, level.label, "TLP:RED is never forwarded automatically; not exported")
    if level is tlp.Level.AMBER_STRICT:
        raise ExportRefused(labels.field, level.label, "TLP:AMBER+STRICT never leaves the organisation; "
                                                       "not exported")
    if level > settings.max_tlp:
        raise ExportRefused(labels.field, level.label, f"TLP:{level.label} is above max_tlp "
                                                       f"{settings.max_tlp.label}; not exported")
    copy = without_source(flat) if labels.hide_source else dict(flat)
    copy["sharing.tlp"] = level.label
    return copy, level


# --- values -------------------------------------------------------------------------------

def stix_timestamp(value: Any = None) -> str:
    """A STIX timestamp (UTC, milliseconds, ``Z``) of an ISO 8601 text, a datetime or now."""
    if value is None:
        when = _dt.datetime.now(_dt.timezone.utc)
    elif isinstance(value, _dt.datetime):
        when = value
    else:
        text = str(value).strip()
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    when = when.astimezone(_dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _text(flat: Mapping[str, Any], name: str) -> Optional[str]:
    value = flat.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ExportRefused(name, value, f"expected a string, not a {type(value).__name__}")
    text = str(value)
    if len(text) > _MAX_VALUE:
        raise ExportRefused(name, text[:40] + "...", f"longer than {_MAX_VALUE} characters")
    if any(ord(ch) < 32 for ch in text):
        raise ExportRefused(name, text, "holds control characters")
    return text


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ip_type(name: str, value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ExportRefused(name, value, "not an IP address or network") from None
    return "ipv6-addr" if net.version == 6 else "ipv4-addr"


def _asn(name: str, value: Any) -> int:
    text = str(value).strip()
    if text.upper().startswith("AS"):
        text = text[2:]
    if not re.fullmatch(r"[0-9]{1,10}", text) or not 0 <= int(text) <= 4294967295:
        raise ExportRefused(name, value, "not an autonomous system number")
    return int(text)


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _observables(flat: Mapping[str, Any]) -> list:
    """``(field, SCO type, property, value)`` of every observable the event has, most specific
    first (the indicator's pattern uses the first)."""
    found = []
    for side in ("source", "destination"):
        url = _text(flat, f"{side}.url")
        if url is not None:
            if flat.get(misp.URL_SCHEME_ADDED_FIELD) is True and url.startswith(misp.ADDED_SCHEME):
                url = url[len(misp.ADDED_SCHEME):]      # as the originator had it
            found.append((f"{side}.url", "url", "value", url))
    for side in ("source", "destination"):
        fqdn = _text(flat, f"{side}.fqdn")
        if fqdn is not None:
            found.append((f"{side}.fqdn", "domain-name", "value", fqdn))
    for side in ("source", "destination"):
        for what in ("ip", "network"):
            value = _text(flat, f"{side}.{what}")
            if value is not None:
                found.append((f"{side}.{what}", _ip_type(f"{side}.{what}", value), "value", value))
    hashes = {algo: _text(flat, name) for name, algo in _HASHES if _text(flat, name) is not None}
    if hashes:
        found.append(("malware.hash", "file", "hashes", hashes))
    for side in ("source", "destination"):
        account = _text(flat, f"{side}.account")
        if account is not None and _EMAIL.fullmatch(account):
            found.append((f"{side}.account", "email-addr", "value", account))
    for side in ("source", "destination"):
        if flat.get(f"{side}.asn") not in (None, ""):
            found.append((f"{side}.asn", "autonomous-system", "number", _asn(f"{side}.asn", flat[f"{side}.asn"])))
    return found


#: The forms of ``policy.redact.pseudonym`` (strings, host names, URLs): an agreement that hides the
#: source by pseudonymising it leaves values of these forms in the source fields.
_PSEUDONYM = re.compile(r"(?i)(pseudo-[0-9a-f]{32}|(https://)?[0-9a-f]{32}\.pseudonym\.invalid/?)")


def _source_pseudonymised(copy: Mapping[str, Any]) -> bool:
    """Whether a field that names the source holds a pseudonym: the recipient may not know the
    source, so no originator identity is written (not even a pseudonymous one)."""
    return any(isinstance(copy.get(name), str) and _PSEUDONYM.fullmatch(copy[name].strip())
               for name in tlp.SOURCE_FIELDS)


def _pattern(observable: tuple) -> str:
    _, sco_type, prop, value = observable
    if sco_type == "file":
        return "[" + " AND ".join(f"file:hashes.{_quote(algo)} = {_quote(digest)}"
                                  for algo, digest in sorted(value.items())) + "]"
    if sco_type == "autonomous-system":
        return f"[autonomous-system:number = {value}]"
    return f"[{sco_type}:{prop} = {_quote(value)}]"


_SCO_CLASSES = {"url": "URL", "domain-name": "DomainName", "ipv4-addr": "IPv4Address", "ipv6-addr": "IPv6Address",
                "file": "File", "email-addr": "EmailAddress", "autonomous-system": "AutonomousSystem"}


def _sco(observable: tuple, markings: list):
    """The SCO of an observable (its id is stix2's deterministic uuid5 of its value), marked."""
    _, sco_type, prop, value = observable
    return getattr(stix2.v21, _SCO_CLASSES[sco_type])(**{prop: value}, object_marking_refs=markings)


# --- ids and markings ---------------------------------------------------------------------

def object_id(stix_type: str, hub_id: str, event: Mapping[str, Any], observables: Iterable = ()) -> str:
    """``<type>--uuid5`` of the hub, the event's identity (its fingerprint) and the observables the
    object carries (the fingerprint leaves some out, such as ``source.network`` and ``source.asn``)."""
    carried = canonical_json([list(o) for o in observables])
    return f"{stix_type}--{misp.deterministic_uuid(hub_id, 'stix', stix_type, fingerprint(event), carried)}"


def identity_id(name: str) -> str:
    """The identity of an organisation: the same uuid5 the MISP output gives it."""
    return f"identity--{misp.deterministic_uuid('org', name)}"


#: Recipient profile -> the marking profiles of ``formats.stix.markings``.
_MARKING_PROFILES = {"oasis": ("2.0",), "opencti": ("opencti",), "both": ("2.0", "opencti")}


def marking_ids(level: tlp.Level, profile: str) -> list:
    """The marking-definition ids that label ``level`` for a recipient profile."""
    return list(dict.fromkeys(markings.marking_ref(level, p) for p in _MARKING_PROFILES[profile]))


def _serialised(obj) -> dict:
    return json.loads(obj.serialize())


_IDENTITIES: dict = {}


def _identity(name: str) -> dict:
    """The identity object of an organisation (cached: the same few originators recur)."""
    found = _IDENTITIES.get(name)
    if found is None:
        found = _serialised(stix2.v21.Identity(
            id=identity_id(name), name=name, identity_class="organization",
            created="2020-01-01T00:00:00.000Z", modified="2020-01-01T00:00:00.000Z"))
        if len(_IDENTITIES) < 4096:
            _IDENTITIES[name] = found
    return dict(found)


# --- one event ----------------------------------------------------------------------------

def _classification(flat: Mapping[str, Any]) -> tuple:
    ctype = flat.get("classification.type")
    ctype = ctype if isinstance(ctype, str) and ctype else None
    taxonomy = flat.get("classification.taxonomy")
    taxonomy = taxonomy if isinstance(taxonomy, str) and taxonomy else None
    kind = _INDICATOR_TYPES.get(ctype or "", "malicious-activity") if ctype else "unknown"
    labels = []
    if ctype:
        try:
            labels.append(misp.rsit_tag(ctype, taxonomy))
        except Exception:          # noqa: BLE001 - a label is optional; the type stays in indicator_types
            labels = []
    return ctype, kind, labels


def event_objects(copy: Mapping[str, Any], level: tlp.Level, settings: ExportSettings,
                  now: Optional[_dt.datetime] = None) -> Exported:
    """The STIX objects of an event :func:`admit` returned (``copy``, ``level``).

    Raises :class:`ExportRefused` when the event has no observable STIX can carry or a value
    that no valid object can hold."""
    observables = _observables(copy)
    if not observables:
        raise ExportRefused("source.ip", None, "the event has no observable STIX can carry (URL, domain, IP "
                                               "address or network, file hash, e-mail address, AS number)")
    when = stix_timestamp(now)
    try:
        created = stix_timestamp(copy.get("time.source") or copy.get("time.observation") or now)
    except ValueError:
        raise ExportRefused("time.source", copy.get("time.source"), "not an ISO 8601 time") from None
    modified = max(created, when)
    markings = marking_ids(level, settings.profile)
    identity = None
    originator = copy.get("provenance.originator") or copy.get("feed.provider")
    if isinstance(originator, str) and originator.strip() and not _source_pseudonymised(copy):
        identity = _identity(originator.strip())
    ctype, kind, labels = _classification(copy)
    description = copy.get("event_description.text")
    common: dict = {"created": created, "modified": modified, "object_marking_refs": markings}
    if identity is not None:
        common["created_by_ref"] = identity["id"]
    if labels:
        common["labels"] = labels
    first = observables[0]
    shown = first[3] if not isinstance(first[3], dict) else ", ".join(sorted(first[3].values()))
    try:
        if settings.kind == "indicator":
            primary = stix2.v21.Indicator(
                id=object_id("indicator", settings.hub_id, copy, [first]), pattern=_pattern(first), pattern_type="stix",
                valid_from=created, indicator_types=[kind], name=f"{ctype or 'indicator'}: {shown}"[:256],
                description=description if isinstance(description, str) and description else
                f"{first[1]} reported as {ctype or 'an indicator'}", **common)
            primary = _serialised(primary)
            return Exported(primary, [primary], level, identity, tuple(markings))
        scos = []
        for observable in observables:
            scos.append(_sco(observable, markings))
        refs = {s.type + ":" + s.id: s for s in scos}
        primary = stix2.v21.ObservedData(
            id=object_id("observed-data", settings.hub_id, copy, observables), first_observed=created, last_observed=created,
            number_observed=1, object_refs=[s.id for s in refs.values()], **common)
    except stix2.exceptions.STIXError as exc:
        raise ExportRefused(first[0], shown, f"no valid STIX object holds it: {exc}") from None
    objects = [_serialised(primary)] + [_serialised(s) for s in refs.values()]
    return Exported(objects[0], objects, level, identity, tuple(markings))


def revoked(obj: Mapping[str, Any], now: Optional[_dt.datetime] = None) -> dict:
    """A new version of an exported SDO that revokes it (same id, ``revoked: true``, newer
    ``modified``): what a consumer needs to withdraw an indicator."""
    out = dict(obj)
    out["revoked"] = True
    out["modified"] = max(stix_timestamp(now), str(obj.get("modified") or ""))
    if out["modified"] == obj.get("modified"):
        # the clock has not moved past the version being revoked: one millisecond later
        when = _dt.datetime.fromisoformat(out["modified"].replace("Z", "+00:00")) + _dt.timedelta(milliseconds=1)
        out["modified"] = stix_timestamp(when)
    return out


def relabelled(obj: Mapping[str, Any], level: tlp.Level, profile: str, now: Optional[_dt.datetime] = None) -> dict:
    """A new version of an exported SDO marked with ``level`` (a retraction that relabels)."""
    out = revoked(obj, now)
    out.pop("revoked")
    if "revoked" in obj:
        out["revoked"] = obj["revoked"]
    out["object_marking_refs"] = marking_ids(level, profile)
    return out


# --- bundles ------------------------------------------------------------------------------

def definitions(profile: str, levels: Iterable[tlp.Level]) -> list:
    """The marking-definition objects (and the TLP 2.0 extension definition) that the objects
    reference, built by ``formats.stix.markings``."""
    return markings.bundle_objects(sorted(set(levels)), _MARKING_PROFILES[profile])


@dataclass
class BundleBuilder:
    """Events in, one STIX 2.1 bundle out; refused events are kept with their reason."""

    settings: ExportSettings
    now: Optional[_dt.datetime] = None
    objects: dict = field(default_factory=dict)
    identities: dict = field(default_factory=dict)
    levels: set = field(default_factory=set)
    refused: list = field(default_factory=list)
    exported: int = 0
    _level: dict = field(default_factory=dict)

    def add(self, flat: Mapping[str, Any], where: str = "") -> Optional[Exported]:
        """Export one flat event; None (and an entry in ``refused``: where, field, reason) when refused."""
        try:
            copy, level = admit(flat, self.settings)
            out = event_objects(copy, level, self.settings, self.now)
        except ExportRefused as exc:
            self.refused.append((where, exc.field, exc.reason))
            return None
        for obj in out.objects:
            # an SCO (same value, same id) of two events keeps the markings of the more restrictive
            if obj["id"] not in self.objects or self._level[obj["id"]] <= out.level:
                self.objects[obj["id"]] = obj
                self._level[obj["id"]] = out.level
        if out.identity is not None:
            self.identities[out.identity["id"]] = out.identity
        self.levels.add(out.level)
        self.exported += 1
        return out

    def bundle(self) -> dict:
        """The bundle: definitions and identities first, then the objects (ids deterministic:
        the bundle id is derived from the object ids and versions)."""
        objects = definitions(self.settings.profile, self.levels) if self.levels else []
        objects += list(self.identities.values()) + list(self.objects.values())
        return make_bundle(objects, self.settings.hub_id)


def make_bundle(objects: List[dict], hub_id: str) -> dict:
    """A bundle of ``objects`` whose id is derived from their ids and versions."""
    key = fingerprint({"event_description.text": "|".join(f"{o.get('id')}@{o.get('modified', '')}"
                                                          for o in objects)})
    bundle = {"type": "bundle", "id": f"bundle--{misp.deterministic_uuid(hub_id, 'stix-bundle', key)}"}
    if objects:                    # STIX 2.1: objects, when present, holds at least one
        bundle["objects"] = list(objects)
    return bundle


def validation_errors(bundle: Mapping[str, Any]) -> list:
    """The errors ``stix2-validator`` (the OASIS validator, STIX 2.1) finds in ``bundle``; warnings
    (best practices) are not errors."""
    from stix2validator import ValidationOptions, validate_instance
    result = validate_instance(dict(bundle), ValidationOptions(version="2.1"))
    errors = [str(e) for e in result.errors]
    for obj in getattr(result, "object_results", None) or []:
        errors += [f"{obj.object_id}: {e}" for e in obj.errors]
    return list(dict.fromkeys(errors))
