"""A real TAXII 2.1 server for tests and the demo: ``medallion`` (OASIS) with its memory backend,
started in a subprocess on a free port of 127.0.0.1.

One API root (``/hub/``) with one read-write collection per recipient; basic auth with one
user.  ``with TAXIIServer(["csirt-a", "isac-b"]) as server:`` then ``server.discovery_url``,
``server.collection_id("csirt-a")``, ``server.objects("csirt-a")``.

medallion keeps its Flask application in a module global, so each server runs in its own
process (medallion's ``scripts.run`` with the fix of :data:`_RUN`); stopping it stops that
process (its id only).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterable, List, Optional

import requests

__all__ = ["TAXIIServer", "free_port"]

MEDIA_TYPE = "application/taxii+json;version=2.1"
_NAMESPACE = uuid.UUID("2b0c8d0e-6f0b-5b7a-9d43-6b1f3c5e8a21")


#: medallion 3.0.0 reads an object's ``version`` property as its TAXII version (``common.find_att``);
#: the TLP 2.0 extension-definition has ``"version": "1.0.0"``, after which every read of the
#: collection fails with HTTP 500.  The server here runs medallion with a ``find_att`` that takes
#: the first of version/modified/created/date added that is a timestamp (docs/bots/stix.md).
_RUN = """
import sys
import medallion.common as common
import medallion.backends.memory_backend as memory
import medallion.filters.basic_filter as basic

def find_att(obj):
    for key in ("version", "modified", "created", "_date_added"):
        if key in obj:
            try:
                return common.string_to_datetime(obj[key])
            except (TypeError, ValueError):
                continue
    raise ValueError("object without a version: " + str(obj.get("id")))

common.find_att = memory.find_att = basic.find_att = find_att
from medallion.scripts.run import main
sys.argv = ["medallion"] + sys.argv[1:]
main()
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TAXIIServer:
    """medallion on 127.0.0.1:``port`` (0: a free one) serving one collection per recipient."""

    def __init__(self, recipients: Iterable[str] = ("recipient",), *, user: str = "hub", password: str = "hub-secret",
                 port: int = 0, max_page_size: int = 100, workdir: Optional[str] = None):
        self.recipients: List[str] = list(recipients)
        if not self.recipients or len(set(self.recipients)) != len(self.recipients):
            raise ValueError("recipients must be distinct names, at least one")
        self.user, self.password = user, password
        self.port = port or free_port()
        self.max_page_size = max_page_size
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="taxii-server-")
        self.workdir = Path(workdir or self._tmp.name)
        self._process: Optional[subprocess.Popen] = None

    # --- addresses ---
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.base_url}/taxii2/"

    @property
    def api_root_url(self) -> str:
        return f"{self.base_url}/hub/"

    def collection_id(self, recipient: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, recipient))

    def collection_url(self, recipient: str) -> str:
        return f"{self.api_root_url}collections/{self.collection_id(recipient)}/"

    # --- life cycle ---
    def _data(self) -> dict:
        return {
            "/discovery": {"title": "intelmq-crossborder test TAXII server", "description": "medallion, memory backend",
                           "contact": "hub@example.org", "default": self.api_root_url,
                           "api_roots": [self.api_root_url]},
            "hub": {"information": {"title": "Cross-border hub", "description": "one collection per recipient",
                                    "versions": [MEDIA_TYPE], "max_content_length": 100 * 1024 * 1024},
                    "status": [],
                    "collections": [{"id": self.collection_id(r), "title": r, "description": f"for {r}",
                                     "can_read": True, "can_write": True,
                                     "media_types": ["application/stix+json;version=2.1"],
                                     "objects": [], "manifest": []} for r in self.recipients]},
        }

    def start(self, timeout: float = 30.0) -> "TAXIIServer":
        if self._process is not None:
            return self
        data = self.workdir / "data.json"
        data.write_text(json.dumps(self._data()), "utf-8")
        config = self.workdir / "medallion.json"
        config.write_text(json.dumps({
            "backend": {"module": "medallion.backends.memory_backend", "module_class": "MemoryBackend",
                        "filename": str(data)},
            "users": {self.user: self.password},
            "taxii": {"max_page_size": self.max_page_size},
        }), "utf-8")
        log = open(self.workdir / "medallion.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._process = subprocess.Popen(
            [sys.executable, "-c", _RUN, "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "ERROR", str(config)], stdout=log, stderr=log, env=env, cwd=str(self.workdir))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"medallion exited with {self._process.returncode}: "
                                   f"{(self.workdir / 'medallion.log').read_text('utf-8', 'replace')[-2000:]}")
            try:
                answer = requests.get(self.discovery_url, auth=(self.user, self.password),
                                      headers={"Accept": MEDIA_TYPE}, timeout=2)
                if answer.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"medallion did not answer on {self.discovery_url} within {timeout} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._tmp is not None and process is not None:
            pass      # the folder stays until the object goes (its log helps a failing test)

    def __enter__(self) -> "TAXIIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what a collection holds ---
    def objects(self, recipient: str, *, all_versions: bool = False) -> list:
        """Every object of the recipient's collection (latest versions, or all), paging with ``next``."""
        out: list = []
        params = {"limit": str(self.max_page_size)}
        if all_versions:
            params["match[version]"] = "all"
        url = self.collection_url(recipient) + "objects/"
        while True:
            answer = requests.get(url, params=params, auth=(self.user, self.password),
                                  headers={"Accept": MEDIA_TYPE}, timeout=30)
            answer.raise_for_status()
            body = answer.json()
            out += body.get("objects", [])
            if not body.get("more"):
                return out
            params = {**params, "next": body["next"]}

    def add(self, recipient: str, objects: list) -> dict:
        """POST ``objects`` to the recipient's collection (a publisher filling it); the status."""
        answer = requests.post(self.collection_url(recipient) + "objects/", json={"objects": objects},
                               auth=(self.user, self.password),
                               headers={"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE}, timeout=30)
        answer.raise_for_status()
        return answer.json()


def main(argv=None) -> int:
    """``python -m intelmq_crossborder.testing.taxii_server --recipient NAME... [--port P]``: serve
    until SIGTERM/SIGINT.  Prints ``ready <discovery URL>`` on stdout once it answers.  The password
    comes from the environment variable named by ``--password-env`` (default TAXII_SERVER_PASSWORD)."""
    import argparse
    import signal
    import threading

    parser = argparse.ArgumentParser(description="A local TAXII 2.1 server (medallion, memory backend).")
    parser.add_argument("--recipient", action="append", required=True, help="one collection per recipient")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user", default="hub")
    parser.add_argument("--password-env", default="TAXII_SERVER_PASSWORD")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    password = os.environ.get(args.password_env)
    if not password:
        print(f"error: set the environment variable {args.password_env} (the server's password)", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with TAXIIServer(args.recipient, user=args.user, password=password, port=args.port,
                     workdir=args.workdir) as server:
        print(f"ready {server.discovery_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
