"""STIX 2.0/2.1 bundles to IntelMQ events: the library behind the STIX parser bot and
``intelmq-crossborder convert stix``.  No IntelMQ Bot classes here.

Input (:func:`load`)
    A bundle (``spec_version`` on the bundle, as STIX 2.0 has it, or not), a plain JSON array of
    objects, a TAXII envelope (``{"objects": [...]}``) or one object.

Per object (:meth:`Converter.items` yields one :class:`Item` per object, in document order)
    - ``indicator`` with a STIX pattern: one event per alternative of the pattern
      (:mod:`.patterns`); an indicator whose pattern has no convertible comparison, or whose
      ``pattern_type`` is not ``stix``, gives no event and is counted in ``Stats.not_converted``.
    - ``observed-data``: its SCOs (``object_refs`` to objects of the bundle, or the older inline
      ``objects`` form): one event per address, domain, URL, hashed file, e-mail address or AS;
      a ``network-traffic`` becomes one event with the addresses and ports of both ends.
    - ``sighting``: adds ``extra.stix_sighting_count``, ``..._first_seen`` and ``..._last_seen``
      to the events of the indicator or observed-data it is about (its
      markings count for them too); a sighting of an object not in the bundle is counted.
    - ``revoked: true`` objects: counted (``Stats.revoked``) and never converted into events.
      With a ``hub_id`` they become retractions (:func:`revocations`): one ``withdraw`` per
      event the object's non-revoked version gives, naming it by its ``provenance.event_uuid``
      (:func:`event_uuid`); without one they are only counted.
    - everything else: no event (counted per type in ``Stats.skipped_types``).

TLP (docs/bots/stix.md, "Markings")
    The object's ``object_marking_refs`` and ``granular_markings``, those of every container
    (report, grouping, note, opinion, observed-data) that references it, those a non-standard
    bundle carries, those of a sighting about it, the labels it carries (``tlp:amber`` in
    ``labels``) and the report's own label: the most restrictive wins, written to
    ``sharing.tlp``; none at all: ``default_tlp`` when set, else no ``sharing.tlp`` (the TLP
    expert decides).  Unreadable TLP markings refuse the object with the field named
    (:class:`STIXFormatError`).  Statements and undefined refs are kept as metadata.

Provenance
    ``provenance.originator``: the name of the ``created_by_ref`` identity (its id when the
    bundle does not define it), and nowhere else (a ``tlp.SOURCE_FIELDS`` field, hidden by the
    redaction); ``extra.stix_id``, ``extra.stix_modified``, ``extra.stix_type``.  With a
    ``hub_id``: ``provenance.event_uuid`` = :func:`event_uuid` (uuid5 of the hub, the STIX id and
    the event's index within the object), which the provenance expert keeps, so that a later
    ``revoked: true`` version of the object names exactly these events.
"""
from __future__ import annotations

import collections
import datetime as _dt
import json
import re
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.errors import FormatError
from intelmq_crossborder.formats.stix import markings, patterns
from intelmq_crossborder.policy import retraction as _retraction

__all__ = ["STIXFormatError", "Item", "Stats", "Converter", "load", "loads", "load_file",
           "INDICATOR_TYPE_CLASSIFICATION", "ATTACK_PATTERN_CLASSIFICATION", "CONTAINERS", "classify",
           "EVENT_UUID_NAMESPACE", "RETRACTION_ID_NAMESPACE", "event_uuid", "revocation_id", "check_hub_id"]


class STIXFormatError(FormatError):
    """Input that is not STIX, or an object of it that cannot be converted: ``where`` names
    the file (or report) and ``field`` the JSON path (``objects[3].pattern``)."""


# --- input ----------------------------------------------------------------------------

@dataclass
class Bundle:
    objects: list
    spec_version: Optional[str]
    marking_refs: list          # [(path, ref)] a non-standard bundle's own markings
    root: str                   # JSON path of the objects list ("objects" or "")


def load(data: Any, where: str = "") -> Bundle:
    """The objects of parsed JSON ``data`` (see the module docstring for the forms accepted)."""
    if isinstance(data, list):
        return Bundle(data, None, [], "")
    if not isinstance(data, dict):
        raise STIXFormatError(f"not STIX: the document is {inputs.kind_of(data)}, not a bundle, an object "
                              "or a list of objects", where)
    if "objects" in data and data.get("type") in ("bundle", None):
        objects = data["objects"]
        if objects is None:
            objects = []
        if not isinstance(objects, list):
            raise STIXFormatError(f"must be a list, not {inputs.kind_of(objects)}", where, "objects")
        version = data.get("spec_version")
        if version is not None and not isinstance(version, str):
            raise STIXFormatError(f"must be a string, not {inputs.kind_of(version)}", where, "spec_version")
        try:
            refs = markings.object_refs(data, "")
        except tlp.LabelError as exc:
            raise STIXFormatError(exc.reason, where, exc.field.lstrip(".")) from None
        return Bundle(objects, version, [(p.lstrip("."), r) for p, r in refs], "objects")
    if isinstance(data.get("type"), str) and data.get("type") != "bundle":
        return Bundle([data], None, [], "")
    if data.get("type") == "bundle":
        return Bundle([], data.get("spec_version") if isinstance(data.get("spec_version"), str) else None, [],
                      "objects")
    raise STIXFormatError("not STIX: an object without 'type' and without 'objects'", where)


