"""STIX 2.x marking definitions: read them (TLP and statements) and build them for export.

The ids and the levels they mean come from the TLP core's one table
(:mod:`intelmq_crossborder.core.tlp`: ``stix-tlp-1.0``, ``stix-tlp-2.0``, ``stix-opencti``);
this module only knows the *shapes* of marking-definition objects.

Public functions
    Reading
        ``read_definition(obj, where)`` -> :class:`Marking` (one marking-definition object);
        ``definitions(objects, where)`` -> ``{id: Marking}`` of a bundle;
        ``resolve(refs, defined, where)`` -> :class:`Resolved` (the level of a list of
        marking refs, the statements and the unresolved refs, kept as metadata);
        ``object_refs(obj, where)`` -> every marking ref of an object
        (``object_marking_refs`` and ``granular_markings[*].marking_ref``).
    Building (export; plain JSON-ready dicts that ``stix2.parse`` and ``stix2-validator`` accept)
        ``tlp2_extension_definition()``: the OASIS extension-definition object of TLP 2.0;
        ``marking_definition(level, profile)``: the marking-definition object of a level
        (``profile``: ``"2.0"`` OASIS TLP 2.0, ``"1.0"`` TLP 1.0, ``"opencti"`` OpenCTI's ids);
        ``marking_ref(level, profile)``: its id (``tlp.to_stix_marking_id``);
        ``bundle_objects(levels, profiles)``: the marking definitions (and the extension
        definition when TLP 2.0 is used) to put in a bundle, once each.
    Constants
        ``TLP2_EXTENSION_ID``, ``PROFILES``.

Reading rules (docs/bots/stix.md, "Markings"): a ref whose id is in the table counts with
that level; a *defined* marking of TLP type (``definition_type`` tlp in any case, the TLP 2.0
extension, OpenCTI's ``x_opencti_definition_type``, or a TLP-looking name or value) whose id
or value the table does not know raises :class:`intelmq_crossborder.core.tlp.LabelError`
naming the object and field; a known id whose definition says another level counts with the
most restrictive of both.  Statement markings and refs the bundle does not define neither
raise nor lower the level: they are returned as metadata.  A ref that *looks like* a known
id (case, invisible or look-alike characters) but is not one is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.inputs import kind_of

__all__ = [
    "TLP2_EXTENSION_ID", "PROFILES", "Marking", "Resolved", "read_definition", "definitions", "resolve",
    "object_refs", "tlp2_extension_definition", "marking_definition", "marking_ref", "bundle_objects",
]

#: The OASIS TLP 2.0 extension (cti-stix-common-objects, extension-definition-specifications/tlp-2.0).
TLP2_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
#: Export profiles: which ids a recipient reads (``tlp.STIX_MARKING_VERSIONS``).
PROFILES = ("2.0", "1.0", "opencti")

_TLP2_CREATED = "2022-10-01T00:00:00.000Z"
_TLP1_CREATED = "2017-01-20T00:00:00.000Z"
_OASIS_IDENTITY = "identity--b3bca3c2-1f3d-4b54-b44f-dac42c3a8f01"
_TLP1_WORD = {tlp.Level.CLEAR: "white", tlp.Level.GREEN: "green", tlp.Level.AMBER: "amber",
              tlp.Level.RED: "red"}


@dataclass(frozen=True)
class Marking:
    """One marking-definition object as read.

    ``kind``: ``"tlp"``, ``"statement"`` or ``"other"`` (PAP, custom types...);
    ``level``: the TLP level (``kind == "tlp"`` only); ``text``: the statement, or the
    name/definition of another kind, for metadata."""

    id: str
    kind: str
    level: Optional[tlp.Level] = None
    text: str = ""


@dataclass
class Resolved:
    """The markings of one object (or bundle): the most restrictive TLP level among them
    (None when none is TLP), and the metadata that neither raises nor lowers it."""

    level: Optional[tlp.Level] = None
    tlp_refs: list = field(default_factory=list)
    statements: list = field(default_factory=list)
    other: list = field(default_factory=list)
    undefined: list = field(default_factory=list)

    def merge(self, other: "Resolved") -> "Resolved":
        levels = [lvl for lvl in (self.level, other.level) if lvl is not None]
        out = Resolved(max(levels) if levels else None)
        for name in ("tlp_refs", "statements", "other", "undefined"):
            seen = getattr(out, name)
            for item in getattr(self, name) + getattr(other, name):
                if item not in seen:
                    seen.append(item)
        return out


def _refuse(where: str, value: Any, reason: str) -> tlp.LabelError:
    return tlp.LabelError(where, value if isinstance(value, str) else None, reason)


def _known_id(mid: str, where: str) -> Optional[tlp.Level]:
    """The level of an id of the table; None for an id the table does not know; raises for a
    look-alike of a known id (other case, invisible or non-Latin characters)."""
    try:
        parsed = tlp.parse(mid)
    except tlp.UnknownTLPError:
        if tlp.is_label_like(mid):
            raise _refuse(where, mid, "a look-alike of a STIX TLP marking id; refused, not read as "
                                      "a known level") from None
        if not mid.isascii() or not mid.isprintable():
            raise _refuse(where, mid, "a marking id with non-ASCII or invisible characters; refused") from None
        return None
    if mid != mid.strip().lower() or parsed.level is None:
        raise _refuse(where, mid, "a STIX TLP marking id in another spelling (ids are lower case); "
                                  "refused, not read as a known level")
    return parsed.level


def _label_values(obj: Mapping, where: str) -> list:
    """Every (field path, value) of a marking definition that states a TLP level."""
    out = []
    dtype = obj.get("definition_type")
    definition = obj.get("definition")
    if isinstance(dtype, str) and dtype.strip().lower() == "tlp":
        if isinstance(definition, Mapping):
            for key, value in definition.items():
                out.append((f"{where}.definition.{key}", value))
        elif definition is not None:
            out.append((f"{where}.definition", definition))
    extensions = obj.get("extensions")
    if isinstance(extensions, Mapping) and TLP2_EXTENSION_ID in extensions:
        ext = extensions[TLP2_EXTENSION_ID]
        path = f"{where}.extensions.{TLP2_EXTENSION_ID}"
        if not isinstance(ext, Mapping):
            out.append((path, ext))
        else:
            out.append((f"{path}.tlp_2_0", ext.get("tlp_2_0")))
    for key in ("x_opencti_definition", "name"):
        value = obj.get(key)
        if key == "x_opencti_definition" and value is not None:
            otype = obj.get("x_opencti_definition_type")
            if isinstance(otype, str) and otype.strip().lower() == "tlp":
                out.append((f"{where}.{key}", value))
                continue
        if isinstance(value, str) and tlp.is_label_like(value):
            out.append((f"{where}.{key}", value))
    if isinstance(dtype, str) and dtype.strip().lower() == "statement" and isinstance(definition, Mapping):
        statement = definition.get("statement")
        if isinstance(statement, str) and tlp.is_label_like(statement) and len(statement) <= 40:
            out.append((f"{where}.definition.statement", statement))
    return out


def _is_tlp_type(obj: Mapping) -> bool:
    dtype = obj.get("definition_type")
    otype = obj.get("x_opencti_definition_type")
    exts = obj.get("extensions")
    says_tlp = [isinstance(text, str) and "tlp" in tlp.skeleton(text)  # not an event label: a marking's type
                for text in (dtype, otype)]
    return any(says_tlp) or (isinstance(exts, Mapping) and TLP2_EXTENSION_ID in exts)


def _level_of(path: str, value: Any) -> tlp.Level:
    if not isinstance(value, str):
        raise _refuse(path, value, f"a TLP marking value must be a string, not {kind_of(value)}; refused")
    look = " ".join(tlp.skeleton(value).split())
    if not value.isascii() and " ".join(value.lower().split()) != look:
        raise _refuse(path, value, "a look-alike spelling of a TLP label; refused, not read as a known level")
    try:
        return tlp.parse_level(value)
    except tlp.UnknownTLPError:
        raise _refuse(path, value, f"{value!r} is not a TLP level the hub knows; the marking is refused, "
                                   "not read as a known level") from None


def read_definition(obj: Mapping, where: str = "marking-definition") -> Marking:
    """One marking-definition object (``where``: its JSON path, for errors)."""
    if not isinstance(obj, Mapping):
        raise _refuse(where, None, f"a marking definition must be an object, not {kind_of(obj)}")
    mid = obj.get("id")
    if not isinstance(mid, str) or not mid.startswith("marking-definition--"):
        raise _refuse(f"{where}.id", mid, "a marking definition needs an id 'marking-definition--...'")
    where_id = f"{where} ({mid})" if mid.isprintable() and len(mid) < 80 else where
    known = _known_id(mid, f"{where}.id")
    values = _label_values(obj, where_id)
    if known is None and not values and not _is_tlp_type(obj):
        dtype = obj.get("definition_type")
        definition = obj.get("definition")
        if isinstance(dtype, str) and dtype.strip().lower() == "statement" and isinstance(definition, Mapping) \
                and isinstance(definition.get("statement"), str):
            return Marking(mid, "statement", text=definition["statement"])
        name = obj.get("name") if isinstance(obj.get("name"), str) else ""
        if not name and isinstance(definition, Mapping):
            name = "; ".join(f"{k}={v}" for k, v in definition.items() if isinstance(v, str))[:200]
        return Marking(mid, "other", text=name)
    levels = [_level_of(path, value) for path, value in values]
    if known is None:
        said = f" (says {', '.join(sorted({lvl.label for lvl in levels}))})" if levels else ""
        raise _refuse(f"{where_id}.id", mid, f"a TLP marking definition whose id the table of TLP marking ids "
                                             f"does not know{said}; refused, not read as a known level")
    return Marking(mid, "tlp", max([known, *levels]))


def definitions(objects: Iterable, where: str = "objects") -> dict:
    """``{id: Marking}`` of every marking-definition among ``objects`` (other objects skipped)."""
    out: dict = {}
    for i, obj in enumerate(objects):
        if isinstance(obj, Mapping) and obj.get("type") == "marking-definition":
            marking = read_definition(obj, f"{where}[{i}]")
            prev = out.get(marking.id)
            if prev is not None and prev.kind == "tlp" and marking.kind == "tlp" and prev.level > marking.level:
                continue
            out[marking.id] = marking
    return out


def object_refs(obj: Mapping, where: str = "object") -> list:
    """``[(path, ref)]`` of every marking ref of an object: ``object_marking_refs[i]`` and
    ``granular_markings[i].marking_ref``.  A granular marking's ``lang`` is not a TLP."""
    out = []
    refs = obj.get("object_marking_refs")
    if refs is not None:
        if not isinstance(refs, list):
            raise _refuse(f"{where}.object_marking_refs", None, f"must be a list, not {kind_of(refs)}; refused")
        out.extend((f"{where}.object_marking_refs[{i}]", ref) for i, ref in enumerate(refs))
    granular = obj.get("granular_markings")
    if granular is not None:
        if not isinstance(granular, list):
            raise _refuse(f"{where}.granular_markings", None, f"must be a list, not {kind_of(granular)}; refused")
        for i, item in enumerate(granular):
            path = f"{where}.granular_markings[{i}]"
            if not isinstance(item, Mapping):
                raise _refuse(path, None, f"a granular marking must be an object, not {kind_of(item)}; refused")
            if "marking_ref" in item:
                out.append((f"{path}.marking_ref", item["marking_ref"]))
            elif "lang" not in item:
                raise _refuse(path, None, "a granular marking without marking_ref or lang; refused")
    return out


