"""Conformance of the local Elasticsearch/OpenSearch server with the REST API specification.

The real output bot (official ``elasticsearch`` client and bulk helpers) is driven
against :class:`FakeElasticsearch`; every request the client sends and every answer
the fake gives is checked against our machine-readable excerpt of the official
specifications in ``tests/fixtures/elasticsearch/spec/`` (provenance in its README):
path and method against the rest-api-spec, the NDJSON bulk body line by line
(action line = ``OperationContainer``, source line after index/create/update), and
each answer against the response schema for its status (``ErrorResponseBase`` for
every non-2xx answer, ``ResponseItem`` per bulk item).
"""
import json
import pathlib
import re
import unittest

import elasticsearch
import jsonschema
import pytest
from tests.es_harness import ElasticsearchOutputTestCase, ev

from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch

SPEC_DIR = pathlib.Path(__file__).parent / "fixtures" / "elasticsearch" / "spec"
SCHEMAS = json.loads((SPEC_DIR / "schemas.json").read_text())
ENDPOINTS = json.loads((SPEC_DIR / "endpoints.json").read_text())
SOURCE_OPS = ("index", "create", "update")


def schema_error(name: str, instance):
    """The first violation of definition ``name`` by ``instance`` as text, or None."""
    schema = {"$schema": SCHEMAS["$schema"], "$defs": SCHEMAS["$defs"], "$ref": f"#/$defs/{name}"}
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    if not errors:
        return None
    e = errors[0]
    return f"{name}: {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"


def match_endpoint(product: str, method: str, path: str):
    """(api name, path parts) of the endpoint that defines ``method path``, or raise."""
    for api, spec in ENDPOINTS[product].items():
        for url in spec["paths"]:
            pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(url["path"])) + "$"
            m = re.match(pattern, path)
            if m and method in url["methods"]:
                return api, m.groupdict()
    raise AssertionError(f"{method} {path} is not an endpoint of the {product} specification excerpt")


def check_bulk_body(body: bytes, path_index):
    """Problems of an NDJSON bulk body (list of text); also the operations as (op, meta)."""
    problems, ops = [], []
    if not body.endswith(b"\n"):
        problems.append("bulk body does not end with a newline")
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    i = 0
    while i < len(lines):
        try:
            action = json.loads(lines[i])
        except ValueError as exc:
            problems.append(f"line {i + 1}: not JSON ({exc})")
            break
        err = schema_error("OperationContainer", action)
        if err:
            problems.append(f"line {i + 1}: {err}")
            break
        (op, meta), = action.items()
        if "_index" not in meta and not path_index:
            problems.append(f"line {i + 1}: {op} action names no _index and the path gives none")
        if not isinstance(meta.get("_id"), str) or not meta.get("_id"):
            problems.append(f"line {i + 1}: {op} action carries no _id")
        i += 1
        if op in SOURCE_OPS:
            if i >= len(lines):
                problems.append(f"{op} action without a source line")
                break
            try:
                source = json.loads(lines[i])
            except ValueError as exc:
                problems.append(f"line {i + 1}: source not JSON ({exc})")
                break
            if not isinstance(source, dict):
                problems.append(f"line {i + 1}: source is not an object")
            elif "index" in source and len(source) == 1 and isinstance(source["index"], dict):
                problems.append(f"line {i + 1}: an action line where a source line belongs")
            i += 1
        ops.append((op, meta))
    return problems, ops


def check_exchange(product: str, ex: dict) -> list:
    """Every way one request/answer pair departs from the specification excerpt."""
    problems = []
    try:
        api, parts = match_endpoint(product, ex["method"], ex["path"])
    except AssertionError as exc:
        return [str(exc)]
    spec = ENDPOINTS[product][api]
    params = [p.split("=")[0] for p in ex["query"].split("&") if p]
    unknown = [p for p in params if p not in spec["params"] and p not in ("pretty", "human", "error_trace",
                                                                            "filter_path", "format")]
    if unknown:
        problems.append(f"{api}: query parameters not in the spec: {unknown}")
    ops = []
    if spec["body"] is None:
        if ex["body"]:
            problems.append(f"{api}: a body was sent to an endpoint that takes none")
    elif spec["body"].get("required") and not ex["body"]:
        problems.append(f"{api}: the required body is missing")
    elif spec["body"].get("serialize") == "bulk":
        ctype = ex["headers"].get("content-type", "")
        if "x-ndjson" not in ctype:
            problems.append(f"{api}: Content-Type {ctype!r} is not NDJSON")
        found, ops = check_bulk_body(ex["body"], parts.get("index"))
        problems += [f"{api} request: {p}" for p in found]
    elif spec["body"].get("schema"):
        err = schema_error(spec["body"]["schema"], json.loads(ex["body"]))
        if err:
            problems.append(f"{api} request: {err}")
    problems += [f"{api} answer: {p}" for p in check_answer(spec, ex["status"], ex["response"], ops)]
    return problems


