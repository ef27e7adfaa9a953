"""Contribution and quality indicators per contributing organisation and hub, per day.

One SQLite file (WAL mode) is the store of the contributions expert, of
``intelmq-crossborder stats contributions`` and of the daily report.

Tables:

``events``
    one row per event the contributions expert saw: arrival day (UTC), who
    contributed it (``provenance.originator``, else ``feed.provider``, else
    ``feed.name``), the hub it came from (``provenance.origin_hub``, else the local
    hub id), ``sharing.tlp``, ``classification.type``, the indicator
    (:func:`indicator_of`), whether it was a duplicate (the indicator was first
    seen from another contributor), the delay ``time.source`` -> arrival, and the
    country of origin (``source.geolocation.cc``).
``indicators``
    first contributor and hub of every indicator: what makes a later report from
    someone else a duplicate.
``invalid``
    events dropped as invalid: one row per dumped message, imported from IntelMQ
    dump files (``stats import-dumps``), keyed by dump file and timestamp so an
    import can be repeated.
``warnings``
    early warnings (events with ``classification.identifier``
    ``crossborder-early-warning``, written by the early-warning expert).

The indicators per (day, contributor, hub) are computed on read by
:func:`contributions`: events by TLP and by classification, unique indicators,
duplicates, invalid events, median delay.
"""
from __future__ import annotations

import json
import os
import sqlite3
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from intelmq_crossborder import tlp

UNKNOWN = "(unknown)"
NO_TLP = "(none)"
WARNING_IDENTIFIER = "crossborder-early-warning"

