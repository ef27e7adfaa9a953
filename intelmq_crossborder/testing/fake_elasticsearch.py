"""A small local stand-in for the Elasticsearch / OpenSearch REST API, for tests and benchmarks.

No Elasticsearch can be installed on the build machines, so the output bot is
tested against this server.  It answers the endpoints the bot uses with the
request and response shapes of the REST API specification:

* ``GET /`` – cluster info; Elasticsearch sends ``X-Elastic-Product:
  Elasticsearch``, OpenSearch does not and says ``"distribution": "opensearch"``;
* ``PUT|GET /_index_template/<name>``, ``PUT|GET /_ilm/policy/<name>`` (Elasticsearch),
  ``PUT|GET /_plugins/_ism/policies/<id>`` (OpenSearch, 409 when it exists);
* ``POST|PUT /_bulk`` and ``/<index>/_bulk`` – NDJSON in, ``{"took", "errors",
  "items": [{"index": {...}}]}`` out, one item per action, in order.  Documents are
  checked against the mapping of the matching index template (``ip``, ``date``,
  ``long``, ``double``, ``boolean``, ``geo_point``), so a bad value fails with a
  ``document_parsing_exception`` item (status 400) while the others are indexed.
  A ``delete`` action removes the document (``result: deleted``, or ``not_found`` with 404);
* ``GET|POST /<index pattern>/_search`` with the query subset the retractions use (``bool``
  with ``should``/``filter``/``must``, ``term``, ``terms``, ``ids``, ``match_all``) ->
  ``hits.hits`` with ``_index``, ``_id``, ``_source``; ``size`` (default 10);
* ``POST /<index pattern>/_refresh`` -> ``{"_shards": ...}`` (documents are searchable at once).

Media types are checked as the servers do: Elasticsearch 8 refuses
``compatible-with=9``; OpenSearch refuses ``application/vnd.elasticsearch+json``
with 406.  Faults can be injected: ``bulk_failures`` (whole ``_bulk`` requests
answered with e.g. 429 ``es_rejected_execution_exception``) and ``item_failures``
(``_id`` -> statuses answered for that document in turn, e.g. ``[429, 429]``).

Every request and answer is kept in ``exchanges`` (method, path, query, headers,
body, status, response); ``tests/test_fake_elasticsearch_spec.py`` checks them all
against an excerpt of the official specifications (``tests/fixtures/elasticsearch/spec``).
"""
from __future__ import annotations

import copy
import fnmatch
import ipaddress
import json
import re
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Optional

from intelmq_crossborder.testing.http import LocalHTTPServer

VERSIONS = {"elasticsearch9": "9.1.4", "elasticsearch8": "8.19.3", "opensearch2": "2.19.1"}


