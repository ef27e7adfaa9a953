"""``intelmq-crossborder retract`` and ``intelmq-crossborder retraction status|list``.

``retract`` builds a retraction (:mod:`intelmq_crossborder.policy.retraction`), checks it against
the hub's holdings index (who holds the event; whether this hub may retract it; whether a relabel
would lower a label) and puts it in the sharing router's queue; the router does the rest
(docs/retraction.md).  ``retraction status`` reads the router's records: every holder it was sent
to and when, which peer hubs confirmed and which have not yet.  ``retraction purge`` applies the
tombstone lines IntelMQ's stock file output wrote to its event files (an erase takes the
target's lines out, :mod:`intelmq_crossborder.formats.event_file`).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from intelmq_crossborder.cli.common import fail, printable, unusable_paths
from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.formats import event_file
from intelmq_crossborder.policy import holdings as H
from intelmq_crossborder.policy.retraction import ACTIONS, SCOPES, RetractionError, new_retraction
from intelmq_crossborder.runtime.retraction import RouterNotFound, find_router, inject

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _uuid(value: str) -> str:
    if not value.isascii() or not _UUID.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not a lowercase UUID: {value[:60]!r}")
    return value


def _fingerprint(value: str) -> str:
    if not value.isascii() or not _SHA256.fullmatch(value):
        raise argparse.ArgumentTypeError(f"not a SHA-256 fingerprint (64 lowercase hex digits): {value[:80]!r}")
    return value


def _level(value: str) -> str:
    try:
        return tlp.parse_level(value, "--tlp").label
    except tlp.UnknownTLPError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _line_bytes(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value[:40]!r}") from None
    if not 1024 <= number <= 1 << 30:
        raise argparse.ArgumentTypeError("must be between 1024 and 1073741824")
    return number


def _default_runtime() -> str:
    from intelmq import RUNTIME_CONF_FILE
    return RUNTIME_CONF_FILE


def _where(args):
    """The router location, or an exit status (2) after printing why."""
    try:
        return find_router(Path(args.runtime), args.router)
    except inputs.InputError as exc:
        return fail(printable(str(exc)))
    except RouterNotFound as exc:
        return fail(printable(str(exc)))


def _retract(args) -> int:
    where = _where(args)
    if isinstance(where, int):
        return where
    hub_id = args.hub_id or where.hub_id
    if not hub_id:
        return fail(f"{where.runtime}: router {where.bot_id} has no hub_id parameter; give --hub-id (the hub issuing "
                    "the retraction)")
    if args.hub_id and where.hub_id and args.hub_id != where.hub_id:
        return fail(f"--hub-id {args.hub_id!r} is not this hub ({where.hub_id!r}, the router's hub_id): only the "
                    "originating hub may retract")
    if args.action != "relabel" and (args.tlp or args.pap or args.hide_source):
        return fail("--tlp, --pap and --hide-source go with --action relabel only")
    try:
        msg = new_retraction(args.action, args.reason, hub_id, target_event_uuid=args.event_uuid,
                             target_fingerprint=args.fingerprint, scope=args.scope, new_tlp=args.tlp,
                             new_pap=args.pap, new_do_not_disclose_source=True if args.hide_source else None)
    except RetractionError as exc:
        return fail(printable(str(exc)))
    holders = []
    if where.holdings.is_file():
        try:
            with H.Holdings(where.holdings, readonly=True) as index:
                peers = index.received_from(msg.target_event_uuid, msg.target_fingerprint, scope=msg.scope)
                copies = index.copies(msg.target_event_uuid, msg.target_fingerprint, scope=msg.scope, held_only=True)
        except (H.HoldingsError, ValueError) as exc:
            return fail(printable(str(exc)))
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors of a file that is not an index
            return fail(printable(f"{where.holdings}: not a usable holdings index: {exc}"))
        if peers:
            return fail(f"the event came from peer hub(s) {', '.join(sorted(peers))}: only its originating hub may "
                        "retract it; ask them", 1)
        for c in copies:
            try:
                msg.check_relabel(c.level, c.pap)
            except RetractionError as exc:
                return fail(printable(f"{exc} (as {c.recipient} holds it)"), 1)
        holders = sorted({c.recipient for c in copies})
    else:
        print(f"warning: no holdings index at {printable(where.holdings)} (has the router run?): the router "
              "decides who holds the event", file=sys.stderr)
    event = msg.to_event()
    if args.dry_run:
        print(json.dumps(event, indent=2, sort_keys=True))
    else:
        try:
            inject(where, event)
        except RouterNotFound as exc:
            return fail(printable(str(exc)))
    what = "would put" if args.dry_run else "put"
    print(f"retraction {msg.id} ({msg.action} of {msg.target}): {what} in {where.entry_queue or where.queue} (router {where.bot_id}); "
          f"holders as far as the index knows: {', '.join(holders) if holders else 'none'}")
    print(f"follow it with: intelmq-crossborder retraction status {msg.id}"
          + (f" --runtime {printable(args.runtime)}" if args.runtime != _default_runtime() else ""))
    return 0


def _index(args):
    if args.db:
        path = Path(args.db)
    else:
        where = _where(args)
        if isinstance(where, int):
            return where
        path = where.holdings
    try:
        return H.Holdings(path, readonly=True)
    except H.HoldingsError as exc:
        return fail(printable(str(exc)))


def _status(args) -> int:
    index = _index(args)
    if isinstance(index, int):
        return index
    try:
        with index:
            status = index.status(args.id)
            still = [] if status is None else index.still_held(
                status["target_event_uuid"], status["target_fingerprint"], scope=status["scope"])
    except Exception as exc:  # noqa: BLE001 - sqlite3 errors of a file that is not an index
        return fail(printable(f"{index.path}: not a usable holdings index: {exc}"))
    if status is None:
        return fail(f"no retraction {args.id} in {printable(index.path)}", 1)
    status["still_holding"] = still
    if args.format == "json":
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(render_status(status))
    return 0


def render_status(status: dict) -> str:
    """The text form of ``retraction status``."""
    target = status["target_event_uuid"] or status["target_fingerprint"]
    lines = [f"retraction {status['id']}: {status['action']} of {status['scope']} {target}",
             f"  issued {status['issued']} by {status['originator']}"
             + (f", received from peer hub {status['from_peer']}" if status["from_peer"] else "")
             + f"; handled {status['routed']}: {status['outcome']}"]
    confirmed = {c["hub"]: c for c in status["confirmations"]}
    deliveries = status["deliveries"]
    lines.append(f"  holders reached: {sum(1 for d in deliveries if d['action'] in ACTIONS)}")
    for d in deliveries:
        conf = confirmed.get(d["hub"]) if d["hub"] else None
        tail = ""
        if d["hub"]:
            tail = (f"  confirmed {conf['time']} ({conf['holders_reached']} holder(s) reached there)" if conf
                    else "  not confirmed yet")
        why = f" ({d['why']})" if d["why"] else ""
        lines.append(f"    {d['recipient']:<20} {d['action']:<12} sent {d['time']}{why}{tail}")
    lines.append(f"  peers confirmed: {', '.join(sorted(confirmed)) or 'none'}; not yet: "
                 f"{', '.join(status['unconfirmed']) or 'none'}")
    if status["unexpected_confirmations"]:
        lines.append(f"  confirmations from hubs it was not sent to: {', '.join(status['unexpected_confirmations'])}")
    lines.append(f"  still holding: {len(status['still_holding'])}"
                 + (f" ({', '.join(status['still_holding'])})" if status["still_holding"] else ""))
    return "\n".join(lines)


def _list(args) -> int:
    index = _index(args)
    if isinstance(index, int):
        return index
    try:
        with index:
            rows = [index.status(rid) for rid in index.retraction_ids()]
    except Exception as exc:  # noqa: BLE001
        return fail(printable(f"{index.path}: not a usable holdings index: {exc}"))
    if args.format == "json":
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print("No retractions recorded.")
    for s in rows:
        print(f"{s['id']}  {s['action']:<8} {s['routed']}  {s['outcome']:<28} holders "
              f"{sum(1 for d in s['deliveries'] if d['action'] in ACTIONS)}, unconfirmed peers "
              f"{len(s['unconfirmed'])}")
    return 0


def _purge(args) -> int:
    paths = [Path(p) for p in args.files]
    problems = unusable_paths(paths)
    if problems:
        return fail(printable("; ".join(problems)))
    files = list(paths)
    if args.rotated:
        for path in paths:
            plain, packed = event_file.rotated(path)
            files += [p for p in plain if p not in files]
            for p in packed:
                print(f"warning: {printable(p)}: compressed, not reached; decompress it and name it to purge it",
                      file=sys.stderr)
    bad = 0
    found = []
    for path in files:
        try:
            lines, unreadable = event_file.tombstones(path, max_line=args.max_line_bytes)
        except OSError as exc:
            return fail(printable(f"{path}: cannot be read: {exc.strerror or exc}"))
        for problem in unreadable:
            print(f"bad tombstone: {printable(problem)}; not applied", file=sys.stderr)
        bad += len(unreadable)
        found += [msg for _, msg in lines]
    by_id = {}
    for msg in found:
        by_id.setdefault((msg.id, msg.target_event_uuid, msg.target_fingerprint), msg)
    msgs = list(by_id.values())
    erases = [m for m in msgs if m.action == "erase"]
    print(f"{len(msgs)} retraction(s) found in {len(files)} file(s): {len(erases)} erase(s) to apply"
          + ("; withdraw and relabel tombstones keep the lines" if len(msgs) > len(erases) else ""))
    removed_total = 0
    for path in files:
        try:
            done = event_file.purge(path, erases, max_line=args.max_line_bytes, dry_run=args.dry_run)
        except OSError as exc:
            return fail(printable(f"{path}: nothing removed: {exc}"))
        for problem in done.problems:
            print(f"unreadable line: {printable(problem)}", file=sys.stderr)
        bad += done.unreadable
        verb = "would remove" if args.dry_run else "removed"
        for msg in erases:
            n = done.removed.get(msg.id, 0)
            if n:
                ids = ", ".join(sorted(done.removed_ids.get(msg.id, ())))
                print(f"{printable(path)}: {verb} {n} line(s) of {msg.target} (erase {msg.id}; ids {ids})")
        if done.unreadable_removed:
            print(f"{printable(path)}: {verb} {done.unreadable_removed} unreadable line(s) naming an erased "
                  "target's id")
        removed_total += done.total_removed
    print(f"{'would remove' if args.dry_run else 'removed'} {removed_total} line(s) in all"
          + (f"; {bad} unreadable line(s) kept as they are (named on stderr)" if bad else ""))
    return 1 if bad else 0


def _locate(p) -> None:
    p.add_argument("--runtime", default=_default_runtime(), metavar="RUNTIME_YAML",
                   help="the hub's runtime config (default: IntelMQ's, %(default)s)")
    p.add_argument("--router", metavar="BOT_ID", help="the sharing router's bot id, when the runtime has several")


def register(sub) -> None:
    p = sub.add_parser("retract", help="withdraw, relabel or erase a shared event everywhere it went",
                       description="Put a retraction in the hub's sharing router queue: it goes to exactly the "
                                   "recipients holding the event and on through every hop (docs/retraction.md). "
                                   "Exit 1 when the hub's records refuse it (an event of a peer, a relabel that "
                                   "would lower a label), 2 on usage or configuration errors.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--event-uuid", type=_uuid, metavar="UUID", help="provenance.event_uuid of the event")
    target.add_argument("--fingerprint", type=_fingerprint, metavar="F",
                        help="provenance.fingerprint of the event (or of the indicator, with --scope indicator)")
    p.add_argument("--action", required=True, choices=ACTIONS)
    p.add_argument("--reason", required=True, metavar="TEXT",
                   help="why, in words (never the retracted data itself: it travels to every holder)")
    p.add_argument("--scope", choices=SCOPES, default="event",
                   help="event (default) or indicator: every event with the fingerprint")
    p.add_argument("--tlp", type=_level, metavar="LEVEL", help="relabel: the new, higher TLP label")
    p.add_argument("--pap", metavar="LEVEL", help="relabel: the new, higher PAP label")
    p.add_argument("--hide-source", action="store_true", help="relabel: the source must from now on be hidden")
    p.add_argument("--hub-id", metavar="HUB", help="the issuing hub (default: the router's hub_id)")
    p.add_argument("--dry-run", action="store_true", help="print the retraction, do not inject it")
    _locate(p)
    p.set_defaults(func=_retract)

    r = sub.add_parser("retraction", help="the records of retractions: status, list")
    rsub = r.add_subparsers(dest="retraction_command", required=True, metavar="SUBCOMMAND")
    s = rsub.add_parser("status", help="holders reached, confirmations, who still holds the event",
                        description="Every recipient the retraction was sent to and when, which peer hubs confirmed "
                                    "they applied it and which have not yet, and who still holds the event as far "
                                    "as this hub knows. Exit 1 when the id is unknown.")
    s.add_argument("id", type=_uuid, metavar="ID")
    s.add_argument("--db", metavar="HOLDINGS_DB", help="the router's holdings index (default: found via --runtime)")
    s.add_argument("--format", choices=("text", "json"), default="text")
    _locate(s)
    s.set_defaults(func=_status)
    lst = rsub.add_parser("list", help="every retraction this hub's router handled")
    lst.add_argument("--db", metavar="HOLDINGS_DB")
    lst.add_argument("--format", choices=("text", "json"), default="text")
    _locate(lst)
    lst.set_defaults(func=_list)
    pg = rsub.add_parser("purge", help="apply the erase tombstones of files written by IntelMQ's file output",
                         description="Read the retraction lines (tombstones) of the event files and, for each "
                                     "erase, rewrite every file atomically without the target's lines (by "
                                     "provenance.event_uuid and provenance.fingerprint). Stop the file output "
                                     "bot first (or reload it afterwards): it keeps the replaced file open. Exit 1 "
                                     "when a line could not be read (named on stderr; kept as it is), 2 when a "
                                     "file cannot be read or rewritten.")
    pg.add_argument("files", nargs="+", metavar="FILE")
    pg.add_argument("--no-rotated", dest="rotated", action="store_false",
                    help="leave the rotated siblings (FILE.1, FILE-YYYYMMDD) alone")
    pg.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")
    pg.add_argument("--max-line-bytes", type=_line_bytes, default=event_file.MAX_LINE, metavar="N",
                    help="a longer line is not parsed (kept, unless it names an erased target's id)")
    pg.set_defaults(func=_purge)
