"""A CSAF provider on 127.0.0.1 for collector tests, serving the advisories of a directory.

Layout (the paths of a real provider):
  /.well-known/csaf/provider-metadata.json   ROLIE feed + directory distribution
  /.well-known/csaf/white/white-feed.json     ROLIE feed; hash links written with "ref" like CISA's
  /.well-known/csaf/white/<year>/<file>.json  + .sha256 / .sha512
  /.well-known/csaf/white/changes.csv, index.txt   unquoted, not sorted (as CISA's)
The test changes ``files`` / ``hashes`` / ``missing`` / ``feed_entries`` to inject faults.
``public_base`` (e.g. a tests/fault_server.py FaultServer forwarding here) is the base URL the
documents name instead of this server's own, so that every request goes through it.
"""
import hashlib
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from intelmq_crossborder.testing.http import LocalHTTPServer

#: the advisories the project's tests serve by default (tests/fixtures/csaf/advisories)
ADVISORIES = ["bsi-2022-0001.json", "icsa-19-344-03.json", "icsma-17-009-01a.json",
              "va-24-201-01.json", "rhsa-2019_1862.json"]


class Provider(LocalHTTPServer):
    def __init__(self, directory, advisories=ADVISORIES, feed_label="WHITE", with_rolie=True):
        super().__init__()
        directory = Path(directory)
        self.files = {}        # path -> bytes
        self.hashes = {}       # path -> (sha256, sha512) as served
        self.missing = set()   # paths answered with 404
        self.required_header = None   # (name, value) for every request to 127.0.0.1
        self.advisory_host = None     # e.g. "localhost": the feed lists the advisories on another host
        self.requests = []
        self.feed_label = feed_label
        self.with_rolie = with_rolie
        self.updated = {}
        self.public_base = None
        for i, name in enumerate(advisories):
            doc = json.loads((directory / name).read_bytes())
            year = doc["document"]["tracking"]["initial_release_date"][:4]
            path = f"/.well-known/csaf/white/{year}/{name}"
            self.files[path] = (directory / name).read_bytes()
            self.updated[path] = f"2024-0{i + 1}-0{i + 1}T10:00:00"     # no timezone (like CPANSA)
            self.rehash(path)

    @property
    def own_base(self):
        return self.base_url

    @property
    def base(self):
        return self.public_base or self.own_base

    @property
    def metadata_url(self):
        return self.base + "/.well-known/csaf/provider-metadata.json"

    def rehash(self, path):
        body = self.files[path]
        self.hashes[path] = (hashlib.sha256(body).hexdigest(), hashlib.sha512(body).hexdigest())

    def change(self, path, updated):
        doc = json.loads(self.files[path])
        doc["document"]["tracking"]["current_release_date"] = updated + "Z"
        self.files[path] = json.dumps(doc).encode()
        self.updated[path] = updated
        self.rehash(path)

    def metadata(self):
        dists = [{"directory_url": self.base + "/.well-known/csaf/white/"}]
        if self.with_rolie:
            dists.insert(0, {"rolie": {"feeds": [{"summary": "WHITE advisories", "tlp_label": self.feed_label,
                                                  "url": self.base + "/.well-known/csaf/white/white-feed.json"}]}})
        return {"canonical_url": self.metadata_url, "distributions": dists,
                "last_updated": "2024-06-01T00:00:00Z", "list_on_CSAF_aggregators": True,
                "metadata_version": "2.0", "mirror_on_CSAF_aggregators": True,
                "publisher": {"category": "vendor", "name": "Test provider", "namespace": "https://example.org"},
                "role": "csaf_trusted_provider"}

    def feed(self):
        entries = []
        for path in self.files:
            url = self.base + path
            if self.advisory_host:
                url = url.replace("127.0.0.1", self.advisory_host, 1)
            entries.append({
                "id": path.rsplit("/", 1)[1][:-5], "title": path, "published": self.updated[path],
                "updated": self.updated[path], "content": {"type": "application/json", "src": url},
                "format": {"schema": "https://docs.oasis-open.org/csaf/csaf/v2.0/csaf_json_schema.json",
                           "version": "2.0"},
                "link": [{"rel": "self", "href": url}, {"ref": "hash", "href": url + ".sha256"},
                         {"ref": "hash", "href": url + ".sha512"}, {"rel": "signature", "href": url + ".asc"}]})
        return {"feed": {"id": "test-white", "title": "Test CSAF feed (TLP:WHITE)",
                         "link": [{"rel": "self", "href": self.base + "/.well-known/csaf/white/white-feed.json"}],
                         "category": [{"scheme": "urn:ietf:params:rolie:category:information-type", "term": "csaf"}],
                         "updated": "2024-06-01T00:00:00Z", "entry": entries}}

    def changes_csv(self):
        # unquoted, repository-relative paths, oldest first: the deviations of CISA's file
        rows = sorted(self.files, key=lambda p: self.updated[p])
        return "".join(f"{p.lstrip('/')},{self.updated[p]}.000Z\n" for p in rows)

    def answer(self, path):
        if path in self.missing:
            return 404, b"not found"
        if path == "/.well-known/csaf/provider-metadata.json":
            return 200, json.dumps(self.metadata()).encode()
        if path == "/.well-known/csaf/white/white-feed.json" and self.with_rolie:
            return 200, json.dumps(self.feed()).encode()
        if path == "/.well-known/csaf/white/changes.csv":
            return 200, self.changes_csv().encode()
        if path == "/.well-known/csaf/white/index.txt":
            return 200, "".join(p.split("/white/", 1)[1] + "\n" for p in self.files).encode()
        if path in self.files:
            return 200, self.files[path]
        for suffix, idx in ((".sha256", 0), (".sha512", 1)):
            if path.endswith(suffix) and path[:-len(suffix)] in self.hashes:
                name = path[:-len(suffix)].rsplit("/", 1)[1]
                return 200, f"{self.hashes[path[:-len(suffix)]][idx]}  {name}\n".encode()
        return 404, b"not found"

    def handler_class(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                provider.requests.append((self.path, dict(self.headers)))
                if provider.required_header and self.headers.get("Host", "").startswith("127.0.0.1"):
                    name, value = provider.required_header
                    if self.headers.get(name) != value:
                        self.send_response(401)
                        self.end_headers()
                        return
                status, body = provider.answer(self.path.split("?")[0])
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        return Handler