#: fields read as the event's indicator, first present wins; the key is "<field>=<value>"
INDICATOR_FIELDS = (
    "malware.hash.sha256", "malware.hash.sha1", "malware.hash.md5",
    "source.url", "source.fqdn", "source.ip",
    "destination.url", "destination.fqdn", "destination.ip",
    "product.vulnerabilities",
)
_CASE_SENSITIVE = {"source.url", "destination.url"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    arrived_at TEXT NOT NULL,
    contributor TEXT NOT NULL,
    hub TEXT NOT NULL,
    tlp TEXT NOT NULL,
    classification TEXT NOT NULL,
    indicator TEXT,
    duplicate INTEGER NOT NULL DEFAULT 0,
    first_tlp TEXT,
    delay_seconds REAL,
    country TEXT NOT NULL,
    origin_country TEXT
);
CREATE INDEX IF NOT EXISTS events_day ON events(day);
CREATE TABLE IF NOT EXISTS indicators (
    indicator TEXT PRIMARY KEY,
    contributor TEXT NOT NULL,
    hub TEXT NOT NULL,
    tlp TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS invalid (
    dump_key TEXT PRIMARY KEY,
    day TEXT NOT NULL,
    contributor TEXT NOT NULL,
    hub TEXT NOT NULL,
    tlp TEXT NOT NULL,
    bot_id TEXT,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS warnings (
    id INTEGER PRIMARY KEY,
    day TEXT NOT NULL,
    arrived_at TEXT NOT NULL,
    tlp TEXT NOT NULL,
    trigger TEXT,
    classification TEXT,
    description TEXT,
    indicator TEXT
);
"""


def default_db_path() -> Path:
    """``<IntelMQ state dir>/../crossborder/contributions.sqlite``: /opt/intelmq/var/lib/crossborder/..."""
    from intelmq import VAR_STATE_PATH
    return Path(VAR_STATE_PATH).parent / "crossborder" / "contributions.sqlite"


def default_dump_dir() -> Path:
    from intelmq import DEFAULT_LOGGING_PATH
    return Path(DEFAULT_LOGGING_PATH)


def connect(path, create: bool = True) -> sqlite3.Connection:
    path = Path(path)
    if not create and not path.exists():
        raise FileNotFoundError(f"{path}: no contributions store (run the contributions expert first)")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


def _parse_time(value) -> Optional[datetime]:
    if not value:
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def indicator_of(flat: dict, fields: Iterable[str] = INDICATOR_FIELDS) -> Optional[str]:
    for name in fields:
        value = flat.get(name)
        if value in (None, ""):
            continue
        value = str(value).strip()
        if name not in _CASE_SENSITIVE:
            value = value.lower()
        return f"{name}={value}"
    return None


def contributor_of(flat: dict) -> str:
    return (flat.get("provenance.originator") or flat.get("feed.provider") or flat.get("feed.name")
            or UNKNOWN)


def hub_of(flat: dict, local_hub: str) -> str:
    return flat.get("provenance.origin_hub") or local_hub


def is_warning(flat: dict, identifier: str = WARNING_IDENTIFIER) -> bool:
    return flat.get("classification.identifier") == identifier


@dataclass
class Recorded:
    duplicate: bool
    indicator: Optional[str]
    warning: bool = False


def record_event(conn: sqlite3.Connection, flat: dict, *, arrived_at: datetime, local_hub: str = "local",
                 warning_identifier: str = WARNING_IDENTIFIER, commit: bool = True) -> Recorded:
    """Record one event (a flat dict) that arrived at ``arrived_at``."""
    arrived_at = _parse_time(arrived_at)
    day = arrived_at.date().isoformat()
    label = flat.get("sharing.tlp") or NO_TLP
    if is_warning(flat, warning_identifier):
        conn.execute("INSERT INTO warnings(day, arrived_at, tlp, trigger, classification, description, indicator) "
                     "VALUES (?,?,?,?,?,?,?)",
                     (day, arrived_at.isoformat(), label, flat.get("extra.early_warning_trigger"),
                      flat.get("extra.reported_classification_type") or flat.get("classification.type"),
                      flat.get("event_description.text"), indicator_of(flat)))
        if commit:
            conn.commit()
        return Recorded(duplicate=False, indicator=None, warning=True)
    contributor, hub = contributor_of(flat), hub_of(flat, local_hub)
    indicator = indicator_of(flat)
    duplicate, first_tlp = False, None
    if indicator is not None:
        row = conn.execute("SELECT contributor, tlp FROM indicators WHERE indicator = ?", (indicator,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO indicators(indicator, contributor, hub, tlp, first_seen) VALUES (?,?,?,?,?)",
                         (indicator, contributor, hub, label, arrived_at.isoformat()))
        else:
            duplicate = row[0] != contributor
            first_tlp = row[1] if duplicate else None
    source_time = _parse_time(flat.get("time.source"))
    delay = (arrived_at - source_time).total_seconds() if source_time else None
    conn.execute("INSERT INTO events(day, arrived_at, contributor, hub, tlp, classification, indicator, duplicate, "
                 "first_tlp, delay_seconds, country, origin_country) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                 (day, arrived_at.isoformat(), contributor, hub, label,
                  flat.get("classification.type") or UNKNOWN, indicator, int(duplicate), first_tlp, delay,
                  flat.get("source.geolocation.cc") or UNKNOWN, flat.get("provenance.origin_country")))
    if commit:
        conn.commit()
    return Recorded(duplicate=duplicate, indicator=indicator)


def record_jsonl(conn: sqlite3.Connection, path, local_hub: str = "local",
                 now: Optional[datetime] = None) -> int:
    """Record the events of a JSON-lines file.

    A line is an event (flat or hierarchical, as IntelMQ's file output writes
    it; arrival: ``now``) or ``{"arrived_at": ISO time, "event": {...}}``.
    Raises ValueError naming the file and line of a bad line.
    """
    n = 0
    now = now or datetime.now(timezone.utc)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: not a JSON object")
            arrived = now
            if "event" in obj and isinstance(obj["event"], dict):
                arrived = _parse_time(obj.get("arrived_at"))
                if arrived is None:
                    raise ValueError(f"{path}:{lineno}: field arrived_at: not an ISO time: {obj.get('arrived_at')!r}")
                obj = obj["event"]
            record_event(conn, _flatten(obj), arrived_at=arrived, local_hub=local_hub, commit=False)
            n += 1
    conn.commit()
    return n


# --- invalid events from IntelMQ dump files --------------------------------------

def import_dumps(conn: sqlite3.Connection, paths: Iterable, local_hub: str = "local") -> tuple:
    """Record every message in IntelMQ dump files (``*.dump``) as an invalid event.

    ``paths``: dump files or directories holding them.  Returns (new, already
    imported).  Each dumped message is keyed by file name and dump timestamp, so
    importing again counts nothing twice.
    """
    new = seen = 0
    files = []
    for p in paths:
        p = Path(p)
        files.extend(sorted(p.glob("*.dump")) if p.is_dir() else [p])
    for path in files:
        try:
            dump = json.loads(path.read_text("utf-8") or "{}")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not an IntelMQ dump file: {exc}") from None
        for stamp, entry in dump.items():
            key = f"{path.name}:{stamp}"
            message = entry.get("message")
            flat = {}
            if entry.get("message_type") != "base64" and isinstance(message, str):
                try:
                    flat = json.loads(message)
                except ValueError:
                    flat = {}
            flat = _flatten(flat) if isinstance(flat, dict) else {}
            when = _parse_time(stamp) or datetime.now(timezone.utc)
            tb = entry.get("traceback") or []
            reason = (tb[-1] if isinstance(tb, list) and tb else str(tb)).strip()
            label = flat.get("sharing.tlp") if isinstance(flat.get("sharing.tlp"), str) else NO_TLP
            cur = conn.execute("INSERT OR IGNORE INTO invalid(dump_key, day, contributor, hub, tlp, bot_id, reason) "
                               "VALUES (?,?,?,?,?,?,?)",
                               (key, when.date().isoformat(), contributor_of(flat), hub_of(flat, local_hub),
                                label, entry.get("bot_id"), reason[:500]))
            if cur.rowcount:
                new += 1
            else:
                seen += 1
    conn.commit()
    return new, seen


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not key.startswith("extra"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# --- reading -------------------------------------------------------------------

@dataclass
class Contribution:
    day: str
    contributor: str
    hub: str
    events: int = 0
    by_tlp: dict = field(default_factory=dict)
    by_classification: dict = field(default_factory=dict)
    unique_indicators: int = 0
    duplicates: int = 0
    invalid: int = 0
    median_delay_seconds: Optional[float] = None

    def as_dict(self) -> dict:
        return {"day": self.day, "contributor": self.contributor, "hub": self.hub, "events": self.events,
                "by_tlp": dict(sorted(self.by_tlp.items())),
                "by_classification": dict(sorted(self.by_classification.items())),
                "unique_indicators": self.unique_indicators, "duplicates": self.duplicates,
                "invalid": self.invalid, "median_delay_seconds": self.median_delay_seconds}


def tlp_allowed(label: str, ceiling: Optional[tlp.Level], default_tlp: tlp.Level = tlp.Level.AMBER) -> bool:
    """Whether an event labelled ``label`` may appear under ``ceiling`` (None: everything)."""
    if ceiling is None:
        return True
    if label == NO_TLP:
        level = default_tlp
    else:
        try:
            level = tlp.Level.from_label(label)
        except tlp.UnknownTLPError:
            return False        # never a guess
    return level <= ceiling


def _rows(conn: sqlite3.Connection, table: str, order: str, since: Optional[str], until: Optional[str],
          ceiling: Optional[tlp.Level], default_tlp: tlp.Level) -> list:
    """Rows of ``table`` as dicts, ``since``..``until`` (ISO days, inclusive), at or below ``ceiling``."""
    sql, args = f"SELECT * FROM {table} WHERE 1=1", []  # nosec B608 - table and order are our constants
    if since:
        sql += " AND day >= ?"
        args.append(since)
    if until:
        sql += " AND day <= ?"
        args.append(until)
    cur = conn.execute(f"{sql} ORDER BY {order}", args)
    names = [c[0] for c in cur.description]
    return [r for r in (dict(zip(names, row)) for row in cur.fetchall())
            if tlp_allowed(r["tlp"], ceiling, default_tlp)]


def event_rows(conn: sqlite3.Connection, since: Optional[str] = None, until: Optional[str] = None,
               ceiling: Optional[tlp.Level] = None, default_tlp: tlp.Level = tlp.Level.AMBER) -> list:
    """Event rows as dicts, from ``since`` to ``until`` (ISO days, inclusive), at or below ``ceiling``."""
    return _rows(conn, "events", "id", since, until, ceiling, default_tlp)


def contributions(conn: sqlite3.Connection, since: Optional[str] = None, until: Optional[str] = None,
                  ceiling: Optional[tlp.Level] = None, default_tlp: tlp.Level = tlp.Level.AMBER) -> list:
    """The indicators per (day, contributor, hub), sorted by day then contributor then hub."""
    groups: dict = {}
    indicators = defaultdict(set)
    delays = defaultdict(list)

    def group(day, contributor, hub) -> Contribution:
        key = (day, contributor, hub)
        if key not in groups:
            groups[key] = Contribution(day, contributor, hub)
        return groups[key]

    for r in event_rows(conn, since, until, ceiling, default_tlp):
        key = (r["day"], r["contributor"], r["hub"])
        c = group(*key)
        c.events += 1
        c.by_tlp[r["tlp"]] = c.by_tlp.get(r["tlp"], 0) + 1
        c.by_classification[r["classification"]] = c.by_classification.get(r["classification"], 0) + 1
        if r["indicator"]:
            indicators[key].add(r["indicator"])
        # a duplicate of a sighting above the ceiling is not counted: that would tell
        # the reader that something above the ceiling exists
        if r["duplicate"] and tlp_allowed(r["first_tlp"] or NO_TLP, ceiling, default_tlp):
            c.duplicates += 1
        if r["delay_seconds"] is not None:
            delays[key].append(r["delay_seconds"])
    sql, args = "SELECT day, contributor, hub, tlp FROM invalid WHERE 1=1", []
    if since:
        sql += " AND day >= ?"
        args.append(since)
    if until:
        sql += " AND day <= ?"
        args.append(until)
    for day, contributor, hub, label in conn.execute(sql, args):
        if tlp_allowed(label, ceiling, default_tlp):
            group(day, contributor, hub).invalid += 1
    for key, c in groups.items():
        c.unique_indicators = len(indicators.get(key, ()))
        if delays.get(key):
            c.median_delay_seconds = float(statistics.median(delays[key]))
    return [groups[k] for k in sorted(groups)]


def warning_rows(conn: sqlite3.Connection, since: Optional[str] = None, until: Optional[str] = None,
                 ceiling: Optional[tlp.Level] = None, default_tlp: tlp.Level = tlp.Level.AMBER) -> list:
    """Early-warning rows as dicts, like :func:`event_rows`."""
    return _rows(conn, "warnings", "arrived_at", since, until, ceiling, default_tlp)


def today() -> str:
    return date.today().isoformat()


def db_from_env() -> Path:
    value = os.environ.get("INTELMQ_CROSSBORDER_STATS_DB")
    return Path(value) if value else default_db_path()
