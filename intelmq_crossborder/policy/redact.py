"""Redaction: THE place where fields of an event are removed, pseudonymised or hidden.

- :func:`pseudonym`: the keyed pseudonym (HMAC-SHA256) of a value, in a form its field type
  accepts; the same value and key give the same pseudonym in every hub (known-answer tests).
- :func:`redact`: a copy with chosen fields removed or pseudonymised, never with a lower label
  (the redaction expert).
- :func:`without_source`: a copy whose source is hidden, for outputs that write events
  without an agreement (exchange bundles, CSAF advisories, the lake).
- :func:`hidden_event_uuid` and :func:`rederive_ids`: the derived event id that replaces the
  originator's own id, and the fingerprint recomputed when an identifying field was touched;
  the share decision (:mod:`intelmq_crossborder.policy.decide`) uses them too.
- :class:`FieldSelector`: a set of field names and prefixes (``extra.*``), as agreements and
  the redaction expert name them.

Pure functions: no IntelMQ bot, no Redis, no logging.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import re
import uuid
from typing import Any, Iterable, List, Mapping, MutableMapping, Optional

from intelmq_crossborder.core import fingerprint as _fingerprint
from intelmq_crossborder.core import tlp

__all__ = [
    "FieldSelector", "LABEL_CARRYING_FIELDS", "LABEL_CARRYING", "PSEUDONYM_TYPES", "HIDDEN_UUID_NAMESPACE",
    "pseudonym", "pseudonym_problem", "holds_pseudonym", "harmonization_fields", "field_type",
    "label_fields_named", "redact", "without_source", "hidden_event_uuid", "names_originator",
    "rederive_ids",
]


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


#: The fields that carry an event's labels and its "do not disclose the source" flag (the
#: TLP core's lists).  Redaction never pseudonymises them (a pseudonym of a label is an
#: unreadable label) and the redaction expert refuses to name them.
LABEL_CARRYING_FIELDS = tlp.LABEL_FIELDS + tlp.TAG_FIELDS + (tlp.HIDE_SOURCE_FIELD,)
LABEL_CARRYING = frozenset(LABEL_CARRYING_FIELDS)


# --- the harmonization's field types -----------------------------------------------

_HARM_CACHE: dict = {}


def harmonization_fields(harmonization: Optional[dict] = None) -> dict:
    """The event fields of ``harmonization``; None: the merged harmonization (read once)."""
    if harmonization is None:
        if "h" not in _HARM_CACHE:
            from intelmq_crossborder.harmonization import merged_harmonization
            _HARM_CACHE["h"] = merged_harmonization()
        harmonization = _HARM_CACHE["h"]
    return harmonization.get("event", harmonization)


_TYPE_CACHE: dict = {}


def field_type(name: str) -> Optional[str]:
    """The harmonization type of field ``name`` (None for ``extra.*`` and unknown fields), cached."""
    try:
        return _TYPE_CACHE[name]
    except KeyError:
        definition = harmonization_fields().get(name)
        _TYPE_CACHE[name] = value = definition.get("type") if definition else None
        return value


# --- pseudonyms ------------------------------------------------------------------

#: Harmonization types that can hold a pseudonym, and the form it takes.
PSEUDONYM_TYPES = ("String", "LowercaseString", "UppercaseString", "IPAddress", "IPNetwork", "FQDN", "URL",
                   None)   # None: extra.* (no type)


def _digest(value: Any, key: bytes) -> bytes:
    # the hashed text is part of the exchange format (tests/test_known_answers.py): keep it
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


def pseudonym_problem(name: str, definition: Mapping[str, Any]) -> Optional[str]:
    """Why field ``name`` (harmonization ``definition``) cannot hold a pseudonym, or None."""
    ftype = definition.get("type")
    if ftype not in PSEUDONYM_TYPES:
        return f"field {name!r} has type {ftype}, which cannot hold a pseudonym; list it under remove_fields instead"
    sample = pseudonym("192.0.2.1" if ftype == "IPAddress" else "sample", b"k", ftype)
    regex, length = definition.get("regex"), definition.get("length")
    if ftype is not None:
        from intelmq.lib import harmonization as _types
        cls = getattr(_types, ftype)
        if not cls.is_valid(sample, sanitize=False) or cls.sanitize(sample) != sample:
            return f"field {name!r}: a pseudonym would not be a valid {ftype}; list it under remove_fields instead"
    if (regex and not re.search(regex, sample)) or (length and len(sample) > length):
        return (f"field {name!r} ({ftype}, regex {regex!r}, length {length}) cannot hold a pseudonym; "
                "list it under remove_fields instead")
    return None


_FITS_PSEUDONYM: dict = {}


def holds_pseudonym(name: str) -> bool:
    """Whether the harmonization type of ``name`` can hold a pseudonym (cached)."""
    fits = _FITS_PSEUDONYM.get(name)
    if fits is None:
        definition = harmonization_fields().get(name)
        fits = name.startswith("extra.") if definition is None else pseudonym_problem(name, definition) is None
        _FITS_PSEUDONYM[name] = fits
    return fits


# --- redaction ---------------------------------------------------------------------

def label_fields_named(patterns: Iterable[str]) -> list:
    """The patterns that name a field carrying the event's labels or source flag
    (:data:`LABEL_CARRYING_FIELDS`) exactly: a redaction may not remove or pseudonymise one."""
    return [p for p in patterns if isinstance(p, str) and p in LABEL_CARRYING]


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
            if (rm and rm.matches(name)) or (name in LABEL_CARRYING and ps and ps.matches(name)):
                del out[name]
                removed.append(name)
            elif ps and ps.matches(name):
                if not key:
                    raise ValueError("a pseudonymisation key is required")
                out[name] = pseudonym(out[name], key, field_type(name))
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


# --- hiding the source -----------------------------------------------------------------

def originator_names(keys: Iterable[str], originator: FieldSelector) -> frozenset:
    """The names among ``keys`` that ``originator`` selects."""
    names = originator.exact.intersection(keys)
    if originator.prefixes:
        names = names.union([k for k in keys if k.startswith(originator.prefixes)])
    return frozenset(names)


def names_originator(value: str, event: Mapping[str, Any], originator: FieldSelector,
                     names: Optional[Iterable[str]] = None) -> bool:
    """Whether ``value`` is also the value of a field that names the originator (case and
    surrounding blanks ignored, as uuids are compared).  ``names``: ``originator_names`` of
    the event's keys, when the caller has them already."""
    wanted = value.strip().lower()
    if not wanted:
        return False
    if names is None:
        names = originator_names(event.keys(), originator)
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


