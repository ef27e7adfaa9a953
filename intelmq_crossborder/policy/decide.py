"""Sharing agreements and the share decision: THE place for the sharing rules.

One YAML file per recipient states what that recipient may receive (see
``docs/agreements.md``).  :func:`load_agreement` reads it with the hostile-input
reader (:func:`intelmq_crossborder.core.inputs.read_yaml`) and validates it against
:data:`AGREEMENT_SCHEMA` (JSON Schema) and the harmonization (field names,
pseudonym types); any problem raises :class:`AgreementError` naming the file,
the line where there is one, the field and the reason.

:func:`decide` applies an agreement to one event (a flat IntelMQ dict, or an
IntelMQ ``Event``) and returns a :class:`Decision`: allowed or denied, every
reason, and the event as transformed for that recipient.  The rules:

- The event's TLP is what :func:`intelmq_crossborder.core.tlp.event_tlp` reads, and
  nothing else: the most restrictive label in any field, ``sharing.tlp``
  included.  No label at all: the agreement's ``no_label`` rule (default
  ``deny``: not shared beyond the hub).  Anything label-like that cannot be
  read: denied for every recipient (``tlp-unreadable``, naming the field).
- TLP:RED is never forwarded automatically.  AMBER+STRICT goes only to the
  same organisation, AMBER to the organisation and its constituents, GREEN to
  the community, CLEAR to anyone the agreement admits: :func:`tlp_ceiling`.
- Then taxonomy, type, country of origin, PAP and the loop rule (a hub never
  gets back an event that already passed through it).
- The copy for the recipient: fields removed, fields pseudonymised with
  HMAC-SHA256, the fields that name or point at the originator
  (:data:`intelmq_crossborder.core.tlp.SOURCE_FIELDS` plus the agreement's
  ``originator_fields``) hidden when the source must not be disclosed (by the
  event or the agreement), ``raw`` dropped, ``sharing.tlp``,
  ``sharing.agreement`` and ``sharing.retention_days`` set.

The functions are pure: no IntelMQ bot, no Redis, no logging.  Reasons name
fields and quote only labels and classification values (TLP, PAP, taxonomy, type,
country of origin), never other values such as addresses or accounts: they go to
logs and the audit trail.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import jsonschema

from intelmq_crossborder.core import fingerprint as _fingerprint
from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.tlp import Level
from intelmq_crossborder.core.errors import CrossBorderError

__all__ = [
    "AgreementError", "Agreement", "Decision", "EventFacts", "AGREEMENT_SCHEMA",
    "KINDS", "RELATIONS", "RELATION_CAPS", "PAP_LEVELS", "LABEL_CARRYING_FIELDS",
    "load_agreement", "load_agreements", "agreement_from_dict", "tlp_ceiling",
    "event_facts", "decide", "decide_all", "parse_pap", "pseudonym", "redact", "label_fields_named",
    "hidden_event_uuid", "FieldSelector", "PSEUDONYM_TYPES", "PolicySet", "key_from",
]

KINDS = ("national-hub", "csirt", "isac", "critical-infrastructure", "eu-cyclone", "csirts-network")
RELATIONS = ("same-organisation", "constituent", "community")

#: What a relation admits under TLP 2.0: the organisation sees AMBER+STRICT,
#: its clients/constituents AMBER, the community GREEN.  RED: never, automatically.
RELATION_CAPS = {
    "same-organisation": Level.AMBER_STRICT,
    "constituent": Level.AMBER,
    "community": Level.GREEN,
}

#: The fields that carry an event's labels and its "do not disclose the source" flag (the
#: TLP core's lists).  Redaction never pseudonymises them (a pseudonym of a label is an
#: unreadable label) and the redaction expert refuses to name them.
LABEL_CARRYING_FIELDS = tlp.LABEL_FIELDS + tlp.TAG_FIELDS + (tlp.HIDE_SOURCE_FIELD,)
_LABEL_CARRYING = frozenset(LABEL_CARRYING_FIELDS)

#: PAP 2.0 order, least to most restrictive; PAP:WHITE of older sources is CLEAR.
PAP_LEVELS = ("CLEAR", "GREEN", "AMBER", "RED")
_PAP_ORDER = {name: i for i, name in enumerate(PAP_LEVELS)}

# JSON Schema's "pattern" is ECMA-262 and jsonschema runs it with Python's re.search, where
# "$" also matches before a final newline ("cert-at\n" would pass).  "(?![\s\S])" is "end of
# the input" in both dialects.
_END = r"(?![\s\S])"
_ID_RE = r"^[a-z0-9][a-z0-9._-]{0,63}" + _END
_FIELD_RE = r"^[a-z_][a-z_0-9]*(\.[a-z_0-9]+)*(\.\*)?" + _END
_COUNTRY_RE = r"^[A-Z]{2}" + _END
_TLP_VALUES = ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]

#: JSON Schema of an agreement file.  ``docs/agreements.md`` documents each property.
AGREEMENT_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "intelmq-crossborder sharing agreement",
    "type": "object",
    "additionalProperties": False,
    "required": ["recipient", "name", "kind", "country", "relation", "max_tlp"],
    "properties": {
        "recipient": {"type": "string", "pattern": _ID_RE,
                      "description": "Recipient id: also the router's named path and sharing.agreement."},
        "name": {"type": "string", "pattern": r"\S"},
        "kind": {"enum": list(KINDS)},
        "country": {"type": "string", "pattern": _COUNTRY_RE,
                    "description": "ISO 3166-1 alpha-2; EU for EU-level bodies."},
        "relation": {"enum": list(RELATIONS)},
        "max_tlp": {"type": "string", "minLength": 1,
                    "description": "Any TLP spelling; RED is refused, and it may not exceed the relation."},
        "hub_id": {"type": "string", "pattern": _ID_RE,
                   "description": "Hub id of a recipient that is a hub: events that already passed "
                                  "through it (provenance.hub_path / origin_hub) are not sent back."},
        "taxonomies": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
        "types": {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
        "origin_countries": {"type": "array", "items": {"type": "string", "pattern": _COUNTRY_RE},
                             "uniqueItems": True},
        "unknown_origin": {"enum": ["deny", "allow"]},
        "remove_fields": {"type": "array", "items": {"type": "string", "pattern": _FIELD_RE},
                          "uniqueItems": True},
        "pseudonymise_fields": {"type": "array", "items": {"type": "string", "pattern": _FIELD_RE},
                                "uniqueItems": True},
        "max_pap": {"enum": list(PAP_LEVELS)},
        "missing_pap": {"enum": ["deny", "allow"]},
        "disclose_source": {"type": "boolean"},
        "hide_source": {"enum": ["remove", "pseudonymise"]},
        "originator_fields": {"type": "array", "items": {"type": "string", "pattern": _FIELD_RE},
                              "uniqueItems": True,
                              "description": "Fields that name the originator, in addition to "
                                             "intelmq_crossborder.core.tlp.SOURCE_FIELDS (never instead)."},
        "no_label": {"type": "string", "minLength": 1,
                     "description": "'deny' (default) or the TLP level to assume for an unlabelled event."},
        "retention_days": {"type": "integer", "minimum": 1, "maximum": 36500},
        "keep_raw": {"type": "boolean"},
        "enabled": {"type": "boolean"},
        "description": {"type": "string"},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(AGREEMENT_SCHEMA)


class AgreementError(CrossBorderError, ValueError):
    """A bad agreement; the message names the file, the line (when known), the field and the reason."""

    def __init__(self, source, field_name: Optional[str], reason: str, line: Optional[int] = None):
        self.source = str(source)
        self.field = field_name
        self.reason = reason
        self.line = line
        where = (f":{line}" if line is not None else "") + (f", field {field_name}" if field_name else "")
        super().__init__(f"{self.source}{where}: {reason}")


class FieldSelector:
    """A set of field names, each exact (``source.ip``) or a prefix (``extra.*``)."""

    __slots__ = ("exact", "prefixes", "patterns")

    def __init__(self, patterns: Iterable[str] = ()):
        self.patterns = tuple(patterns)
        self.exact = frozenset(p for p in self.patterns if not p.endswith(".*"))
        self.prefixes = tuple(p[:-1] for p in self.patterns if p.endswith(".*"))

    def __bool__(self):
        return bool(self.patterns)

    def matches(self, name: str) -> bool:
        return name in self.exact or (bool(self.prefixes) and name.startswith(self.prefixes))

    def select(self, keys: Iterable[str]) -> list:
        return [k for k in keys if self.matches(k)]

    def __eq__(self, other):
        return isinstance(other, FieldSelector) and self.patterns == other.patterns

    def __hash__(self):
        return hash(self.patterns)

    def __repr__(self):
        return f"FieldSelector({list(self.patterns)!r})"


@dataclass(frozen=True)
class Agreement:
    """One recipient's sharing agreement, validated.  Lists are tuples; ``None``
    for taxonomies/types/origin_countries means "no restriction"."""

    recipient: str
    name: str
    kind: str
    country: str
    relation: str
    max_tlp: Level
    hub_id: Optional[str] = None
    taxonomies: Optional[tuple] = None
    types: Optional[tuple] = None
    origin_countries: Optional[tuple] = None
    unknown_origin: str = "deny"
    remove_fields: tuple = ()
    pseudonymise_fields: tuple = ()
    max_pap: Optional[str] = None
    missing_pap: str = "allow"
    disclose_source: bool = False
    hide_source: str = "remove"
    originator_fields: tuple = tlp.SOURCE_FIELDS     # tlp.SOURCE_FIELDS plus the agreement's own
    no_label: Optional[Level] = None          # None: deny
    retention_days: Optional[int] = None
    keep_raw: bool = False
    enabled: bool = True
    description: str = ""
    source: str = "<dict>"
    # derived, for speed
    _remove: FieldSelector = field(default=FieldSelector(), repr=False, compare=False)
    _pseudo: FieldSelector = field(default=FieldSelector(), repr=False, compare=False)
    _originator: FieldSelector = field(default=FieldSelector(tlp.SOURCE_FIELDS), repr=False, compare=False)
    _taxonomies: Optional[frozenset] = field(default=None, repr=False, compare=False)
    _types: Optional[frozenset] = field(default=None, repr=False, compare=False)
    _countries: Optional[frozenset] = field(default=None, repr=False, compare=False)
    _ceiling: Optional[Level] = field(default=None, repr=False, compare=False)

    @property
    def ceiling(self) -> Level:
        return tlp_ceiling(self)

    @property
    def needs_key(self) -> bool:
        """Whether applying this agreement needs an HMAC key."""
        return bool(self.pseudonymise_fields) or (not self.disclose_source and self.hide_source == "pseudonymise")

    def summary(self) -> dict:
        """JSON-able description (for docs, the CLI and the audit trail)."""
        return {"recipient": self.recipient, "name": self.name, "kind": self.kind, "country": self.country,
                "relation": self.relation, "max_tlp": self.max_tlp.label, "ceiling": tlp_ceiling(self).label,
                "source": self.source}


def tlp_ceiling(agreement: Agreement) -> Level:
    """The most restrictive TLP the recipient may receive: min(max_tlp, relation cap).
    Never RED: RED is not forwarded automatically."""
    cap = RELATION_CAPS.get(agreement.relation, Level.CLEAR)
    return min(agreement.max_tlp, cap, Level.AMBER_STRICT)


# --- loading -------------------------------------------------------------------

def _json_path(error) -> Optional[str]:
    text = ""
    for part in error.absolute_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    extra = None
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        extra = missing[0] if missing else "?"
    elif error.validator == "additionalProperties":
        found = re.findall(r"'([^']+)'", error.message)
        extra = found[0] if found else None
    if extra:
        text = f"{text}.{extra}" if text else extra
    return text or None


def _short(value: Any, limit: int = 80) -> str:
    """repr of a (string) value, cut to ``limit`` characters: a reason never carries a huge value."""
    text = repr(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    return text if len(text) <= limit else text[:limit] + "...'"


def _schema_reason(error) -> str:
    if error.validator == "required":
        return "required field is missing"
    if error.validator == "additionalProperties":
        return "unknown field (not part of the agreement schema; a typo?)"
    if error.validator == "enum":
        return f"{_short(error.instance)} is not one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "pattern":
        reason = f"{_short(error.instance)} does not match {error.validator_value}"
        if isinstance(error.instance, str) and any(ch.isspace() for ch in error.instance):
            reason += " (white space and line breaks are not allowed)"
        return reason
    return error.message if len(error.message) <= 200 else error.message[:200] + "..."


_TYPE_NAMES = {"string": "a string", "boolean": "a boolean (true or false)", "integer": "an integer",
               "array": "a list", "object": "a mapping"}


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "empty (null)"}.get(type(value), f"a {type(value).__name__}")


def _check_types(data: dict, source) -> None:
    """Wrong types at every level of an agreement, named before the JSON Schema runs (its
    messages quote the whole value, which a hostile file can make huge)."""
    for key in data:
        if not isinstance(key, str):
            raise AgreementError(source, _short(key), f"a field name must be a string, not {_kind(key)}")
    for name, spec in AGREEMENT_SCHEMA["properties"].items():
        if name not in data:
            continue
        value, want = data[name], spec.get("type", "string")       # the enums are strings
        ok = isinstance(value, {"string": str, "boolean": bool, "integer": int, "array": list,
                                "object": dict}[want])
        if ok and want == "integer" and isinstance(value, bool):
            ok = False
        if not ok:
            raise AgreementError(source, name, f"must be {_TYPE_NAMES[want]}, not {_kind(value)}")
        if want == "array":
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise AgreementError(source, f"{name}[{i}]", f"must be a string, not {_kind(item)}")


def _harmonization_fields(harmonization: Optional[dict]) -> dict:
    if harmonization is None:
        harmonization = _cached_harmonization()
    return harmonization.get("event", harmonization)


_HARM_CACHE: dict = {}


def _cached_harmonization() -> dict:
    if "h" not in _HARM_CACHE:
        from intelmq_crossborder.harmonization import merged_harmonization
        _HARM_CACHE["h"] = merged_harmonization()
    return _HARM_CACHE["h"]


def _check_fields(source, name: str, patterns: Sequence[str], fields: dict, pseudonymise: bool,
                  exempt: frozenset = frozenset()) -> None:
    """Every pattern names harmonization fields; with ``pseudonymise``, fields that can hold a
    pseudonym (``exempt`` fields are not pseudonym-checked: they are removed when one does not fit)."""
    for i, pattern in enumerate(patterns):
        where = f"{name}[{i}]"
        if pattern.endswith(".*"):
            prefix = pattern[:-1]
            if pattern == "extra.*":
                continue
            if not any(k.startswith(prefix) for k in fields):
                raise AgreementError(source, where, f"no harmonization field starts with {prefix!r}")
            if pseudonymise:
                for key in sorted(k for k in fields if k.startswith(prefix) and k not in exempt):
                    _check_pseudonym_type(source, where, key, fields[key])
            continue
        if pattern.startswith("extra."):
            continue
        if pattern not in fields:
            raise AgreementError(source, where, f"unknown field {pattern!r} (not in the harmonization)")
        if pseudonymise and pattern not in exempt:
            _check_pseudonym_type(source, where, pattern, fields[pattern])


def _check_pseudonym_type(source, where: str, key: str, definition: dict) -> None:
    ftype = definition.get("type")
    if ftype not in PSEUDONYM_TYPES:
        raise AgreementError(source, where, f"field {key!r} has type {ftype}, which cannot hold a pseudonym; "
                                            "list it under remove_fields instead")
    sample = pseudonym("192.0.2.1" if ftype == "IPAddress" else "sample", b"k", ftype)
    regex, length = definition.get("regex"), definition.get("length")
    if ftype is not None:
        from intelmq.lib import harmonization as _types
        cls = getattr(_types, ftype)
        if not cls.is_valid(sample, sanitize=False) or cls.sanitize(sample) != sample:
            raise AgreementError(source, where, f"field {key!r}: a pseudonym would not be a valid {ftype}; "
                                                "list it under remove_fields instead")
    if (regex and not re.search(regex, sample)) or (length and len(sample) > length):
        raise AgreementError(source, where, f"field {key!r} ({ftype}, regex {regex!r}, length {length}) "
                                            "cannot hold a pseudonym; list it under remove_fields instead")


def agreement_from_dict(data: Any, source="<dict>", harmonization: Optional[dict] = None) -> Agreement:
    """Validate one agreement given as a mapping (what the YAML file holds)."""
    if not isinstance(data, dict):
        raise AgreementError(source, None, f"an agreement must be a mapping, not {_kind(data)}")
    _check_types(data, source)
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: (len(list(e.absolute_path)), str(e.path)))
    if errors:
        err = errors[0]
        raise AgreementError(source, _json_path(err), _schema_reason(err))
    try:
        max_tlp = tlp.parse_level(data["max_tlp"], "max_tlp")
    except tlp.UnknownTLPError as exc:
        raise AgreementError(source, "max_tlp", str(exc)) from None
    relation = data["relation"]
    if max_tlp is Level.RED:
        raise AgreementError(source, "max_tlp", "TLP:RED is never forwarded automatically; "
                                                "the highest possible value is AMBER+STRICT (same organisation)")
    if max_tlp > RELATION_CAPS[relation]:
        raise AgreementError(source, "max_tlp", f"TLP:{max_tlp.label} exceeds what relation {relation!r} "
                                                f"may receive under TLP 2.0 (TLP:{RELATION_CAPS[relation].label})")
    no_label = None
    raw_no_label = data.get("no_label", "deny")
    if str(raw_no_label).strip().lower() != "deny":
        try:
            no_label = tlp.parse_level(raw_no_label, "no_label")
        except tlp.UnknownTLPError as exc:
            raise AgreementError(source, "no_label", f"{exc}; use 'deny' or a TLP level") from None
    from intelmq.lib.harmonization import ClassificationTaxonomy, ClassificationType
    for name, allowed in (("taxonomies", ClassificationTaxonomy.allowed_values),
                          ("types", ClassificationType.allowed_values)):
        for i, value in enumerate(data.get(name) or ()):
            if value not in allowed:
                raise AgreementError(source, f"{name}[{i}]", f"{value!r} is not an RSIT classification "
                                     f"{'taxonomy' if name == 'taxonomies' else 'type'} of IntelMQ")
    fields = _harmonization_fields(harmonization)
    remove = tuple(data.get("remove_fields", ()))
    pseudo = tuple(data.get("pseudonymise_fields", ()))
    both = set(remove) & set(pseudo)
    if both:
        raise AgreementError(source, "pseudonymise_fields",
                             f"{sorted(both)[0]!r} is also in remove_fields; list a field in one of them")
    _check_fields(source, "remove_fields", remove, fields, pseudonymise=False)
    for i, name in enumerate(pseudo):
        if name in _LABEL_CARRYING:
            raise AgreementError(source, f"pseudonymise_fields[{i}]", f"{name} carries the event's TLP label or "
                                 "source flag: a pseudonym would make it unreadable; list it under remove_fields "
                                 "(the copy carries the effective label in sharing.tlp)")
    _check_fields(source, "pseudonymise_fields", pseudo, fields, pseudonymise=True)
    extras = tuple(data.get("originator_fields", ()))
    hide_source = data.get("hide_source", "remove")
    # the TLP core's SOURCE_FIELDS are always hidden (removed where a pseudonym does not fit)
    _check_fields(source, "originator_fields", extras, fields, pseudonymise=hide_source == "pseudonymise",
                  exempt=frozenset(tlp.SOURCE_FIELDS) | _LABEL_CARRYING)
    originator = tuple(tlp.SOURCE_FIELDS) + tuple(f for f in extras if f not in tlp.SOURCE_FIELDS)
    for protected in ("sharing.tlp", "sharing.agreement"):
        if protected in remove or protected in pseudo:
            raise AgreementError(source, "remove_fields" if protected in remove else "pseudonymise_fields",
                                 f"{protected} must stay on the event: it tells the recipient how to treat it")
    def opt(name):
        value = data.get(name)
        return None if value is None else tuple(value)
    return Agreement(
        recipient=data["recipient"], name=data["name"], kind=data["kind"], country=data["country"],
        relation=relation, max_tlp=max_tlp, hub_id=data.get("hub_id"),
        taxonomies=opt("taxonomies"), types=opt("types"), origin_countries=opt("origin_countries"),
        unknown_origin=data.get("unknown_origin", "deny"), remove_fields=remove, pseudonymise_fields=pseudo,
        max_pap=data.get("max_pap"), missing_pap=data.get("missing_pap", "allow"),
        disclose_source=data.get("disclose_source", False), hide_source=hide_source,
        originator_fields=originator, no_label=no_label, retention_days=data.get("retention_days"),
        keep_raw=data.get("keep_raw", False), enabled=data.get("enabled", True),
        description=data.get("description", ""), source=str(source),
        _remove=FieldSelector(remove), _pseudo=FieldSelector(pseudo), _originator=FieldSelector(originator),
        _taxonomies=None if data.get("taxonomies") is None else frozenset(data["taxonomies"]),
        _types=None if data.get("types") is None else frozenset(data["types"]),
        _countries=None if data.get("origin_countries") is None else frozenset(data["origin_countries"]),
        _ceiling=min(max_tlp, RELATION_CAPS[relation], Level.AMBER_STRICT),
    )


def load_agreement(path, harmonization: Optional[dict] = None) -> Agreement:
    """Read and validate one agreement file (YAML or JSON), with the hostile-input reader:
    alias bombs, huge values, duplicate keys, deep nesting, text that is not UTF-8 and
    paths that are not readable files are an :class:`AgreementError`, never a traceback."""
    path = Path(path)
    try:
        data = inputs.read_yaml(path, what="YAML agreement file")
    except inputs.InputError as exc:
        reason = exc.reason
        if "nesting" in reason or "nested" in reason:
            reason = f"not a readable agreement: nested too deeply ({reason})"
        raise AgreementError(path, exc.field, reason, line=exc.line) from None
    return agreement_from_dict(data, source=path, harmonization=harmonization)


def agreement_files(directory) -> list:
    directory = Path(directory)
    if not directory.is_dir():
        raise AgreementError(directory, None, "not a directory of agreements")
    try:
        return sorted(p for p in directory.iterdir()
                      if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith("."))
    except OSError as exc:
        raise AgreementError(directory, None, f"cannot list the directory: {exc.strerror or exc}") from None


def load_agreements(directory, harmonization: Optional[dict] = None, *,
                    include_disabled: bool = False) -> dict:
    """All agreements of a directory (``*.yaml``/``*.yml``), by recipient id, sorted by id.

    Raises :class:`AgreementError` on the first bad file (files are read in name
    order), also for two files with the same recipient id, or for no file at all.
    Agreements with ``enabled: false`` are left out unless ``include_disabled``.
    """
    files = agreement_files(directory)
    if not files:
        raise AgreementError(directory, None, "no agreement files (*.yaml) in the directory")
    by_id: dict = {}
    for path in files:
        agreement = load_agreement(path, harmonization)
        if agreement.recipient in by_id:
            raise AgreementError(path, "recipient", f"{agreement.recipient!r} is already the recipient of "
                                                    f"{by_id[agreement.recipient].source}")
        by_id[agreement.recipient] = agreement
    return {k: by_id[k] for k in sorted(by_id) if include_disabled or by_id[k].enabled}


# --- pseudonyms ------------------------------------------------------------------

#: Harmonization types that can hold a pseudonym, and the form it takes.
PSEUDONYM_TYPES = ("String", "LowercaseString", "UppercaseString", "IPAddress", "IPNetwork", "FQDN", "URL",
                   None)   # None: extra.* (no type)


def _digest(value: Any, key: bytes) -> bytes:
    data = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, data.encode("utf-8"), hashlib.sha256).digest()


def pseudonym(value: Any, key: bytes, field_type: Optional[str] = None) -> str:
    """See :func:`_pseudonym`; results for hashable values are cached (the router
    pseudonymises the same value for several recipients)."""
    try:
        return _pseudonym_cached(value, key, field_type)
    except TypeError:       # unhashable (a list or dict in extra.*)
        return _pseudonym(value, key, field_type)


def _pseudonym(value: Any, key: bytes, field_type: Optional[str] = None) -> str:
    """Keyed pseudonym (HMAC-SHA256) of a value, in a form the field type accepts.

    The same value and key always give the same pseudonym, so recipients can
    correlate; without the key it cannot be reversed.  Strings become
    ``pseudo-<32 hex>`` (upper case for UppercaseString), IP addresses an IPv6
    unique-local address ``fdxx:...`` (a network: that address ``/128``), FQDNs
    ``<32 hex>.pseudonym.invalid`` and URLs ``https://<32 hex>.pseudonym.invalid/``
    (``.invalid`` is reserved by RFC 2606, so a pseudonym never resolves).
    """
    digest = _digest(value, key)
    if field_type == "IPAddress":
        return str(ipaddress.IPv6Address(b"\xfd" + digest[:15]))
    if field_type == "IPNetwork":
        return str(ipaddress.IPv6Address(b"\xfd" + digest[:15])) + "/128"
    hexed = digest[:16].hex()
    if field_type == "FQDN":
        return f"{hexed}.pseudonym.invalid"
    if field_type == "URL":
        return f"https://{hexed}.pseudonym.invalid/"
    if field_type == "UppercaseString":
        return f"PSEUDO-{hexed.upper()}"
    return f"pseudo-{hexed}"


_pseudonym_cached = functools.lru_cache(maxsize=16384)(_pseudonym)


def _field_type(name: str, harmonization: Optional[dict]) -> Optional[str]:
    fields = _harmonization_fields(harmonization)
    definition = fields.get(name)
    return definition.get("type") if definition else None


_TYPE_CACHE: dict = {}


def _cached_type(name: str) -> Optional[str]:
    try:
        return _TYPE_CACHE[name]
    except KeyError:
        _TYPE_CACHE[name] = value = _field_type(name, None)
        return value


def label_fields_named(patterns: Iterable[str]) -> list:
    """The patterns that name a field carrying the event's labels or source flag
    (:data:`LABEL_CARRYING_FIELDS`) exactly: a redaction may not remove or pseudonymise one."""
    return [p for p in patterns if isinstance(p, str) and p in _LABEL_CARRYING]


def _carried_by(found_field: str, touched: Iterable[str]) -> bool:
    """Whether a label :func:`tlp.event_tlp` read at ``found_field`` (``extra.misp_tags[2].name``)
    was in one of the ``touched`` top-level fields."""
    return any(found_field == t or found_field.startswith((t + "[", t + ".")) for t in touched)


def redact(event: Mapping[str, Any], *, remove: Iterable[str] = (), pseudonymise: Iterable[str] = (),
           key: Optional[bytes] = None, drop_raw: bool = True) -> tuple:
    """Copy of a flat event with fields removed and pseudonymised, never with a lower label.

    ``remove``/``pseudonymise`` are field names or prefixes (``extra.*``), or
    :class:`FieldSelector` objects.  Returns ``(event_out, removed, pseudonymised)``
    with the names of the fields actually touched.  ``raw`` is dropped when
    anything was touched and ``drop_raw`` is set, as it would hold the clear values.
    A label-carrying field a prefix selects for pseudonymisation is removed instead.
    When a touched field carried a label (or the source flag), the effective label
    read before (:func:`intelmq_crossborder.core.tlp.event_tlp`) is written to
    ``sharing.tlp`` (and the flag to ``sharing.do_not_disclose_source``).
    Raises :class:`intelmq_crossborder.core.tlp.LabelError` for an unreadable label and
    ValueError when a field must be pseudonymised and there is no key.
    """
    labels = tlp.event_tlp(event)
    rm = remove if isinstance(remove, FieldSelector) else FieldSelector(remove)
    ps = pseudonymise if isinstance(pseudonymise, FieldSelector) else FieldSelector(pseudonymise)
    out = dict(event.items()) if not isinstance(event, dict) else dict(event)
    removed, pseudonymised = [], []
    if rm or ps:
        for name in list(out):
            if (rm and rm.matches(name)) or (name in _LABEL_CARRYING and ps and ps.matches(name)):
                del out[name]
                removed.append(name)
            elif ps and ps.matches(name):
                if not key:
                    raise ValueError("a pseudonymisation key is required")
                out[name] = pseudonym(out[name], key, _cached_type(name))
                pseudonymised.append(name)
    touched = removed + pseudonymised
    if touched and (tlp.HIDE_SOURCE_FIELD in touched or any(_carried_by(f, touched) for f, _ in labels.found)):
        if labels.level is not None:
            out["sharing.tlp"] = labels.level.label
        if labels.hide_source:
            out[tlp.HIDE_SOURCE_FIELD] = True
    if drop_raw and touched and "raw" in out:
        del out["raw"]
        removed.append("raw")
    return out, removed, pseudonymised


# --- deciding ---------------------------------------------------------------------

def parse_pap(value: Any) -> str:
    """Canonical PAP 2.0 label (CLEAR/GREEN/AMBER/RED) of ``PAP:AMBER``, ``white``...; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"unknown PAP label {value!r}")
    text = value.strip().upper()
    if text.startswith("PAP:"):
        text = text[4:].strip()
    if text == "WHITE":
        text = "CLEAR"
    if text not in _PAP_ORDER:
        raise ValueError(f"unknown PAP label {value!r}")
    return text


