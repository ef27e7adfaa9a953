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
    import can be repeated; and events refused because their labels cannot be
    read (``stats record``), with the TLP ``(unreadable)``: such an event is never
    counted as unlabelled or CLEAR, and never shown under a TLP ceiling.
``warnings``
    early warnings (events with ``classification.identifier``
    ``crossborder-early-warning``, written by the early-warning expert).
``retractions``
    one row per retraction (docs/retraction.md) and contributor whose events it named
    (:func:`record_retraction`): the quality indicator "retracted".  An ``erase`` also takes
    the indicator value of the events it names out of ``events``, ``indicators`` and
    ``warnings``; the events table keeps each event's ``event_uuid`` and ``fingerprint`` (ids
    only) to find them.

The indicators per (day, contributor, hub) are computed on read by
:func:`contributions`: events by TLP and by classification, unique indicators,
duplicates, invalid events, median delay.

The ``tlp`` column of the store is this module's own record of an event's effective
level, not an event field: rows read back carry it under the key ``level``.
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

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.policy import retraction as policy
from intelmq_crossborder.policy.redact import hidden_event_uuid
UNKNOWN = "(unknown)"
NO_TLP = "(none)"
#: The level recorded for an event whose labels cannot be read (refused, see tlp.event_tlp).
UNREADABLE = "(unreadable)"
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
    origin_country TEXT,
    event_uuid TEXT,
    fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS events_day ON events(day);
CREATE TABLE IF NOT EXISTS retractions (
    retraction_id TEXT NOT NULL,
    contributor TEXT NOT NULL,
    hub TEXT NOT NULL,
    day TEXT NOT NULL,
    arrived_at TEXT NOT NULL,
    action TEXT NOT NULL,
    scope TEXT NOT NULL,
    tlp TEXT NOT NULL,
    events INTEGER NOT NULL,
    PRIMARY KEY (retraction_id, contributor, hub)
);
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


class StoreError(CrossBorderError, ValueError):
    """The store cannot be used: a directory, not an SQLite file, another schema, unreadable."""


_COLUMNS = {"events": {"day", "arrived_at", "contributor", "hub", "tlp", "classification", "indicator",
                       "duplicate", "first_tlp", "delay_seconds", "country", "origin_country"},
            "indicators": {"indicator", "contributor", "hub", "tlp", "first_seen"},
            "invalid": {"dump_key", "day", "contributor", "hub", "tlp", "bot_id", "reason"},
            "warnings": {"day", "arrived_at", "tlp", "trigger", "classification", "description", "indicator"},
            "retractions": {"retraction_id", "contributor", "hub", "day", "arrived_at", "action", "scope", "tlp",
                            "events"}}
#: columns added since the first release: a store without them gets them (ALTER TABLE)
_ADDED = {"events": (("event_uuid", "TEXT"), ("fingerprint", "TEXT"))}


