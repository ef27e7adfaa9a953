"""Who holds what: the compact index of which recipient received which event, and of every
retraction, its deliveries and the peers' confirmations.

The sharing router writes its audit trail (:mod:`intelmq_crossborder.policy.audit`) first and
then this index; the index holds nothing the audit trail does not (ids, recipients, labels,
the copy's own ids where the agreement derived them) and :func:`rebuild` makes it again from
the trail.  The trail alone is too slow to search at volume: here a lookup by event uuid or
fingerprint is one indexed SQLite query.

Tables (SQLite, WAL; uuids as 16 bytes and fingerprints as 32, so a row is about 120 bytes):

- ``sent``: one row per (event, recipient) copy the router sent: the event's ids at the
  router, the copy's ids when they differ (a hidden source derives the uuid, a pseudonymised
  field the fingerprint), the level and PAP it was sent at, whether the source was hidden in
  it, when, and ``state`` (``held``, or ``withdrawn``/``erased``/``removed`` by a retraction).
- ``received``: the peer hub each imported event came from (a peer's retraction is applied
  only for events that peer sent).
- ``retractions``, ``deliveries`` and ``confirmations``: what ``intelmq-crossborder retraction
  status`` shows.

Bounded: ``max_rows`` (default 20 million copies) - the oldest copies beyond it are pruned,
counted in ``meta``: an event shared longer ago than the index reaches cannot be found for a
retraction any more (``retraction status`` says so); size it to the longest retention of your
agreements.  Hostile ids never reach SQL as text: they are checked and packed first.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.tlp import Level

__all__ = ["Holding", "HoldingsError", "Holdings", "rebuild", "pack_uuid", "pack_fingerprint",
           "HELD", "WITHDRAWN", "ERASED", "REMOVED"]

HELD, WITHDRAWN, ERASED, REMOVED, RELABELLED = "held", "withdrawn", "erased", "removed", "relabelled"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LEVELS = {lvl.label: int(lvl) for lvl in Level}

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sent (
    uuid BLOB, fp BLOB, recipient TEXT NOT NULL, s_uuid BLOB, s_fp BLOB,
    level INTEGER, pap TEXT, hidden INTEGER NOT NULL DEFAULT 0, time TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'held', retraction TEXT);
CREATE INDEX IF NOT EXISTS sent_uuid ON sent (uuid);
CREATE INDEX IF NOT EXISTS sent_fp ON sent (fp);
CREATE TABLE IF NOT EXISTS received (uuid BLOB, fp BLOB, peer TEXT NOT NULL, time TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS received_uuid ON received (uuid);
CREATE INDEX IF NOT EXISTS received_fp ON received (fp);
CREATE TABLE IF NOT EXISTS retractions (
    id TEXT PRIMARY KEY, action TEXT NOT NULL, scope TEXT NOT NULL, originator TEXT NOT NULL,
    target_uuid TEXT, target_fp TEXT, issued TEXT NOT NULL, routed TEXT NOT NULL, from_peer TEXT,
    outcome TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    retraction TEXT NOT NULL, recipient TEXT NOT NULL, hub TEXT, action TEXT NOT NULL, time TEXT NOT NULL,
    why TEXT);
CREATE INDEX IF NOT EXISTS deliveries_id ON deliveries (retraction);
CREATE TABLE IF NOT EXISTS confirmations (
    retraction TEXT NOT NULL, hub TEXT NOT NULL, time TEXT NOT NULL, holders_reached INTEGER, recorded TEXT NOT NULL,
    PRIMARY KEY (retraction, hub));
"""


class HoldingsError(CrossBorderError):
    """The holdings index cannot be opened or read (the message names the file)."""


def pack_uuid(value: Optional[str]) -> Optional[bytes]:
    """A lowercase UUID as 16 bytes; None for None/''; ValueError for anything else."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ValueError(f"not a lowercase UUID: {str(value)[:60]!r}")
    return bytes.fromhex(value.replace("-", ""))


def pack_fingerprint(value: Optional[str]) -> Optional[bytes]:
    """A SHA-256 hex digest as 32 bytes; None for None/''; ValueError for anything else."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ValueError(f"not a SHA-256 hex digest: {str(value)[:80]!r}")
    return bytes.fromhex(value)


def _uuid_text(blob: Optional[bytes]) -> Optional[str]:
    if blob is None:
        return None
    h = blob.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