_LABELS = {lvl: lvl.label for lvl in Level}


@dataclass(frozen=True)
class EventFacts:
    """What the rules need to know about an event, computed once for all recipients (and the
    key of :class:`PolicySet`'s cache, so it holds no per-event data)."""

    level: Optional[Level]          # None: no label (or unreadable)
    level_from: str                 # 'sharing.tlp', 'labels', 'none', 'unreadable'
    tlp_error: Optional[str] = None
    chatham_house: bool = False     # the source must be hidden (the event's flag or tlp:ex:chr)
    pap: Optional[str] = None
    pap_error: Optional[str] = None
    hubs: frozenset = frozenset()
    tlp_error_field: Optional[str] = None     # the field holding the unreadable label
    tlp_error_value: Any = None               # and its value (a label, cut to 200 characters)


def event_facts(event: Mapping[str, Any]) -> EventFacts:
    """The event's TLP and hide flag (:func:`intelmq_crossborder.core.tlp.event_tlp`, called once),
    PAP and the hubs it passed through."""
    level, level_from, err, err_field, err_value, hide = None, "none", None, None, None, False
    try:
        labels = tlp.event_tlp(event)
    except tlp.LabelError as exc:
        level_from, err, err_field = "unreadable", str(exc), exc.field
        if len(err) > 300:          # it quotes the refused value: logs and the audit trail get a bounded line
            err = err[:300] + "..."
        err_value = None if exc.value is None else str(exc.value)[:200]
    else:
        hide = labels.hide_source
        level = labels.level
        if level is not None:
            label = level.label
            level_from = "sharing.tlp" if ("sharing.tlp", label) in labels.found else "labels"
    get = event.get
    pap, pap_err = get("sharing.pap"), None
    if pap is not None and pap != "":
        try:
            pap = parse_pap(pap)
        except ValueError as exc:
            pap, pap_err = None, str(exc)[:200]
    else:
        pap = None
    hubs = set()
    path = get("provenance.hub_path")
    # compared as the agreement's hub_id is written (white space and case never hide a hub)
    if isinstance(path, str) and path:
        hubs.update(h.strip().lower() for h in path.split(",") if h.strip())
    origin_hub = get("provenance.origin_hub")
    if isinstance(origin_hub, str) and origin_hub.strip():
        hubs.add(origin_hub.strip().lower())
    return EventFacts(level, level_from, err, hide, pap, pap_err, frozenset(hubs), err_field, err_value)