def loads(raw, where: str = "") -> Bundle:
    """Parse JSON text or bytes (hostile input refused by ``core.inputs``) and :func:`load` it."""
    try:
        data = inputs.loads_json(raw, where or "<input>")
    except inputs.InputError as exc:
        raise STIXFormatError(exc.reason, where + (f":{exc.line}" if exc.line else ""), exc.field or "") from None
    return load(data, where)


def load_file(path) -> Bundle:
    try:
        data = inputs.read_json(path)
    except inputs.InputError as exc:
        raise STIXFormatError(exc.reason, str(path) + (f":{exc.line}" if exc.line else ""), exc.field or "") from None
    return load(data, str(path))


# --- classification -------------------------------------------------------------------

#: indicator_types (2.1) / labels (2.0) -> classification.type; ``malicious-activity`` depends on
#: the observable (see :func:`classify`).
INDICATOR_TYPE_CLASSIFICATION = {
    "anonymization": "proxy",
    "compromised": "system-compromise",
    "anomalous-activity": "undetermined",
    "attribution": "undetermined",
    "unknown": "undetermined",
    "benign": "other",
}
#: MITRE ATT&CK technique of a related attack-pattern -> classification.type.
ATTACK_PATTERN_CLASSIFICATION = {
    "T1566": "phishing", "T1598": "phishing", "T1110": "brute-force", "T1595": "scanner", "T1046": "scanner",
    "T1498": "ddos", "T1499": "dos", "T1190": "exploit", "T1203": "exploit", "T1189": "malware-distribution",
    "T1071": "c2-server", "T1090": "proxy", "T1102": "c2-server", "T1568": "c2-server", "T1573": "c2-server",
}
_MISP_TYPE = re.compile(r'misp:type="([^"]{1,64})"')
_HASH_FIELDS = ("malware.hash.md5", "malware.hash.sha1", "malware.hash.sha256")
#: Objects whose markings count for the objects they reference (``object_refs``).
CONTAINERS = ("report", "grouping", "note", "opinion", "observed-data")


def classify(fields: Mapping, types: list, labels: list, attack_ids: list, has_malware: bool,
             overrides: Mapping, default: str) -> str:
    """classification.type of one event: an rsit/ecsirt label, an override of an indicator type,
    a related ATT&CK technique, the indicator type, then by observable (hashes: malware; e-mail:
    spam; addresses, domains, URLs: blacklist) when the indicator says malicious (or is a
    ``*-watchlist``, as the STIX elevator writes) or names a malware, MISP's own type mapping
    for the ``misp:type="..."`` labels of MISP's STIX export, else ``default``."""
    from intelmq_crossborder.formats.misp.convert import DEFAULT_TYPE_CLASSIFICATION, taxonomy_classification
    found = taxonomy_classification([x for x in labels if isinstance(x, str)])
    if found:
        return found
    for kind in types:
        if kind in overrides:
            return overrides[kind]
    for ident in attack_ids:
        base = ident.split(".", 1)[0].upper()
        if base in ATTACK_PATTERN_CLASSIFICATION:
            return ATTACK_PATTERN_CLASSIFICATION[base]
    for kind in types:
        if kind in INDICATOR_TYPE_CLASSIFICATION:
            return INDICATOR_TYPE_CLASSIFICATION[kind]
    for label in labels:                 # MISP's STIX export: misp:type="sha256"
        match = _MISP_TYPE.fullmatch(label.strip()) if isinstance(label, str) else None
        if match and match.group(1) in DEFAULT_TYPE_CLASSIFICATION:
            return DEFAULT_TYPE_CLASSIFICATION[match.group(1)]
    if "malicious-activity" in types or has_malware or any(str(k).endswith("-watchlist") for k in types):
        if any(k in fields for k in _HASH_FIELDS):
            return "malware"
        if "source.account" in fields:
            return "spam"
        return "blacklist"
    return default


# --- ids: what a later revocation names ------------------------------------------------

#: uuid5 namespace of the events' ``provenance.event_uuid`` (:func:`event_uuid`).
EVENT_UUID_NAMESPACE = _uuid.uuid5(_uuid.NAMESPACE_URL, "urn:intelmq-crossborder:stix-event-uuid")
#: uuid5 namespace of the ids of the retractions a revoked object gives (:func:`revocation_id`).
RETRACTION_ID_NAMESPACE = _uuid.uuid5(_uuid.NAMESPACE_URL, "urn:intelmq-crossborder:stix-revocation")
#: A STIX identifier as a revocation may quote it: ``<type>--<uuid>``, ASCII only.
_STIX_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}")
_ANY_UUID = "00000000-0000-4000-8000-000000000000"