@dataclass(frozen=True)
class Holding:
    """One copy a recipient received: the event's ids at this hub, the copy's own ids, how it
    was labelled, and whether a retraction has already taken it back."""

    rowid: int
    event_uuid: Optional[str]
    fingerprint: Optional[str]
    recipient: str
    sent_uuid: Optional[str]
    sent_fingerprint: Optional[str]
    level: Optional[Level]
    pap: Optional[str]
    hidden: bool
    time: str
    state: str
    retraction: Optional[str]

    @property
    def held(self) -> bool:
        return self.state in (HELD, RELABELLED)


def _holding(row) -> Holding:
    rowid, u, f, recipient, su, sf, level, pap, hidden, time, state, retraction = row
    uuid_text, fp_text = _uuid_text(u), None if f is None else f.hex()
    return Holding(rowid, uuid_text, fp_text, recipient, _uuid_text(su) if su is not None else uuid_text,
                   sf.hex() if sf is not None else fp_text, None if level is None else Level(level), pap,
                   bool(hidden), time, state, retraction)


_COLUMNS = "rowid, uuid, fp, recipient, s_uuid, s_fp, level, pap, hidden, time, state, retraction"


class Holdings:
    """The index, one SQLite file per router (``path``); safe to read while the router writes."""

    def __init__(self, path, *, max_rows: int = 20_000_000, readonly: bool = False):
        self.path = Path(path)
        self.max_rows = int(max_rows)
        self._lock = threading.Lock()
        self._inserts = 0
        try:
            if readonly:
                if not self.path.is_file():
                    raise HoldingsError(f"{self.path}: no holdings index (has the sharing router run?)")
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise HoldingsError(f"{self.path}: cannot open the holdings index: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:          # SQLite already rolled back (disk full, I/O error)
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- writing (the router) ---------------------------------------------------------------
    def record_sent(self, event_uuid: Optional[str], fingerprint: Optional[str], copies: Iterable[tuple], *,
                    peer: Optional[str] = None, time: Optional[str] = None) -> int:
        """Record the copies of one event: ``copies`` of ``(recipient, copy uuid, copy
        fingerprint, level label or None, PAP or None, hidden)``; ``peer``: the hub it was
        imported from.  One transaction.  Returns the number of copies."""
        u, f = pack_uuid(event_uuid), pack_fingerprint(fingerprint)
        when = time or _now()
        rows = []
        for recipient, c_uuid, c_fp, level, pap, hidden in copies:
            su, sf = pack_uuid(c_uuid), pack_fingerprint(c_fp)
            rows.append((u, f, recipient, None if su == u else su, None if sf == f else sf,
                         None if level is None else _LEVELS[level], pap, 1 if hidden else 0, when))
        if not rows and not peer:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                if rows:
                    db.executemany("INSERT INTO sent (uuid, fp, recipient, s_uuid, s_fp, level, pap, hidden, time) "
                                   "VALUES (?,?,?,?,?,?,?,?,?)", rows)
                if peer:
                    db.execute("INSERT INTO received (uuid, fp, peer, time) VALUES (?,?,?,?)", (u, f, peer, when))
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            self._inserts += len(rows)
            if self.max_rows and self._inserts >= 10_000:
                self._inserts = 0
                self._prune()
        return len(rows)

    # --- from the audit trail ---------------------------------------------------------------
    def catch_up(self, audit_path, *, max_lines: int = 0) -> int:
        """Add the copies of the audit trail's event records written since the last call (the
        router writes its audit trail, never this index, per event: the index follows it in
        batches).  The position (the audit file's inode and offset) is kept in ``meta`` in the
        same transaction, so a crash neither loses nor repeats a record, and rotated pieces are
        followed.  Lines that cannot be read are skipped and counted (``meta`` ``skipped``).
        Safe to call from several processes.  Returns the number of copies added."""
        from intelmq_crossborder.policy.audit import rotated_files
        path = Path(audit_path)
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise HoldingsError(f"{self.path}: cannot update the holdings index: {exc}") from None
            try:
                added = self._catch_up(path, rotated_files(path), max_lines)
                db.execute("COMMIT")
            except sqlite3.Error as exc:      # disk full, read-only file system...
                self._rollback()
                raise HoldingsError(f"{self.path}: cannot update the holdings index: {exc}") from None
            except OSError as exc:            # an audit piece that cannot be read
                self._rollback()
                raise HoldingsError(f"{self.path}: cannot read the audit trail {path}: {exc}") from None
            except BaseException:
                self._rollback()
                raise
        return added

    def _catch_up(self, path: Path, pieces: list, max_lines: int) -> int:
        inode, offset = int(self.meta("audit_inode") or 0), int(self.meta("audit_offset") or 0)
        stats = []
        for piece in pieces:
            try:
                stats.append((piece, piece.stat().st_ino))
            except OSError:
                continue
        start = next((i for i, (_, ino) in enumerate(stats) if ino == inode), None)
        if start is None:
            start, offset = 0, 0          # a new index (or its piece was deleted): from the first piece
        rows, received, skipped, lines = [], [], 0, 0
        last_inode, last_offset = inode, offset
        for piece, ino in stats[start:]:
            pos = offset if ino == inode else 0
            with open(piece, "rb") as fh:
                fh.seek(pos)
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        break                                 # being written: the next call reads it
                    pos += len(raw)
                    lines += 1
                    try:
                        rec = json.loads(raw)
                    except ValueError:
                        skipped += 1
                        continue
                    if isinstance(rec, dict) and "decisions" in rec and "retraction" not in rec:
                        skipped += self._rows_of(rec, rows, received)
                    if max_lines and lines >= max_lines:
                        break
            last_inode, last_offset = ino, pos
            if max_lines and lines >= max_lines:
                break
        if rows:
            self._db.executemany("INSERT INTO sent (uuid, fp, recipient, s_uuid, s_fp, level, pap, hidden, time) "
                                 "VALUES (?,?,?,?,?,?,?,?,?)", rows)
        if received:
            self._db.executemany("INSERT INTO received (uuid, fp, peer, time) VALUES (?,?,?,?)", received)
        self.set_meta("audit_inode", str(last_inode))
        self.set_meta("audit_offset", str(last_offset))
        if skipped:
            self.set_meta("skipped", str(int(self.meta("skipped") or 0) + skipped))
        self._inserts += len(rows)
        if self.max_rows and self._inserts >= 10_000:
            self._inserts = 0
            self._prune()
        return len(rows)

    @staticmethod
    def _rows_of(rec: dict, rows: list, received: list) -> int:
        """The copies of one audit record (appended to ``rows``/``received``); 1 when it is unusable."""
        try:
            u, f = pack_uuid(rec.get("event_uuid")), pack_fingerprint(rec.get("fingerprint"))
        except ValueError:
            return 1
        if u is None and f is None:
            return 1
        when = rec.get("time") if isinstance(rec.get("time"), str) else _now()
        pap = rec.get("pap") if isinstance(rec.get("pap"), str) else None
        copies = rec.get("copies") if isinstance(rec.get("copies"), dict) else {}
        peer = rec.get("peer")
        if isinstance(peer, str) and peer:
            received.append((u, f, peer, when))
        decisions = rec.get("decisions")
        for d in decisions if isinstance(decisions, list) else []:
            if not isinstance(d, dict) or d.get("allowed") is not True or not isinstance(d.get("recipient"), str):
                continue
            reasons = d.get("reasons")
            first = reasons[0] if isinstance(reasons, list) and reasons and isinstance(reasons[0], str) else ""
            match = _ALLOWED_LABEL.match(first)
            own = copies.get(d["recipient"])
            own = own if isinstance(own, dict) else {}
            try:
                su, sf = pack_uuid(own.get("u")), pack_fingerprint(own.get("f"))
            except ValueError:
                su = sf = None
            rows.append((u, f, d["recipient"], su, sf, _LEVELS[match.group(1)] if match else None, pap,
                         1 if own.get("h") else 0, when))
        return 0

    def _prune(self) -> None:
        (count,) = self._db.execute("SELECT count(*) FROM sent").fetchone()
        excess = count - self.max_rows
        if excess > 0:
            self._db.execute("DELETE FROM sent WHERE rowid IN (SELECT rowid FROM sent ORDER BY rowid LIMIT ?)",
                             (excess,))
            self._db.execute("DELETE FROM received WHERE rowid IN (SELECT rowid FROM received ORDER BY rowid "
                             "LIMIT max(0, (SELECT count(*) FROM received) - ?))", (self.max_rows,))
            pruned = int(self.meta("pruned") or 0) + excess
            self.set_meta("pruned", str(pruned))
            self.set_meta("pruned_before", _now())

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> Optional[str]:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # --- lookups --------------------------------------------------------------------------
    def _where(self, event_uuid: Optional[str], fingerprint: Optional[str], scope: str) -> tuple:
        u, f = pack_uuid(event_uuid), pack_fingerprint(fingerprint)
        if scope == "indicator" or u is None:
            if f is None:
                return "0", ()
            return "fp = ?", (f,)
        return "uuid = ?", (u,)

    def copies(self, event_uuid: Optional[str] = None, fingerprint: Optional[str] = None, *,
               scope: str = "event", held_only: bool = False) -> list:
        """Every copy of the event (scope ``event``: by uuid, by fingerprint when there is no
        uuid) or of every event with the fingerprint (scope ``indicator``), oldest first."""
        where, args = self._where(event_uuid, fingerprint, scope)
        sql = f"SELECT {_COLUMNS} FROM sent WHERE {where}"
        if held_only:
            sql += " AND state IN ('held', 'relabelled')"
        return [_holding(row) for row in self._db.execute(sql + " ORDER BY rowid", args)]

    def received_from(self, event_uuid: Optional[str] = None, fingerprint: Optional[str] = None, *,
                      scope: str = "event") -> set:
        """The peer hubs the event (or the events with that fingerprint) came from."""
        where, args = self._where(event_uuid, fingerprint, scope)
        return {row[0] for row in self._db.execute(f"SELECT peer FROM received WHERE {where}", args)}

    def known(self, event_uuid: Optional[str] = None, fingerprint: Optional[str] = None, *,
              scope: str = "event") -> bool:
        """Whether the index has seen the event at all (sent to someone or received)."""
        return bool(self.copies(event_uuid, fingerprint, scope=scope) or
                    self.received_from(event_uuid, fingerprint, scope=scope))

    def mark(self, rowids: Iterable[int], state: str, retraction_id: str, *, level: Optional[Level] = None,
             pap: Optional[str] = None, hidden: Optional[bool] = None) -> None:
        """A retraction took the copies back (``state``) or relabelled them (new level/PAP/hidden)."""
        with self._lock:
            for rowid in rowids:
                self._db.execute("UPDATE sent SET state = ?, retraction = ?, level = coalesce(?, level), "
                                 "pap = coalesce(?, pap), hidden = coalesce(?, hidden) WHERE rowid = ?",
                                 (state, retraction_id, None if level is None else int(level), pap,
                                  None if hidden is None else int(hidden), rowid))

    # --- retractions ----------------------------------------------------------------------
    def record_retraction(self, retraction, *, from_peer: Optional[str], outcome: str,
                          deliveries: Iterable[tuple] = (), time: Optional[str] = None) -> None:
        """Record a retraction the router handled: ``outcome`` (``routed``, or why it was
        refused) and its ``deliveries`` of ``(recipient, hub id or None, action, why)``.  The
        same retraction handled again (a retry, a replayed bundle) replaces its record."""
        when = time or _now()
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                db.execute("INSERT OR REPLACE INTO retractions (id, action, scope, originator, target_uuid, target_fp, "
                           "issued, routed, from_peer, outcome) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (retraction.id, retraction.action, retraction.scope, retraction.originator,
                            retraction.target_event_uuid, retraction.target_fingerprint, retraction.time, when,
                            from_peer, outcome))
                db.execute("DELETE FROM deliveries WHERE retraction = ?", (retraction.id,))
                db.executemany("INSERT INTO deliveries (retraction, recipient, hub, action, time, why) "
                               "VALUES (?,?,?,?,?,?)", [(retraction.id, r, h, a, when, w) for r, h, a, w in deliveries])
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def seen_retraction(self, retraction_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM retractions WHERE id = ?", (retraction_id,)).fetchone() is not None

    def record_confirmation(self, retraction_id: str, hub: str, time: str, holders_reached: Optional[int]) -> bool:
        """A peer hub confirmed it applied a retraction; False when this hub never sent that
        retraction to that hub (recorded all the same: the status shows it as unexpected)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO confirmations (retraction, hub, time, holders_reached, recorded) "
                             "VALUES (?,?,?,?,?)", (retraction_id, hub, time, holders_reached, _now()))
        return self._db.execute("SELECT 1 FROM deliveries WHERE retraction = ? AND hub = ?",
                                (retraction_id, hub)).fetchone() is not None

    def status(self, retraction_id: str) -> Optional[dict]:
        """What ``retraction status`` shows: the retraction, every holder it was sent to (and
        when), the peer hubs' confirmations and the peers that have not confirmed yet."""
        row = self._db.execute("SELECT id, action, scope, originator, target_uuid, target_fp, issued, routed, "
                               "from_peer, outcome FROM retractions WHERE id = ?", (retraction_id,)).fetchone()
        if row is None:
            return None
        keys = ("id", "action", "scope", "originator", "target_event_uuid", "target_fingerprint", "issued",
                "routed", "from_peer", "outcome")
        out: dict = dict(zip(keys, row))
        out["deliveries"] = [dict(zip(("recipient", "hub", "action", "time", "why"), d)) for d in self._db.execute(
            "SELECT recipient, hub, action, time, why FROM deliveries WHERE retraction = ? ORDER BY rowid",
            (retraction_id,))]
        out["confirmations"] = [dict(zip(("hub", "time", "holders_reached", "recorded"), c)) for c in self._db.execute(
            "SELECT hub, time, holders_reached, recorded FROM confirmations WHERE retraction = ? ORDER BY hub",
            (retraction_id,))]
        peers = sorted({d["hub"] for d in out["deliveries"] if d["hub"]})
        confirmed = {c["hub"] for c in out["confirmations"]}
        out["peers"] = peers
        out["unconfirmed"] = [p for p in peers if p not in confirmed]
        out["unexpected_confirmations"] = sorted(confirmed - set(peers))
        return out

    def retraction_ids(self) -> list:
        return [r[0] for r in self._db.execute("SELECT id FROM retractions ORDER BY routed")]

    def still_held(self, event_uuid: Optional[str] = None, fingerprint: Optional[str] = None, *,
                   scope: str = "event") -> list:
        """The recipients that still hold the event as far as this hub knows."""
        return sorted({h.recipient for h in self.copies(event_uuid, fingerprint, scope=scope, held_only=True)})


_ALLOWED_LABEL = re.compile(r"allowed: TLP:(CLEAR|GREEN|AMBER\+STRICT|AMBER|RED)\b")


def rebuild(holdings: Holdings, records: Iterator[dict]) -> int:
    """Re-create the ``sent`` copies from the audit trail's per-decision records
    (:func:`intelmq_crossborder.policy.audit.read_records`): every allowed decision is a copy,
    at the level its first reason states; the copy's own ids where the record has them
    (``sent_uuid``/``sent_fingerprint``), PAP, hidden flag and peer where it has those.
    Retractions are re-applied from :func:`intelmq_crossborder.policy.audit.read_retractions`
    by the caller.  Returns the number of copies."""
    n = 0
    for rec in records:
        if rec.get("allowed") is not True or not isinstance(rec.get("recipient"), str):
            continue
        reasons = rec.get("reasons") or []
        match = _ALLOWED_LABEL.match(reasons[0]) if reasons and isinstance(reasons[0], str) else None
        level = match.group(1) if match else None
        try:
            n += holdings.record_sent(rec.get("event_uuid"), rec.get("fingerprint"),
                                      [(rec["recipient"], rec.get("sent_uuid"), rec.get("sent_fingerprint"), level,
                                        rec.get("pap"), bool(rec.get("hidden")))],
                                      peer=rec.get("peer") if isinstance(rec.get("peer"), str) else None,
                                      time=rec.get("time") if isinstance(rec.get("time"), str) else None)
        except ValueError:
            continue            # an event without ids in the trail cannot be named by a retraction
    return n


def query_any(holdings: Holdings, sql: str, args: tuple = ()) -> list:
    """Read-only query for reports and tests."""
    return list(holdings._db.execute(sql, args))


def as_dict(h: Holding) -> dict:
    """A holding for JSON output."""
    return {"recipient": h.recipient, "event_uuid": h.event_uuid, "fingerprint": h.fingerprint,
            "sent_uuid": h.sent_uuid, "sent_fingerprint": h.sent_fingerprint,
            "level": None if h.level is None else h.level.label, "pap": h.pap, "hidden": h.hidden,
            "time": h.time, "state": h.state, "retraction": h.retraction}