@dataclass
class Decision:
    """Outcome of :func:`decide` for one (event, recipient)."""

    allowed: bool
    reasons: list
    event_out: Optional[dict] = None
    recipient: Optional[str] = None

    @property
    def codes(self) -> list:
        """The reason codes (the text before the first colon), for counting."""
        return [r.split(":", 1)[0] for r in self.reasons]

    def to_json(self) -> dict:
        return {"recipient": self.recipient, "allowed": self.allowed, "reasons": list(self.reasons),
                "event_out": self.event_out}


def _deny_reasons(facts: EventFacts, event: Mapping[str, Any], a: Agreement,
                  hmac_key: Optional[bytes]) -> tuple:
    """(reasons for denial, effective level)."""
    reasons = []
    level = facts.level
    ceiling = a._ceiling if a._ceiling is not None else tlp_ceiling(a)
    if facts.tlp_error is not None:
        reasons.append(f"tlp-unreadable: {facts.tlp_error}")
    elif level is None:
        if a.no_label is None:
            reasons.append("tlp-missing: the event has no TLP label and the agreement's no_label rule is "
                           "deny (not shared beyond the hub)")
        else:
            level = a.no_label
    if level is not None:
        if level is Level.RED:
            reasons.append("tlp-red: TLP:RED is never forwarded automatically")
        elif level is Level.AMBER_STRICT and a.relation != "same-organisation":
            reasons.append(f"tlp-amber-strict: TLP:AMBER+STRICT goes only to the same organisation, "
                           f"the recipient is {a.relation}")
        elif level > ceiling:
            reasons.append(f"tlp-above-ceiling: TLP:{level.label} is above what the agreement admits "
                           f"(TLP:{ceiling.label})")
    if a._taxonomies is not None:
        taxonomy = event.get("classification.taxonomy")
        if taxonomy not in a._taxonomies:
            what = f"classification.taxonomy {taxonomy!r} is" if taxonomy else "the event has no classification.taxonomy,"
            reasons.append(f"taxonomy-not-allowed: {what} not in the agreement's taxonomies")
    if a._types is not None:
        ctype = event.get("classification.type")
        if ctype not in a._types:
            what = f"classification.type {ctype!r} is" if ctype else "the event has no classification.type,"
            reasons.append(f"type-not-allowed: {what} not in the agreement's types")
    if a._countries is not None:
        country = event.get("provenance.origin_country")
        if not country:
            if a.unknown_origin != "allow":
                reasons.append("origin-unknown: the event has no provenance.origin_country and the agreement "
                               "restricts origin countries")
        elif country not in a._countries:
            reasons.append(f"origin-not-allowed: provenance.origin_country {country!r} is not in the "
                           "agreement's origin_countries")
    if a.max_pap is not None:
        if facts.pap_error is not None:
            reasons.append(f"pap-unreadable: {facts.pap_error} in field sharing.pap")
        elif facts.pap is None:
            if a.missing_pap == "deny":
                reasons.append("pap-missing: the event has no sharing.pap and the agreement denies that")
        elif _PAP_ORDER[facts.pap] > _PAP_ORDER[a.max_pap]:
            reasons.append(f"pap-above-limit: PAP:{facts.pap} is above the agreement's max_pap "
                           f"PAP:{a.max_pap}")
    if a.hub_id is not None and a.hub_id in facts.hubs:
        reasons.append(f"loop: the event already passed through hub {a.hub_id!r}")
    if not a.enabled:
        reasons.append("disabled: the agreement is disabled")
    hide_by_pseudonym = (not a.disclose_source or facts.chatham_house) and a.hide_source == "pseudonymise"
    if (a.pseudonymise_fields or hide_by_pseudonym) and not hmac_key:
        reasons.append("key-missing: the agreement pseudonymises fields and no HMAC key is configured")
    return reasons, level