def check_answer(spec: dict, status: int, body, ops: list) -> list:
    """Problems of one answer; ``ops`` are the bulk operations sent, to match the items against."""
    if not 200 <= status < 300:
        err = schema_error("ErrorResponseBase", body)
        problems = [err] if err else []
        if isinstance(body, dict) and body.get("status") != status:
            problems.append(f"error body says status {body.get('status')}, the HTTP status is {status}")
        return problems
    name = spec["responses"].get(str(status)) or spec["responses"].get("2xx")
    if name is None:
        return [f"status {status} is not an answer of this endpoint"]
    err = schema_error(name, body)
    if err:
        return [err]
    problems = []
    if name == "BulkResponse":
        items = body["items"]
        if len(items) != len(ops):
            problems.append(f"{len(items)} items for {len(ops)} operations")
        for n, (item, (op, meta)) in enumerate(zip(items, ops)):
            (kind, result), = item.items()
            if kind != op:
                problems.append(f"item {n} is {kind!r} for a {op!r} operation")
            if result.get("_id") != meta.get("_id"):
                problems.append(f"item {n} answers _id {result.get('_id')!r} for {meta.get('_id')!r}")
            failed = "error" in result
            if failed != (result["status"] >= 300):
                problems.append(f"item {n}: status {result['status']} with{'' if failed else 'out'} an error")
            if not failed and "result" not in result:
                problems.append(f"item {n}: a successful item has no result")
        if body["errors"] != any("error" in next(iter(i.values())) for i in items):
            problems.append("'errors' does not say whether an item failed")
    return problems


class TestFakeConformsToSpec(ElasticsearchOutputTestCase, unittest.TestCase):
    """The real bot against the fake; every exchange checked against the excerpt."""

    def assertConforms(self, product="elasticsearch"):
        self.assertTrue(self.es.exchanges, "no exchange was recorded")
        problems = [f"{ex['method']} {ex['path']} -> {ex['status']}: {p}"
                    for ex in self.es.exchanges for p in check_exchange(product, ex)]
        self.assertEqual(problems, [])

    def apis(self, product="elasticsearch"):
        return [(match_endpoint(product, ex["method"], ex["path"])[0], ex["status"]) for ex in self.es.exchanges]

    def test_success_template_and_lifecycle_policy(self):
        self.run_es([ev(0), ev(1, source__geolocation__latitude=48.2, source__geolocation__longitude=16.37),
                     ev(2, sharing__retention_days=365)])
        self.assertConforms()
        self.assertEqual(self.apis(), [("ilm.put_lifecycle", 200), ("indices.put_index_template", 200),
                                       ("ilm.put_lifecycle", 200), ("indices.put_index_template", 200),
                                       ("bulk", 200)])
        bulk = self.es.exchanges[-1]
        self.assertEqual([next(iter(i)) for i in bulk["response"]["items"]], ["index"] * 3)
        self.assertEqual([next(iter(i.values()))["status"] for i in bulk["response"]["items"]], [201] * 3)
        self.assertFalse(bulk["response"]["errors"])

    def test_partial_failure_mapping_error(self):
        dumped = self.run_with_one_mapping_error()
        self.assertConforms()
        bulk = self.es.exchanges[-1]["response"]
        self.assertTrue(bulk["errors"])
        failed = bulk["items"][1]["index"]
        self.assertEqual(failed["status"], 400)
        self.assertEqual(failed["error"]["type"], "document_parsing_exception")
        self.assertIn("failed to parse field [source.geolocation.location]", failed["error"]["reason"])
        self.assertEqual([m["provenance.fingerprint"] for _, m in dumped], [f"{1:064x}"])
        self.assertEqual(sorted(self.es.all_docs()), [f"{0:064x}", f"{2:064x}"])

    def test_per_document_429(self):
        self.es.item_failures[f"{1:064x}"] = [429]
        self.run_es([ev(0), ev(1)])
        self.assertConforms()
        bulks = [ex["response"] for ex in self.es.exchanges if ex["path"].endswith("/_bulk")]
        throttled = bulks[0]["items"][1]["index"]
        self.assertEqual((throttled["status"], throttled["error"]["type"]), (429, "es_rejected_execution_exception"))
        self.assertEqual(len(bulks[1]["items"]), 1)       # only the throttled document again
        self.assertEqual(len(self.es.all_docs()), 2)

    def test_whole_request_429(self):
        self.es.bulk_failures = [429]
        self.run_es([ev(0), ev(1)])
        self.assertConforms()
        statuses = [ex["status"] for ex in self.es.exchanges if ex["path"].endswith("/_bulk")]
        self.assertEqual(statuses, [429, 200])
        rejected = next(ex["response"] for ex in self.es.exchanges if ex["status"] == 429)
        self.assertEqual(rejected["error"]["type"], "es_rejected_execution_exception")
        self.assertEqual(len(self.es.all_docs()), 2)

    def test_opensearch_ism_policy_and_info(self):
        self.es.stop()
        self.es = FakeElasticsearch("opensearch2").start()
        self.run_es([ev(0)], server_flavour="opensearch2")
        self.run_es([ev(1)], server_flavour="opensearch2")     # restart: the policy exists (409)
        self.assertConforms("opensearch")
        apis = self.apis("opensearch")
        self.assertEqual(apis[:4], [("info", 200), ("ism.put_policy", 201), ("indices.put_index_template", 200),
                                    ("bulk", 200)])
        self.assertIn(("ism.put_policy", 409), apis)
        created = next(ex["response"] for ex in self.es.exchanges if ex["status"] == 201)
        self.assertIn("states", created["policy"]["policy"])     # PutPolicyResponse wraps PolicyEnvelope


