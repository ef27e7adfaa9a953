"""A small local MISP server for tests: the REST endpoints PyMISP calls, in MISP's shapes.

Endpoints (request/response shapes as MISP's OpenAPI spec and PyMISP define them):

- ``GET /servers/getVersion`` -> ``{"version", "pymisp_recommended_version", "perm_sync", ...}``
- ``GET /users/view/me`` -> ``{"User": {...}, "Role": {...}, "UserSetting": {}, "Organisation": {...}}``
- ``GET /attributes/describeTypes.json`` -> ``{"result": describe_types}``
- ``POST /events/restSearch`` (JSON body: tags, org, published, timestamp, page, limit,
  returnFormat) -> ``{"response": [{"Event": {...}}, ...]}``
- ``GET|HEAD /events/view/<id|uuid>`` -> ``{"Event": {...}}`` or 404 ``{"name", "message", "url"}``
- ``POST /events/add`` -> ``{"Event": {...}}``; 403 when the UUID exists
- ``POST /events/edit/<id|uuid>`` -> ``{"Event": {...}}`` (attributes merged by UUID, tags replaced)
- ``POST /attributes/add/<event id|uuid>`` -> ``{"Attribute": {...}}``; 403 for a duplicate
- ``POST /attributes/edit/<attribute id|uuid>`` -> ``{"Attribute": {...}}``
- ``POST /sightings/add/<attribute id|uuid>`` -> ``{"Sighting": {...}}``
- ``GET /sharing_groups/view/<id|uuid>`` -> ``{"SharingGroup": {...}}``

``server.fail(path_prefix, status, body, times)`` makes the next ``times``
requests under a path answer ``status``.  ``server.requests`` records
``(method, path, body)``; ``server.writes()`` counts the state-changing ones.
"""
from __future__ import annotations

import copy
import itertools
import json
import threading
import time
import uuid as _uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pymisp.abstract import describe_types
from pymisp import __version__ as PYMISP_VERSION

ORG = {"id": "1", "name": "Peer Hub", "uuid": "a1b2c3d4-0000-4000-8000-000000000001", "local": True}