def _transform(event: Mapping[str, Any], a: Agreement, facts: EventFacts, level: Level,
               hmac_key: Optional[bytes]) -> tuple:
    """The copy for the recipient.  Precedence per field: remove, then pseudonymise,
    then the originator rule (a field already pseudonymised is not touched again).
    A field that carries a label is removed where it would be pseudonymised: the copy
    carries the effective label in ``sharing.tlp``."""
    out = dict(event)
    removed, pseudonymised = [], []
    hide = (not a.disclose_source) or facts.chatham_house
    rm, ps, orig = a._remove, a._pseudo, a._originator
    for name in rm.exact:
        if name in out:
            del out[name]
            removed.append(name)
    if rm.prefixes:
        for name in [k for k in out if k.startswith(rm.prefixes)]:
            del out[name]
            removed.append(name)
    if ps:
        names = [n for n in ps.exact if n in out]
        if ps.prefixes:
            names += [k for k in out if k.startswith(ps.prefixes) and k not in ps.exact]
        for name in names:
            if name in _LABEL_CARRYING:
                del out[name]
                removed.append(name)
            else:
                out[name] = pseudonym(out[name], hmac_key, _cached_type(name))
                pseudonymised.append(name)
    if hide:
        names = orig.exact.intersection(out)
        if orig.prefixes:
            names = names.union([k for k in out if k.startswith(orig.prefixes)])
        if pseudonymised:
            names = names.difference(pseudonymised)
        for name in names:
            if a.hide_source == "pseudonymise" and _holds_pseudonym(name):
                out[name] = pseudonym(out[name], hmac_key, _cached_type(name))
                pseudonymised.append(name)
            else:
                del out[name]
                removed.append(name)
        # an event id that is the originator's own id (the MISP parser uses its event uuid)
        # points at the originator's system: a derived id still lets the recipient de-duplicate
        event_uuid = out.get("provenance.event_uuid")
        if isinstance(event_uuid, str) and _names_originator(event_uuid, event, orig):
            out["provenance.event_uuid"] = hidden_event_uuid(event_uuid, hmac_key)
            pseudonymised.append("provenance.event_uuid")
    if "raw" in out and (not a.keep_raw or removed or pseudonymised):
        del out["raw"]
        removed.append("raw")
    if "provenance.fingerprint" in out and not _fingerprint.FINGERPRINT_FIELD_SET.isdisjoint(
            removed + pseudonymised):
        # The clear-text fingerprint would let a recipient test guesses of a hidden value.
        out["provenance.fingerprint"] = _fingerprint.fingerprint(out)
    out["sharing.tlp"] = _LABELS[level]
    out["sharing.agreement"] = a.recipient
    if a.retention_days is not None:
        out["sharing.retention_days"] = a.retention_days
    if facts.chatham_house:
        out[tlp.HIDE_SOURCE_FIELD] = True
    return out, removed, pseudonymised