def event_uuid(hub_id: str, stix_id: str, index: int) -> str:
    """``provenance.event_uuid`` of the ``index``-th event (0-based, in the order the parser
    gives them) of the STIX object ``stix_id`` read at hub ``hub_id``: the same object read
    again (a newer version, a re-sent bundle, its revoked version) names the same events.
    Keyed per hub: two hubs reading one publisher give different ids, so a hub's retraction
    of its own event is never taken for one of an event a peer sent it."""
    return str(_uuid.uuid5(EVENT_UUID_NAMESPACE, f"{hub_id}\x00{stix_id}\x00{int(index)}"))


def revocation_id(hub_id: str, stix_id: str, modified: str, index: int) -> str:
    """``retraction.id`` of the retraction of the ``index``-th event of a revoked object:
    deterministic, so the same revoked object read again (a TAXII collection polled again)
    is the same retraction, which the router handles idempotently."""
    return str(_uuid.uuid5(RETRACTION_ID_NAMESPACE, f"{hub_id}\x00{stix_id}\x00{modified}\x00{int(index)}"))


def check_hub_id(hub_id: Any) -> Optional[str]:
    """``hub_id`` as a hub id a retraction may name as its originator (None, '': None);
    ValueError naming what is wrong (look-alike characters, white space, not a hub id)."""
    if hub_id is None or hub_id == "":
        return None
    try:
        _retraction.new_retraction("withdraw", "check", hub_id, target_event_uuid=_ANY_UUID,
                                   retraction_id=_ANY_UUID)
    except _retraction.RetractionError as exc:
        raise ValueError(f"hub_id {str(hub_id)[:80]!r} is not a hub id like 'at-hub': {exc.reason}") from None
    return hub_id


# --- output ---------------------------------------------------------------------------

@dataclass
class Item:
    """One object of the input: its events (field dicts), or the error that refused it.
    ``note``: why an object gave no event (``revoked``, ``no convertible comparison``...).
    ``retractions``: a revoked object's retractions (flat ``retraction.*`` fields, nothing of
    the object's content)."""

    path: str
    obj: Any
    events: list = field(default_factory=list)
    error: Optional[STIXFormatError] = None
    note: str = ""
    retractions: list = field(default_factory=list)

    def raw(self) -> str:
        try:
            return json.dumps(self.obj, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError):
            return repr(self.obj)


@dataclass
class Stats:
    objects: int = 0
    indicators: int = 0
    observed_data: int = 0
    sightings: int = 0
    events: int = 0
    revoked: int = 0
    retractions: int = 0
    refused: int = 0
    not_converted: collections.Counter = field(default_factory=collections.Counter)
    skipped_types: collections.Counter = field(default_factory=collections.Counter)

    def summary(self) -> str:
        text = (f"{self.objects} object(s), {self.indicators} indicator(s), {self.observed_data} observed-data, "
                f"{self.sightings} sighting(s), {self.events} event(s), {self.revoked} revoked, "
                f"{self.retractions} retraction(s), {self.refused} refused")
        if self.not_converted:
            text += "; not converted: " + ", ".join(f"{k}={n}" for k, n in self.not_converted.most_common(12))
        return text


_TEXT_MAX = 4096


def _text(value: Any) -> Optional[str]:
    if isinstance(value, str) and value.strip():
        return value if len(value) <= _TEXT_MAX else value[:_TEXT_MAX - 3] + "..."
    return None