def resolve(refs: Iterable, defined: Mapping, where: str = "") -> Resolved:
    """The markings ``refs`` (``[(path, ref)]`` from :func:`object_refs`, or plain ids) say,
    given the bundle's ``defined`` markings (:func:`definitions`)."""
    out = Resolved()
    levels = []
    for i, item in enumerate(refs):
        path, ref = item if isinstance(item, tuple) else (f"{where}[{i}]", item)
        if not isinstance(ref, str):
            raise _refuse(path, None, f"a marking ref must be a string id, not {kind_of(ref)}; refused")
        marking = defined.get(ref)
        if marking is None:
            level = _known_id(ref, path)
            if level is None:
                if ref not in out.undefined:
                    out.undefined.append(ref)
                continue
            marking = Marking(ref, "tlp", level)
        if marking.kind == "tlp":
            levels.append(marking.level)
            if ref not in out.tlp_refs:
                out.tlp_refs.append(ref)
        elif marking.kind == "statement":
            if marking.text not in out.statements:
                out.statements.append(marking.text)
        elif ref not in out.other:
            out.other.append(ref)
    out.level = max(levels) if levels else None
    return out


# --- building (export) ---------------------------------------------------------------

def _profile(profile: str) -> str:
    text = str(profile).strip().lower()
    if text not in tlp.STIX_MARKING_VERSIONS:
        raise ValueError(f"unknown STIX marking profile {profile!r}; one of {', '.join(PROFILES)}")
    return tlp.STIX_MARKING_VERSIONS[text]


