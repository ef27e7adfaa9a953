"""The demo consortium's TAXII recipient: a partner platform (an OpenCTI, say) that takes the
cross-border hub's events as STIX 2.1 over TAXII 2.1, served by a local TAXII server (medallion,
``intelmq_crossborder.testing.taxii_server``) that the demo starts and stops.

The consortium (``demo/consortium.py``) wires it in four calls::

    partner = TAXIIRecipient(workdir / "taxii")          # before the members' set-up
    partner.start()
    runtime["taxii-output-partner-cti"] = partner.runtime_block(hub_id="fi-hub", redis_db=db)
    agreements_dir / "partner-cti.yaml" <- AGREEMENT     # and the router's destination queue
    ...                                                  # the day, the night
    lines = partner.report_lines(); leaks = partner.leaks(); partner.stop()

What it received is read back from the collection and counted by TLP: the label of each object is
read from its marking ids by the TLP core's one reader (``core.tlp.event_tlp``).
"""
from __future__ import annotations

import collections
import secrets
from pathlib import Path
from typing import Dict, List, Optional

from intelmq_crossborder.core import tlp
from intelmq_crossborder.testing.taxii_server import TAXIIServer

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
        self.server: Optional[TAXIIServer] = None

    def start(self) -> "TAXIIRecipient":
        self.workdir.mkdir(parents=True, exist_ok=True)
        # a throwaway password for this run only (never in the repository)
        self.server = TAXIIServer([self.recipient], password=secrets.token_hex(16),
                                  workdir=str(self.workdir)).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def runtime_block(self, hub_id: str, redis_db: int, redis_host: str = "127.0.0.1") -> dict:
        """The runtime.yaml block of the TAXII output that pushes to the partner's collection."""
        if self.server is None:
            raise RuntimeError("start() the TAXII recipient first")
        return {
            "group": "Output", "name": "TAXII to partner-cti",
            "module": "intelmq.bots.outputs.crossborder.taxii.output",
            "description": "STIX 2.1 over TAXII 2.1 to the partner CTI platform (OpenCTI marking ids).",
            "enabled": True, "run_mode": "continuous",
            "parameters": {
                "taxii_url": self.server.discovery_url, "collection": self.recipient,
                "username": self.server.user, "password": self.server.password, "hub_id": hub_id,
                "recipient_profile": self.profile, "export_kind": "indicator", "max_tlp": "GREEN",
                "batch_size": 100, "batch_max_seconds": 2, "poll_interval": 0.2,
                "redis_host": redis_host, "redis_db": redis_db,
            },
        }

    # --- what arrived ---------------------------------------------------------------------------
    def objects(self) -> list:
        """The latest version of every indicator and observed-data in the partner's collection."""
        if self.server is None:
            return []
        return [o for o in self.server.objects(self.recipient) if o.get("type") in _PRIMARY]

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