def _strings(value: Any, path: str, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise STIXFormatError(f"must be a list of strings, not {inputs.kind_of(value)}", where, path)
    return list(value)


def _timestamp(value: Any, path: str, where: str) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise STIXFormatError(f"a timestamp must be a string, not {inputs.kind_of(value)}", where, path)
    text = value.strip()
    try:
        when = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise STIXFormatError(f"{value!r} is not a timestamp", where, path) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.astimezone(_dt.timezone.utc).isoformat()


class _Context:
    """What the objects of one bundle share: ids, markings, identities, relationships, sightings."""

    def __init__(self, bundle: Bundle, where: str):
        self.where = where
        self.bundle = bundle
        self.by_id: dict = {}
        self.path_of: dict = {}
        self.defined: dict = {}
        self.bad_markings: dict = {}
        self.identities: dict = {}
        self.containers: dict = collections.defaultdict(list)   # object id -> [(path, ref)]
        self.indicates: dict = collections.defaultdict(list)    # indicator id -> [target ids]
        self.sightings: dict = collections.defaultdict(list)    # object id -> [(path, sighting)]
        root = bundle.root
        for i, obj in enumerate(bundle.objects):
            if not isinstance(obj, dict):
                continue
            path = f"{root}[{i}]"
            oid = obj.get("id")
            if isinstance(oid, str):
                prev = self.by_id.get(oid)
                if prev is None or str(obj.get("modified", "")) >= str(prev.get("modified", "")):
                    self.by_id[oid] = obj
                    self.path_of[oid] = path
            otype = obj.get("type")
            if otype == "marking-definition":
                try:
                    marking = markings.read_definition(obj, path)
                except tlp.LabelError as exc:
                    if isinstance(oid, str):
                        self.bad_markings[oid] = exc
                    continue
                prev = self.defined.get(marking.id)
                if prev is None or prev.kind != "tlp" or (marking.kind == "tlp" and marking.level > prev.level):
                    self.defined[marking.id] = marking
            elif otype == "identity" and isinstance(oid, str) and isinstance(obj.get("name"), str):
                self.identities[oid] = obj["name"]
            elif otype == "relationship" and obj.get("relationship_type") == "indicates":
                src, dst = obj.get("source_ref"), obj.get("target_ref")
                if isinstance(src, str) and isinstance(dst, str):
                    self.indicates[src].append(dst)
            elif otype == "sighting":
                target = obj.get("sighting_of_ref")
                for ref in [target] + (obj.get("observed_data_refs") if isinstance(obj.get("observed_data_refs"),
                                                                                   list) else []):
                    if isinstance(ref, str):
                        self.sightings[ref].append((path, obj))
            if otype in CONTAINERS and isinstance(obj.get("object_refs"), list):
                try:
                    refs = markings.object_refs(obj, path)
                except tlp.LabelError:
                    refs = [(f"{path}.object_marking_refs", None)]     # refused when it is used
                if refs:
                    for ref in obj["object_refs"]:
                        if isinstance(ref, str) and ref != oid:
                            self.containers[ref].extend(refs)

    def resolve(self, refs: list) -> markings.Resolved:
        for path, ref in refs:
            if isinstance(ref, str) and ref in self.bad_markings:
                exc = self.bad_markings[ref]
                raise tlp.LabelError(path, ref, f"refers to a TLP marking that cannot be read ({exc.field}: "
                                                f"{exc.reason})")
        return markings.resolve(refs, self.defined)


_VERSIONS = ("2.1", "2.0")
_SCO_REFS = "\x00sco-marking-refs"
_SCO_LEVEL = "\x00sco-level"


class Converter:
    """STIX objects -> IntelMQ flat fields, with counters.

    ``default_tlp``: the level of an object that carries no TLP at all (None: no
    ``sharing.tlp``, the TLP expert applies its default).  ``type_classification``:
    indicator type -> classification.type overrides.  ``default_classification``: what
    nothing else classifies.  ``feed``: the report's labels (:func:`tlp.event_tlp`), which
    count for every event.  ``hub_id``: this hub's id; with it every event gets its
    deterministic ``provenance.event_uuid`` (:func:`event_uuid`) and a revoked object gives
    retractions issued by this hub (:meth:`_revoked`); without it revoked objects are only
    counted."""

    def __init__(self, default_tlp=None, default_classification: str = "undetermined",
                 type_classification: Optional[Mapping] = None, where: str = "", hub_id: Optional[str] = None):
        if isinstance(default_tlp, tlp.Level):
            self.default_tlp: Optional[tlp.Level] = default_tlp
        elif default_tlp is None or default_tlp == "":
            self.default_tlp = None
        else:
            self.default_tlp = tlp.parse_level(default_tlp, "default_tlp")
        self.default_classification = default_classification
        self.type_classification = dict(type_classification or {})
        self.where = where
        self.hub_id = check_hub_id(hub_id)
        self.feed: Optional[tlp.EventTLP] = None
        self.stats = Stats()

    # -- the bundle --
    def items(self, data: Any) -> Iterator[Item]:
        """One :class:`Item` per object of ``data`` (parsed JSON or a :class:`Bundle`);
        raises :class:`STIXFormatError` when ``data`` as a whole is not STIX."""
        bundle = data if isinstance(data, Bundle) else load(data, self.where)
        ctx = _Context(bundle, self.where)
        for i, obj in enumerate(bundle.objects):
            path = f"{bundle.root}[{i}]"
            self.stats.objects += 1
            try:
                item = self._item(path, obj, ctx)
            except STIXFormatError as exc:
                item = Item(path, obj, error=exc)
            except tlp.LabelError as exc:
                item = Item(path, obj, error=STIXFormatError(f"TLP marking cannot be read: {exc.reason}",
                                                             self.where, exc.field))
            except patterns.PatternError as exc:
                item = Item(path, obj, error=STIXFormatError(str(exc), self.where, f"{path}.pattern"))
            except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
                # a field of the wrong JSON type somewhere in the object (found by fuzzing)
                item = Item(path, obj, error=STIXFormatError(
                    f"a field has the wrong type ({type(exc).__name__}: {str(exc)[:200]})", self.where, path))
            if item.error is not None:
                self.stats.refused += 1
            else:
                self.stats.events += len(item.events)
                self.stats.retractions += len(item.retractions)
            yield item

    def convert(self, data: Any) -> list:
        """Every event of ``data``; raises the first object's error (for tests and tools)."""
        out = []
        for item in self.items(data):
            if item.error is not None:
                raise item.error
            out.extend(item.events)
        return out

    # -- one object --
    def _item(self, path: str, obj: Any, ctx: _Context) -> Item:
        if not isinstance(obj, dict):
            raise STIXFormatError(f"a STIX object must be a JSON object, not {inputs.kind_of(obj)}", self.where, path)
        otype = obj.get("type")
        if not isinstance(otype, str):
            raise STIXFormatError(f"must be a string, not {inputs.kind_of(otype)}", self.where, f"{path}.type")
        revoked = obj.get("revoked")
        if revoked is not None and not isinstance(revoked, bool):
            raise STIXFormatError(f"must be true or false, not {inputs.kind_of(revoked)}", self.where,
                                  f"{path}.revoked")
        if otype == "marking-definition" and obj.get("id") in ctx.bad_markings:
            exc = ctx.bad_markings[obj["id"]]
            raise STIXFormatError(f"TLP marking cannot be read: {exc.reason}", self.where, exc.field)
        if otype == "indicator":
            self.stats.indicators += 1
        elif otype == "observed-data":
            self.stats.observed_data += 1
        elif otype == "sighting":
            self.stats.sightings += 1
            targets = [obj.get("sighting_of_ref")] + (obj.get("observed_data_refs")
                                                      if isinstance(obj.get("observed_data_refs"), list) else [])
            if not any(isinstance(t, str) and isinstance(ctx.by_id.get(t), dict)
                       and ctx.by_id[t].get("type") in ("indicator", "observed-data") for t in targets):
                return self._not_converted(path, obj, "sighting of an object not in the bundle")
            return Item(path, obj, note="sighting (added to the events of what it is about)")
        else:
            self.stats.skipped_types[otype[:64]] += 1
            return Item(path, obj, note=f"type {otype[:64]} has no events")
        if revoked:
            self.stats.revoked += 1
            return self._revoked(path, obj, ctx)
        newer = ctx.by_id.get(obj["id"]) if isinstance(obj.get("id"), str) else None
        if newer is not None and newer is not obj and newer.get("revoked") is True:
            # the bundle also holds the object's revoked version: its retractions follow
            return self._not_converted(path, obj, "superseded by its revoked version in the same input")
        if otype == "indicator":
            ptype = obj.get("pattern_type")
            if ptype is not None and ptype != "stix":
                return self._not_converted(path, obj, f"pattern_type {str(ptype)[:40]}")
            alternatives, unconverted = self._indicator(path, obj, ctx)
        else:
            alternatives, unconverted = self._observed(path, obj, ctx)
        if not alternatives:
            reason = (f"{obj.get('type')}: no convertible observable"
                      + (f" ({'; '.join(sorted(set(unconverted))[:3])})" if unconverted else ""))
            return self._not_converted(path, obj, reason[:200])
        base = self._base(path, obj, ctx)
        if unconverted:
            base["extra.stix_unconverted"] = sorted(set(unconverted))[:50]
        events = []
        for index, fields in enumerate(alternatives):
            out = dict(base)
            if self.hub_id is not None:
                out["provenance.event_uuid"] = event_uuid(self.hub_id, base["extra.stix_id"], index)
            sco_refs = fields.pop(_SCO_REFS, None)
            out.update(fields)
            if sco_refs:
                self._more_markings(out, ctx.resolve(sco_refs))
            out["classification.type"] = self._classify(out, obj, ctx)
            self._labels(out, path)
            events.append(out)
        return Item(path, obj, events=events)

    def _revoked(self, path: str, obj: dict, ctx: _Context) -> Item:
        """A ``revoked: true`` object: one ``withdraw`` per event its non-revoked version gives
        (same pattern, same order: the same :func:`event_uuid`), issued by this hub.  Only ids,
        the STIX id and modified time reach the retraction, never the object's content.  An
        object whose events cannot be named (a pattern that cannot be read) is refused.  A
        revoked observed-data without its SCOs in the input (a TAXII poll) names one uuid per
        ``object_refs`` entry: a superset of the events it gave."""
        if self.hub_id is None:
            return Item(path, obj, note="revoked")
        otype = obj["type"]
        oid = obj.get("id")
        if not isinstance(oid, str) or not oid.isascii() or not _STIX_ID.fullmatch(oid) \
                or not oid.startswith(otype + "--"):
            raise STIXFormatError(f"a revoked {otype[:40]} needs a STIX id '{otype[:40]}--<uuid>' to name the "
                                  f"events it revokes, not {str(oid)[:80]!r}", self.where, f"{path}.id")
        if otype == "indicator":
            ptype = obj.get("pattern_type")
            if ptype is not None and ptype != "stix":
                return Item(path, obj, note="revoked (its pattern type gave no events)")
            alternatives, _ = self._indicator(path, obj, ctx)
        else:
            refs = obj.get("object_refs")
            if obj.get("objects") is None and isinstance(refs, list) and refs \
                    and not any(isinstance(r, str) and r in ctx.by_id for r in refs):
                # a TAXII poll brings the revoked observed-data without its SCOs (sent before): every
                # event came from at least one of its refs, so one uuid per ref covers them all
                alternatives = [None] * min(len(refs), patterns.MAX_ALTERNATIVES)
            else:
                alternatives, _ = self._observed(path, obj, ctx)
        if not alternatives:
            return Item(path, obj, note="revoked (no convertible observable: no event to retract)")
        modified = _timestamp(obj.get("modified") or obj.get("created"), f"{path}.modified", self.where) \
            or "not given"
        reason = f"revoked by the publisher (STIX {oid}, modified {modified})"
        out = []
        for index in range(len(alternatives)):
            notice = _retraction.new_retraction(
                "withdraw", reason, self.hub_id, target_event_uuid=event_uuid(self.hub_id, oid, index),
                retraction_id=revocation_id(self.hub_id, oid, modified, index))
            out.append(notice.to_event())
        return Item(path, obj, note="revoked", retractions=out)

    @staticmethod
    def _more_markings(out: dict, resolved: markings.Resolved) -> None:
        """Add the markings of an observable to an event's: the most restrictive level wins."""
        if resolved.level is not None:
            out[_SCO_LEVEL] = resolved.level          # counted by _labels with the event's labels
        for key, values in (("extra.stix_marking_refs", resolved.tlp_refs),
                            ("extra.stix_statements", resolved.statements),
                            ("extra.stix_undefined_markings", resolved.undefined),
                            ("extra.stix_other_markings", resolved.other)):
            if values:
                out[key] = list(dict.fromkeys(list(out.get(key, [])) + list(values)))

    def _not_converted(self, path: str, obj: Any, reason: str) -> Item:
        self.stats.not_converted[reason] += 1
        return Item(path, obj, note=reason)

    def _indicator(self, path: str, obj: dict, ctx: _Context) -> tuple:
        ptype = obj.get("pattern_type")
        version = obj.get("pattern_version") or obj.get("spec_version") or ctx.bundle.spec_version \
            or ("2.1" if ptype else "2.0")
        version = "2.0" if str(version).startswith("2.0") else "2.1"
        try:
            conv = patterns.alternatives(obj.get("pattern"), version)
        except patterns.PatternError as first:
            if not str(first).startswith("not a valid STIX"):
                raise STIXFormatError(str(first), self.where, f"{path}.pattern") from None
            other = "2.0" if version == "2.1" else "2.1"   # publishers mix the versions up
            try:
                conv = patterns.alternatives(obj.get("pattern"), other)
            except patterns.PatternError:
                raise STIXFormatError(str(first), self.where, f"{path}.pattern") from None
        return conv.events, conv.unconverted

    def _observed(self, path: str, obj: dict, ctx: _Context) -> tuple:
        """Events of an observed-data: ``object_refs`` (2.1) or the inline ``objects`` (2.0)."""
        inline = obj.get("objects")
        refs = obj.get("object_refs")
        scos: list = []        # (path, sco, resolver)
        if isinstance(inline, dict):
            def lookup(ref, _inline=inline):
                return _inline.get(ref) if isinstance(ref, str) else None
            scos = [(f"{path}.objects.{key}", sco, lookup) for key, sco in inline.items()]
        elif refs is not None:
            if not isinstance(refs, list):
                raise STIXFormatError(f"must be a list, not {inputs.kind_of(refs)}", self.where, f"{path}.object_refs")

            def lookup(ref, _ctx=ctx):
                return _ctx.by_id.get(ref) if isinstance(ref, str) else None
            for i, ref in enumerate(refs):
                sco = lookup(ref)
                if sco is None:
                    self.stats.not_converted["observed-data ref not in the bundle"] += 1
                    continue
                scos.append((ctx.path_of.get(ref, f"{path}.object_refs[{i}]"), sco, lookup))
        elif inline is not None:
            raise STIXFormatError(f"must be an object, not {inputs.kind_of(inline)}", self.where, f"{path}.objects")
        consumed = set()
        events, unconverted = [], []
        for _spath, sco, lookup in scos:
            if isinstance(sco, dict) and sco.get("type") == "network-traffic":
                for key in ("src_ref", "dst_ref"):
                    ref = sco.get(key)
                    target = lookup(ref)
                    if target is not None:
                        consumed.add(id(target))
        for spath, sco, lookup in scos:
            if not isinstance(sco, dict):
                raise STIXFormatError(f"an observable must be a JSON object, not {inputs.kind_of(sco)}",
                                      self.where, spath)
            if id(sco) in consumed:
                continue
            fields = self._sco(spath, sco, lookup)
            if fields is None:
                unconverted.append(f"observable {str(sco.get('type'))[:40]}")
                continue
            # an SCO may carry markings of its own (2.1), and so may those a network-traffic refers to
            refs = list(markings.object_refs(sco, spath))
            if sco.get("type") == "network-traffic":
                for key in ("src_ref", "dst_ref"):
                    target = lookup(sco.get(key))
                    if isinstance(target, dict):
                        refs.extend(markings.object_refs(target, f"{spath}.{key}"))
            if refs:
                fields[_SCO_REFS] = refs
            if fields not in events:
                events.append(fields)
        return events, unconverted

    def _sco(self, path: str, sco: dict, lookup) -> Optional[dict]:
        stype = sco.get("type")
        try:
            if stype in ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr"):
                return patterns.value_fields(f"{stype}:value", sco.get("value"))
            if stype == "autonomous-system":
                return patterns.value_fields("autonomous-system:number", sco.get("number"))
            if stype == "file":
                hashes = sco.get("hashes")
                if hashes is None:
                    return None
                if not isinstance(hashes, dict):
                    raise STIXFormatError(f"must be an object, not {inputs.kind_of(hashes)}", self.where,
                                          f"{path}.hashes")
                out: dict = {}
                for algo, digest in hashes.items():
                    fields = patterns.value_fields(f"file:hashes.{algo}", digest)
                    if fields:
                        out.update(fields)
                if not out:
                    return None
                if isinstance(sco.get("name"), str) and sco["name"].strip():
                    out["extra.file_name"] = sco["name"]
                return out
            if stype == "network-traffic":
                out = {}
                for key in ("src_ref", "dst_ref"):
                    target = lookup(sco.get(key))
                    if isinstance(target, dict) and isinstance(target.get("value"), str):
                        out.update(patterns.value_fields(f"network-traffic:{key}.value", target["value"]) or {})
                for key in ("src_port", "dst_port"):
                    if sco.get(key) is not None:
                        out.update(patterns.value_fields(f"network-traffic:{key}", sco[key]) or {})
                if not any(k in patterns.IDENTIFYING for k in out):
                    return None
                return out
        except patterns.PatternError as exc:
            raise STIXFormatError(str(exc), self.where, path) from None
        return None

    # -- what every event of an object shares --
    def _base(self, path: str, obj: dict, ctx: _Context) -> dict:
        out: dict = {}
        refs = list(markings.object_refs(obj, path)) + ctx.containers.get(obj.get("id"), []) \
            + ctx.bundle.marking_refs
        sight = ctx.sightings.get(obj.get("id"), [])
        for spath, sighting in sight:
            refs.extend(markings.object_refs(sighting, spath))
        if any(ref is None for _, ref in refs):
            bad = next(p for p, ref in refs if ref is None)
            raise tlp.LabelError(bad, None, "the markings of a container of this object cannot be read")
        resolved = ctx.resolve(refs)
        if resolved.level is not None:
            out["sharing.tlp"] = resolved.level.label
        if resolved.tlp_refs:
            out["extra.stix_marking_refs"] = resolved.tlp_refs
        if resolved.statements:
            out["extra.stix_statements"] = [s[:1000] for s in resolved.statements]
        if resolved.undefined:
            out["extra.stix_undefined_markings"] = resolved.undefined
        if resolved.other:
            out["extra.stix_other_markings"] = resolved.other
        oid = obj.get("id")
        if not isinstance(oid, str):
            raise STIXFormatError(f"must be a string, not {inputs.kind_of(oid)}", self.where, f"{path}.id")
        out["extra.stix_id"] = oid
        out["extra.stix_type"] = obj["type"]
        modified = _timestamp(obj.get("modified") or obj.get("created"), f"{path}.modified", self.where)
        if modified:
            out["extra.stix_modified"] = modified
        version = obj.get("spec_version") or ctx.bundle.spec_version
        if isinstance(version, str):
            out["extra.stix_spec_version"] = version[:10]
        creator = obj.get("created_by_ref")
        if creator is not None:
            if not isinstance(creator, str):
                raise STIXFormatError(f"must be a string, not {inputs.kind_of(creator)}", self.where,
                                      f"{path}.created_by_ref")
            # only in provenance.originator (a tlp.SOURCE_FIELDS field the redaction hides), never
            # in a second field that would point at a hidden source
            out["provenance.originator"] = _text(ctx.identities.get(creator)) or creator
        if obj["type"] == "indicator":
            when = _timestamp(obj.get("valid_from"), f"{path}.valid_from", self.where)
            if isinstance(obj.get("pattern"), str):
                out["extra.stix_pattern"] = _text(obj["pattern"])
            types = _strings(obj.get("indicator_types"), f"{path}.indicator_types", self.where)
            if types:
                out["extra.stix_indicator_types"] = types
            until = _timestamp(obj.get("valid_until"), f"{path}.valid_until", self.where)
            if until:
                out["extra.stix_valid_until"] = until
            score = obj.get("x_opencti_score")           # OpenCTI's 0-100 score of an indicator
            if isinstance(score, int) and not isinstance(score, bool) and 0 <= score <= 100:
                out["extra.stix_score"] = score
        else:
            when = _timestamp(obj.get("last_observed") or obj.get("first_observed"), f"{path}.last_observed",
                              self.where)
            if obj.get("number_observed") is not None:
                out["extra.stix_number_observed"] = obj["number_observed"] \
                    if isinstance(obj["number_observed"], int) else str(obj["number_observed"])[:20]
        if when:
            out["time.source"] = when
        labels = _strings(obj.get("labels"), f"{path}.labels", self.where)
        checked = [(f"{path}.labels[{i}]", label) for i, label in enumerate(labels)]
        checked += [(f"{path}.indicator_types[{i}]", kind) for i, kind in
                    enumerate(out.get("extra.stix_indicator_types", []))]
        for where_label, label in checked:
            # labels are the tags of STIX (MISP's export writes its tlp: tags there): one that
            # looks like a TLP label must be one; it then counts through event_tlp
            if tlp.is_label_like(label):
                try:
                    tlp.parse(label)
                except tlp.UnknownTLPError:
                    raise tlp.LabelError(where_label, label, f"{label[:80]!r} looks like a TLP label "
                                         "but is not one the hub knows; refused, not read as unlabelled") from None
        if labels:
            out["extra.stix_labels"] = labels
        name, description = _text(obj.get("name")), _text(obj.get("description"))
        if name or description:
            out["event_description.text"] = name or description
        if name and description:
            out["comment"] = description
        confidence = obj.get("confidence")
        if isinstance(confidence, int) and not isinstance(confidence, bool) and 0 <= confidence <= 100:
            out["extra.stix_confidence"] = confidence
        related = [ctx.by_id.get(t) for t in ctx.indicates.get(oid, [])]
        malware = sorted({r["name"] for r in related if isinstance(r, dict) and r.get("type") == "malware"
                          and isinstance(r.get("name"), str) and r["name"].isascii() and r["name"].isprintable()
                          and r["name"].strip()})
        if malware:
            out["malware.name"] = malware[0].strip().lower()
            out["extra.stix_malware"] = malware
        attacks = []
        for r in related:
            if isinstance(r, dict) and r.get("type") == "attack-pattern":
                for ref in r.get("external_references") or []:
                    if isinstance(ref, dict) and ref.get("source_name") == "mitre-attack" \
                            and isinstance(ref.get("external_id"), str):
                        attacks.append(ref["external_id"])
                if isinstance(r.get("x_mitre_id"), str):
                    attacks.append(r["x_mitre_id"])
        if attacks:
            out["extra.stix_attack_patterns"] = sorted(set(attacks))
        if sight:
            self._sightings(out, sight)
        return out

    def _sightings(self, out: dict, sight: list) -> None:
        count, first, last = 0, [], []
        for spath, s in sight:
            n = s.get("count")
            count += n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 10 ** 9 else 1
            for key, bucket in (("first_seen", first), ("last_seen", last)):
                when = _timestamp(s.get(key), f"{spath}.{key}", self.where)
                if when:
                    bucket.append(when)
        out["extra.stix_sighting_count"] = count
        if first:
            out["extra.stix_sighting_first_seen"] = min(first)
        if last:
            out["extra.stix_sighting_last_seen"] = max(last)

    def _classify(self, out: dict, obj: dict, ctx: _Context) -> str:
        types = list(out.get("extra.stix_indicator_types", [])) + list(out.get("extra.stix_labels", []))
        return classify(out, types, out.get("extra.stix_labels", []), out.get("extra.stix_attack_patterns", []),
                        "malware.name" in out, self.type_classification, self.default_classification)

    def _labels(self, out: dict, path: str) -> None:
        """The event at the most restrictive label it carries in any field (a label such as
        ``tlp:red`` among the object's labels counts), at least the report's, else the default."""
        sco_level = out.pop(_SCO_LEVEL, None)
        try:
            read = tlp.event_tlp(out)
        except tlp.LabelError as exc:
            raise STIXFormatError(f"a TLP label that cannot be read in what becomes event field {exc.field}: "
                                  f"{exc.reason}", self.where, path) from None
        levels = [lvl for lvl in (read.level, sco_level, self.feed.level if self.feed else None) if lvl is not None]
        if levels:
            out["sharing.tlp"] = max(levels).label
        elif self.default_tlp is not None:
            out["sharing.tlp"] = self.default_tlp.label
            out["extra.stix_default_label"] = True
        if read.hide_source or (self.feed is not None and self.feed.hide_source):
            out["sharing.do_not_disclose_source"] = True
            out.pop("extra.stix_statements", None)      # terms of use name their publisher
