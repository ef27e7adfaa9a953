"""``intelmq-crossborder policy``: check sharing agreements against events.

``intelmq-crossborder policy check --agreements DIR --events FILE.jsonl [--strict]``

Input: IntelMQ events, one JSON object per line, in IntelMQ's flat key form
(``"source.ip": ...``); each is validated against the cross-border harmonization.
Output (stdout): one JSON line per (event, recipient)::

    {"event": <0-based line index>, "recipient": "<id>", "allowed": true|false,
     "reasons": [...], "event_out": {...}|null}

Lines are read with :func:`intelmq_crossborder.core.inputs.iter_json_lines`: a line
that is not one JSON object the hub accepts (duplicate keys, huge numbers, deep
nesting, lone surrogates, bytes that are not UTF-8, a list or a string instead of
an object, a field or value the harmonization refuses) is a bad line, reported on
stderr as ``FILE:LINE: bad event line skipped: field X: reason``.  An event whose
labels cannot be read (:class:`intelmq_crossborder.core.tlp.LabelError`) is denied for
every recipient with ``tlp-unreadable: field X: ...`` and named on stderr.

Exit status: 0 all lines checked; 1 some input lines were bad (skipped) or an
event was refused for an unreadable label; 2 a bad, missing or unreadable
agreements directory or events file, or with ``--strict`` the first bad input
line (nothing more is checked).
The HMAC key for pseudonymising agreements is read from the environment
variable named by ``--hmac-key-env`` (default ``CROSSBORDER_HMAC_KEY``), never
from the command line; without it those agreements deny with ``key-missing``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["register", "check"]


class _BadLine(ValueError):
    """An input line that is not an event: ``field`` (or None) and ``reason``."""

    def __init__(self, reason: str, field: Optional[str] = None):
        self.field, self.reason = field, reason
        super().__init__(f"field {field}: {reason}" if field else reason)


_BAD_VALUE_ERRORS = (ValueError, TypeError, KeyError, OverflowError, RecursionError)


def _event_from_value(data: Any, harmonization: dict) -> dict:
    """An IntelMQ event (as a flat dict) from one parsed line, field by field so that a
    refusal names the field; values are not quoted (they may be addresses or accounts)."""
    from intelmq.lib import exceptions
    from intelmq.lib.message import Event

    if not isinstance(data, dict):
        raise _BadLine(f"not a JSON object but a JSON {_json_type(data)}")
    kind = data.get("__type", "Event")
    if kind != "Event":
        raise _BadLine("not an Event (a __type other than 'Event')", "__type")
    event = Event(harmonization=harmonization)
    for key, value in data.items():
        if key == "__type":
            continue
        try:
            if not event.add(key, value, sanitize=False, raise_failure=False):
                event.add(key, value, sanitize=True)
        except exceptions.InvalidKey:
            raise _BadLine("not a field of the harmonization", key) from None
        except exceptions.InvalidValue:
            raise _BadLine(f"a JSON {_json_type(value)} value that is not valid for this field", key) from None
        except (exceptions.IntelMQException, *_BAD_VALUE_ERRORS) as exc:
            raise _BadLine(f"not accepted ({type(exc).__name__})", key) from None
    return dict(event)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def _unreadable_label(event: dict, agreements: list, error) -> list:
    """Decisions for an event whose labels cannot be read: denied for every recipient, the field
    named (fail closed; the policy does the same when it catches the error itself)."""
    from intelmq_crossborder.policy.decide import Decision
    reason = f"tlp-unreadable: {error}"
    return [Decision(False, [reason], None, a.recipient) for a in agreements]


def _load_agreements(path: str, harmonization: dict):
    """The enabled agreements of ``path``, or an error message naming the path (exit 2)."""
    from intelmq_crossborder.core import inputs
    from intelmq_crossborder.policy.agreements import AgreementError, load_agreements
    directory = Path(path)
    try:
        if not directory.exists():
            return None, f"{path}: no such directory of agreements"
        if not directory.is_dir():
            return None, f"{path}: not a directory of agreements (--agreements takes a directory)"
        return list(load_agreements(directory, harmonization).values()), None
    except AgreementError as exc:
        return None, f"bad agreement: {exc}"
    except inputs.InputError as exc:
        return None, f"bad agreement: {exc}"
    except OSError as exc:
        return None, f"{exc.filename or path}: cannot read the agreements: {exc.strerror or exc}"


def check(args) -> int:
    from intelmq_crossborder.core import inputs, tlp
    from intelmq_crossborder.core.secrets import secret_bytes
    from intelmq_crossborder.policy.decide import decide_all
    from intelmq_crossborder.harmonization import merged_harmonization

    def err(text: str) -> None:
        print(f"intelmq-crossborder: {text}", file=sys.stderr)

    harmonization = merged_harmonization()
    agreements, problem = _load_agreements(args.agreements, harmonization)
    if problem:
        err(f"error: {problem}")
        return 2
    key = secret_bytes(None, args.hmac_key_env)
    needs_key = [a.recipient for a in agreements if a.needs_key]
    if needs_key and not key:
        err(f"warning: agreement(s) of {', '.join(needs_key)} pseudonymise fields and the environment variable "
            f"{args.hmac_key_env} is not set: they deny every event (key-missing)")
    source = args.events
    try:
        if source == "-":
            fh = getattr(sys.stdin, "buffer", sys.stdin)
        elif Path(source).is_dir():
            err(f"error: {source}: is a directory, not a file of events")
            return 2
        else:
            fh = open(source, "rb")      # bytes: a line that is not UTF-8 is one bad line
    except OSError as exc:
        err(f"error: {source}: cannot read the events: {exc.strerror or exc}")
        return 2
    bad = refused = 0
    out = sys.stdout
    try:
        for lineno, value in inputs.iter_json_lines(fh, source):
            try:
                if isinstance(value, inputs.InputError):
                    raise _BadLine(value.reason, value.field)
                event = _event_from_value(value, harmonization)
            except _BadLine as exc:
                bad += 1
                if args.strict:
                    err(f"error: {source}:{lineno}: bad event line: {exc}")
                    return 2
                err(f"{source}:{lineno}: bad event line skipped: {exc}")
                continue
            try:
                decisions = decide_all(event, agreements, hmac_key=key)
            except tlp.LabelError as exc:
                decisions = _unreadable_label(event, agreements, exc)
            if any(r.startswith("tlp-unreadable:") for d in decisions for r in d.reasons):
                refused += 1
                first = next(r for d in decisions for r in d.reasons if r.startswith("tlp-unreadable:"))
                err(f"{source}:{lineno}: event refused for every recipient: {first}")
            for decision in decisions:
                out.write(json.dumps({"event": lineno - 1, "recipient": decision.recipient,
                                      "allowed": decision.allowed, "reasons": decision.reasons,
                                      "event_out": decision.event_out}, ensure_ascii=False) + "\n")
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        err(f"error: {source}: cannot read the events: {exc.strerror or exc}")
        return 2
    finally:
        if fh is not getattr(sys.stdin, "buffer", sys.stdin):
            fh.close()
    return 1 if bad or refused else 0


def register(sub) -> None:
    p = sub.add_parser("policy", help="sharing agreements: check decisions",
                       description="Work with the hub's sharing agreements (docs/agreements.md).")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    c = psub.add_parser(
        "check", help="print the share decision of every agreement for every event",
        description="Validate the agreements of DIR and apply them to each event of FILE.jsonl (IntelMQ events "
                    "in flat key form, one per line). Prints one JSON line per (event, recipient): "
                    '{"event": <0-based line index>, "recipient": ..., "allowed": ..., "reasons": [...], '
                    '"event_out": {...}|null}. Exit 2 for a bad, missing or unreadable agreements directory or '
                    "events file; a bad input line is reported on stderr with its line number and field and "
                    "skipped (exit 1 at the end), with --strict it stops the run with exit 2. An event whose "
                    "labels cannot be read is denied for every recipient (tlp-unreadable) and exits 1 at the end.")
    c.add_argument("--agreements", required=True, metavar="DIR", help="directory of agreement files (*.yaml)")
    c.add_argument("--events", required=True, metavar="FILE.jsonl", help="events, one JSON object per line "
                                                                         "('-' for standard input)")
    c.add_argument("--strict", action="store_true", help="stop at the first bad input line (exit 2)")
    c.add_argument("--hmac-key-env", default="CROSSBORDER_HMAC_KEY", metavar="VAR",
                   help="environment variable holding the pseudonymisation key (default: %(default)s)")
    c.set_defaults(func=check)