_SOURCE_SELECTOR = FieldSelector(tlp.SOURCE_FIELDS)


def without_source(event: Mapping[str, Any], key: Optional[bytes] = None) -> dict:
    """A copy of ``event`` whose source is hidden, for outputs that write events without an
    agreement (exchange bundles, CSAF advisories, the lake): the fields of
    :data:`tlp.SOURCE_FIELDS` and ``raw`` removed, ``provenance.event_uuid`` derived
    (:func:`hidden_event_uuid`) where it is the originator's own id, a fingerprint over a
    removed field recomputed (it would confirm a guess), and the hide flag set."""
    out = {name: value for name, value in event.items() if name not in _SOURCE_SELECTOR.exact and name != "raw"}
    event_uuid = out.get("provenance.event_uuid")
    if isinstance(event_uuid, str) and _names_originator(event_uuid, event, _SOURCE_SELECTOR):
        out["provenance.event_uuid"] = hidden_event_uuid(event_uuid, key)
    if "provenance.fingerprint" in out and not _fingerprint.FINGERPRINT_FIELD_SET.isdisjoint(
            set(event) - set(out)):
        out["provenance.fingerprint"] = _fingerprint.fingerprint(out)
    out[tlp.HIDE_SOURCE_FIELD] = True
    return out


def _names_originator(value: str, event: Mapping[str, Any], orig: FieldSelector) -> bool:
    """Whether ``value`` is also the value of a field that names the originator (case and
    surrounding blanks ignored, as uuids are compared)."""
    wanted = value.strip().lower()
    if not wanted:
        return False
    names = orig.exact.intersection(event.keys())
    if orig.prefixes:
        names = names.union([k for k in event.keys() if k.startswith(orig.prefixes)])
    for name in names:
        other = event[name]
        if isinstance(other, str) and other.strip().lower() == wanted:
            return True
    return False