class FakeElasticsearch(LocalHTTPServer):
    """``with FakeElasticsearch() as es: es.url``; the state is inspectable (``es.docs``)."""

    def __init__(self, flavour: str = "elasticsearch9", port: int = 0, store_documents: bool = True,
                 record_exchanges: bool = True):
        if flavour not in VERSIONS:
            raise ValueError(flavour)
        super().__init__(port=port)
        self.flavour = flavour
        self.store_documents = store_documents
        self.record_exchanges = record_exchanges  # off in benchmarks: bodies would pile up in memory
        self.docs: dict = {}            # index -> {_id: source}
        self.templates: dict = {}
        self.ilm_policies: dict = {}
        self.ism_policies: dict = {}
        self.bulk_requests = 0
        self.bulk_batches: list = []    # number of actions in each answered _bulk request
        self.bulk_failures: list = []   # statuses for the next whole _bulk requests
        self.item_failures: dict = {}   # _id -> [status, ...] answered in turn
        self.requests: list = []        # (method, path, accept, content-type)
        self.exchanges: list = []       # every request and answer in full (conformance tests)
        self.lock = threading.Lock()
        self._seq = 0

    # -- life cycle: start(), stop(), ``with`` (LocalHTTPServer) --
    def handler_class(self) -> type:
        return type("Handler", (_Handler,), {"fake": self})

    @property
    def url(self) -> str:
        return self.base_url

    def all_docs(self) -> dict:
        """_id -> (index, source) over all indices."""
        return {i: (idx, src) for idx, docs in self.docs.items() for i, src in docs.items()}

    # -- behaviour --
    def info(self) -> dict:
        number = VERSIONS[self.flavour]
        version = {"number": number, "build_type": "tar", "build_hash": "0" * 40,
                   "build_date": "2025-09-01T00:00:00.000Z", "build_snapshot": False,
                   "lucene_version": "10.2.2" if self.flavour == "elasticsearch9" else "9.12.0",
                   "minimum_wire_compatibility_version": "8.19.0",
                   "minimum_index_compatibility_version": "8.0.0"}
        if self.flavour == "opensearch2":
            version = {"distribution": "opensearch", **version}
            tagline = "The OpenSearch Project: https://opensearch.org/"
        else:
            version = {"build_flavor": "default", **version}
            tagline = "You Know, for Search"
        return {"name": "fake-node-1", "cluster_name": "fake-lake", "cluster_uuid": "fake-uuid-0001",
                "version": version, "tagline": tagline}

    def template_for(self, index: str) -> Optional[dict]:
        best = None
        for tpl in self.templates.values():
            if any(fnmatch.fnmatchcase(index, p) for p in tpl.get("index_patterns", [])):
                if best is None or tpl.get("priority", 0) > best.get("priority", 0):
                    best = tpl
        return best

    def bulk(self, body: bytes, default_index: Optional[str]) -> tuple:
        with self.lock:
            self.bulk_requests += 1
            if self.bulk_failures:
                status = self.bulk_failures.pop(0)
                return status, _error_body(status)
        started = time.perf_counter()
        lines = [line for line in body.split(b"\n") if line.strip()]
        items, errors, i = [], False, 0
        while i < len(lines):
            action = json.loads(lines[i])
            (op, meta), = action.items()
            source = json.loads(lines[i + 1]) if op in ("index", "create", "update") else None
            i += 2 if source is not None else 1
            index = meta.get("_index", default_index)
            doc_id = meta.get("_id")
            item = self._delete(index, doc_id) if op == "delete" else self._one(op, index, doc_id, source)
            errors = errors or "error" in item
            items.append({op: item})
        self.bulk_batches.append(len(items))
        return 200, {"errors": errors, "took": int((time.perf_counter() - started) * 1000), "items": items}

    def _one(self, op: str, index: str, doc_id: Optional[str], source) -> dict:
        with self.lock:
            self._seq += 1
            seq = self._seq
            if doc_id is None:
                doc_id = f"auto-{seq}"
            planned = self.item_failures.get(doc_id)
            if planned:
                status = planned.pop(0)
                return {"_index": index, "_id": doc_id, "status": status,
                        "error": _error_body(status)["error"]}
        tpl = self.template_for(index)
        if tpl is not None and source is not None:
            problem = _check(source, tpl["template"].get("mappings", {}).get("properties", {}), [])
            if problem:
                field, ftype, value, why = problem
                kind = "mapper_parsing_exception" if self.flavour == "opensearch2" else "document_parsing_exception"
                preview = json.dumps(value) if not isinstance(value, str) else value
                return {"_index": index, "_id": doc_id, "status": 400, "error": {
                    "type": kind,
                    "reason": f"[1:{len(preview) + 10}] failed to parse field [{field}] of type [{ftype}] in "
                              f"document with id '{doc_id}'. Preview of field's value: '{preview}'",
                    "caused_by": {"type": "illegal_argument_exception", "reason": why}}}
        with self.lock:
            docs = self.docs.setdefault(index, {})
            existed = doc_id in docs
            if op == "create" and existed:
                return {"_index": index, "_id": doc_id, "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": f"[{doc_id}]: version conflict, document already exists (current version [1])"}}
            docs[doc_id] = source if self.store_documents else True
            return {"_index": index, "_id": doc_id, "_version": 2 if existed else 1,
                    "result": "updated" if existed else "created",
                    "_shards": {"total": 2, "successful": 1, "failed": 0},
                    "_seq_no": seq, "_primary_term": 1, "status": 200 if existed else 201}


    def _delete(self, index: str, doc_id: str) -> dict:
        with self.lock:
            self._seq += 1
            found = self.docs.get(index, {}).pop(doc_id, None) is not None
            return {"_index": index, "_id": doc_id, "_version": 2 if found else 1,
                    "result": "deleted" if found else "not_found",
                    "_shards": {"total": 2, "successful": 1, "failed": 0},
                    "_seq_no": self._seq, "_primary_term": 1, "status": 200 if found else 404}

    def search(self, patterns: str, body: dict) -> dict:
        """The hits of ``body["query"]`` over the indices matching ``patterns`` (comma-separated)."""
        wanted = [p for p in patterns.split(",") if p]
        query = (body or {}).get("query") or {"match_all": {}}
        size = int((body or {}).get("size", 10))
        with self.lock:
            hits = [{"_index": index, "_id": doc_id, "_score": 1.0, "_source": copy.deepcopy(source)}
                    for index, docs in sorted(self.docs.items())
                    if any(fnmatch.fnmatchcase(index, p) for p in wanted)
                    for doc_id, source in docs.items() if _matches(query, doc_id, source)]
        return {"took": 1, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": 1.0 if hits else None,
                         "hits": hits[:size]}}


