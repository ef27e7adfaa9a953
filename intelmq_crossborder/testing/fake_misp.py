"""A small local MISP server for tests: the REST endpoints PyMISP calls, in MISP's shapes.

Request and response shapes follow MISP's OpenAPI spec (the subset in
``tests/fixtures/misp/openapi/misp-openapi-subset.yaml``; ``tests/test_fake_misp_openapi.py``
checks every endpoint below against it). Where PyMISP and the spec differ, the fake answers
as the spec says and accepts what PyMISP sends (see docs/bots/misp.md, "Testing against the
spec"). Values in responses have MISP's JSON types: ids, distribution, sharing_group_id,
threat_level_id, analysis and timestamps are strings, flags are booleans.

- ``GET /servers/getVersion`` -> ``{"version", "perm_sync", "perm_sighting", ...}``
- ``GET /users/view/me`` -> ``{"User": {...}, "Role": {...}, "UserSetting": {}, "Organisation": {...}}``
  (not in the spec; shape as PyMISP's ``get_user(expanded=True)`` reads it)
- ``GET /attributes/describeTypes`` -> ``{"sane_defaults", "types", "categories", "category_type_mappings"}``
- ``POST /events/restSearch`` (JSON body: tags, org, published, timestamp, page, limit,
  returnFormat) -> ``{"response": [{"Event": {...}}, ...]}``
- ``GET|HEAD /events/view/<id|uuid>`` -> ``{"Event": {...}}`` or 404 ``{"name", "message", "url"}``
- ``POST /events/add`` -> ``{"Event": {...}}``; 403 when the UUID exists
- ``PUT|POST /events/edit/<id|uuid>`` -> ``{"Event": {...}}`` (attributes merged by UUID, tags replaced)
- ``POST /events/publish/<id|uuid>`` -> ``{"name": "Publish", "message": "Job queued", "url", "id"}``
- ``POST /attributes/add/<event id|uuid>`` -> ``{"Attribute": {...}}``; 403 for a duplicate
- ``PUT|POST /attributes/edit/<attribute id|uuid>`` -> ``{"Attribute": {...}}``
- ``POST /sightings/add/<attribute id|uuid>`` -> the Sighting (``{"id", "attribute_id", ...}``)
- ``POST /attributes/delete/<attribute id|uuid>`` (body ``{"hard": 1}`` for a hard delete) and
  ``POST /events/delete/<event id|uuid>`` -> MISP's success answer (``{"saved", "success",
  "name", "message", "url"}``).  A soft delete marks the attribute ``deleted`` (it keeps its
  sightings; views and searches leave it out, as MISP does without ``deleted``); a hard delete
  removes it with its sightings.  ``POST /attributes/restore/<id|uuid>`` restores a soft-deleted
  attribute (404 for any other).  Not in the OpenAPI subset of tests/fixtures/misp/openapi.
- ``GET /sharing_groups/view/<id|uuid>`` -> ``{"SharingGroup": {...}, "Organisation": {...}, ...}``

A ``.json`` suffix on a path is accepted as MISP does. Adding or editing an attribute
unpublishes its event, an event edit keeps the ``published`` flag the request sends (PyMISP
sends the event's current one) and unpublishes it otherwise; ``events/publish`` publishes it.

``server.fail(path_prefix, status, body, times)`` makes the next ``times``
requests under a path answer ``status``.  ``server.requests`` records
``(method, path, body)``, ``server.exchanges`` ``(method, path, body, status, response)``;
``server.writes()`` lists the state-changing requests.
"""
from __future__ import annotations

import copy
import itertools
import json
import threading
import time
import uuid as _uuid
from http.server import BaseHTTPRequestHandler

from pymisp.abstract import describe_types
from pymisp import __version__ as PYMISP_VERSION

from intelmq_crossborder.testing.http import LocalHTTPServer

ORG = {"id": "1", "name": "Peer Hub", "uuid": "a1b2c3d4-0000-4000-8000-000000000001", "local": True}