#: Namespace of :func:`hidden_event_uuid` without a key (uuid5 of a fixed name).
HIDDEN_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:intelmq-crossborder:hidden-source-event-uuid")


def hidden_event_uuid(value: str, key: Optional[bytes] = None) -> str:
    """A uuid derived from ``value`` that does not lead back to it: the same value (and key)
    always gives the same uuid, so a recipient can still de-duplicate.  Keyed (HMAC-SHA256)
    when a key is configured, else uuid5 over :data:`HIDDEN_UUID_NAMESPACE`."""
    text = value.strip().lower()
    if key:
        digest = hmac.new(key, b"provenance.event_uuid\0" + text.encode("utf-8"), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))
    return str(uuid.uuid5(HIDDEN_UUID_NAMESPACE, text))


_FITS_PSEUDONYM: dict = {}


def _holds_pseudonym(name: str) -> bool:
    """Whether the harmonization type of ``name`` can hold a pseudonym (cached)."""
    fits = _FITS_PSEUDONYM.get(name)
    if fits is None:
        definition = _harmonization_fields(None).get(name)
        if definition is None:
            fits = name.startswith("extra.")
        else:
            try:
                _check_pseudonym_type("<harmonization>", name, name, definition)
                fits = True
            except AgreementError:
                fits = False
        _FITS_PSEUDONYM[name] = fits
    return fits