def _field(source, name: str):
    node = source
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _matches(query: dict, doc_id: str, source) -> bool:
    """The query subset of :meth:`FakeElasticsearch.search` (ValueError for anything else)."""
    (kind, spec), = query.items()
    if kind == "match_all":
        return True
    if kind == "ids":
        return doc_id in spec.get("values", [])
    if kind == "term":
        (name, value), = spec.items()
        value = value.get("value") if isinstance(value, dict) else value
        return isinstance(source, dict) and _field(source, name) == value
    if kind == "terms":
        (name, values), = spec.items()
        return isinstance(source, dict) and _field(source, name) in values
    if kind == "bool":
        for clause in ("must", "filter"):
            if not all(_matches(q, doc_id, source) for q in _as_list(spec.get(clause))):
                return False
        should = _as_list(spec.get("should"))
        if should and not any(_matches(q, doc_id, source) for q in should):
            return False
        return not any(_matches(q, doc_id, source) for q in _as_list(spec.get("must_not")))
    raise ValueError(f"query {kind} is not supported by the fake")


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value] if value else []


def _error_body(status: int) -> dict:
    if status == 429:
        err = {"type": "es_rejected_execution_exception",
               "reason": "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
                         "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, "
                         "max_coordinating_and_primary_bytes=0]"}
    elif status == 503:
        err = {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}
    else:
        err = {"type": "illegal_argument_exception", "reason": f"injected failure {status}"}
    return {"error": {"root_cause": [err], **err}, "status": status}


_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def _check(doc: dict, properties: dict, path: list):
    """First field of ``doc`` that its mapping refuses: (field, type, value, why) or None."""
    for key, value in doc.items():
        spec = properties.get(key)
        if spec is None:
            continue    # dynamic: false -> kept in _source, not indexed
        here = path + [key]
        if "properties" in spec and spec.get("type", "object") == "object":
            if isinstance(value, dict):
                found = _check(value, spec["properties"], here)
                if found:
                    return found
                continue
            return ".".join(here), "object", value, "tried to parse field as object, but found a concrete value"
        ftype = spec.get("type")
        why = _refuses(ftype, value)
        if why:
            return ".".join(here), ftype, value, why
    return None