def connect(path, create: bool = True) -> sqlite3.Connection:
    """Open (with ``create``: create) the store; :class:`StoreError` names the path when it
    cannot be used (``FileNotFoundError`` when it does not exist and ``create`` is false)."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a contributions store (an SQLite file)")
    if not create and not path.exists():
        raise FileNotFoundError(f"{path}: no contributions store (run the contributions expert first)")
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"{path}: cannot open the contributions store: {getattr(exc, 'strerror', None) or exc}") \
            from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # an erased indicator value must not stay behind in a freed page of the file
        conn.execute("PRAGMA secure_delete=ON")
        conn.executescript(SCHEMA)
        for table, wanted in _COLUMNS.items():
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if not wanted <= have:
                raise StoreError(f"{path}: not a contributions store: table {table} lacks the columns "
                                 f"{', '.join(sorted(wanted - have))}")
            for column, kind in _ADDED.get(table, ()):
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        conn.execute("CREATE INDEX IF NOT EXISTS events_event_uuid ON events(event_uuid)")
        conn.execute("CREATE INDEX IF NOT EXISTS events_fingerprint ON events(fingerprint)")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"{path}: not a usable contributions store (SQLite): {exc}") from None
    except StoreError:
        conn.close()
        raise
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


class FieldTypeError(CrossBorderError, ValueError):
    """A field the store records holds a list or an object where a value is expected."""

    def __init__(self, field_name: str, value):
        self.field = field_name
        self.reason = f"a {type(value).__name__} where a text or number is expected"
        super().__init__(f"field {field_name}: {self.reason}")


def _text(flat: dict, name: str) -> Optional[str]:
    """The value of a field the store records, as text (None when absent or empty)."""
    value = flat.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    raise FieldTypeError(name, value)


def effective_label(flat: dict) -> tuple:
    """``(label, error)``: the event's effective TLP as :func:`tlp.event_tlp` reads it
    (``(none)`` when it carries no label); ``(UNREADABLE, LabelError)`` when its labels
    cannot be read.  Never a guess: an unreadable event is not unlabelled and not CLEAR."""
    try:
        read = tlp.event_tlp(flat)
    except tlp.LabelError as exc:
        return UNREADABLE, exc
    return (read.label or NO_TLP), None


def indicator_of(flat: dict, fields: Iterable[str] = INDICATOR_FIELDS) -> Optional[str]:
    for name in fields:
        value = _text(flat, name)
        if value is None:
            continue
        value = value.strip()
        if name not in _CASE_SENSITIVE:
            value = value.lower()
        return f"{name}={value}"
    return None


def contributor_of(flat: dict) -> str:
    return (_text(flat, "provenance.originator") or _text(flat, "feed.provider") or _text(flat, "feed.name")
            or UNKNOWN)


def hub_of(flat: dict, local_hub: str) -> str:
    return _text(flat, "provenance.origin_hub") or local_hub


def is_warning(flat: dict, identifier: str = WARNING_IDENTIFIER) -> bool:
    return flat.get("classification.identifier") == identifier


def _lenient(function, *args) -> str:
    """For dumped messages (already known to be bad): a field of the wrong type is unknown."""
    try:
        return function(*args)
    except FieldTypeError:
        return UNKNOWN


@dataclass
class Recorded:
    duplicate: bool
    indicator: Optional[str]
    warning: bool = False


def record_event(conn: sqlite3.Connection, flat: dict, *, arrived_at: datetime, local_hub: str = "local",
                 warning_identifier: str = WARNING_IDENTIFIER, commit: bool = True) -> Recorded:
    """Record one event (a flat dict) that arrived at ``arrived_at``, under its effective TLP.

    Raises :class:`tlp.LabelError` (nothing recorded) when the event's labels cannot be
    read: the caller refuses it (the expert dumps it, ``stats import-dumps`` then counts
    it; :func:`record_jsonl` records it with :func:`record_refused`), and
    :class:`FieldTypeError` for a list or object in a field the store records."""
    arrived_at = _parse_time(arrived_at)
    day = arrived_at.date().isoformat()
    label, error = effective_label(flat)
    if error is not None:
        raise error
    if is_warning(flat, warning_identifier):
        conn.execute("INSERT INTO warnings(day, arrived_at, tlp, trigger, classification, description, indicator) "
                     "VALUES (?,?,?,?,?,?,?)",
                     (day, arrived_at.isoformat(), label, _text(flat, "extra.early_warning_trigger"),
                      _text(flat, "extra.reported_classification_type") or _text(flat, "classification.type"),
                      _text(flat, "event_description.text"), indicator_of(flat)))
        if commit:
            conn.commit()
        return Recorded(duplicate=False, indicator=None, warning=True)
    # every field is read before anything is written: a bad one leaves no partial record
    contributor, hub = contributor_of(flat), hub_of(flat, local_hub)
    indicator = indicator_of(flat)
    classification = _text(flat, "classification.type") or UNKNOWN
    country = _text(flat, "source.geolocation.cc") or UNKNOWN
    origin_country = _text(flat, "provenance.origin_country")
    ids = _text(flat, "provenance.event_uuid"), _text(flat, "provenance.fingerprint")
    source_time = _parse_time(_text(flat, "time.source"))
    duplicate, first_tlp = False, None
    if indicator is not None:
        row = conn.execute("SELECT contributor, tlp FROM indicators WHERE indicator = ?", (indicator,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO indicators(indicator, contributor, hub, tlp, first_seen) VALUES (?,?,?,?,?)",
                         (indicator, contributor, hub, label, arrived_at.isoformat()))
        else:
            duplicate = row[0] != contributor
            first_tlp = row[1] if duplicate else None
    delay = (arrived_at - source_time).total_seconds() if source_time else None
    conn.execute("INSERT INTO events(day, arrived_at, contributor, hub, tlp, classification, indicator, duplicate, "
                 "first_tlp, delay_seconds, country, origin_country, event_uuid, fingerprint) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (day, arrived_at.isoformat(), contributor, hub, label, classification, indicator, int(duplicate),
                  first_tlp, delay, country, origin_country, ids[0], ids[1]))
    if commit:
        conn.commit()
    return Recorded(duplicate=duplicate, indicator=indicator)


@dataclass
class RecordedRetraction:
    """What :func:`record_retraction` found: the events it named per (contributor, hub), and
    how many indicator values an erase took out of the store."""

    holders: dict
    erased_values: int = 0


def _level_of_labels(labels: Iterable[str]) -> str:
    """The most restrictive of the store's recorded labels (a label that is not a level wins:
    such a row is never shown under a ceiling)."""
    levels = []
    for label in labels:
        try:
            levels.append(tlp.Level.from_label(label))
        except tlp.UnknownTLPError:
            return label
    return max(levels).label if levels else UNKNOWN


def record_retraction(conn: sqlite3.Connection, retraction, *, arrived_at: datetime,
                      commit: bool = True) -> RecordedRetraction:
    """Record one retraction (:class:`intelmq_crossborder.policy.retraction.Retraction`): one row
    per contributor and hub whose recorded events it names (by ``event_uuid``, the uuid a hidden
    source gets, or ``fingerprint``; ids only), under the most restrictive level of those events,
    so that a reader under a TLP ceiling learns nothing of events above it.  A retraction that
    names no recorded event is counted for contributor ``(unknown)`` of the retracting hub,
    level ``(unknown)`` (shown without a ceiling only).  Recording it again changes nothing.

    An ``erase`` takes the indicator values of those events out of the store (``events``; and
    ``indicators`` and ``warnings`` where no other event still holds the value)."""
    arrived_at = _parse_time(arrived_at)
    day = arrived_at.date().isoformat()
    if retraction.scope == "indicator" or not retraction.target_event_uuid:
        rows = conn.execute("SELECT id, contributor, hub, tlp, indicator FROM events WHERE fingerprint = ?",
                            (retraction.target_fingerprint,)).fetchall()
    else:
        uuid = retraction.target_event_uuid
        rows = conn.execute("SELECT id, contributor, hub, tlp, indicator FROM events WHERE event_uuid IN (?, ?)",
                            (uuid, hidden_event_uuid(uuid))).fetchall()
    holders: dict = defaultdict(list)
    for _, contributor, hub, label, _ in rows:
        holders[(contributor, hub)].append(label)
    if not holders:
        holders[(UNKNOWN, retraction.originator)] = []
    for (contributor, hub), labels in holders.items():
        conn.execute("INSERT OR IGNORE INTO retractions(retraction_id, contributor, hub, day, arrived_at, action, "
                     "scope, tlp, events) VALUES (?,?,?,?,?,?,?,?,?)",
                     (retraction.id, contributor, hub, day, arrived_at.isoformat(), retraction.action,
                      retraction.scope, _level_of_labels(labels), len(labels)))
    erased = 0
    if retraction.action == "erase" and rows:
        values = {row[4] for row in rows if row[4]}
        conn.executemany("UPDATE events SET indicator = NULL WHERE id = ?", [(row[0],) for row in rows])
        for value in values:
            if conn.execute("SELECT 1 FROM events WHERE indicator = ? LIMIT 1", (value,)).fetchone() is None:
                conn.execute("DELETE FROM indicators WHERE indicator = ?", (value,))
                conn.execute("UPDATE warnings SET indicator = NULL WHERE indicator = ?", (value,))
            erased += 1
    if commit:
        conn.commit()
        if erased:
            # the write-ahead log still holds the pages as they were before: fold it in and empty it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return RecordedRetraction({k: len(v) for k, v in holders.items()}, erased)


def record_refused(conn: sqlite3.Connection, key: str, day: str, flat: dict, reason: str,
                   local_hub: str = "local", bot_id: Optional[str] = None) -> bool:
    """Count an event refused because its labels cannot be read, as invalid with the TLP
    ``(unreadable)`` (never unlabelled, never shown under a ceiling).  ``key`` makes a
    repeated import count once.  True if it was new."""
    cur = conn.execute("INSERT OR IGNORE INTO invalid(dump_key, day, contributor, hub, tlp, bot_id, reason) "
                       "VALUES (?,?,?,?,?,?,?)",
                       (key, day, _lenient(contributor_of, flat), _lenient(hub_of, flat, local_hub), UNREADABLE,
                        bot_id, reason[:500]))
    return bool(cur.rowcount)


def record_jsonl(conn: sqlite3.Connection, path, local_hub: str = "local",
                 now: Optional[datetime] = None, problems: Optional[list] = None) -> int:
    """Record the events of a JSON-lines file; returns how many were recorded.

    A line is an event (flat or hierarchical, as IntelMQ's file output writes
    it; arrival: ``now``) or ``{"arrived_at": ISO time, "event": {...}}``.
    A line that cannot be read raises :class:`inputs.InputError` naming the file,
    line and field, or, with a ``problems`` list, is added to it and skipped (the
    other lines are recorded).  An event whose labels cannot be read is counted as
    refused (:func:`record_refused`) and, with ``problems``, reported there too.
    """
    n = 0
    now = now or datetime.now(timezone.utc)
    source = str(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise inputs.InputError(source, f"cannot read the file: {exc.strerror or exc}") from None
    with handle:
        for lineno, obj in inputs.iter_json_lines(handle, source):
            try:
                flat, arrived = _event_line(obj, source, lineno, now)
                if policy.is_retraction(flat):
                    try:
                        record_retraction(conn, policy.Retraction.from_event(flat), arrived_at=arrived, commit=False)
                    except policy.RetractionError as exc:
                        raise inputs.InputError(source, exc.reason, line=lineno, field=exc.field) from None
                    n += 1
                    continue
                try:
                    record_event(conn, flat, arrived_at=arrived, local_hub=local_hub, commit=False)
                except FieldTypeError as exc:
                    raise inputs.InputError(source, exc.reason, line=lineno, field=exc.field) from None
                except tlp.LabelError as exc:
                    record_refused(conn, f"{Path(source).name}:{lineno}", arrived.date().isoformat(), flat,
                                   str(exc), local_hub)
                    refused = inputs.InputError(source, f"refused, counted as invalid ({UNREADABLE}): "
                                                        f"{exc.reason}", line=lineno, field=exc.field)
                    if problems is not None:
                        problems.append(refused)
                    continue
            except inputs.InputError as exc:
                if problems is None:
                    conn.commit()
                    raise
                problems.append(exc)
                continue
            n += 1
    conn.commit()
    return n


def _event_line(obj, source: str, lineno: int, now: datetime) -> tuple:
    """``(flat event, arrival)`` of one JSON-lines value, or :class:`inputs.InputError`."""
    if isinstance(obj, inputs.InputError):
        raise obj
    if not isinstance(obj, dict):
        raise inputs.InputError(source, f"an event is a JSON object, not a {_json_type(obj)}", line=lineno)
    arrived = now
    if "event" in obj:
        if not isinstance(obj["event"], dict):
            raise inputs.InputError(source, f"an event is a JSON object, not a {_json_type(obj['event'])}",
                                    line=lineno, field="event")
        arrived = _parse_time(obj.get("arrived_at")) if isinstance(obj.get("arrived_at"), str) else None
        if arrived is None:
            raise inputs.InputError(source, "not an ISO time", line=lineno, field="arrived_at")
        obj = obj["event"]
    try:
        return _flatten(obj), arrived
    except ValueError as exc:
        raise inputs.InputError(source, str(exc), line=lineno) from None


def _json_type(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


# --- invalid events from IntelMQ dump files --------------------------------------

def import_dumps(conn: sqlite3.Connection, paths: Iterable, local_hub: str = "local",
                 problems: Optional[list] = None) -> tuple:
    """Record every message in IntelMQ dump files (``*.dump``) as an invalid event.

    ``paths``: dump files or directories holding them.  Returns (new, already
    imported).  Each dumped message is keyed by file name and dump timestamp, so
    importing again counts nothing twice.  Its TLP is the effective label of the
    dumped message (:func:`effective_label`); a message that cannot be read (not
    JSON, undecodable bytes, unreadable labels) counts as ``(unreadable)``.

    A file that is not a dump file raises :class:`inputs.InputError` naming it, or,
    with a ``problems`` list, is added to it and skipped; so is an entry that is
    not a JSON object (the other entries are imported).
    """
    new = seen = 0
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            try:
                files.extend(sorted(p.glob("*.dump")))
            except OSError as exc:
                _problem(problems, inputs.InputError(p, f"cannot read the directory: {exc.strerror or exc}"))
        else:
            files.append(p)
    for path in files:
        try:
            text = inputs.read_text(path, what="dump file")
        except inputs.InputError as exc:
            _problem(problems, exc)
            continue
        try:
            dump = inputs.loads_json(text, path) if text.strip() else {}
        except inputs.InputError as exc:
            _problem(problems, inputs.InputError(path, f"not an IntelMQ dump file: {exc.reason}", line=exc.line,
                                                 field=exc.field))
            continue
        if not isinstance(dump, dict):
            _problem(problems, inputs.InputError(path, "not an IntelMQ dump file: a JSON object of timestamp -> "
                                                       f"entry expected, not a {_json_type(dump)}"))
            continue
        for stamp, entry in dump.items():
            if not isinstance(entry, dict):
                _problem(problems, inputs.InputError(path, f"a dump entry is a JSON object, not a "
                                                           f"{_json_type(entry)}", field=stamp))
                continue
            if _import_entry(conn, f"{path.name}:{stamp}", stamp, entry, local_hub):
                new += 1
            else:
                seen += 1
    conn.commit()
    return new, seen


def _problem(problems: Optional[list], error: Exception) -> None:
    if problems is None:
        raise error
    problems.append(error)


def _import_entry(conn: sqlite3.Connection, key: str, stamp: str, entry: dict, local_hub: str) -> bool:
    message = entry.get("message")
    flat: dict = {}
    readable = False
    if entry.get("message_type") != "base64" and isinstance(message, str):
        try:
            parsed = inputs.loads_json(message, key)
            if isinstance(parsed, dict):
                flat, readable = _flatten(parsed), True
        except ValueError:           # InputError, or two spellings of one field
            pass
    label = effective_label(flat)[0] if readable else UNREADABLE
    when = _parse_time(stamp) or datetime.now(timezone.utc)
    tb = entry.get("traceback") or []
    last = tb[-1] if isinstance(tb, list) and tb else tb
    reason = (last if isinstance(last, str) else json.dumps(last, default=str)).strip()
    bot_id = entry.get("bot_id") if isinstance(entry.get("bot_id"), str) else None
    cur = conn.execute("INSERT OR IGNORE INTO invalid(dump_key, day, contributor, hub, tlp, bot_id, reason) "
                       "VALUES (?,?,?,?,?,?,?)",
                       (key, when.date().isoformat(), _lenient(contributor_of, flat),
                        _lenient(hub_of, flat, local_hub), label, bot_id, reason[:500]))
    return bool(cur.rowcount)


def _flatten(d: dict, prefix: str = "") -> dict:
    """IntelMQ's flat keys of a flat or hierarchical event (``extra.*`` values kept whole).
    Raises ValueError when one field is given twice (``sharing.tlp`` and ``sharing: {tlp}``):
    never silently one of them."""
    out: dict = {}
    stack = [(prefix, d)]
    while stack:
        base, mapping = stack.pop()
        for k, v in mapping.items():
            key = f"{base}{k}"
            if isinstance(v, dict) and not key.startswith("extra."):
                stack.append((key + ".", v))
            elif key in out:
                raise ValueError(f"field {key}: given twice (flat and nested)")
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
    #: retractions of this contributor's events that arrived this day, by action
    retracted: dict = field(default_factory=dict)

    @property
    def retractions(self) -> int:
        return sum(self.retracted.values())

    def as_dict(self) -> dict:
        return {"day": self.day, "contributor": self.contributor, "hub": self.hub, "events": self.events,
                "by_tlp": dict(sorted(self.by_tlp.items())),
                "by_classification": dict(sorted(self.by_classification.items())),
                "unique_indicators": self.unique_indicators, "duplicates": self.duplicates,
                "invalid": self.invalid, "median_delay_seconds": self.median_delay_seconds,
                "retracted": dict(sorted(self.retracted.items()))}


def tlp_allowed(label: str, ceiling: Optional[tlp.Level], default_tlp: tlp.Level = tlp.Level.AMBER) -> bool:
    """Whether an event recorded with ``label`` may appear under ``ceiling`` (None: everything).
    ``(unreadable)`` and anything that is not a canonical label never appear under a ceiling."""
    if ceiling is None:
        return True
    if label == NO_TLP:
        level = default_tlp
    elif label == UNKNOWN:
        return False            # a retraction of nothing recorded: its level is not known
    else:
        try:
            level = tlp.Level.from_label(label)
        except tlp.UnknownTLPError:
            return False        # never a guess
    return level <= ceiling


def _rows(conn: sqlite3.Connection, table: str, order: str, since: Optional[str], until: Optional[str],
          ceiling: Optional[tlp.Level], default_tlp: tlp.Level) -> list:
    """Rows of ``table`` as dicts, ``since``..``until`` (ISO days, inclusive), at or below ``ceiling``.
    The store's ``tlp`` column (the level recorded, not an event field) is the key ``level``."""
    sql, args = f"SELECT * FROM {table} WHERE 1=1", []  # nosec B608 - table and order are our constants
    if since:
        sql += " AND day >= ?"
        args.append(since)
    if until:
        sql += " AND day <= ?"
        args.append(until)
    cur = conn.execute(f"{sql} ORDER BY {order}", args)
    names = ["level" if c[0] == "tlp" else c[0] for c in cur.description]
    return [r for r in (dict(zip(names, row)) for row in cur.fetchall())
            if tlp_allowed(r["level"], ceiling, default_tlp)]


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
        c.by_tlp[r["level"]] = c.by_tlp.get(r["level"], 0) + 1
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
    for r in _rows(conn, "retractions", "arrived_at", since, until, ceiling, default_tlp):
        c = group(r["day"], r["contributor"], r["hub"])
        c.retracted[r["action"]] = c.retracted.get(r["action"], 0) + 1
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