def decide(event: Mapping[str, Any], agreement: Agreement, *, hmac_key: Optional[bytes] = None,
           facts: Optional[EventFacts] = None) -> Decision:
    """Allow or deny one event for one recipient, with every reason, and the copy to send.

    ``event`` is a flat IntelMQ dict (``"source.ip": ...``) or an IntelMQ Event;
    it is not modified.  ``facts`` may be passed when deciding the same event for
    many recipients (see :func:`decide_all`).
    """
    if facts is None:
        facts = event_facts(event)
    reasons, level = _deny_reasons(facts, event, agreement, hmac_key)
    if reasons:
        return Decision(False, reasons, None, agreement.recipient)
    return _allow(event, agreement, facts, level, hmac_key)


_HOW = {"sharing.tlp": "", "labels": " (from the event's labels)",
        "none": " (no label: the agreement's no_label rule)"}


_ALLOWED_TEXT: dict = {}


def _allowed_text(agreement: Agreement, level: Level, level_from: str) -> str:
    key = (agreement.recipient, agreement.relation, agreement._ceiling, level, level_from)
    text = _ALLOWED_TEXT.get(key)
    if text is None:
        ceiling = agreement._ceiling if agreement._ceiling is not None else tlp_ceiling(agreement)
        text = (f"allowed: TLP:{level.label}{_HOW[level_from]} within TLP:{ceiling.label} "
                f"({agreement.relation})")
        if len(_ALLOWED_TEXT) > 4096:
            _ALLOWED_TEXT.clear()
        _ALLOWED_TEXT[key] = text
    return text