class FakeMISP:
    def __init__(self, key: str = "test-api-key-0123456789"):
        self.key = key
        self.events: dict = {}          # uuid -> event dict (without wrapper)
        self.sharing_groups = {"7": {"id": "7", "uuid": "5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10",
                                     "name": "Cross-border hub members"}}
        self.requests: list = []
        self.failures: list = []        # [prefix, status, body, remaining]
        self._ids = itertools.count(1)
        self._attr_ids = itertools.count(1000)
        self._clock = itertools.count(1_700_000_000)
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"misp": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test helpers --
    def fail(self, prefix: str, status: int, body=None, times: int = 1, after: bool = False):
        """The next ``times`` requests under ``prefix`` answer ``status``; with ``after`` the
        request is carried out first (a write that succeeded but whose answer was lost)."""
        self.failures.append([prefix, status, body, times, after])

    def writes(self, prefix: str = "") -> list:
        return [r for r in self.requests if r[0] == "POST" and not r[1].endswith("restSearch")
                and r[1].startswith(prefix or "/")]

    def store(self, event: dict, published: bool = True) -> dict:
        """Put an event (as a MISP export has it) on the server, as another org created it."""
        ev = copy.deepcopy(event)
        ev["id"] = str(next(self._ids))
        ev.setdefault("timestamp", str(next(self._clock)))
        ev["published"] = published
        self.events[ev["uuid"]] = ev
        return ev

    def find(self, ident: str):
        if ident in self.events:
            return self.events[ident]
        for ev in self.events.values():
            if ev.get("id") == ident:
                return ev
        return None

    # -- endpoint logic --
    def handle(self, method: str, path: str, body):
        for failure in self.failures:
            if path.startswith(failure[0]) and failure[3] > 0:
                failure[3] -= 1
                if failure[4]:
                    self._handle(method, path, body)
                return failure[1], failure[2] if failure[2] is not None else {
                    "name": "Internal error", "message": "Internal error", "url": path}
        return self._handle(method, path, body)

    def _handle(self, method: str, path: str, body):
        parts = path.strip("/").split("/")
        if path == "/servers/getVersion":
            return 200, {"version": "2.5.10", "pymisp_recommended_version": PYMISP_VERSION,
                         "perm_sync": True, "perm_sighting": True, "perm_galaxy_editor": True,
                         "request_encoding": ["gzip"], "filter_sightings": True}
        if path == "/users/view/me":
            return 200, {"User": {"id": "1", "email": "admin@peer.example", "org_id": "1", "role_id": "1"},
                         "Role": {"id": "1", "name": "admin", "perm_add": True, "perm_sync": True},
                         "UserSetting": {}, "Organisation": ORG}
        if path == "/attributes/describeTypes.json":
            return 200, {"result": describe_types}
        if path == "/events/restSearch" and method == "POST":
            return 200, {"response": [{"Event": e} for e in self.search(body or {})]}
        if parts[:2] == ["events", "view"] and len(parts) >= 3:
            ev = self.find(parts[2])
            if ev is None:
                return 404, {"name": "Invalid event", "message": "Invalid event", "url": path}
            return 200, {"Event": ev}
        if path == "/events/add" and method == "POST":
            return self.add(body)
        if parts[:2] == ["events", "edit"] and len(parts) >= 3 and method == "POST":
            return self.edit(parts[2], body)
        if parts[:2] == ["attributes", "add"] and len(parts) >= 3 and method == "POST":
            return self.add_attribute(parts[2], body or {})
        if parts[:2] == ["attributes", "edit"] and len(parts) >= 3 and method == "POST":
            return self.edit_attribute(parts[2], body or {})
        if parts[:2] == ["sightings", "add"] and method == "POST":
            return self.sighting(parts[2] if len(parts) > 2 else None, body or {})
        if parts[:2] == ["sharing_groups", "view"] and len(parts) >= 3:
            for sg in self.sharing_groups.values():
                if parts[2] in (sg["id"], sg["uuid"]):
                    return 200, {"SharingGroup": sg, "Organisation": ORG}
            return 404, {"name": "Invalid sharing group", "message": "Invalid sharing group", "url": path}
        return 404, {"name": "Not Found", "message": "Not Found", "url": path}

    def search(self, query: dict) -> list:
        def tags_of(ev):
            return {t["name"] for t in ev.get("Tag", [])}

        events = sorted(self.events.values(), key=lambda e: int(e["id"]))
        tags = query.get("tags")
        if tags:
            tags = [tags] if isinstance(tags, str) else tags
            wanted = [t for t in tags if not t.startswith("!")]
            unwanted = [t[1:] for t in tags if t.startswith("!")]
            events = [e for e in events if (not wanted or tags_of(e) & set(wanted))
                      and not tags_of(e) & set(unwanted)]
        org = query.get("org")
        if org:
            orgs = [org] if isinstance(org, (str, int)) else org
            orgs = {str(o) for o in orgs}
            events = [e for e in events if {str(e.get("Orgc", {}).get(k)) for k in ("id", "name", "uuid")} & orgs]
        if query.get("published") is not None:
            want = query["published"] in (True, 1, "1", "true")
            events = [e for e in events if bool(e.get("published")) == want]
        if query.get("timestamp") is not None:
            since = int(query["timestamp"])
            events = [e for e in events if int(e["timestamp"]) >= since]
        limit, page = query.get("limit"), query.get("page")
        if limit:
            start = (int(page or 1) - 1) * int(limit)
            events = events[start:start + int(limit)]
        return [copy.deepcopy(e) for e in events]

    def _normalise(self, ev: dict) -> dict:
        ev.setdefault("Attribute", [])
        ev.setdefault("Tag", [])
        ev["Orgc"] = ev.get("Orgc") or ORG
        ev["Org"] = ORG
        for a in ev["Attribute"]:
            a.setdefault("id", str(next(self._attr_ids)))
            a.setdefault("uuid", str(_uuid.uuid4()))
            a["event_id"] = ev["id"]
            a.setdefault("Sighting", [])
            a.setdefault("Tag", [])
            a["timestamp"] = str(next(self._clock))
        sg = ev.get("sharing_group_id")
        if str(ev.get("distribution")) == "4":
            if str(sg) not in self.sharing_groups:
                return None
            ev["SharingGroup"] = self.sharing_groups[str(sg)]
        else:
            ev["sharing_group_id"] = "0"
            ev.pop("SharingGroup", None)
        ev["timestamp"] = str(next(self._clock))
        return ev

    def add(self, body):
        ev = copy.deepcopy(body.get("Event", body) if isinstance(body, dict) else {})
        if not ev.get("info"):
            return 403, {"name": "Could not add Event", "message": "Could not add Event",
                         "url": "/events/add", "errors": {"Event": {"info": ["Info cannot be empty."]}}}
        if ev.get("uuid") in self.events:
            return 403, {"name": "Event already exists, if you would like to edit it, use the url in the location field.",
                         "message": "Event already exists", "url": "/events/add",
                         "errors": {"uuid": ["An event with this uuid already exists."]}}
        ev.setdefault("uuid", str(_uuid.uuid4()))
        ev["id"] = str(next(self._ids))
        ev["published"] = False
        if self._normalise(ev) is None:
            return 403, {"name": "Invalid sharing group", "message": "Could not add Event",
                         "url": "/events/add", "errors": {"sharing_group_id": ["Invalid sharing group."]}}
        self.events[ev["uuid"]] = ev
        return 200, {"Event": ev}

    def edit(self, ident, body):
        cur = self.find(ident)
        if cur is None:
            return 404, {"name": "Invalid event", "message": "Invalid event", "url": f"/events/edit/{ident}"}
        new = copy.deepcopy(body.get("Event", body))
        merged = copy.deepcopy(cur)
        for key in ("info", "distribution", "sharing_group_id", "threat_level_id", "analysis", "date"):
            if key in new:
                merged[key] = new[key]
        if "Tag" in new:
            merged["Tag"] = new["Tag"]
        by_uuid = {a["uuid"]: a for a in merged["Attribute"]}
        for a in new.get("Attribute", []):
            old = by_uuid.get(a.get("uuid"))
            if old is None:
                a.pop("id", None)
                merged["Attribute"].append(a)
            else:
                for key in ("value", "category", "to_ids", "comment", "distribution", "Tag", "first_seen"):
                    if key in a:
                        old[key] = a[key]
        if self._normalise(merged) is None:
            return 403, {"name": "Invalid sharing group", "message": "Could not edit Event",
                         "url": f"/events/edit/{ident}", "errors": {"sharing_group_id": ["Invalid sharing group."]}}
        self.events[merged["uuid"]] = merged
        return 200, {"Event": merged}

    def add_attribute(self, event_ident, body):
        ev = self.find(event_ident)
        attr = copy.deepcopy(body.get("Attribute", body))
        if ev is None:
            return 404, {"name": "Invalid event", "message": "Invalid event", "url": f"/attributes/add/{event_ident}"}
        if any(a["uuid"] == attr.get("uuid") for a in ev["Attribute"]):
            return 403, {"name": "Could not add Attribute", "message": "Could not add Attribute",
                         "url": f"/attributes/add/{event_ident}",
                         "errors": {"value": ["A similar attribute already exists for this event."]}}
        attr.pop("id", None)
        ev["Attribute"].append(attr)
        self._normalise(ev)
        return 200, {"Attribute": attr}

    def edit_attribute(self, ident, body):
        new = body.get("Attribute", body)
        for ev in self.events.values():
            for a in ev["Attribute"]:
                if ident in (a["uuid"], a["id"]):
                    for key in ("value", "category", "to_ids", "comment", "distribution", "Tag", "first_seen"):
                        if key in new:
                            a[key] = copy.deepcopy(new[key])
                    self._normalise(ev)
                    return 200, {"Attribute": a}
        return 404, {"name": "Invalid attribute", "message": "Invalid attribute", "url": f"/attributes/edit/{ident}"}

    def sighting(self, ident, body):
        ident = ident or body.get("uuid") or body.get("id")
        for ev in self.events.values():
            for a in ev["Attribute"]:
                if ident in (a["uuid"], a["id"]):
                    s = {"id": str(next(self._attr_ids)), "attribute_id": a["id"], "event_id": ev["id"],
                         "org_id": "1", "date_sighting": str(body.get("timestamp") or int(time.time())),
                         "uuid": str(_uuid.uuid4()), "source": body.get("source", ""),
                         "type": str(body.get("type", "0")), "attribute_uuid": a["uuid"]}
                    a["Sighting"].append(s)
                    return 200, {"Sighting": s}
        return 404, {"name": "Invalid attribute", "message": "Invalid attribute", "url": "/sightings/add"}


class _Handler(BaseHTTPRequestHandler):
    misp: FakeMISP = None

    def log_message(self, *args):  # quiet
        pass

    def _serve(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        with self.misp.lock:
            self.misp.requests.append((method, path, body))
            if self.headers.get("Authorization") != self.misp.key:
                status, payload = 403, {"name": "Authentication failed. Please make sure you pass the API key "
                                                "of an API enabled user along in the Authorization header.",
                                        "message": "Authentication failed.", "url": path}
            else:
                status, payload = self.misp.handle(method, path, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_HEAD(self):
        self._serve("HEAD")
