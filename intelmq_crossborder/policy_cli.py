"""``intelmq-crossborder policy``: check sharing agreements against events.

``intelmq-crossborder policy check --agreements DIR --events FILE.jsonl [--strict]``

Input: IntelMQ events, one JSON object per line, in IntelMQ's flat key form
(``"source.ip": ...``); each is validated against the cross-border harmonization.
Output (stdout): one JSON line per (event, recipient)::

    {"event": <0-based line index>, "recipient": "<id>", "allowed": true|false,
     "reasons": [...], "event_out": {...}|null}

Exit status: 0 all lines checked; 1 some input lines were bad (reported on
stderr with their line number and skipped); 2 a bad agreement, an unreadable
file, or with ``--strict`` the first bad input line (nothing more is checked).
The HMAC key for pseudonymising agreements is read from the environment
variable named by ``--hmac-key-env`` (default ``CROSSBORDER_HMAC_KEY``), never
from the command line; without it those agreements deny with ``key-missing``.
"""
from __future__ import annotations

import json
import sys

__all__ = ["register", "check"]


class _BadLine(ValueError):
    pass


def _event_from_line(line: str, harmonization: dict) -> dict:
    from intelmq.lib import exceptions, message

    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise _BadLine(f"not a JSON object but {type(data).__name__}")
    kind = data.pop("__type", "Event")
    if kind != "Event":
        raise _BadLine(f"__type is {kind!r}, expected 'Event'")
    try:
        ev = message.MessageFactory.from_dict(data, harmonization=harmonization, default_type="Event")
    except exceptions.InvalidKey as exc:
        raise _BadLine(f"invalid field: {exc}") from None
    except exceptions.InvalidValue as exc:
        raise _BadLine(f"invalid value: {exc}") from None
    except (exceptions.IntelMQException, ValueError, TypeError) as exc:
        raise _BadLine(str(exc)) from None
    return dict(ev)


def check(args) -> int:
    from intelmq_crossborder import policy
    from intelmq_crossborder.harmonization import merged_harmonization

    def err(text: str) -> None:
        print(f"intelmq-crossborder: {text}", file=sys.stderr)

    harmonization = merged_harmonization()
    try:
        agreements = list(policy.load_agreements(args.agreements, harmonization).values())
    except policy.AgreementError as exc:
        err(f"error: bad agreement: {exc}")
        return 2
    key = policy.key_from(None, args.hmac_key_env)
    needs_key = [a.recipient for a in agreements if a.needs_key]
    if needs_key and not key:
        err(f"warning: agreement(s) of {', '.join(needs_key)} pseudonymise fields and the environment variable "
            f"{args.hmac_key_env} is not set: they deny every event (key-missing)")
    try:
        fh = sys.stdin if args.events == "-" else open(args.events, encoding="utf-8")
    except OSError as exc:
        err(f"error: {args.events}: {exc.strerror}")
        return 2
    bad = 0
    out = sys.stdout
    with fh:
        try:
            for index, line in enumerate(fh):
                if not line.strip():
                    continue
                try:
                    event = _event_from_line(line, harmonization)
                except _BadLine as exc:
                    bad += 1
                    err(f"{args.events}:{index + 1}: bad event line skipped: {exc}" if not args.strict else
                        f"error: {args.events}:{index + 1}: bad event line: {exc}")
                    if args.strict:
                        return 2
                    continue
                for decision in policy.decide_all(event, agreements, hmac_key=key):
                    out.write(json.dumps({"event": index, "recipient": decision.recipient,
                                          "allowed": decision.allowed, "reasons": decision.reasons,
                                          "event_out": decision.event_out}, ensure_ascii=False) + "\n")
        except UnicodeDecodeError as exc:
            err(f"error: {args.events}: not UTF-8 text ({exc.reason})")
            return 2
        except BrokenPipeError:
            # the reader went away (| head): stop quietly, as other command-line tools do
            import os
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    return 1 if bad else 0


def register(sub) -> None:
    p = sub.add_parser("policy", help="sharing agreements: check decisions",
                       description="Work with the hub's sharing agreements (docs/agreements.md).")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    c = psub.add_parser(
        "check", help="print the share decision of every agreement for every event",
        description="Validate the agreements of DIR and apply them to each event of FILE.jsonl (IntelMQ events "
                    "in flat key form, one per line). Prints one JSON line per (event, recipient): "
                    '{"event": <0-based line index>, "recipient": ..., "allowed": ..., "reasons": [...], '
                    '"event_out": {...}|null}. Exit 2 for a bad agreement; a bad input line is reported on '
                    "stderr with its line number and skipped (exit 1 at the end), with --strict it stops "
                    "the run with exit 2.")
    c.add_argument("--agreements", required=True, metavar="DIR", help="directory of agreement files (*.yaml)")
    c.add_argument("--events", required=True, metavar="FILE.jsonl", help="events, one JSON object per line "
                                                                         "('-' for standard input)")
    c.add_argument("--strict", action="store_true", help="stop at the first bad input line (exit 2)")
    c.add_argument("--hmac-key-env", default="CROSSBORDER_HMAC_KEY", metavar="VAR",
                   help="environment variable holding the pseudonymisation key (default: %(default)s)")
    c.set_defaults(func=check)
