"""MISP interop, the pure-library part: MISP event JSON in, IntelMQ fields out, and back.

Shared by the MISP parser bot, the MISP output and feed bots and
``intelmq-crossborder convert misp``.  No IntelMQ Bot classes here.

Reading (:class:`Converter`)
    ``load_events(data)`` accepts both wrappers seen in the wild,
    ``{"Event": {...}}`` and ``{"response": [{"Event": {...}}, ...]}`` (plus a
    bare list of either).  ``Converter.rows(event)`` walks the event's own
    attributes and the attributes of its objects; ``Converter.convert(row)``
    turns one attribute into a dict of IntelMQ flat keys, or ``None`` when the
    attribute type has no IntelMQ field (counted in ``stats.unmapped``) or is
    ``to_ids=false`` and those are dropped (counted in ``stats.filtered``).

TLP
    Read with the TLP core's one reader (:func:`intelmq_crossborder.core.tlp.event_tlp`)
    only.  The event's ``tlp:`` tags and the attribute's own tags are both read;
    the most restrictive wins, so an attribute tag wins when it is more
    restrictive than the event's, never when it is less; and the converted
    attribute never reads lower than any label it carries (a comment that is
    ``TLP:RED`` raises it).  ``tlp:ex:chr`` anywhere sets
    ``sharing.do_not_disclose_source``.  An attribute without any TLP label gets
    no ``sharing.tlp`` (the TLP expert applies its configured default: no guess
    here).  Refused with :class:`MISPFormatError` naming the field, never read as
    unlabelled: a tag in the ``tlp:`` namespace that is not a label, a look-alike
    spelling of one (zero-width characters, Cyrillic or Greek letters, a full-width
    colon), a ``Tag`` block that is not a list, a tag that is not MISP's
    ``{"name": "..."}``.

Distribution
    ``misp.distribution`` is the *effective* distribution of the attribute:
    5 (inherit) takes the object's, then the event's; an attribute is never
    shared wider than its event (0-3: the smaller wins; 0 beats a sharing
    group; a sharing group beats 1-3).  ``misp.sharing_group_uuid`` is set when
    the effective distribution is 4 and the JSON names the group's UUID.
"""
from __future__ import annotations

import collections
import datetime as _dt
import ipaddress
import json
import re
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.errors import FormatError
__all__ = [
    "MISPFormatError", "load_events", "load_file", "Row", "Stats", "Converter",
    "TYPE_FIELDS", "DEFAULT_TYPE_CLASSIFICATION", "taxonomy_classification",
    "effective_distribution", "DISTRIBUTION_NAMES",
]

DISTRIBUTION_NAMES = {0: "your organisation only", 1: "this community only", 2: "connected communities",
                      3: "all communities", 4: "sharing group", 5: "inherit event"}


class MISPFormatError(FormatError):
    """Input that is not MISP event JSON, or a field of it that cannot be read.

    ``where`` names the file (or report) and ``field`` the JSON path."""


# --- input wrappers ------------------------------------------------------------

def load_events(data: Any, where: str = "") -> list:
    """The MISP events (dicts with ``uuid``, ``info``...) in parsed JSON ``data``.

    Accepts ``{"Event": {...}}``, ``{"response": [{"Event": {...}}, ...]}``,
    ``{"response": {"Event": {...}}}`` and a list of ``{"Event": {...}}``.
    Raises :class:`MISPFormatError` for anything else.
    """
    if isinstance(data, dict) and "response" in data and "Event" not in data:
        data = data["response"]
        if isinstance(data, dict):
            data = [data]
    items = data if isinstance(data, list) else [data]
    events = []
    for i, item in enumerate(items):
        path = f"response[{i}]" if isinstance(data, list) else ""
        if not isinstance(item, dict) or not isinstance(item.get("Event"), dict):
            raise MISPFormatError("not MISP event JSON: expected {\"Event\": {...}} or "
                                  "{\"response\": [{\"Event\": {...}}]}", where, path or "(top level)")
        event = item["Event"]
        epath = f"{path}.Event" if path else "Event"
        if not isinstance(event.get("uuid"), str) or not _is_uuid(event["uuid"]):
            raise MISPFormatError(f"missing or invalid event uuid {event.get('uuid')!r}", where, f"{epath}.uuid")
        for key in ("Attribute", "Object", "Tag", "Galaxy"):
            if key in event and not isinstance(event[key], list):
                raise MISPFormatError(f"expected a list, got {type(event[key]).__name__}", where,
                                      f"{epath}.{key}")
        events.append(event)
    if not events:
        raise MISPFormatError("no MISP event in the document", where, "response")
    return events


