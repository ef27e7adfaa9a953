"""Elasticsearch / OpenSearch data lake: mapping, index names, documents, bulk results, client.

Plain functions, testable without IntelMQ; the rest of the lake is in :mod:`.lifecycle`
(templates, ILM/ISM policies), :mod:`.indexer` (the bulk loop with its retries) and
:mod:`.journal` (the batch and its Redis journal).  The Elasticsearch output bot
(``intelmq_crossborder/bots/outputs/elasticsearch``) only adapts them to IntelMQ.

* :func:`mapping_from_harmonization` turns the cross-border harmonization into an
  index mapping (``IPAddress`` -> ``ip``, ``DateTime`` -> ``date``, strings ->
  ``keyword``, numbers, booleans, and a ``geo_point`` ``<side>.geolocation.location``
  built from latitude/longitude).
* :func:`index_name` gives the index of an event: ``<prefix>-r<days>d-<period>`` or
  ``<prefix>-rkeep-<period>``; the retention part selects the lifecycle policy.
* :func:`lake_tlp` reads the event's labels once (:func:`intelmq_crossborder.core.tlp.event_tlp`):
  the level a document is filtered and stored with (the output's default when the event carries
  no label) and whether its source is hidden.
* :func:`build_document` turns an event dict and that reading into the document, with its
  deterministic ``_id`` (re-indexing is idempotent).
* :func:`classify_item` sorts one bulk result item into indexed / retry / reject.
* :func:`make_client` builds the official client for ``elasticsearch9``,
  ``elasticsearch8`` or ``opensearch2`` (see docs/bots/elasticsearch.md).
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple, Optional

from intelmq_crossborder.policy.redact import without_source

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.fingerprint import digest

FLAVOURS = ("elasticsearch9", "elasticsearch8", "opensearch2")
ROTATIONS = ("daily", "monthly", "none")

#: harmonization type -> mapping of the field
TYPE_MAPPING = {
    "IPAddress": {"type": "ip"},
    "DateTime": {"type": "date"},
    "Float": {"type": "double"},
    "Accuracy": {"type": "float"},
    "Integer": {"type": "long"},
    "ASN": {"type": "long"},
    "Boolean": {"type": "boolean"},
    # Free text and blobs are kept in _source but not indexed.
    "JSON": {"type": "keyword", "index": False, "doc_values": False},
    "Base64": {"type": "keyword", "index": False, "doc_values": False},
    # extra.*: arbitrary keys from any feed; not indexed (a mapping explosion or a
    # type clash between feeds would reject events).
    "JSONDict": {"type": "object", "enabled": False},
}
#: every other type (String, LowercaseString, URL, FQDN, ClassificationType, TLP, ...)
DEFAULT_MAPPING = {"type": "keyword", "ignore_above": 8191}
GEO_SIDES = ("source", "destination")


class ElasticConfigError(CrossBorderError, ValueError):
    """A parameter of the output that cannot work."""


def mapping_from_harmonization(harmonization: dict, drop_fields=("raw",)) -> dict:
    """The ``mappings`` body (``dynamic: false``) for the event fields of ``harmonization``."""
    properties: dict = {}
    for name, spec in sorted(harmonization["event"].items()):
        if name in drop_fields:
            continue
        _put(properties, name.split("."), dict(TYPE_MAPPING.get(spec["type"], DEFAULT_MAPPING)))
    for side in GEO_SIDES:
        if f"{side}.geolocation.latitude" in harmonization["event"]:
            _put(properties, [side, "geolocation", "location"], {"type": "geo_point"})
    # our own bookkeeping field: when this copy entered the lake
    _put(properties, ["lake", "indexed_at"], {"type": "date"})
    return {"dynamic": False, "properties": properties}


def _put(properties: dict, path: list, leaf: dict) -> None:
    node = properties
    for part in path[:-1]:
        child = node.setdefault(part, {"properties": {}})
        if "properties" not in child:
            raise ElasticConfigError(f"harmonization field {'.'.join(path)} nests under a leaf field {part}")
        node = child["properties"]
    node[path[-1]] = leaf


def retention_label(days: Optional[int]) -> str:
    return "rkeep" if not days else f"r{int(days)}d"


def index_name(prefix: str, rotation: str, days: Optional[int], when: datetime) -> str:
    """Index of a document; ``when`` is the time the document enters the lake (UTC)."""
    base = f"{prefix}-{retention_label(days)}"
    if rotation == "daily":
        return f"{base}-{when:%Y.%m.%d}"
    if rotation == "monthly":
        return f"{base}-{when:%Y.%m}"
    if rotation == "none":
        return base
    raise ElasticConfigError(f"rotation must be one of {', '.join(ROTATIONS)}, not {rotation!r}")


def check_prefix(prefix: str) -> Optional[str]:
    """Elasticsearch index-name rules for the prefix; an error text or None."""
    if not prefix or prefix != prefix.lower() or not re.fullmatch(r"[a-z0-9][a-z0-9_.+-]*", prefix):
        return (f"index_prefix {prefix!r} must be lowercase letters, digits, '_', '.', '+', '-' "
                "and not start with one of '_', '-', '+', '.'")
    return None


# --- documents -----------------------------------------------------------------

@dataclass
class Doc:
    """One document ready for the bulk API, with the event it came from (for dumping)."""

    id: str
    index: str
    source: dict
    level: tlp.Level
    event: object = None       # the IntelMQ message, kept to dump it per event

    def action(self) -> dict:
        return {"_op_type": "index", "_index": self.index, "_id": self.id, "_source": self.source}


class LakeTLP(NamedTuple):
    """How the lake stores and filters one event: its level and whether its source is hidden."""

    level: tlp.Level
    hide_source: bool


def lake_tlp(flat, default: tlp.Level) -> LakeTLP:
    """The event's labels, read once (:func:`intelmq_crossborder.core.tlp.event_tlp`): the level is
    its effective TLP (the most restrictive label in any field), ``default`` only when it carries
    no label at all; ``hide_source`` from the flag or a ``tlp:ex:chr`` tag.

    Raises :class:`intelmq_crossborder.core.tlp.LabelError` (an ``UnknownTLPError``) for anything
    label-like that cannot be read; its ``field`` attribute names the field."""
    read = tlp.event_tlp(flat)
    return LakeTLP(default if read.level is None else read.level, read.hide_source)


def document_id(flat: dict, id_fields=("provenance.fingerprint", "provenance.event_uuid")) -> str:
    """Deterministic ``_id``: the first of ``id_fields`` present, else the library's digest
    (:func:`intelmq_crossborder.core.fingerprint.digest`) of the event without ``time.observation``."""
    for field in id_fields:
        value = flat.get(field)
        if value:
            return str(value)
    return digest({k: v for k, v in flat.items() if k != "time.observation"})


def build_document(flat: dict, *, label: LakeTLP, prefix: str, rotation: str,
                   default_retention_days: Optional[int], now: datetime,
                   drop_fields=("raw",), id_fields=("provenance.fingerprint", "provenance.event_uuid")) -> Doc:
    """The document of one event (``flat``: the event as a flat dict) with ``label`` as
    :func:`lake_tlp` read it.  When its source is hidden, nothing of :data:`tlp.SOURCE_FIELDS`
    goes into the document or its id."""
    if label.hide_source:
        flat = without_source(flat)
    days = flat.get("sharing.retention_days", default_retention_days)
    source: dict = {}
    for key, value in flat.items():
        if key in drop_fields or key.startswith("__"):
            continue
        if key.startswith("extra."):
            source.setdefault("extra", {})[key[6:]] = value
            continue
        _set(source, key.split("."), value)
    _set(source, ["sharing", "tlp"], label.level.label)
    for side in GEO_SIDES:
        lat, lon = flat.get(f"{side}.geolocation.latitude"), flat.get(f"{side}.geolocation.longitude")
        if lat is not None and lon is not None:
            _set(source, [side, "geolocation", "location"], {"lat": lat, "lon": lon})
    _set(source, ["lake", "indexed_at"], now.astimezone(timezone.utc).isoformat())
    return Doc(id=document_id(flat, id_fields), index=index_name(prefix, rotation, days, now),
               source=source, level=label.level)


def _set(tree: dict, path: list, value) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


# --- bulk results --------------------------------------------------------------

INDEXED, RETRY, REJECT = "indexed", "retry", "reject"
#: per-item statuses worth retrying: throttled, or the cluster could not take it right now
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def classify_item(item: dict) -> tuple:
    """One item of a ``_bulk`` response -> (outcome, status, reason).

    ``item`` is ``{"index": {"_id": ..., "status": 201, ...}}`` or, on failure,
    ``{"index": {..., "status": 400, "error": {"type": ..., "reason": ...}}}``.
    """
    (op, result), = item.items()
    status = int(result.get("status", 0))
    if 200 <= status < 300 and "error" not in result:
        return INDEXED, status, None
    error = result.get("error") or {}
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            reason += f" (caused by {caused.get('type', 'error')}: {caused['reason']})"
    else:
        reason = str(error)
    outcome = RETRY if status in RETRY_STATUSES or status >= 500 else REJECT
    return outcome, status, reason


# --- client --------------------------------------------------------------------

_COMPAT_RE = re.compile(r"application/vnd\.elasticsearch\+([a-z-]+);\s*compatible-with=\d+")


def _compat_node_class(flavour: str):
    """A transport node that adapts the client's request headers to the server.

    The 9.x client sends ``application/vnd.elasticsearch+json; compatible-with=9``.
    Elasticsearch 8 accepts ``compatible-with=8`` (and 7) only; OpenSearch 2 knows
    neither and gets plain ``application/json``.  The official client also
    refuses any server whose 2xx responses lack ``X-Elastic-Product:
    Elasticsearch``; OpenSearch never sends it, so for ``opensearch2`` (and only
    when the server's ``GET /`` said ``distribution: opensearch``) the node marks
    the product as checked.  Everything else (bulk helpers, retries, API
    methods) is the official client.
    """
    from elastic_transport import HttpHeaders, Urllib3HttpNode
    from elastic_transport._node._base import NodeApiResponse

    class CompatNode(Urllib3HttpNode):
        _flavour = flavour
        _opensearch_confirmed = False

        def perform_request(self, method, target, body=None, headers=None, request_timeout=None):
            if headers is not None:
                headers = headers.copy()
                for name in ("accept", "content-type"):
                    value = headers.get(name)
                    if value:
                        if self._flavour == "opensearch2":
                            headers[name] = _COMPAT_RE.sub(r"application/\1", value)
                        else:
                            headers[name] = _COMPAT_RE.sub(
                                r"application/vnd.elasticsearch+\1; compatible-with=8", value)
            resp = super().perform_request(method, target, body=body, headers=headers,
                                           request_timeout=request_timeout)
            if self._flavour == "opensearch2":
                if method == "GET" and target.split("?")[0] in ("", "/") and 200 <= resp.meta.status < 300:
                    try:
                        info = json.loads(resp.body)
                        CompatNode._opensearch_confirmed = (
                            info.get("version", {}).get("distribution") == "opensearch")
                    except (ValueError, AttributeError):
                        CompatNode._opensearch_confirmed = False
                if CompatNode._opensearch_confirmed and "x-elastic-product" not in resp.meta.headers:
                    vouched = HttpHeaders(resp.meta.headers)
                    vouched["X-Elastic-Product"] = "Elasticsearch"
                    resp = NodeApiResponse(dataclasses.replace(resp.meta, headers=vouched), resp.body)
            return resp

    return CompatNode


def make_client(hosts, flavour: str = "elasticsearch9", *, api_key: Optional[str] = None,
                username: Optional[str] = None, password: Optional[str] = None,
                verify_certs: bool = True, ca_certs: Optional[str] = None,
                request_timeout: float = 30.0):
    """The official client for ``flavour`` (one of :data:`FLAVOURS`)."""
    import elasticsearch

    if flavour not in FLAVOURS:
        raise ElasticConfigError(f"server_flavour must be one of {', '.join(FLAVOURS)}, not {flavour!r}")
    kwargs = {"request_timeout": request_timeout, "verify_certs": verify_certs,
              # bulk retries are ours (per document, with backoff): one attempt per call here
              "max_retries": 0, "retry_on_timeout": False}
    if ca_certs:
        kwargs["ca_certs"] = ca_certs
    if api_key:
        kwargs["api_key"] = api_key
    elif username:
        kwargs["basic_auth"] = (username, password or "")
    client_major = int(elasticsearch.__versionstr__.split(".")[0])
    if flavour == "opensearch2" or (flavour == "elasticsearch8" and client_major > 8):
        kwargs["node_class"] = _compat_node_class(flavour)
    client = elasticsearch.Elasticsearch(hosts, **kwargs)
    if flavour == "opensearch2":
        # GET / first: the node learns the distribution before any product check.
        info = client.perform_request("GET", "/", headers={"accept": "application/json"}).body
        if info.get("version", {}).get("distribution") != "opensearch":
            raise ElasticConfigError("server_flavour is opensearch2 but the server at "
                                     f"{hosts} does not say distribution 'opensearch'")
    return client
