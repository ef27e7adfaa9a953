"""The fake MISP server (intelmq_crossborder/testing/fake_misp.py) against MISP's OpenAPI spec.

The MISP collector and output bots run against the fake (through PyMISP, as in production);
every request they send and every answer the fake gives is then checked against the spec
subset in tests/fixtures/misp/openapi/ (MISP/MISP app/webroot/doc/openapi.yaml):

- the request body against the operation's ``requestBody`` schema, where the spec has one;
- the answer against the schema of the operation's response for that status (``default``
  when the status is not listed), and, for 2xx answers, that its top-level keys are keys the
  spec declares (so a wrapper the spec does not have, such as ``{"Sighting": {...}}``, fails).

OpenAPI 3.0 schemas are turned into JSON Schema (2020-12): ``$ref`` to ``#/$defs``,
``nullable`` to a type union, ``format: int32/int64`` on strings checked as decimal digits,
``uuid``/``email`` formats checked. The differences between the spec and what PyMISP (or
MISP itself) does are listed in DIFFERENCES below and in docs/bots/misp.md ("Testing against
the spec"); anything else fails the test.
"""
import copy
import json
import re
import shutil
import tempfile
import unittest
import uuid as _uuid
from pathlib import Path

import jsonschema
import requests
import yaml

from tests.botcase import CrossBorderBotTestCase
from intelmq_crossborder.testing.fake_misp import FakeMISP

from intelmq_crossborder.bots.collectors.misp.collector import CrossBorderMISPCollectorBot
from intelmq_crossborder.bots.outputs.misp.output import CrossBorderMISPOutputBot

FIX = Path(__file__).resolve().parent / "fixtures" / "misp"
SPEC = yaml.safe_load((FIX / "openapi" / "misp-openapi-subset.yaml").read_text())
AGREEMENT = str(FIX / "agreements" / "peer-hub-de.yaml")
KEY = "spec-Key-0123456789abcdefghijklmnopqrstuvwxyz"
SG_UUID = "5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10"

# Where the spec, PyMISP and MISP differ (each entry is explained in docs/bots/misp.md).
DIFFERENCES = {
    # PyMISP's search() sends its flags (withAttachments, metadata, includeContext, headerless,
    # sgReferenceOnly, enforceWarninglist) as 0/1, the spec types them boolean; MISP reads both.
    # Requests are checked with "boolean or 0/1"; answers strictly.
    "request-01-booleans": True,
    # PyMISP edits with POST, the spec says PUT; MISP's controllers take both, so does the fake.
    "method": {("POST", "/events/edit/{eventId}"): "put", ("POST", "/attributes/edit/{attributeId}"): "put"},
    # first_seen/last_seen: the spec says an int64 micro-timestamp string, PyMISP sends and MISP
    # answers ISO 8601 (e.g. "2019-06-20T18:38:05.000000+00:00" in the real ESET export in
    # tests/fixtures/misp/eset). The format is not checked for NullableMicroTimestamp.
    "micro-timestamp-iso": ("NullableMicroTimestamp",),
    # getVersion: MISP >= 2.4.146 adds pymisp_recommended_version (PyMISP reads it); the spec
    # is 2.4.144.
    "extra-top-level": {"/servers/getVersion": {"pymisp_recommended_version"}},
    # PyMISP calls these when it connects; they are not in the spec (PyMISP defines the shape).
    "not-in-spec": {("GET", "/users/view/me")},
}


# --- OpenAPI 3.0 -> JSON Schema ----------------------------------------------------------