def loads(data, where: str = "") -> list:
    """Parse MISP JSON (str or bytes) with the hostile-input reader (:func:`inputs.loads_json`:
    duplicate keys, numbers of more than 64 characters, nesting deeper than 128, lone
    surrogates and text that is not UTF-8 are refused) and return its MISP events."""
    try:
        data = inputs.loads_json(data, where or "<input>")
    except inputs.InputError as exc:
        raise _input_error(exc, where) from None
    return load_events(data, where)


def load_file(path) -> list:
    """Read a file and return its MISP events; :class:`MISPFormatError` names the file."""
    where = str(path)
    try:
        text = inputs.read_text(path, what="MISP JSON file")
    except inputs.InputError as exc:
        raise _input_error(exc, where) from None
    return loads(text, where)


def _input_error(exc: "inputs.InputError", where: str) -> MISPFormatError:
    located = f"{where}:{exc.line}" if where and exc.line is not None else where
    return MISPFormatError(exc.reason, located, exc.field or "")


def _is_uuid(value: str) -> bool:
    try:
        _uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True


# --- attribute type -> IntelMQ fields -------------------------------------------

def _ip(field_name):
    return lambda v: {field_name: v}


def _split(value: str, sep: str = "|"):
    left, _, right = value.partition(sep)
    return left.strip(), right.strip()


def _asn(value: str) -> dict:
    text = value.strip().upper()
    if text.startswith("AS"):
        text = text[2:]
    return {"source.asn": int(text)}


def _cve(value: str) -> dict:
    ident = value.strip().lower()
    return {"classification.identifier": ident, "product.vulnerabilities": ident}


def _filename_hash(algorithm: str):
    def mapper(value: str) -> dict:
        name, digest = _split(value)
        out = {f"malware.hash.{algorithm}": digest.lower()}
        if name:
            out["extra.file_name"] = name
        return out
    return mapper


def _ip_port(prefix: str):
    def mapper(value: str) -> dict:
        sep = "|" if "|" in value else ":"
        ip, port = value.rsplit(sep, 1) if sep == ":" else _split(value)
        return {f"{prefix}.ip": ip.strip().strip("[]"), f"{prefix}.port": int(port)}
    return mapper


def _host_port(value: str) -> dict:
    host, port = _split(value)
    return {"source.fqdn": host, "source.port": int(port)}


def _domain_ip(value: str) -> dict:
    host, ip = _split(value)
    return {"source.fqdn": host, "source.ip": ip}


#: Set (true) on an event whose MISP ``url`` attribute had no scheme (``evil.example/login?id=1``):
#: ``source.url`` holds the value with :data:`ADDED_SCHEME` in front (IntelMQ's URL type needs a
#: scheme), and the MISP outputs write the value back without it (:func:`indicator`).
URL_SCHEME_ADDED_FIELD = "extra.misp_url_scheme_added"
ADDED_SCHEME = "http://"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
#: the last label of a bare name that is a file name, not a host (``igfxtray.exe``); none is a TLD
_FILE_EXTENSIONS = frozenset("exe dll dat bin sys bat cmd scr msi lnk ps1 vbs hta jar tmp txt log ini cfg "
                             "doc docx xls xlsx ppt pptx pdf rtf uin".split())