def _allow(event, agreement: Agreement, facts: EventFacts, level: Level, hmac_key) -> Decision:
    out, removed, pseudonymised = _transform(event, agreement, facts, level, hmac_key)
    allowed = [_allowed_text(agreement, level, facts.level_from)]
    if removed:
        allowed.append("removed: " + ", ".join(sorted(removed)))
    if pseudonymised:
        allowed.append("pseudonymised: " + ", ".join(sorted(pseudonymised)))
    return Decision(True, allowed, out, agreement.recipient)


def decide_all(event: Mapping[str, Any], agreements: Iterable[Agreement], *,
               hmac_key: Optional[bytes] = None) -> list:
    """:func:`decide` for each agreement, computing the event's facts once."""
    facts = event_facts(event)
    return [decide(event, a, hmac_key=hmac_key, facts=facts) for a in agreements]


class PolicySet:
    """A set of agreements and a key, deciding an event for every recipient at once.

    Same results as :func:`decide` for each agreement (a test holds it to that),
    faster: the allow/deny part of a decision depends only on the event's
    :class:`EventFacts`, classification and country of origin, so it is computed
    once per such combination and cached (bounded); only the copies for the
    permitted recipients are built per event.  The sharing router uses it.
    """

    def __init__(self, agreements: Iterable[Agreement], hmac_key: Optional[bytes] = None,
                 cache_size: int = 1024):
        self.agreements = list(agreements)
        self.hmac_key = hmac_key
        self.cache_size = cache_size
        self._cache: dict = {}

    def _plan(self, event: Mapping[str, Any], facts: EventFacts) -> list:
        get = event.get
        key = (facts, get("classification.taxonomy"), get("classification.type"), get("provenance.origin_country"))
        plan = self._cache.get(key)
        if plan is None:
            plan = []
            for a in self.agreements:
                reasons, level = _deny_reasons(facts, event, a, self.hmac_key)
                denial = Decision(False, reasons, None, a.recipient) if reasons else None
                plan.append((a, denial, level))
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = plan
        return plan

    def decide(self, event: Mapping[str, Any], facts: Optional[EventFacts] = None) -> list:
        """One :class:`Decision` per agreement, in the agreements' order.

        ``facts``: :func:`event_facts` of this event, when the caller already has them.
        Denials are shared, cached objects: read them, do not modify them.
        """
        if facts is None:
            facts = event_facts(event)
        key = self.hmac_key
        return [denial if denial is not None else _allow(event, a, facts, level, key)
                for a, denial, level in self._plan(event, facts)]


def key_from(value: Optional[str], env_var: Optional[str] = None) -> Optional[bytes]:
    """An HMAC key from a parameter value, else from an environment variable; None if neither."""
    if value:
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if env_var:
        env = os.environ.get(env_var)
        if env:
            return env.encode("utf-8")
    return None
