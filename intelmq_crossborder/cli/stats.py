"""``intelmq-crossborder stats ...`` and ``intelmq-crossborder report daily``: the CLI of the indicators.

Both read the SQLite store the contributions expert writes
(:mod:`intelmq_crossborder.analytics.contributions`); ``--db`` overrides the default path.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from intelmq_crossborder.analytics import contributions as cb
from intelmq_crossborder.analytics.situational import render_csv, render_table
from intelmq_crossborder.cli.common import fail, unusable_paths
from intelmq_crossborder.core import inputs, tlp

MAX_DAYS = 366          # the longest period of the daily report's trend plots


def _day(value: str) -> str:
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = None
    if days is None or not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"not a number of days from 1 to {MAX_DAYS}: {value[:40]!r}")
    return days


def _hub(value: str) -> str:
    if not value or len(value) > 128 or not value.isprintable() or value != value.strip() \
            or not _encodable(value):
        raise argparse.ArgumentTypeError(f"not a hub id (printable text without surrounding spaces, at most "
                                         f"128 characters): {value[:40]!r}")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _level(value: str) -> tlp.Level:
    try:
        return tlp.parse_level(value, "--tlp-ceiling")
    except tlp.UnknownTLPError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _store(args) -> Path:
    return Path(args.db) if args.db else cb.db_from_env()


def _open(args, create: bool = False):
    """The store and its path; FileNotFoundError or cb.StoreError naming the path."""
    path = _store(args)
    return cb.connect(path, create=create), path


#: What reading a store that is not ours can raise (another schema, values of the wrong type).
_STORE_ERRORS = (sqlite3.Error, TypeError, ValueError)


def _stats_contributions(args) -> int:
    try:
        conn, path = _open(args)
    except (FileNotFoundError, cb.StoreError) as exc:
        return fail(str(exc))
    try:
        rows = cb.contributions(conn, since=args.since, until=args.until, ceiling=args.tlp_ceiling)
        if args.format == "json":
            text = json.dumps([r.as_dict() for r in rows], indent=2) + "\n"
        elif args.format == "csv":
            text = render_csv(rows)
        else:
            text = (render_table(rows) if rows else "No contributions recorded in this period.") + "\n"
    except _STORE_ERRORS as exc:
        return _not_a_store(path, exc)
    finally:
        conn.close()
    sys.stdout.write(text)
    return 0


def _not_a_store(path: Path, exc: Exception) -> int:
    return fail(f"{path}: not a usable contributions store: {exc}")


def _stats_import_dumps(args) -> int:
    paths = [Path(p) for p in args.paths] or [cb.default_dump_dir()]
    unusable = unusable_paths(paths, file_only=False)
    if unusable:
        return fail("; ".join(unusable))
    try:
        conn, path = _open(args, create=True)
    except cb.StoreError as exc:
        return fail(str(exc))
    problems: list = []
    try:
        new, seen = cb.import_dumps(conn, paths, local_hub=args.local_hub, problems=problems)
    except sqlite3.Error as exc:
        return _not_a_store(path, exc)
    finally:
        conn.close()
    for problem in problems:
        fail(str(problem))
    print(f"{path}: {new} invalid events recorded, {seen} already recorded before"
          + (f"; {len(problems)} problem(s), see above" if problems else ""))
    return 1 if problems else 0


def _stats_record(args) -> int:
    files = [Path(p) for p in args.files]
    unusable = unusable_paths(files, file_only=True)
    if unusable:
        return fail("; ".join(unusable))
    try:
        conn, path = _open(args, create=True)
    except cb.StoreError as exc:
        return fail(str(exc))
    total, problems = 0, []
    try:
        for name in files:
            try:
                total += cb.record_jsonl(conn, name, local_hub=args.local_hub, problems=problems)
            except inputs.InputError as exc:          # the file itself cannot be read
                problems.append(exc)
    except sqlite3.Error as exc:
        return _not_a_store(path, exc)
    finally:
        conn.close()
    for problem in problems:
        fail(str(problem))
    print(f"{path}: {total} events recorded" + (f"; {len(problems)} line(s) not recorded as events, see above"
                                                if problems else ""))
    return 1 if problems else 0


def _report_daily(args) -> int:
    from intelmq_crossborder.analytics import report
    day = args.date or datetime.now(timezone.utc).date().isoformat()
    try:
        date.fromisoformat(day) - timedelta(days=args.days - 1)       # the first day of the report
    except OverflowError:
        return fail(f"--date {day} with --days {args.days} starts before the year 1")
    if not _encodable(args.title):
        return fail("--title is not valid text (a byte that is not UTF-8)")
    try:
        conn, path = _open(args)
    except (FileNotFoundError, cb.StoreError) as exc:
        return fail(str(exc))
    try:
        out = report.write_daily(conn, Path(args.out), day=day, days=args.days, ceiling=args.tlp_ceiling,
                                 default_tlp=args.default_tlp, title=args.title)
    except OSError as exc:
        return fail(f"{args.out}: {exc.strerror or exc}")
    except _STORE_ERRORS as exc:
        return _not_a_store(path, exc)
    finally:
        conn.close()
    print(out)
    return 0


def _db_option(p) -> None:
    p.add_argument("--db", metavar="PATH",
                   help="SQLite store of the contributions expert (default: $INTELMQ_CROSSBORDER_STATS_DB or "
                        f"{cb.default_db_path()})")


def register(sub) -> None:
    s = sub.add_parser("stats", help="contribution and quality indicators",
                       description="Contribution and quality indicators per contributing organisation and hub, "
                                   "per day, from the store the contributions expert writes.")
    ssub = s.add_subparsers(dest="stats_command", required=True, metavar="COMMAND")
    c = ssub.add_parser(
        "contributions", help="events by TLP and classification, unique indicators, duplicates, invalid, delay, "
                              "retractions",
        description="Per day, contributing organisation (provenance.originator, else feed.provider) and hub "
                    "(provenance.origin_hub): events by TLP and by classification, unique indicators, "
                    "duplicates (indicator first seen from another contributor), events dropped as invalid "
                    "(imported from IntelMQ dump files with 'stats import-dumps'), the median delay from "
                    "time.source to arrival and the retractions of the contributor's events, by action. TLP is each event's effective label (the most restrictive it "
                    "carries). Exits 2 if the store does not exist or is not a contributions store.")
    c.add_argument("--since", type=_day, metavar="DATE", help="first day (YYYY-MM-DD, UTC), inclusive")
    c.add_argument("--until", type=_day, metavar="DATE", help="last day (YYYY-MM-DD, UTC), inclusive")
    c.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format (table)")
    c.add_argument("--tlp-ceiling", type=_level, metavar="LEVEL",
                   help="count only events at or below this TLP (default: all; events without a label "
                        "count as AMBER)")
    _db_option(c)
    c.set_defaults(func=_stats_contributions)
    rec = ssub.add_parser(
        "record", help="record the events of JSON-lines files (backfill, tests)",
        description="Record events from JSON-lines files, as the contributions expert would: one event per "
                    "line (as IntelMQ's file output writes them; arrival = now), or {\"arrived_at\": ISO time, "
                    "\"event\": {...}}. A bad line is named on stderr (file, line, field) and skipped; an event "
                    "whose labels cannot be read is counted as invalid with TLP (unreadable); the other lines "
                    "are recorded and the exit status is then 1. Exits 2 if a file or the store cannot be used.")
    rec.add_argument("files", nargs="+", metavar="FILE")
    rec.add_argument("--local-hub", type=_hub, default="local",
                     help="hub id for events without provenance.origin_hub")
    _db_option(rec)
    rec.set_defaults(func=_stats_record)
    d = ssub.add_parser(
        "import-dumps", help="record the messages in IntelMQ dump files as invalid events",
        description="Read IntelMQ dump files (*.dump, as written by bots that dumped a message) and record "
                    "every dumped message as an event dropped as invalid, for its contributor and hub. "
                    "Repeating the import counts nothing twice. A file that is not a dump file is named on "
                    "stderr and skipped (exit 1 at the end); exits 2 if a path or the store cannot be used.")
    d.add_argument("paths", nargs="*", metavar="PATH",
                   help="dump files or directories (default: IntelMQ's log directory)")
    d.add_argument("--local-hub", type=_hub, default="local",
                   help="hub id for messages without provenance.origin_hub")
    _db_option(d)
    d.set_defaults(func=_stats_import_dumps)

    r = sub.add_parser("report", help="situational-awareness reports",
                       description="Situational-awareness reports from the contributions store.")
    rsub = r.add_subparsers(dest="report_command", required=True, metavar="COMMAND")
    dr = rsub.add_parser(
        "daily", help="write the daily HTML report with PNG plots",
        description="Write a self-contained HTML page (PNG plots embedded) with events per country of origin, "
                    "per RSIT classification over the last days, the TLP mix, the top indicators reported by "
                    "several hubs, the early warnings raised and the contribution table. Nothing above the "
                    "TLP ceiling is read into the report; the header states the ceiling.")
    dr.add_argument("--out", required=True, metavar="DIR", help="directory to write daily-<DATE>.html into")
    dr.add_argument("--date", type=_day, metavar="DATE", help="day of the report (default: today, UTC)")
    dr.add_argument("--days", type=_days, default=7, help=f"days covered by the trend plots, 1 to {MAX_DAYS} (7)")
    dr.add_argument("--tlp-ceiling", type=_level, default=tlp.Level.GREEN, metavar="LEVEL",
                    help="highest TLP the report's audience may see (GREEN)")
    dr.add_argument("--default-tlp", type=_level, default=tlp.Level.AMBER, metavar="LEVEL",
                    help="level assumed for events without any TLP label (AMBER)")
    dr.add_argument("--title", default="Cross-border hub: daily situational awareness", help="page title")
    _db_option(dr)
    dr.set_defaults(func=_report_daily)