def _refuses(ftype: str, value) -> Optional[str]:
    if value is None:
        return None
    if ftype == "ip":
        try:
            ipaddress.ip_address(str(value))
        except ValueError:
            return f"'{value}' is not an IP string literal."
    elif ftype == "date":
        if not isinstance(value, str) or not _ISO_RE.match(value):
            return f"failed to parse date field [{value}] with format [strict_date_optional_time||epoch_millis]"
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return f"failed to parse date field [{value}] with format [strict_date_optional_time||epoch_millis]"
    elif ftype in ("long", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).lstrip("-").isdigit():
            return f"For input string: \"{value}\""
        bits = 63 if ftype == "long" else 31
        if not -2 ** bits <= int(value) < 2 ** bits:
            return f"Numeric value ({value}) out of range of {ftype}"
    elif ftype in ("double", "float"):
        try:
            float(value)
        except (TypeError, ValueError):
            return f"For input string: \"{value}\""
    elif ftype == "boolean":
        if value not in (True, False, "true", "false"):
            return f"Failed to parse value [{value}] as only [true] or [false] are allowed."
    elif ftype == "geo_point":
        try:
            lat, lon = float(value["lat"]), float(value["lon"])
        except (TypeError, KeyError, ValueError):
            return "geo_point expected"
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return f"illegal latitude value [{lat}] or longitude value [{lon}]"
    return None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeElasticsearch = None
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body are separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body, product: bool = True):
        data = json.dumps(body).encode("utf-8")
        exchange = getattr(self, "_exchange", None)
        if exchange is not None and self.fake.record_exchanges:
            with self.fake.lock:
                self.fake.exchanges.append({**exchange, "status": status, "response": body})
        self.send_response(status)
        self.send_header("Content-Type", self._response_media_type())
        if product and self.fake.flavour != "opensearch2":
            self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _response_media_type(self) -> str:
        """JSON as the client asked: the versioned media type echoes the requested compatible-with."""
        if self.fake.flavour == "opensearch2":
            return "application/json; charset=UTF-8"
        m = re.search(r"compatible-with=(\d+)", self.headers.get("Accept", "") or "")
        if m:
            return f"application/vnd.elasticsearch+json;compatible-with={m.group(1)}"
        return "application/json"

    def _media_problem(self) -> Optional[tuple]:
        accept = self.headers.get("Accept", "") or ""
        ctype = self.headers.get("Content-Type", "") or ""
        flavour = self.fake.flavour
        for value in (accept, ctype):
            if "vnd.elasticsearch" not in value:
                continue
            if flavour == "opensearch2":
                return 406, {"error": f"Content-Type header [{value}] is not supported", "status": 406}
            m = re.search(r"compatible-with=(\d+)", value)
            wanted = int(m.group(1)) if m else None
            major = int(VERSIONS[flavour].split(".")[0])
            if wanted not in (major, major - 1):
                err = {"type": "media_type_header_exception",
                       "reason": "Invalid media-type value on headers [Accept, Content-Type]",
                       "caused_by": {"type": "status_exception",
                                     "reason": f"A compatible version is required on both Content-Type and "
                                               f"Accept headers if either one has requested a compatible "
                                               f"version. Accept={accept}, Content-Type={ctype}"}}
                return 400, {"error": {"root_cause": [err], **err}, "status": 400}
        return None

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self):
        body = self._body()
        path = self.path.split("?")[0].rstrip("/") or "/"
        self._exchange = {"method": self.command, "path": path,
                          "query": self.path.split("?", 1)[1] if "?" in self.path else "",
                          "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        self.fake.requests.append((self.command, path, self.headers.get("Accept"), self.headers.get("Content-Type")))
        problem = self._media_problem()
        if problem:
            return self._send(*problem, product=False)
        fake = self.fake
        parts = [p for p in path.split("/") if p]
        if path == "/" and self.command in ("GET", "HEAD"):
            return self._send(200, fake.info())
        if parts and parts[-1] == "_bulk" and self.command in ("POST", "PUT"):
            status, out = fake.bulk(body, parts[0] if len(parts) == 2 else None)
            return self._send(status, out)
        if len(parts) == 2 and parts[1] == "_search" and self.command in ("GET", "POST"):
            try:
                query = json.loads(body) if body else {}
                args = dict(a.split("=", 1) for a in self._exchange["query"].split("&") if "=" in a)
                if "size" in args:
                    query["size"] = int(args["size"])
                return self._send(200, fake.search(parts[0], query))
            except (ValueError, TypeError) as exc:
                return self._send(400, {"error": {"root_cause": [{"type": "parsing_exception", "reason": str(exc)}],
                                                  "type": "parsing_exception", "reason": str(exc)}, "status": 400})
        if len(parts) == 2 and parts[1] == "_refresh" and self.command in ("GET", "POST"):
            return self._send(200, {"_shards": {"total": 1, "successful": 1, "failed": 0}})
        if len(parts) == 2 and parts[0] == "_index_template":
            if self.command == "PUT":
                fake.templates[parts[1]] = json.loads(body)
                return self._send(200, {"acknowledged": True})
            if parts[1] in fake.templates:
                return self._send(200, {"index_templates": [
                    {"name": parts[1], "index_template": fake.templates[parts[1]]}]})
            return self._send(404, _missing("resource_not_found_exception",
                                            f"index template matching [{parts[1]}] not found"))
        if len(parts) == 3 and parts[:2] == ["_ilm", "policy"] and fake.flavour != "opensearch2":
            if self.command == "PUT":
                fake.ilm_policies[parts[2]] = json.loads(body)
                return self._send(200, {"acknowledged": True})
            if parts[2] in fake.ilm_policies:
                return self._send(200, {parts[2]: {"version": 1, "policy": fake.ilm_policies[parts[2]]["policy"]}})
            return self._send(404, _missing("resource_not_found_exception", f"Lifecycle policy not found: {parts[2]}"))
        if len(parts) == 4 and parts[:3] == ["_plugins", "_ism", "policies"] and fake.flavour == "opensearch2":
            pid = parts[3]
            if self.command == "PUT":
                if pid in fake.ism_policies:
                    return self._send(409, _missing("version_conflict_engine_exception",
                                                    f"[{pid}]: version conflict, document already exists"), False)
                fake.ism_policies[pid] = json.loads(body)
                return self._send(201, {"_id": pid, "_version": 1, "_primary_term": 1, "_seq_no": 0,
                                        "policy": fake.ism_policies[pid]}, False)
            if pid in fake.ism_policies:
                return self._send(200, {"_id": pid, "policy": fake.ism_policies[pid]["policy"]}, False)
            return self._send(404, _missing("status_exception", "Policy not found"), False)
        return self._send(400, {"error": f"no handler found for uri [{path}] and method [{self.command}]",
                                "status": 400})

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _route


def _missing(kind: str, reason: str) -> dict:
    err = {"type": kind, "reason": reason}
    return {"error": {"root_cause": [err], **err}, "status": 404 if "not_found" in kind else 409}
