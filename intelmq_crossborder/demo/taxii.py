"""The demo consortium's TAXII recipient: a partner platform (an OpenCTI, say) that takes the
cross-border hub's events as STIX 2.1 over TAXII 2.1, served by a local TAXII server (medallion)
that the demo starts and stops as a process of its own (``python -m
intelmq_crossborder.testing.taxii_server``), as it would use any TAXII server.

The consortium (``demo/consortium.py``) wires it in four calls::

    partner = TAXIIRecipient(workdir / "taxii")          # before the members' set-up
    partner.start()
    runtime["taxii-output-partner-cti"] = partner.runtime_block(hub_id="fi-hub", redis_db=db)
    agreements_dir / "partner-cti.yaml" <- AGREEMENT     # and the router's destination queue
    ...                                                  # the day, the night
    lines = partner.report_lines(); leaks = partner.leaks(); partner.stop()

What it received is read back from the collection over TAXII (``formats.stix.taxii``) and counted
by TLP: the label of each object is read from its marking ids by the TLP core's one reader
(``core.tlp.event_tlp``).
"""
from __future__ import annotations

import collections
import importlib.util
import os
import secrets
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.stix import parse, taxii
from intelmq_crossborder.runtime.instance import PipelineError

__all__ = ["RECIPIENT", "AGREEMENT", "ROUTE", "TAXIIRecipient"]

RECIPIENT = "partner-cti"
#: The partner's sharing agreement (the router's agreements folder of the cross-border hub).
AGREEMENT = """\
# A partner CTI platform (OpenCTI) fed over TAXII 2.1: pooled events up to GREEN, source disclosed.
recipient: partner-cti
name: Partner CTI platform (TAXII)
kind: isac
country: FI
relation: community
max_tlp: GREEN
# indicators only: advisories' vulnerable-system events have no STIX indicator to carry them
taxonomies: [malicious-code, intrusion-attempts, intrusions, information-gathering, fraud, availability, abusive-content]
no_label: deny
disclose_source: true
retention_days: 365
"""
#: The router's destination queue for the partner.
ROUTE = {RECIPIENT: ["taxii-output-partner-cti-queue"]}
_PRIMARY = ("indicator", "observed-data")


class TAXIIRecipient:
    """A local TAXII 2.1 server with the partner's collection, and what it received."""

    def __init__(self, workdir: Path, recipient: str = RECIPIENT, profile: str = "opencti"):
        self.workdir = Path(workdir)
        self.recipient, self.profile = recipient, profile
        self.user, self.password = "hub", ""
        self.discovery_url = ""
        self._process: Optional[subprocess.Popen] = None

    def start(self, timeout: float = 60.0) -> "TAXIIRecipient":
        """Start the server process; returns when it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec("medallion") is None:
            raise PipelineError("the demo's partner TAXII server needs medallion: "
                                "pip install 'intelmq-crossborder[demo]'")
        self.password = secrets.token_hex(16)        # a throwaway password for this run only
        env = dict(os.environ, TAXII_SERVER_PASSWORD=self.password)
        with open(self.workdir / "taxii-server.log", "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "intelmq_crossborder.testing.taxii_server", "--recipient", self.recipient,
                 "--user", self.user, "--workdir", str(self.workdir)],
                stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._process.stdout], [], [], 0.5)
            if ready:
                line = self._process.stdout.readline()
                if line.startswith("ready "):
                    self.discovery_url = line.split(" ", 1)[1].strip()
                    return self
            if self._process.poll() is not None:
                break
        self.stop()
        raise PipelineError(f"the TAXII server did not start; see {self.workdir / 'taxii-server.log'}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(15)
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def connection(self) -> dict:
        """The TAXII output parameters that point a pipeline's block at this server."""
        if not self.discovery_url:
            raise RuntimeError("start() the TAXII recipient first")
        return {"taxii_url": self.discovery_url, "collection": self.recipient,
                "username": self.user, "password": self.password}

    def runtime_block(self, hub_id: str, redis_db: int, redis_host: str = "127.0.0.1") -> dict:
        """The runtime.yaml block of the TAXII output that pushes to the partner's collection."""
        if not self.discovery_url:
            raise RuntimeError("start() the TAXII recipient first")
        return {
            "group": "Output", "name": "TAXII to partner-cti",
            "module": "intelmq.bots.outputs.crossborder.taxii.output",
            "description": "STIX 2.1 over TAXII 2.1 to the partner CTI platform (OpenCTI marking ids).",
            "enabled": True, "run_mode": "continuous",
            "parameters": {
                "taxii_url": self.discovery_url, "collection": self.recipient,
                "username": self.user, "password": self.password, "hub_id": hub_id,
                "recipient_profile": self.profile, "export_kind": "indicator", "max_tlp": "GREEN",
                "batch_size": 100, "batch_max_seconds": 2, "poll_interval": 0.2,
                "redis_host": redis_host, "redis_db": redis_db,
            },
        }

    # --- what arrived ---------------------------------------------------------------------------
    def all_objects(self) -> list:
        """The latest version of every object in the partner's collection (markings, identities
        included), read over TAXII 2.1 as a consumer would."""
        if not self.discovery_url:
            return []
        conn = taxii.Connection(self.discovery_url, user=self.user, password=self.password, attempts=2)
        try:
            collection = conn.collection(self.recipient)
            return [o for page in taxii.pages(conn, collection, limit=100) for o in page.objects]
        finally:
            conn.close()

    def objects(self) -> list:
        """The latest version of every indicator and observed-data in the partner's collection."""
        return [o for o in self.all_objects() if o.get("type") in _PRIMARY]

    def events(self) -> list:
        """What the partner holds, read back into events by the STIX parser's library (revoked
        objects left out): the demo grades them like every other recipient's events."""
        objects = [o for o in self.all_objects() if not o.get("revoked")]
        return parse.Converter(where=f"TAXII collection {self.recipient}").convert(
            {"type": "bundle", "objects": objects})

    @staticmethod
    def label(obj: dict) -> str:
        """The TLP of one STIX object, read from its marking ids by the TLP core's reader."""
        try:
            level = tlp.event_tlp({"extra.stix_marking_refs": list(obj.get("object_marking_refs") or [])}).level
        except tlp.LabelError as exc:
            return f"unreadable ({exc.reason})"
        return level.label if level is not None else "none"

    def received_by_tlp(self) -> Dict[str, int]:
        counts = collections.Counter(self.label(o) for o in self.objects() if not o.get("revoked"))
        return dict(sorted(counts.items()))

    def leaks(self, max_tlp: str = "GREEN") -> List[str]:
        """Objects the partner may not hold: no readable label, or above its agreement's max_tlp."""
        ceiling = tlp.parse_level(max_tlp)
        out = []
        for obj in self.objects():
            label = self.label(obj)
            if label not in (lvl.label for lvl in tlp.Level) or tlp.Level.from_label(label) > ceiling:
                out.append(f"{self.recipient}: {obj.get('id')} TLP {label} above TLP:{ceiling.label}")
        return out

    def report_lines(self) -> List[str]:
        objects = self.objects()
        revoked = sum(1 for o in objects if o.get("revoked"))
        counts = self.received_by_tlp()
        lines = [f"  {self.recipient} (TAXII 2.1, {self.profile} marking ids): received "
                 f"{len(objects)} STIX object(s)" + (f", {revoked} revoked" if revoked else "")]
        lines += [f"      TLP:{label:<13} {n}" for label, n in counts.items()]
        return lines