@pytest.mark.parametrize("flavour", ["elasticsearch9", "elasticsearch8"])
def test_info_endpoint(flavour):
    from intelmq_crossborder.datalake import elastic
    with FakeElasticsearch(flavour) as es:
        client = elastic.make_client([es.url], flavour)
        info = client.info()
        assert info["version"]["number"].startswith(flavour[-1])
        assert es.exchanges[-1]["method"] == "GET" and es.exchanges[-1]["path"] == "/"
        assert [p for ex in es.exchanges for p in check_exchange("elasticsearch", ex)] == []
        assert schema_error("RootNodeInfoResponse", info.body) is None
        accept = es.exchanges[-1]["headers"]["accept"]
        assert f"compatible-with={flavour[-1]}" in accept


def test_refused_connection_is_a_connection_error():
    """No server on the port: the official client raises ConnectionError (the bot journals, see its tests)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = elasticsearch.Elasticsearch(f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(elasticsearch.ConnectionError):
        client.info()


def test_error_answers_for_unknown_template_and_media_type():
    with FakeElasticsearch() as es:
        client = elasticsearch.Elasticsearch(es.url)
        with pytest.raises(elasticsearch.NotFoundError):
            client.indices.get_index_template(name="nope")
        with pytest.raises(elasticsearch.BadRequestError):
            client.perform_request("GET", "/", headers={
                "accept": "application/vnd.elasticsearch+json; compatible-with=6"})
    errors = [ex for ex in es.exchanges if ex["status"] >= 400]
    assert [ex["status"] for ex in errors] == [404, 400]
    for ex in errors:
        assert schema_error("ErrorResponseBase", ex["response"]) is None, ex


# --- the checker itself must reject wrong shapes -----------------------------------------------

GOOD_ITEM = {"index": {"_index": "i", "_id": "1", "_version": 1, "result": "created", "status": 201,
                       "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1}}
BAD_ITEM = {"index": {"_index": "i", "_id": "2", "status": 400,
                      "error": {"type": "document_parsing_exception", "reason": "failed to parse"}}}
BULK_SPEC = ENDPOINTS["elasticsearch"]["bulk"]
OPS = [("index", {"_index": "i", "_id": "1"}), ("index", {"_index": "i", "_id": "2"})]


def test_checker_accepts_a_correct_bulk_answer():
    assert check_answer(BULK_SPEC, 200, {"took": 3, "errors": True, "items": [GOOD_ITEM, BAD_ITEM]}, OPS) == []


@pytest.mark.parametrize("body, expected", [
    ({"errors": True, "items": [GOOD_ITEM, BAD_ITEM]}, "'took' is a required property"),
    ({"took": 3, "errors": False, "items": [GOOD_ITEM, BAD_ITEM]}, "'errors' does not say"),
    ({"took": 3, "errors": True, "items": [GOOD_ITEM]}, "1 items for 2 operations"),
    ({"took": 3, "errors": True, "items": [GOOD_ITEM, {"index": {"_index": "i", "_id": "2",
                                                                  "error": {"type": "x"}}}]},
     "'status' is a required property"),
    ({"took": 3, "errors": True, "items": [GOOD_ITEM, {"index": {"_index": "i", "_id": "2", "status": 400,
                                                                  "error": {"reason": "no type"}}}]},
     "'type' is a required property"),
    ({"took": 3, "errors": True, "items": [GOOD_ITEM, {"upsert": BAD_ITEM["index"]}]}, "upsert"),
    ({"took": 3, "errors": False, "items": [GOOD_ITEM, {"index": {**GOOD_ITEM["index"], "_id": "2",
                                                                   "status": "201"}}]}, "is not of type 'integer'"),
    ({"took": 3, "errors": True, "items": [GOOD_ITEM, {"index": {**BAD_ITEM["index"], "status": 201}}]},
     "status 201 with an error"),
    ({"took": 3, "errors": False, "items": [GOOD_ITEM, {"index": {**GOOD_ITEM["index"], "_id": "9"}}]},
     "answers _id '9' for '2'"),
    ({"took": 3, "errors": False, "items": [GOOD_ITEM, {"index": {**GOOD_ITEM["index"], "_id": "2",
                                                                   "invented": 1}}]},
     "Additional properties are not allowed"),
])
def test_checker_rejects_wrong_bulk_answers(body, expected):
    problems = check_answer(BULK_SPEC, 200, body, OPS)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("status, body, expected", [
    (429, {"error": {"reason": "busy"}, "status": 429}, "error: {'reason': 'busy'} is not valid"),
    (429, {"error": {"type": "es_rejected_execution_exception"}}, "'status' is a required property"),
    (429, {"error": {"type": "x"}, "status": 400}, "error body says status 400"),
    (429, {"message": "busy"}, "'error' is a required property"),
])
def test_checker_rejects_wrong_error_answers(status, body, expected):
    problems = check_answer(BULK_SPEC, status, body, [])
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("body, expected", [
    (b'{"index":{"_index":"i","_id":"1"}}\n{"a":1}', "does not end with a newline"),
    (b'{"index":{"_index":"i","_id":"1"}}\n', "without a source line"),
    (b'{"index":{"_index":"i","_id":"1"},"create":{}}\n{"a":1}\n', "OperationContainer"),
    (b'{"upsert":{"_index":"i","_id":"1"}}\n{"a":1}\n', "OperationContainer"),
    (b'{"index":{"_index":"i","_id":"1","op_type":"x"}}\n{"a":1}\n', "Additional properties"),
    (b'{"index":{"_id":"1"}}\n{"a":1}\n', "names no _index"),
    (b'{"index":{"_index":"i"}}\n{"a":1}\n', "carries no _id"),
    (b'{"index":{"_index":"i","_id":"1"}}\n{"index":{"_index":"i","_id":"2"}}\n', "an action line where"),
])
def test_checker_rejects_wrong_bulk_requests(body, expected):
    problems, _ = check_bulk_body(body, None)
    assert any(expected in p for p in problems), problems


def test_checker_rejects_wrong_endpoints_and_info():
    with pytest.raises(AssertionError):
        match_endpoint("elasticsearch", "GET", "/_bulk")
    with pytest.raises(AssertionError):
        match_endpoint("elasticsearch", "PUT", "/_plugins/_ism/policies/p")
    assert match_endpoint("elasticsearch", "PUT", "/idx/_bulk") == ("bulk", {"index": "idx"})
    info = FakeElasticsearch("elasticsearch9").info()
    assert schema_error("RootNodeInfoResponse", info) is None
    del info["version"]["build_flavor"]
    assert "'build_flavor' is a required property" in schema_error("RootNodeInfoResponse", info)
    assert schema_error("OpenSearchInfoResponse", FakeElasticsearch("opensearch2").info()) is None
    assert "acknowledged" in schema_error("AcknowledgedResponseBase", {"ok": True})
    assert schema_error("IndicesPutIndexTemplateRequestBody", {"index_patterns": ["x-*"], "order": 1})


def test_opensearch_refuses_elasticsearch_media_type_as_reported():
    """The 406 answer has the shape users report from real OpenSearch clusters (string ``error``)."""
    with FakeElasticsearch("opensearch2") as es:
        client = elasticsearch.Elasticsearch(es.url)
        with pytest.raises(elasticsearch.ApiError) as caught:
            client.indices.put_index_template(name="t", index_patterns=["t-*"])
        assert caught.value.meta.status == 406
    ex = es.exchanges[-1]
    assert ex["response"] == {"error": f"Content-Type header [{ex['headers']['content-type']}] is not supported",
                              "status": 406}
    assert check_exchange("opensearch", ex) == []
