"""What a MISP output (or MISP feed) wrote, per shared event: the index a retraction is applied with.

A retraction (docs/retraction.md) names its target by ids only (``provenance.event_uuid``,
``provenance.fingerprint``), never by the indicator value, so an output cannot recompute the
MISP attribute it wrote (a uuid5 of the MISP event, type and value).  The output therefore
records, for every event it writes, which MISP event and attribute hold it; this SQLite file
(WAL mode, one per output) is that record.

Tables
    ``held``: ``(event_uuid, fingerprint, misp_event, attribute, state)``; ``state`` is
    ``held`` until a retraction removes or relabels the attribute (``withdrawn``, ``erased``,
    ``removed`` for a relabel the recipient is no longer entitled to, ``relabelled``).
    ``tombstones``: ``event:<uuid>`` or ``indicator:<fingerprint>`` -> the retraction id and
    action; an event that arrives again after its retraction is filtered, not written again.

Only identifiers are kept: the event UUID, the fingerprint (a digest), the MISP event and
attribute UUIDs (digests too).  No indicator value, no label, no originator: an erased
event leaves nothing here that is not also in the retraction itself.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, List, Optional

from intelmq_crossborder.core.errors import CrossBorderError

__all__ = ["Holdings", "Holding", "HoldingsError", "HELD", "REMOVED_STATES"]

HELD = "held"
#: states of an attribute that a retraction took out of the recipient's hands
REMOVED_STATES = ("withdrawn", "erased", "removed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS held (
    event_uuid TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    misp_event TEXT NOT NULL,
    attribute TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'held',
    retraction TEXT,
    changed_at TEXT,
    PRIMARY KEY (event_uuid, fingerprint, attribute)
);
CREATE INDEX IF NOT EXISTS held_event ON held(event_uuid);
CREATE INDEX IF NOT EXISTS held_fingerprint ON held(fingerprint);
CREATE INDEX IF NOT EXISTS held_attribute ON held(attribute);
CREATE TABLE IF NOT EXISTS tombstones (
    key TEXT PRIMARY KEY,
    retraction TEXT NOT NULL,
    action TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


class HoldingsError(CrossBorderError, ValueError):
    """The holdings file cannot be opened or is not a holdings file; names the path."""


@dataclass(frozen=True)
class Holding:
    """One attribute that holds (part of) a shared event."""

    event_uuid: str
    fingerprint: str
    misp_event: str
    attribute: str
    state: str


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class Holdings:
    """The holdings index in the SQLite file ``path`` (created with its folder)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise HoldingsError(f"{self.path}: cannot open the holdings index: {exc}") from None

    def close(self) -> None:
        self.conn.close()

    # --- writing ---------------------------------------------------------------------
    def record(self, event_uuid: Optional[str], fingerprint: Optional[str], misp_event: str, attribute: str) -> None:
        """The event (its ids) is now held by ``attribute`` of ``misp_event``."""
        self.conn.execute("INSERT INTO held(event_uuid, fingerprint, misp_event, attribute, state, changed_at) "
                          "VALUES (?,?,?,?,?,?) ON CONFLICT(event_uuid, fingerprint, attribute) DO UPDATE "
                          "SET state = excluded.state, misp_event = excluded.misp_event, retraction = NULL, "
                          "changed_at = excluded.changed_at WHERE held.state NOT IN ('withdrawn','erased','removed')",
                          (event_uuid or "", fingerprint or "", str(misp_event), str(attribute), HELD, _now()))

    def mark(self, rows: Iterable[Holding], state: str, retraction_id: str) -> int:
        """Set ``state`` on ``rows``; returns how many."""
        count = 0
        for row in rows:
            self.conn.execute("UPDATE held SET state = ?, retraction = ?, changed_at = ? WHERE event_uuid = ? "
                              "AND fingerprint = ? AND attribute = ?",
                              (state, retraction_id, _now(), row.event_uuid, row.fingerprint, row.attribute))
            count += 1
        return count

    def bury(self, scope: str, key: str, retraction_id: str, action: str) -> None:
        """A tombstone: events of ``scope`` (``event``/``indicator``) and ``key`` are not written again."""
        self.conn.execute("INSERT OR REPLACE INTO tombstones(key, retraction, action, at) VALUES (?,?,?,?)",
                          (f"{scope}:{key}", retraction_id, action, _now()))

    # --- reading ---------------------------------------------------------------------
    def tombstone(self, event_uuid: Optional[str], fingerprint: Optional[str]) -> Optional[tuple]:
        """``(retraction id, action)`` when a retraction buried this event or its indicator."""
        keys = [k for k in (f"event:{event_uuid}" if event_uuid else None,
                            f"indicator:{fingerprint}" if fingerprint else None) if k]
        for key in keys:
            row = self.conn.execute("SELECT retraction, action FROM tombstones WHERE key = ?", (key,)).fetchone()
            if row:
                return row[0], row[1]
        return None

    def _rows(self, sql: str, args: tuple) -> List[Holding]:
        return [Holding(*row) for row in self.conn.execute(
            "SELECT event_uuid, fingerprint, misp_event, attribute, state FROM held WHERE " + sql, args)]

    def targets(self, scope: str, event_uuid: Optional[str], fingerprint: Optional[str]) -> List[Holding]:
        """The live holdings a retraction of ``scope`` names: for ``indicator``, every event with
        that fingerprint; for ``event``, the event with that UUID (by its fingerprint only when
        the retraction names no UUID)."""
        if scope == "indicator":
            return self._rows("fingerprint = ? AND state NOT IN ('withdrawn','erased','removed')",
                              (fingerprint or "",)) if fingerprint else []
        if event_uuid:
            return self._rows("event_uuid = ? AND state NOT IN ('withdrawn','erased','removed')", (event_uuid,))
        if fingerprint:
            return self._rows("fingerprint = ? AND state NOT IN ('withdrawn','erased','removed')", (fingerprint,))
        return []

    def still_held(self, attribute: str, excluding: Iterable[tuple] = ()) -> bool:
        """Whether a live event other than those of ``excluding`` (``(event_uuid, fingerprint,
        attribute)`` keys) holds ``attribute``: the same indicator from another event."""
        skip = set(excluding)
        for row in self.conn.execute("SELECT event_uuid, fingerprint, attribute FROM held WHERE attribute = ? AND "
                                     "state NOT IN ('withdrawn','erased','removed')", (attribute,)):
            if tuple(row) not in skip:
                return True
        return False

    def all(self) -> List[Holding]:
        return self._rows("1 = 1", ())