def _host_problem(host: str) -> str:
    """Why ``host`` (from a URL without scheme) is not a host name or IP address ('' if it is)."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
            return ""
        except ValueError:
            return "not an IPv6 address in brackets"
    try:
        ipaddress.IPv4Address(host)
        return ""
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(labels) < 2:
        return "no domain name (a host needs at least one dot)"
    for label in labels:
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-") \
                or not all(ch.isalnum() or ch in "-_" for ch in label):
            return f"{label!r} is not a label of a host name"
    tld = labels[-1]
    if not (tld.isalpha() or tld.lower().startswith("xn--")):
        return "the last label is not a top-level domain"
    return ""


def _url(value: str) -> dict:
    """``source.url``; a value without scheme gets :data:`ADDED_SCHEME` and
    :data:`URL_SCHEME_ADDED_FIELD` when what precedes its path is a host name or IP address
    (with an optional port), else ValueError saying why it is no URL."""
    if _SCHEME.match(value):
        return {"source.url": value}
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError("no scheme, and white space or control characters inside: not read as a URL")
    authority = re.split(r"[/?#]", value, maxsplit=1)[0]
    host, port = authority, None
    if authority.startswith("["):
        host, bracket, rest = authority.partition("]")
        if not bracket:
            raise ValueError(f"no scheme, and {authority!r} is not a host")
        host += "]"
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"no scheme, and {authority!r} is not a host")
            port = rest[1:]
    elif ":" in authority:
        host, _, port = authority.rpartition(":")
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"no scheme, and {port!r} is not a port")
    problem = _host_problem(host)
    if problem:
        raise ValueError(f"no scheme, and {host!r} is not a host: {problem}")
    if authority == value and port is None and host.rsplit(".", 1)[-1].lower() in _FILE_EXTENSIONS:
        raise ValueError(f"no scheme, and {value!r} looks like a file name, not a host")
    return {"source.url": ADDED_SCHEME + value, URL_SCHEME_ADDED_FIELD: True}


#: MISP attribute type -> function(value) -> IntelMQ fields.  The documented
#: mapping table (docs/bots/misp.md) is generated from the same names.
TYPE_FIELDS = {
    "ip-src": _ip("source.ip"),
    "ip-dst": _ip("destination.ip"),
    "ip-src|port": _ip_port("source"),
    "ip-dst|port": _ip_port("destination"),
    "domain": lambda v: {"source.fqdn": v},
    "hostname": lambda v: {"source.fqdn": v},
    "domain|ip": _domain_ip,
    "hostname|port": _host_port,
    "url": _url,
    "md5": lambda v: {"malware.hash.md5": v.lower()},
    "sha1": lambda v: {"malware.hash.sha1": v.lower()},
    "sha256": lambda v: {"malware.hash.sha256": v.lower()},
    "filename|md5": _filename_hash("md5"),
    "filename|sha1": _filename_hash("sha1"),
    "filename|sha256": _filename_hash("sha256"),
    "email-src": lambda v: {"source.account": v},
    "AS": _asn,
    "vulnerability": _cve,
}

#: Default classification.type by attribute type, used when no rsit/ecsirt
#: tag classifies the attribute or its event.  Override with the
#: ``type_classification`` parameter; unlisted types fall back to
#: ``default_classification``.
DEFAULT_TYPE_CLASSIFICATION = {
    "ip-src": "blacklist", "ip-dst": "blacklist", "ip-src|port": "blacklist", "ip-dst|port": "blacklist",
    "domain": "blacklist", "hostname": "blacklist", "domain|ip": "blacklist", "hostname|port": "blacklist",
    "url": "blacklist", "md5": "malware", "sha1": "malware", "sha256": "malware",
    "filename|md5": "malware", "filename|sha1": "malware", "filename|sha256": "malware",
    "email-src": "spam", "AS": "blacklist", "vulnerability": "vulnerable-system",
}

# The ecsirt taxonomy (predecessor of rsit) uses a few older values.
_TAXONOMY_ALIASES = {
    "malware": "malware", "botnet-drone": "infected-system", "ransomware": "infected-system",
    "malware-configuration": "malware-configuration", "c&c": "c2-server", "dos": "dos",
    "unauthorised-use-of-resources": "unauthorized-use-of-resources",
    "unauthorized-use-of-resources": "unauthorized-use-of-resources",
    "ids-alert": "ids-alert", "vulnerable-service": "vulnerable-system", "leak": "data-leak",
    "compromised-account": "privileged-account-compromise", "unknown": "undetermined",
    "violence": "violence", "harmful-speech": "harmful-speech", "spam": "spam",
}
_TAXONOMY_TAG = re.compile(r'^(rsit|ecsirt):[a-z-]+="?([^"]+)"?$', re.IGNORECASE)


def _intelmq_types():
    from intelmq.lib.harmonization import ClassificationType
    return set(ClassificationType.allowed_values)


_CLASSIFICATION_TYPES = None


def taxonomy_classification(tags: Iterable[str]) -> Optional[str]:
    """The IntelMQ classification.type named by the first rsit/ecsirt tag that
    has one (``rsit:malicious-code="c2-server"`` -> ``c2-server``), else None."""
    global _CLASSIFICATION_TYPES
    if _CLASSIFICATION_TYPES is None:
        _CLASSIFICATION_TYPES = _intelmq_types()
    for tag in tags:
        m = _TAXONOMY_TAG.match(tag.strip())
        if not m:
            continue
        value = m.group(2).strip().lower()
        value = _TAXONOMY_ALIASES.get(value, value)
        if value in _CLASSIFICATION_TYPES:
            return value
    return None


_MALWARE_GALAXIES = {"malpedia", "mitre-malware", "ransomware", "android", "backdoor", "banker",
                     "botnet", "rat", "stealer", "exploit-kit", "mitre-tool", "tool"}


# --- distribution ------------------------------------------------------------------

def _int_or_none(value) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def effective_distribution(levels: list) -> Optional[tuple]:
    """Combine (distribution, sharing_group_uuid) pairs from the innermost
    (attribute) to the outermost (event) into the effective one.

    5 (inherit) and missing values are skipped.  Among 0-3 the smaller wins;
    0 beats a sharing group; a sharing group (4) beats 1-3.
    """
    best = None
    for dist, sg in levels:
        if dist is None or dist == 5:
            continue
        if best is None:
            best = (dist, sg)
            continue
        bdist = best[0]
        if dist == 0 or bdist == 0:
            best = (0, None)
        elif dist == 4 and bdist != 4:
            best = (4, sg)
        elif bdist == 4:
            continue
        else:
            best = (min(dist, bdist), None)
    return best


def _sharing_group_uuid(block: dict, known: Optional[dict] = None) -> Optional[str]:
    """The UUID of the block's sharing group: its own ``SharingGroup`` block, else a
    group with the same ``sharing_group_id`` seen elsewhere in the event."""
    sg = block.get("SharingGroup")
    if isinstance(sg, dict):
        value = sg.get("uuid")
        if isinstance(value, str) and _is_uuid(value):
            return value.lower()
    if known:
        return known.get(str(block.get("sharing_group_id")))
    return None


def _known_sharing_groups(event: dict) -> dict:
    """sharing_group_id -> UUID for every SharingGroup block in the event."""
    known = {}
    blocks = [event] + list(event.get("Attribute") or [])
    for obj in event.get("Object") or []:
        if isinstance(obj, dict):
            blocks.append(obj)
            blocks.extend(obj.get("Attribute") or [])
    for block in blocks:
        if isinstance(block, dict) and str(block.get("sharing_group_id") or "0") != "0":
            value = _sharing_group_uuid(block)
            if value:
                known[str(block["sharing_group_id"])] = value
    return known


# --- rows --------------------------------------------------------------------------

def _safe_path(row) -> str:
    try:
        return row.path
    except Exception:       # noqa: BLE001 - only for an error message about a malformed row
        return "Attribute"


@dataclass
class Row:
    """One attribute with the context it needs: the event and, for an object
    attribute, the object."""

    event: dict
    attribute: dict
    obj: Optional[dict] = None
    event_context: Optional[dict] = None   # pre-computed per event by Converter.rows

    @property
    def path(self) -> str:
        """Where the attribute is in the event, for error messages."""
        attr = self.attribute if isinstance(self.attribute, dict) else {}
        aid = attr.get("uuid") or attr.get("id") or "?"
        if self.obj is not None:
            return f"Object[{self.obj.get('name')}].Attribute[{aid}]"
        return f"Attribute[{aid}]"

    def raw(self) -> str:
        """The attribute with a compact event header, as MISP JSON the parser reads again.

        The header keeps what the conversion reads (uuid, info, Orgc, distribution,
        sharing group, tag names) and drops galaxies, reports, other attributes and
        objects: a real event can be megabytes, and this goes into every message."""
        ctx = self.event_context if self.event_context is not None else {}
        header = ctx.get("_raw_header")
        if header is None:
            event = {k: self.event[k] for k in _HEADER_KEYS if k in self.event}
            event["Tag"] = [{"name": n} for n in _tag_names(self.event)]
            sg = self.event.get("SharingGroup")
            if isinstance(sg, dict):
                event["SharingGroup"] = {k: sg[k] for k in ("id", "uuid", "name") if k in sg}
            header = json.dumps(event)[:-1]          # without the closing brace
            ctx["_raw_header"] = header
        attribute = self.attribute
        if isinstance(attribute, dict):       # a hostile report may hold anything here; dump it as it is
            attribute = {k: v for k, v in attribute.items() if k not in ("Galaxy", "ShadowAttribute")}
        if self.obj is not None:
            obj = {k: v for k, v in self.obj.items() if k in _OBJECT_KEYS} if isinstance(self.obj, dict) else {}
            obj["Attribute"] = [attribute]
            body = '"Object": [' + json.dumps(obj) + "]"
        else:
            body = '"Attribute": [' + json.dumps(attribute) + "]"
        return '{"Event": ' + header + ", " + body + "}}"


_HEADER_KEYS = ("uuid", "id", "info", "date", "timestamp", "publish_timestamp", "published", "analysis",
                "threat_level_id", "distribution", "sharing_group_id", "Orgc")
_OBJECT_KEYS = ("uuid", "id", "name", "meta-category", "template_uuid", "distribution", "sharing_group_id",
                "SharingGroup", "timestamp", "comment")


@dataclass
class Stats:
    """What a converter saw: events, attributes, emitted, unmapped by type, filtered."""

    events: int = 0
    attributes: int = 0
    emitted: int = 0
    filtered: int = 0
    unmapped: collections.Counter = field(default_factory=collections.Counter)

    def unmapped_summary(self, limit: int = 10) -> str:
        items = self.unmapped.most_common(limit)
        text = ", ".join(f"{t}={n}" for t, n in items)
        rest = len(self.unmapped) - len(items)
        return text + (f" and {rest} more types" if rest > 0 else "")


def _tag_names(block: dict) -> list:
    """The tag names of a block, leniently (for the compact raw copy of a row only)."""
    tags = block.get("Tag") or []
    names = []
    for t in tags if isinstance(tags, list) else []:
        name = t.get("name") if isinstance(t, dict) else t
        if isinstance(name, str):
            names.append(name)
    return names


def read_tags(block: dict, path: str, where: str = "") -> tuple:
    """``(tag names, TLP level or None, Chatham House flag)`` of a block's ``Tag`` list,
    read by the TLP core's one reader (:func:`tlp.event_tlp`).  Raises
    :class:`MISPFormatError` naming ``<path>.Tag...`` for a ``Tag`` that is not a list,
    a tag that is not MISP's ``{"name": "..."}`` and a TLP tag that cannot be read
    (unknown, or a look-alike spelling): refused, never read as unlabelled."""
    tags = block.get("Tag")
    if tags is None:
        return [], None, False
    if not isinstance(tags, list):
        raise MISPFormatError(f"expected a list of tags, got {type(tags).__name__}", where, f"{path}.Tag")
    for i, tag in enumerate(tags):
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
            raise MISPFormatError("a tag must be MISP's {\"name\": \"...\"} (an object with a text name); "
                                  "refused, not read as unlabelled", where, f"{path}.Tag[{i}]")
    try:
        read = tlp.event_tlp({tlp.TAG_FIELDS[0]: tags})
    except tlp.LabelError as exc:
        field = exc.field.replace(tlp.TAG_FIELDS[0], f"{path}.Tag", 1)
        raise MISPFormatError(exc.reason, where, field) from None
    return [t["name"] for t in tags], read.level, read.hide_source


def _galaxy_clusters(block: dict) -> list:
    out = []
    for galaxy in block.get("Galaxy") or []:
        if not isinstance(galaxy, dict):
            continue
        for cluster in galaxy.get("GalaxyCluster") or []:
            if isinstance(cluster, dict) and cluster.get("value"):
                out.append((str(galaxy.get("type") or cluster.get("type") or ""), str(cluster["value"])))
    return out


def _timestamp(value) -> Optional[str]:
    ts = _int_or_none(value)
    if ts is None or ts <= 0:
        return None
    try:
        return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):    # e.g. 10**20 (found by fuzzing): no usable time
        return None


class Converter:
    """MISP attribute -> IntelMQ flat fields, with counters.

    ``keep_non_ids``: keep attributes with ``to_ids`` false (default) or drop
    them (counted as filtered).  ``type_classification``: overrides of
    :data:`DEFAULT_TYPE_CLASSIFICATION`.  ``default_classification``:
    classification.type of a mapped attribute no tag and no type mapping
    classifies.  ``include_tags``: copy the tag names into ``extra.misp_tags``.
    """

    def __init__(self, keep_non_ids: bool = True, type_classification: Optional[dict] = None,
                 default_classification: str = "undetermined", include_tags: bool = True,
                 where: str = ""):
        self.keep_non_ids = keep_non_ids
        self.type_classification = dict(DEFAULT_TYPE_CLASSIFICATION)
        if type_classification:
            self.type_classification.update(type_classification)
        self.default_classification = default_classification
        self.include_tags = include_tags
        self.where = where
        #: the labels of the report the events come from (the feed's), read by tlp.event_tlp:
        #: they count like the tags (the parser bot sets it per report)
        self.feed: Optional[tlp.EventTLP] = None
        self.stats = Stats()

    # -- per event --
    def event_context(self, event: dict) -> dict:
        """Everything the rows of one event share; raises MISPFormatError for a bad event tag."""
        try:
            return self._event_context(event)
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
            if isinstance(exc, MISPFormatError):
                raise
            # A field of the wrong JSON type somewhere in the event header (found by fuzzing).
            raise MISPFormatError(f"event has a field of the wrong type ({type(exc).__name__}: {exc})",
                                  self.where, "Event") from None

    def _event_context(self, event: dict) -> dict:
        tags, level, chr_flag = read_tags(event, "Event", self.where)
        uuid = event["uuid"].lower()
        orgc = event.get("Orgc") if isinstance(event.get("Orgc"), dict) else {}
        clusters = _galaxy_clusters(event)
        return {
            "uuid": uuid, "tags": tags, "level": level, "chr": chr_flag,
            "classification": taxonomy_classification(tags),
            "distribution": (_int_or_none(event.get("distribution")), _sharing_group_uuid(event)),
            "sharing_groups": _known_sharing_groups(event),
            "info": event.get("info"), "orgc": orgc.get("name"),
            "clusters": clusters,
        }

    def rows(self, event: dict) -> Iterator[Row]:
        """The attributes of an event and of its objects, in document order.

        Raises :class:`MISPFormatError` (before yielding anything) when an
        event-level TLP tag cannot be read."""
        ctx = self.event_context(event)
        self.stats.events += 1
        for attribute in event.get("Attribute") or []:
            yield Row(event, attribute, None, ctx)
        for obj in event.get("Object") or []:
            if not isinstance(obj, dict):
                continue
            for attribute in obj.get("Attribute") or []:
                yield Row(event, attribute, obj, ctx)

    def convert(self, row: Row) -> Optional[dict]:
        """IntelMQ flat fields of one attribute, or None (unmapped or filtered; counted).

        Raises :class:`MISPFormatError` naming the attribute for a bad TLP tag
        or a value that does not fit its type."""
        try:
            return self._convert(row)
        except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
            if isinstance(exc, MISPFormatError):
                raise
            # A field of the wrong JSON type in the attribute or its object (found by fuzzing).
            raise MISPFormatError(f"a field has the wrong type ({type(exc).__name__}: {exc})",
                                  self.where, _safe_path(row)) from None

    def _convert(self, row: Row) -> Optional[dict]:
        self.stats.attributes += 1
        attr = row.attribute
        ctx = row.event_context if row.event_context is not None else self.event_context(row.event)
        if not isinstance(attr, dict):
            raise MISPFormatError("attribute is not an object", self.where, "Attribute")
        atype = attr.get("type")
        path = row.path
        if attr.get("deleted") in (True, "1", 1):
            self.stats.filtered += 1
            return None
        mapper = TYPE_FIELDS.get(atype)
        if mapper is None:
            self.stats.unmapped[str(atype)] += 1
            return None
        to_ids = attr.get("to_ids") in (True, 1, "1", "true", "True")
        if not to_ids and not self.keep_non_ids:
            self.stats.filtered += 1
            return None
        value = attr.get("value")
        if not isinstance(value, str) or not value.strip():
            raise MISPFormatError(f"empty or non-text value {value!r}", self.where, f"{path}.value")
        try:
            out = mapper(value.strip())
        except (ValueError, TypeError) as exc:
            raise MISPFormatError(f"value {value!r} does not fit type {atype}: {exc}", self.where,
                                  f"{path}.value") from None

        attr_tags, a_level, a_chr = read_tags(attr, path, self.where)
        o_level, o_chr = None, False
        if row.obj is not None and "Tag" in row.obj:       # not MISP's own shape, but a label all the same
            _, o_level, o_chr = read_tags(row.obj, path.rsplit(".Attribute[", 1)[0], self.where)
            a_chr = a_chr or o_chr
        levels = [lvl for lvl in (ctx["level"], o_level, a_level) if lvl is not None]
        if levels:
            out["sharing.tlp"] = max(levels).label
        if ctx["chr"] or a_chr:
            out["sharing.do_not_disclose_source"] = True

        # classification: attribute tag, event tag, type mapping, default
        classification = (taxonomy_classification(attr_tags) or ctx["classification"]
                          or self.type_classification.get(atype) or self.default_classification)
        out["classification.type"] = classification

        # distribution: attribute -> object -> event
        known = ctx.get("sharing_groups")
        chain = [(_int_or_none(attr.get("distribution")), _sharing_group_uuid(attr, known))]
        if row.obj is not None:
            chain.append((_int_or_none(row.obj.get("distribution")), _sharing_group_uuid(row.obj, known)))
        chain.append(ctx["distribution"])
        eff = effective_distribution(chain)
        if eff is not None:
            out["misp.distribution"] = eff[0]
            if eff[0] == 4 and eff[1]:
                out["misp.sharing_group_uuid"] = eff[1]

        out["misp.event_uuid"] = ctx["uuid"]
        out["provenance.event_uuid"] = ctx["uuid"]
        if isinstance(attr.get("uuid"), str) and _is_uuid(attr["uuid"]):
            out["misp.attribute_uuid"] = attr["uuid"].lower()
        if ctx["orgc"]:
            out["provenance.originator"] = ctx["orgc"]
        if ctx["info"]:
            out["event_description.text"] = ctx["info"]
        if attr.get("comment"):
            out["comment"] = attr["comment"]
        when = _timestamp(attr.get("timestamp"))
        if when:
            out["time.source"] = when
        out["extra.misp_type"] = atype
        if attr.get("category"):
            out["extra.misp_category"] = attr["category"]
        out["extra.misp_to_ids"] = to_ids
        if row.obj is not None:
            out["extra.misp_object_name"] = row.obj.get("name")
            if row.obj.get("uuid"):
                out["extra.misp_object_uuid"] = str(row.obj["uuid"]).lower()
            if attr.get("object_relation"):
                out["extra.misp_object_relation"] = attr["object_relation"]
        if self.include_tags:
            tags = list(ctx["tags"]) + [t for t in attr_tags if t not in ctx["tags"]]
            if tags:
                out["extra.misp_tags"] = tags
        clusters = ctx["clusters"] + _galaxy_clusters(attr)
        if clusters:
            out["extra.misp_galaxies"] = [f"{gtype}={value}" for gtype, value in clusters]
            for gtype, value in clusters:
                if gtype in _MALWARE_GALAXIES and value.isascii() and value.isprintable():
                    out.setdefault("malware.name", value.lower())
        sightings = [s for s in (attr.get("Sighting") or []) if isinstance(s, dict)
                     and str(s.get("type", "0")) == "0"]
        if sightings:
            out["extra.misp_sighting_count"] = len(sightings)
            last = max((_int_or_none(s.get("date_sighting")) or 0) for s in sightings)
            if last:
                out["extra.misp_last_seen"] = _timestamp(last)
        _no_lower_label(out, self.where, path, self.feed)
        self.stats.emitted += 1
        return out

    def convert_event(self, event: dict) -> Iterator[dict]:
        """All field dicts of one event (mapped, not filtered attributes)."""
        for row in self.rows(event):
            out = self.convert(row)
            if out is not None:
                yield out


def _no_lower_label(out: dict, where: str, path: str, feed: Optional[tlp.EventTLP] = None) -> None:
    """The converted attribute at the most restrictive label it carries in any field (a
    comment or an info that is itself a TLP label counts), read by :func:`tlp.event_tlp`,
    and at least at the feed's label (``feed``: the report's labels)."""
    try:
        read = tlp.event_tlp(out)
    except tlp.LabelError as exc:
        raise MISPFormatError(f"a TLP label that cannot be read in what becomes event field {exc.field}: "
                              f"{exc.reason}", where, path) from None
    levels = [lvl for lvl in (read.level, feed.level if feed else None) if lvl is not None]
    if levels:
        out["sharing.tlp"] = max(levels).label
    if read.hide_source or (feed is not None and feed.hide_source):
        out["sharing.do_not_disclose_source"] = True


# --- writing MISP (output bot, feed export) ------------------------------------------

#: Namespace of the deterministic UUIDs the output writes (uuid5).
UUID_NAMESPACE = _uuid.UUID("6f0c4f0e-6a55-5c38-9a3c-6d2b1f8a4c11")

#: IntelMQ field -> MISP attribute type, tried in order; the first field the event has wins.
FIELD_TYPES = (
    ("source.url", "url"), ("destination.url", "url"),
    ("source.fqdn", "domain"), ("destination.fqdn", "domain"),
    ("source.ip", "ip-src"), ("destination.ip", "ip-dst"),
    ("malware.hash.sha256", "sha256"), ("malware.hash.sha1", "sha1"), ("malware.hash.md5", "md5"),
    ("source.account", "email-src"), ("product.vulnerabilities", "vulnerability"),
    ("source.asn", "AS"),
)
_CATEGORIES = {"url": "Network activity", "domain": "Network activity", "ip-src": "Network activity",
               "ip-dst": "Network activity", "sha256": "Payload delivery", "sha1": "Payload delivery",
               "md5": "Payload delivery", "email-src": "Payload delivery",
               "vulnerability": "External analysis", "AS": "Network activity"}


def indicator(event: dict) -> Optional[tuple]:
    """(MISP type, value, category) for an IntelMQ event dict (flat keys), or None."""
    for fname, atype in FIELD_TYPES:
        value = event.get(fname)
        if value in (None, ""):
            continue
        if fname == "source.url" and event.get(URL_SCHEME_ADDED_FIELD) is True \
                and str(value).startswith(ADDED_SCHEME):
            value = str(value)[len(ADDED_SCHEME):]          # as the originator's MISP had it
        elif atype == "vulnerability":
            value = str(value).split(";")[0].strip().upper()
        elif atype == "AS":
            value = f"AS{value}"
        return atype, str(value), _CATEGORIES[atype]
    return None


def rsit_tag(classification_type: Optional[str], taxonomy: Optional[str] = None) -> Optional[str]:
    """The MISP ``rsit`` taxonomy tag for an IntelMQ classification, e.g.
    ``rsit:malicious-code="c2-server"``.  The taxonomy (the predicate) is the
    event's ``classification.taxonomy`` or IntelMQ's taxonomy expert table."""
    if not classification_type:
        return None
    if not taxonomy:
        from intelmq.bots.experts.taxonomy.expert import TAXONOMY
        taxonomy = TAXONOMY.get(classification_type, "other")
    return f'rsit:{taxonomy}="{classification_type}"'


def deterministic_uuid(*parts: str) -> str:
    return str(_uuid.uuid5(UUID_NAMESPACE, "|".join(parts)))


def group_key(event: dict, grouping: str, incident_field: str = "extra.incident_id",
              feed_field: str = "feed.name") -> str:
    """The key that puts attributes into one MISP event.

    ``feed_day``: feed name and UTC day of time.observation (or time.source);
    ``incident``: the value of ``incident_field`` (falls back to feed_day).
    """
    if grouping == "incident":
        value = event.get(incident_field)
        if value not in (None, ""):
            return f"incident:{value}"
    feed = event.get(feed_field) or "unknown-feed"
    when = event.get("time.observation") or event.get("time.source") or ""
    day = str(when)[:10] if when else _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    return f"feed:{feed}:{day}"