def marking_ref(level, profile: str = "2.0") -> str:
    """The marking-definition id of ``level`` for ``profile`` (never weaker than ``level``)."""
    _profile(profile)
    return tlp.to_stix_marking_id(level, profile)


def tlp2_extension_definition() -> dict:
    """The OASIS extension-definition object of TLP 2.0 (cti-stix-common-objects,
    objects/extension-definition/extension-definition--60a3c5c5-...json), for bundles whose
    consumers have no built-in TLP 2.0."""
    return {
        "id": TLP2_EXTENSION_ID, "type": "extension-definition", "spec_version": "2.1",
        "name": "TLP 2.0", "description": "This defines TLP 2.0 as a STIX extension",
        "created": _TLP2_CREATED, "modified": _TLP2_CREATED, "created_by_ref": _OASIS_IDENTITY,
        "schema": "https://github.com/oasis-open/cti-stix-common-objects/tree/master/"
                  "extension-definition-specifications/tlp-2.0",
        "version": "1.0.0", "extension_types": ["property-extension"],
    }


def marking_definition(level, profile: str = "2.0") -> dict:
    """The marking-definition object for ``level`` in ``profile``, as its publisher writes it:
    TLP 2.0 the OASIS canonical object (extension form); TLP 1.0 the STIX 2.1 spec's
    (``definition_type: tlp``; AMBER+STRICT is TLP:RED); OpenCTI the TLP 1.0 objects and,
    for AMBER+STRICT, the statement form with ``x_opencti_definition`` that OpenCTI's own
    connectors (pycti) send."""
    standard = _profile(profile)
    level = level if isinstance(level, tlp.Level) else tlp.parse_level(level)
    mid = tlp.to_stix_marking_id(level, profile)
    if standard == tlp.STIX_TLP2:
        return {"type": "marking-definition", "spec_version": "2.1", "id": mid, "created": _TLP2_CREATED,
                "name": f"TLP:{level.label}",
                "extensions": {TLP2_EXTENSION_ID: {"extension_type": "property-extension",
                                                   "tlp_2_0": level.label.lower()}}}
    written = tlp.parse_level(mid)
    if written is tlp.Level.AMBER_STRICT:      # OpenCTI's own id
        return {"type": "marking-definition", "spec_version": "2.1", "id": mid, "created": _TLP1_CREATED,
                "name": "TLP:AMBER+STRICT", "definition_type": "statement",
                "definition": {"statement": "custom"},
                "x_opencti_definition_type": "TLP", "x_opencti_definition": "TLP:AMBER+STRICT"}
    # exactly the STIX 2.1 spec's objects (stix2-validator checks them), also for OpenCTI,
    # which reads these ids as TLP:CLEAR/GREEN/AMBER/RED whatever the name says
    word = _TLP1_WORD[written]
    return {"type": "marking-definition", "spec_version": "2.1", "id": mid, "created": _TLP1_CREATED,
            "definition_type": "tlp", "name": f"TLP:{word.upper()}", "definition": {"tlp": word}}


def bundle_objects(levels: Iterable, profiles: Iterable[str] = ("2.0",)) -> list:
    """The marking definitions for every level in ``levels`` in every profile, each once,
    preceded by the TLP 2.0 extension definition when profile ``"2.0"`` is used."""
    profiles, levels = list(profiles), list(levels)
    objs, seen = [], set()
    for profile in profiles:
        _profile(profile)
    if any(tlp.STIX_MARKING_VERSIONS[str(p).strip().lower()] == tlp.STIX_TLP2 for p in profiles) and levels:
        objs.append(tlp2_extension_definition())
    for level in levels:
        for profile in profiles:
            obj = marking_definition(level, profile)
            if obj["id"] not in seen:
                seen.add(obj["id"])
                objs.append(obj)
    return objs