class FakeMISP(LocalHTTPServer):
    def __init__(self, key: str = "test-api-key-0123456789"):
        super().__init__()
        self.key = key
        self.events: dict = {}          # uuid -> event dict (without wrapper)
        self.sharing_groups = {"7": {"id": "7", "uuid": "5d2e8a6f-1c3b-4f7e-9a11-3c9d8e2f4b10",
                                     "name": "Cross-border hub members"}}
        self.requests: list = []
        self.exchanges: list = []
        self.tag_ids: dict = {}         # tag name -> id, as MISP's tag table
        self.failures: list = []        # [prefix, status, body, remaining]
        self._ids = itertools.count(1)
        self._attr_ids = itertools.count(1000)
        self._clock = itertools.count(1_700_000_000)
        self.lock = threading.Lock()

    def handler_class(self) -> type:
        return type("Handler", (_Handler,), {"misp": self})

    @property
    def url(self) -> str:
        return self.base_url + "/"

    # -- test helpers --
    def fail(self, prefix: str, status: int, body=None, times: int = 1, after: bool = False):
        """The next ``times`` requests under ``prefix`` answer ``status``; with ``after`` the
        request is carried out first (a write that succeeded but whose answer was lost)."""
        self.failures.append([prefix, status, body, times, after])

    def writes(self, prefix: str = "") -> list:
        return [r for r in self.requests if r[0] in ("POST", "PUT") and not r[1].endswith("restSearch")
                and r[1].startswith(prefix or "/")]

    def store(self, event: dict, published: bool = True) -> dict:
        """Put an event (as a MISP export has it) on the server, as another org created it."""
        ev = copy.deepcopy(event)
        ev["id"] = str(next(self._ids))
        ev.setdefault("timestamp", str(next(self._clock)))
        ev["published"] = published
        ev.setdefault("Org", ORG)        # the owner org on this instance; MISP always answers with it
        for related in ev.get("RelatedEvent", []):
            # older exports (MISP's own tests/event.json) put Org/Orgc beside the related Event;
            # the spec (and MISP since) has them inside it
            for org in ("Org", "Orgc"):
                if org in related and isinstance(related.get("Event"), dict):
                    related["Event"].setdefault(org, related.pop(org))
        self.events[ev["uuid"]] = self._typed(ev)
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
        if path.endswith(".json"):
            path = path[:-len(".json")]
        parts = path.strip("/").split("/")
        writing = method in ("POST", "PUT")
        if path == "/servers/getVersion":
            return 200, {"version": "2.5.10", "pymisp_recommended_version": PYMISP_VERSION,
                         "perm_sync": True, "perm_sighting": True, "perm_galaxy_editor": True,
                         "request_encoding": ["gzip"]}
        if path == "/users/view/me":
            return 200, {"User": {"id": "1", "email": "admin@peer.example", "org_id": "1", "role_id": "1"},
                         "Role": {"id": "1", "name": "admin", "perm_add": True, "perm_sync": True},
                         "UserSetting": {}, "Organisation": ORG}
        if path == "/attributes/describeTypes":
            return 200, copy.deepcopy(describe_types)
        if path == "/events/restSearch" and method == "POST":
            return 200, {"response": [{"Event": self._out(e)} for e in self.search(body or {})]}
        if parts[:2] == ["events", "view"] and len(parts) >= 3:
            ev = self.find(parts[2])
            if ev is None:
                return 404, {"name": "Invalid event", "message": "Invalid event", "url": path}
            return 200, {"Event": self._out(ev)}
        if path == "/events/add" and method == "POST":
            return self.add(body)
        if parts[:2] == ["events", "edit"] and len(parts) >= 3 and writing:
            return self.edit(parts[2], body)
        if parts[:2] == ["events", "publish"] and len(parts) >= 3 and method == "POST":
            return self.publish(parts[2])
        if parts[:2] == ["attributes", "add"] and len(parts) >= 3 and method == "POST":
            return self.add_attribute(parts[2], body or {})
        if parts[:2] == ["attributes", "edit"] and len(parts) >= 3 and writing:
            return self.edit_attribute(parts[2], body or {})
        if parts[:2] == ["attributes", "delete"] and len(parts) >= 3 and method == "POST":
            return self.delete_attribute(parts[2], bool((body or {}).get("hard")) or parts[3:4] == ["1"])
        if parts[:2] == ["attributes", "restore"] and len(parts) >= 3 and method == "POST":
            return self.restore_attribute(parts[2])
        if parts[:2] == ["events", "delete"] and len(parts) >= 3 and method == "POST":
            return self.delete_event(parts[2])
        if parts[:2] == ["sightings", "add"] and method == "POST":
            return self.sighting(parts[2] if len(parts) > 2 else None, body or {})
        if parts[:2] == ["sharing_groups", "view"] and len(parts) >= 3:
            for sg in self.sharing_groups.values():
                if parts[2] in (sg["id"], sg["uuid"]):
                    return 200, {"SharingGroup": dict(sg, local=True, active=True, releasability="",
                                                      description="", org_count="1", org_id=ORG["id"],
                                                      organisation_uuid=ORG["uuid"], sync_user_id="1"),
                                 "Organisation": ORG,
                                 "SharingGroupOrg": [{"id": "1", "sharing_group_id": sg["id"], "org_id": ORG["id"],
                                                      "extend": True, "Organisation": {
                                                          k: ORG[k] for k in ("id", "name", "uuid")}}],
                                 "SharingGroupServer": [{"all_orgs": False, "server_id": "0",
                                                         "sharing_group_id": sg["id"],
                                                         "Server": {"id": "0", "name": "Local instance"}}],
                                 "editable": True, "deletable": True}
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

    # -- MISP's JSON types in answers --
    _STR_EVENT = ("id", "org_id", "orgc_id", "distribution", "sharing_group_id", "threat_level_id", "analysis",
                  "attribute_count", "timestamp", "publish_timestamp", "sighting_timestamp")
    _BOOL_EVENT = ("published", "locked", "disable_correlation", "proposal_email_lock")
    _STR_ATTR = ("id", "event_id", "object_id", "distribution", "sharing_group_id", "timestamp")
    _BOOL_ATTR = ("to_ids", "deleted", "disable_correlation")

    def _tag(self, tag: dict) -> dict:
        name = tag.get("name", "")
        if name not in self.tag_ids:
            self.tag_ids[name] = str(len(self.tag_ids) + 1)
        out = {"id": self.tag_ids[name], "name": name, "colour": tag.get("colour") or "#0088cc",
               "exportable": True, "user_id": "0", "hide_tag": False, "numerical_value": None,
               "is_galaxy": bool(tag.get("is_galaxy", False)), "is_custom_galaxy": False, "inherited": 0}
        if "local" in tag:
            out["local"] = bool(tag["local"])
        return out

    def _typed_attribute(self, a: dict) -> dict:
        for key in self._STR_ATTR:
            if a.get(key) is not None:
                a[key] = str(a[key])
        for key in self._BOOL_ATTR:
            if key in a:
                a[key] = a[key] in (True, 1, "1", "true", "True")
        a["Tag"] = [self._tag(t) for t in a.get("Tag", [])]
        for s in a.get("Sighting", []):
            for key in ("id", "attribute_id", "event_id", "org_id", "date_sighting", "type"):
                if s.get(key) is not None:
                    s[key] = str(s[key])
        return a

    def _typed(self, ev: dict) -> dict:
        """Store values with the JSON types MISP answers with (PyMISP sends integers)."""
        for key in self._STR_EVENT:
            if ev.get(key) is not None:
                ev[key] = str(ev[key])
        for key in self._BOOL_EVENT:
            if key in ev:
                ev[key] = ev[key] in (True, 1, "1", "true", "True")
        for org in ("Org", "Orgc"):
            if isinstance(ev.get(org), dict) and ev[org].get("id") is not None:
                ev[org]["id"] = str(ev[org]["id"])
        ev["Tag"] = [self._tag(t) for t in ev.get("Tag", [])]
        for a in ev.get("Attribute", []):
            self._typed_attribute(a)
        for o in ev.get("Object", []):
            for key in ("id", "event_id", "distribution", "sharing_group_id", "timestamp", "template_version"):
                if o.get(key) is not None:
                    o[key] = str(o[key])
            for a in o.get("Attribute", []):
                self._typed_attribute(a)
        return ev

    def _out(self, ev: dict) -> dict:
        out = copy.deepcopy(ev)
        out["Attribute"] = [a for a in out.get("Attribute", []) if not a.get("deleted")]
        return out

    def delete_attribute(self, ident, hard: bool):
        for ev in self.events.values():
            for a in ev["Attribute"]:
                if ident in (a["uuid"], a["id"]) and (hard or not a.get("deleted")):
                    if hard:
                        ev["Attribute"].remove(a)
                    else:
                        a["deleted"] = True
                    ev["published"] = False
                    ev["timestamp"] = str(next(self._clock))
                    ev["attribute_count"] = str(len([x for x in ev["Attribute"] if not x.get("deleted")]))
                    return 200, {"saved": True, "success": True, "name": "Attribute deleted.",
                                 "message": "Attribute deleted.", "url": f"/attributes/delete/{ident}"}
        return 404, {"name": "Invalid attribute", "message": "Invalid attribute", "url": f"/attributes/delete/{ident}"}

    def restore_attribute(self, ident):
        for ev in self.events.values():
            for a in ev["Attribute"]:
                if ident in (a["uuid"], a["id"]) and a.get("deleted"):
                    a["deleted"] = False
                    ev["published"] = False
                    self._normalise(ev)
                    return 200, {"Attribute": copy.deepcopy(a)}
        return 404, {"name": "Invalid attribute", "message": "Invalid attribute", "url": f"/attributes/restore/{ident}"}

    def delete_event(self, ident):
        ev = self.find(ident)
        if ev is None:
            return 404, {"name": "Invalid event", "message": "Invalid event", "url": f"/events/delete/{ident}"}
        del self.events[ev["uuid"]]
        return 200, {"saved": True, "success": True, "name": "Event deleted.", "message": "Event deleted.",
                     "url": f"/events/delete/{ident}"}

    def _normalise(self, ev: dict) -> dict:
        ev.setdefault("Attribute", [])
        ev.setdefault("Tag", [])
        ev["Orgc"] = ev.get("Orgc") or ORG
        ev["Org"] = ORG
        ev["org_id"] = ORG["id"]
        ev["orgc_id"] = str(ev["Orgc"].get("id") or ORG["id"])
        ev["Orgc"].setdefault("id", ev["orgc_id"])
        for a in ev["Attribute"]:
            a.setdefault("id", str(next(self._attr_ids)))
            a.setdefault("uuid", str(_uuid.uuid4()))
            a["event_id"] = ev["id"]
            a.setdefault("object_id", "0")
            a.setdefault("sharing_group_id", "0")
            a.setdefault("deleted", False)
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
        ev["attribute_count"] = str(len(ev["Attribute"]))
        ev.setdefault("publish_timestamp", "0")
        return self._typed(ev)

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
        return 200, {"Event": self._out(ev)}

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
        merged["published"] = bool(new.get("published", False))   # MISP unpublishes an edited event
        if self._normalise(merged) is None:
            return 403, {"name": "Invalid sharing group", "message": "Could not edit Event",
                         "url": f"/events/edit/{ident}", "errors": {"sharing_group_id": ["Invalid sharing group."]}}
        self.events[merged["uuid"]] = merged
        return 200, {"Event": self._out(merged)}

    def publish(self, ident):
        ev = self.find(ident)
        if ev is None:
            return 404, {"name": "Invalid event", "message": "Invalid event", "url": f"/events/publish/{ident}"}
        ev["published"] = True
        ev["publish_timestamp"] = str(next(self._clock))
        return 200, {"name": "Publish", "message": "Job queued", "url": f"/events/publish/{ident}", "id": ev["id"]}

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
        ev["published"] = False
        self._normalise(ev)
        return 200, {"Attribute": copy.deepcopy(attr)}

    def edit_attribute(self, ident, body):
        new = body.get("Attribute", body)
        for ev in self.events.values():
            for a in ev["Attribute"]:
                if ident in (a["uuid"], a["id"]):
                    for key in ("value", "category", "to_ids", "comment", "distribution", "Tag", "first_seen"):
                        if key in new:
                            a[key] = copy.deepcopy(new[key])
                    ev["published"] = False
                    self._normalise(ev)
                    return 200, {"Attribute": copy.deepcopy(a)}
        return 404, {"name": "Invalid attribute", "message": "Invalid attribute", "url": f"/attributes/edit/{ident}"}

    def sighting(self, ident, body):
        ident = ident or body.get("uuid") or body.get("id")
        for ev in self.events.values():
            for a in ev["Attribute"]:
                if ident in (a["uuid"], a["id"]):
                    s = {"id": str(next(self._attr_ids)), "attribute_id": a["id"], "event_id": ev["id"],
                         "org_id": ORG["id"], "date_sighting": str(body.get("timestamp") or int(time.time())),
                         "uuid": str(_uuid.uuid4()), "source": body.get("source", ""),
                         "type": str(body.get("type", "0")), "attribute_uuid": a["uuid"],
                         "Organisation": {k: ORG[k] for k in ("id", "uuid", "name")}}
                    a["Sighting"].append(s)
                    return 200, copy.deepcopy(s)
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
            self.misp.exchanges.append((method, path, body, status, copy.deepcopy(payload)))
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

    def do_PUT(self):
        self._serve("PUT")

    def do_HEAD(self):
        self._serve("HEAD")
