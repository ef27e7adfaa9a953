"""Sharing agreements: THE place where what a recipient may receive is written down and read.

One YAML file per recipient states what that recipient may receive (see
``docs/agreements.md``).  :func:`load_agreement` reads it with the hostile-input
reader (:func:`intelmq_crossborder.core.inputs.read_yaml`) and validates it against
:data:`AGREEMENT_SCHEMA` (JSON Schema) and the harmonization (field names,
pseudonym types); any problem raises :class:`AgreementError` naming the file,
the line where there is one, the field and the reason.  :func:`tlp_ceiling` is the
most restrictive TLP a recipient may receive under TLP 2.0.  Applying an agreement
to an event is :mod:`intelmq_crossborder.policy.decide`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import jsonschema

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.tlp import Level
from intelmq_crossborder.policy.redact import (LABEL_CARRYING, FieldSelector, harmonization_fields,
                                               pseudonym_problem)

__all__ = [
    "AgreementError", "Agreement", "AGREEMENT_SCHEMA", "KINDS", "RELATIONS", "RELATION_CAPS", "PAP_LEVELS",
    "load_agreement", "load_agreements", "agreement_files", "agreement_from_dict", "tlp_ceiling",
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

#: PAP 2.0 order, least to most restrictive; PAP:WHITE of older sources is CLEAR.
PAP_LEVELS = ("CLEAR", "GREEN", "AMBER", "RED")

# JSON Schema's "pattern" is ECMA-262 and jsonschema runs it with Python's re.search, where
# "$" also matches before a final newline ("cert-at\n" would pass).  "(?![\s\S])" is "end of
# the input" in both dialects.
_END = r"(?![\s\S])"
_ID_RE = r"^[a-z0-9][a-z0-9._-]{0,63}" + _END
_FIELD_RE = r"^[a-z_][a-z_0-9]*(\.[a-z_0-9]+)*(\.\*)?" + _END
_COUNTRY_RE = r"^[A-Z]{2}" + _END

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
    return inputs.kind_of(value, none="empty (null)")


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
    problem = pseudonym_problem(key, definition)
    if problem is not None:
        raise AgreementError(source, where, problem)


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
    fields = harmonization_fields(harmonization)
    remove = tuple(data.get("remove_fields", ()))
    pseudo = tuple(data.get("pseudonymise_fields", ()))
    both = set(remove) & set(pseudo)
    if both:
        raise AgreementError(source, "pseudonymise_fields",
                             f"{sorted(both)[0]!r} is also in remove_fields; list a field in one of them")
    _check_fields(source, "remove_fields", remove, fields, pseudonymise=False)
    for i, name in enumerate(pseudo):
        if name in LABEL_CARRYING:
            raise AgreementError(source, f"pseudonymise_fields[{i}]", f"{name} carries the event's TLP label or "
                                 "source flag: a pseudonym would make it unreadable; list it under remove_fields "
                                 "(the copy carries the effective label in sharing.tlp)")
    _check_fields(source, "pseudonymise_fields", pseudo, fields, pseudonymise=True)
    extras = tuple(data.get("originator_fields", ()))
    hide_source = data.get("hide_source", "remove")
    # the TLP core's SOURCE_FIELDS are always hidden (removed where a pseudonym does not fit)
    _check_fields(source, "originator_fields", extras, fields, pseudonymise=hide_source == "pseudonymise",
                  exempt=frozenset(tlp.SOURCE_FIELDS) | LABEL_CARRYING)
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