def _convert(node, lenient_01: bool, name: str = ""):
    if isinstance(node, list):
        return [_convert(n, lenient_01) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("example", "nullable", "description", "default"):
            continue
        if key == "$ref":
            out["$ref"] = value.replace("#/components/schemas/", "#/$defs/")
        elif key == "properties":
            out["properties"] = {k: _convert(v, lenient_01) for k, v in value.items()}
        else:
            out[key] = _convert(value, lenient_01)
    if name in DIFFERENCES["micro-timestamp-iso"]:
        out.pop("format", None)
    if node.get("nullable"):
        if "$ref" in out:
            out = {"anyOf": [out, {"type": "null"}]}
        elif "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = out["enum"] + [None]
    if lenient_01 and out.get("type") in ("boolean", ["boolean", "null"]):
        out = {"anyOf": [out, {"enum": [0, 1]}]}
    return out


def json_schema(schema: dict, lenient_01: bool = False) -> dict:
    defs = {name: _convert(s, lenient_01, name) for name, s in SPEC["components"]["schemas"].items()}
    root = _convert(schema, lenient_01)
    root["$defs"] = defs
    return root


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("int32")
@FORMATS.checks("int64")
def _numeric_string(instance):
    return not isinstance(instance, str) or re.fullmatch(r"-?\d+", instance) is not None


def _component(ref_holder: dict, kind: str) -> dict:
    while "$ref" in ref_holder and ref_holder["$ref"].startswith(f"#/components/{kind}/"):
        ref_holder = SPEC["components"][kind][ref_holder["$ref"].rsplit("/", 1)[1]]
    return ref_holder


def _declared_keys(schema: dict):
    """Top-level property names a (spec) schema declares; None when it declares none."""
    schema = dict(schema)
    if "$ref" in schema:
        return _declared_keys(SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    keys = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        keys |= _declared_keys(part) or set()
    return keys or None


def errors(schema: dict, instance, lenient_01=False) -> list:
    validator = jsonschema.Draft202012Validator(json_schema(schema, lenient_01), format_checker=FORMATS)
    return sorted(f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
                  for e in validator.iter_errors(instance))


# --- matching a request to an operation ----------------------------------------------------

TEMPLATES = sorted(SPEC["paths"], key=lambda p: -len(p))


def operation_of(method: str, path: str):
    """(template, spec method, operation) of a request, or None when the spec has no such path."""
    path = path[:-5] if path.endswith(".json") else path
    # CakePHP named parameters (PyMISP's events/edit/<id>/metadata:1) are not path segments
    path = "/".join(seg for seg in path.split("/") if ":" not in seg)
    for template in TEMPLATES:
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            spec_method = DIFFERENCES["method"].get((method, template), method.lower())
            if method == "HEAD":
                spec_method = "get"
            op = SPEC["paths"][template].get(spec_method)
            return (template, spec_method, op) if op else None
    return None


def check_exchange(method, path, body, status, answer) -> list:
    found = operation_of(method, path)
    if found is None:
        return [] if (method, path) in DIFFERENCES["not-in-spec"] else [f"{method} {path}: not in the spec"]
    template, _, op = found
    problems = []
    if "requestBody" in op and body is not None:
        schema = _component(op["requestBody"], "requestBodies")["content"]["application/json"]["schema"]
        problems += [f"{method} {path} request {e}" for e in errors(schema, body, lenient_01=True)]
    responses = op["responses"]
    response = _component(responses.get(str(status)) or responses["default"], "responses")
    if method != "HEAD":
        schema = response["content"]["application/json"]["schema"]
        problems += [f"{method} {path} -> {status} {e}" for e in errors(schema, answer)]
        declared = _declared_keys(schema)
        if 200 <= status < 300 and declared is not None and isinstance(answer, dict):
            extra = set(answer) - declared - DIFFERENCES["extra-top-level"].get(template, set())
            if extra:
                problems.append(f"{method} {path} -> {status}: keys not in the spec: {sorted(extra)}")
    return problems


def check_all(server: FakeMISP) -> set:
    """Check every exchange of the server; returns the (method, template) pairs seen."""
    problems, seen = [], set()
    for method, path, body, status, answer in server.exchanges:
        problems += check_exchange(method, path, body, status, answer)
        found = operation_of(method, path)
        if found:
            seen.add((found[1], found[0], status))
    if problems:
        raise AssertionError("the fake MISP differs from MISP's OpenAPI spec:\n" + "\n".join(problems[:40]))
    return seen


def ev(ip="192.0.2.1", tlp="GREEN", when="2024-05-01T09:00:00+00:00", **fields):
    out = {"__type": "Event", "feed.name": "member-misp", "classification.type": "c2-server",
           "classification.taxonomy": "malicious-code", "source.ip": ip, "sharing.tlp": tlp,
           "time.observation": "2024-05-01T10:00:00+00:00", "time.source": when}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


class TestSpecChecker(unittest.TestCase):
    """The checker itself must fail on what the spec does not allow."""

    def test_subset_references_resolve(self):
        text = (FIX / "openapi" / "misp-openapi-subset.yaml").read_text()
        for ref in set(re.findall(r'\$ref: "#/([^"]+)"', text)):
            node = SPEC
            for part in ref.split("/"):
                self.assertIn(part, node, ref)
                node = node[part]

    def test_wrong_types_and_wrappers_are_caught(self):
        good = {"Event": {"id": "1", "uuid": str(_uuid.uuid4()), "distribution": "1", "info": "x",
                          "published": False, "Org": {"id": "1", "name": "o"}, "Orgc": {"id": "1", "name": "o"},
                          "Attribute": [{"id": "5", "event_id": "1", "type": "ip-src", "value": "192.0.2.1",
                                         "to_ids": True, "distribution": "5", "sharing_group_id": "0",
                                         "first_seen": "2024-05-01T09:00:00+00:00"}]}}
        self.assertEqual(check_exchange("GET", "/events/view/1", None, 200, good), [])
        bad = copy.deepcopy(good)
        bad["Event"]["distribution"] = 1                         # PyMISP's type, not MISP's answer
        bad["Event"]["Attribute"][0]["to_ids"] = "1"
        bad["Event"]["uuid"] = "not-a-uuid"
        del bad["Event"]["Orgc"]
        found = "\n".join(check_exchange("GET", "/events/view/1", None, 200, bad))
        for expected in ("Event/distribution: 1 is not of type 'string'", "Event/Attribute/0/to_ids",
                         "'not-a-uuid' is not a 'uuid'", "'Orgc' is a required property"):
            self.assertIn(expected, found)
        sighting = {"id": "1", "attribute_id": "5", "event_id": "1", "date_sighting": "1714556700"}
        self.assertEqual(check_exchange("POST", "/sightings/add/5", {}, 200, sighting), [])
        self.assertIn("keys not in the spec: ['Sighting']",
                      " ".join(check_exchange("POST", "/sightings/add/5", {}, 200, {"Sighting": sighting})))
        self.assertIn("'name' is a required property",
                      " ".join(check_exchange("GET", "/events/view/9", None, 404, {"message": "Invalid event"})))
        self.assertIn("request distribution: '7' is not one of",
                      " ".join(check_exchange("POST", "/events/add", {"info": "x", "distribution": "7"}, 200, good)))
        self.assertIn("request distribution: 4 is not of type 'string'",
                      " ".join(check_exchange("POST", "/events/add", {"info": "x", "distribution": 4}, 200, good)))
        self.assertEqual(check_exchange("POST", "/events/add", {"info": "x", "distribution": "4",
                                                                "sharing_group_id": "7"}, 200, good), [])
        self.assertEqual(check_exchange("POST", "/events/restSearch", {"metadata": 0, "returnFormat": "json"},
                                        200, {"response": []}), [])
        self.assertIn("request metadata: 2 is not valid",
                      " ".join(check_exchange("POST", "/events/restSearch", {"metadata": 2}, 200, {"response": []})))
        self.assertIn("not in the spec", " ".join(check_exchange("GET", "/events/nothing/1", None, 200, {})))

    def test_fake_answers_direct_requests_as_the_spec_says(self):
        with FakeMISP(key=KEY) as srv:
            headers = {"Authorization": KEY, "Accept": "application/json"}
            stored = srv.store(json.loads((FIX / "pymisp" / "sighting_1.json").read_text())["Event"])
            attr = stored["Attribute"][0]
            new_attr = {"type": "domain", "value": "spec.example", "category": "Network activity",
                        "to_ids": True, "distribution": "5"}
            calls = [("GET", "servers/getVersion", None), ("GET", "attributes/describeTypes", None),
                     ("GET", f"events/view/{stored['id']}", None), ("GET", f"events/{'view'}/{_uuid.uuid4()}", None),
                     ("PUT", f"events/edit/{stored['uuid']}", {"info": "edited with PUT", "distribution": "3"}),
                     ("POST", f"attributes/add/{stored['id']}", new_attr),
                     ("PUT", f"attributes/edit/{attr['uuid']}", {"comment": "edited with PUT"}),
                     ("PUT", f"attributes/edit/{_uuid.uuid4()}", {"comment": "x"}),
                     ("POST", f"sightings/add/{attr['id']}", {"source": "spec", "type": "0"}),
                     ("POST", f"events/publish/{stored['uuid']}", None),
                     ("GET", f"sharing_groups/view/{SG_UUID}", None),
                     ("POST", "events/restSearch", {"returnFormat": "json", "limit": 1, "page": 1})]
            for method, path, body in calls:
                r = requests.request(method, srv.url + path, json=body, headers=headers, timeout=10)
                self.assertEqual(r.headers["Content-Type"], "application/json")
            r = requests.get(srv.url + "events/view/1", headers={"Authorization": "wrong"}, timeout=10)
            self.assertEqual(r.status_code, 403)
            seen = check_all(srv)
        self.assertTrue({("put", "/events/edit/{eventId}", 200), ("put", "/attributes/edit/{attributeId}", 200),
                         ("put", "/attributes/edit/{attributeId}", 404), ("get", "/events/view/{eventId}", 404),
                         ("get", "/events/view/{eventId}", 403)} <= seen, seen)
        self.assertEqual(srv.events[stored["uuid"]]["info"], "edited with PUT")


class TestOutputBotRequestsAgainstSpec(CrossBorderBotTestCase, unittest.TestCase):
    """The MISP output bot's PyMISP calls and the fake's answers, checked against the spec."""

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPOutputBot
        cls.sysconfig = {"misp_url": "http://127.0.0.1:9/", "misp_api_token": KEY, "agreement_file": AGREEMENT,
                         "retry_backoff": 0.001}

    def push(self, srv, events, **params):
        self.input_message = events
        params.setdefault("misp_url", srv.url)
        allowed = {k: params.pop(k) for k in ("allowed_error_count", "allowed_warning_count") if k in params}
        self.run_bot(iterations=len(events), parameters=params, **allowed)

    def test_every_request_and_answer_of_an_exchange(self):
        sg = {"distribution": 4, "sharing_group": SG_UUID, "publish": True}
        with FakeMISP(key=KEY) as srv:
            self.push(srv, [ev()], **sg)                                     # view 404, add, publish
            self.push(srv, [ev(comment="changed")], **sg)                    # attributes/edit
            self.push(srv, [ev("192.0.2.2", tlp="AMBER")], **sg)             # attributes/add + events/edit
            self.push(srv, [ev(when="2024-05-01T09:45:00+00:00")], **sg)    # sightings/add
            self.push(srv, [ev()], distribution=1)                           # events/edit (distribution)
            srv.fail("/events/add", 504, times=1, after=True)                # lost answer -> 403 "already exists"
            self.push(srv, [ev("198.51.100.7", time__observation="2024-05-03T00:00:00+00:00")],
                      allowed_warning_count=1)
            srv.fail("/attributes/add/", 503, times=1)                       # 5xx answer
            self.push(srv, [ev("192.0.2.44")], allowed_warning_count=1)
            seen = check_all(srv)
            self.assertEqual(len(srv.events), 2)
        expected = {("get", "/servers/getVersion", 200), ("get", "/attributes/describeTypes", 200),
                    ("get", "/events/view/{eventId}", 404), ("get", "/events/view/{eventId}", 200),
                    ("post", "/events/add", 200), ("post", "/events/add", 403), ("post", "/events/add", 504),
                    ("put", "/events/edit/{eventId}", 200), ("post", "/events/publish/{eventId}", 200),
                    ("post", "/attributes/add/{eventId}", 200), ("post", "/attributes/add/{eventId}", 503),
                    ("put", "/attributes/edit/{attributeId}", 200), ("post", "/sightings/add/{attributeId}", 200),
                    ("get", "/sharing_groups/view/{sharingGroupId}", 200)}
        self.assertEqual(expected - seen, set())


class TestCollectorBotRequestsAgainstSpec(CrossBorderBotTestCase, unittest.TestCase):
    """The MISP collector's restSearch requests and the fake's answers, checked against the spec."""

    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderMISPCollectorBot
        cls.sysconfig = {"misp_url": "http://127.0.0.1:9/", "misp_api_token": KEY, "retry_backoff": 0.001,
                         "name": "member-misp"}

    def test_paged_incremental_search(self):
        tmp = Path(tempfile.mkdtemp(prefix="misp-spec-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        with FakeMISP(key=KEY) as srv:
            for i, name in enumerate(("pymisp/sighting_1.json", "pymisp/galaxy_1.json",
                                      "pymisp/mainly_objects_1.json", "misp-core/event-regin.json",
                                      "eset/endor.json")):
                data = json.loads((FIX / name).read_text())
                event = data["response"][0]["Event"] if "response" in data else data["Event"]
                event["timestamp"] = str(1_700_000_000 + i)
                event["Tag"] = event.get("Tag", []) + [{"name": "hub:share"}]
                srv.store(event)
            params = {"misp_url": srv.url, "state_file": str(tmp / "state.json"), "page_size": 2,
                      "search_tags": ["hub:share"], "published_only": True, "initial_since": "1699999999"}
            self.run_bot(parameters=params)
            self.assertEqual(len(self.get_output_queue()), 5)
            self.run_bot(parameters=params)                                   # incremental: timestamp filter
            self.assertEqual(len(self.get_output_queue()), 0)
            bodies = [r[2] for r in srv.requests if r[1] == "/events/restSearch"]
            self.assertTrue(all(b["returnFormat"] == "json" and b["limit"] == 2 for b in bodies))
            self.assertIn("timestamp", bodies[-1])
            seen = check_all(srv)
        self.assertIn(("post", "/events/restSearch", 200), seen)


if __name__ == "__main__":
    unittest.main()