def rederive_ids(out: MutableMapping[str, Any], event: Mapping[str, Any], touched: Iterable[str],
                 key: Optional[bytes], originator: Optional[FieldSelector],
                 originator_fields: Optional[Iterable[str]] = None) -> bool:
    """The id steps of a copy ``out`` of ``event`` whose fields ``touched`` were removed or
    pseudonymised; returns whether ``provenance.event_uuid`` was derived.

    - With ``originator`` (the source is hidden): an event id that is the originator's own id
      (the MISP parser uses its event uuid) points at the originator's system; it becomes
      :func:`hidden_event_uuid`, which still lets the recipient de-duplicate.
    - A clear-text ``provenance.fingerprint`` over a touched identifying field would let a
      recipient test guesses of the hidden value: it is recomputed over the copy.

    ``originator_fields``: :func:`originator_names` of the event's keys, when known.
    """
    derived = False
    if originator is not None:
        event_uuid = out.get("provenance.event_uuid")
        if isinstance(event_uuid, str) and names_originator(event_uuid, event, originator, originator_fields):
            out["provenance.event_uuid"] = hidden_event_uuid(event_uuid, key)
            derived = True
    if "provenance.fingerprint" in out and not _fingerprint.FINGERPRINT_FIELD_SET.isdisjoint(touched):
        out["provenance.fingerprint"] = _fingerprint.fingerprint(out)
    return derived


_SOURCE_SELECTOR = FieldSelector(tlp.SOURCE_FIELDS)


def without_source(event: Mapping[str, Any], key: Optional[bytes] = None) -> dict:
    """A copy of ``event`` whose source is hidden, for outputs that write events without an
    agreement (exchange bundles, CSAF advisories, the lake): the fields of
    :data:`tlp.SOURCE_FIELDS` and ``raw`` removed, ``provenance.event_uuid`` derived
    (:func:`hidden_event_uuid`) where it is the originator's own id, a fingerprint over a
    removed field recomputed (it would confirm a guess), and the hide flag set."""
    out = {name: value for name, value in event.items() if name not in _SOURCE_SELECTOR.exact and name != "raw"}
    removed: List[str] = [name for name in event.keys() if name not in out]
    rederive_ids(out, event, removed, key, _SOURCE_SELECTOR)
    out[tlp.HIDE_SOURCE_FIELD] = True
    return out
