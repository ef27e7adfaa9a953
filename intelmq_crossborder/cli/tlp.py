"""``intelmq-crossborder tlp normalise``: canonical TLP 2.0 labels."""
from __future__ import annotations

from intelmq_crossborder.cli.common import fail


def _normalise(args) -> int:
    from intelmq_crossborder.core import tlp
    status = 0
    for value in args.values:
        try:
            parsed = tlp.parse(value)
        except tlp.UnknownTLPError as exc:
            status = fail(str(exc))
            continue
        if parsed.level is None:
            status = fail(f"{value!r} is the Chatham House flag (do not disclose the source), not a TLP level")
            continue
        print(f"{parsed.label}\t{parsed.standard}" if args.show_standard else parsed.label)
    return status


def register(sub) -> None:
    p = sub.add_parser("tlp", help="TLP 2.0 labels", description="Work with TLP labels.")
    tsub = p.add_subparsers(dest="tlp_command", required=True, metavar="COMMAND")
    n = tsub.add_parser(
        "normalise", aliases=["normalize"],
        help="print the canonical TLP 2.0 label of each value",
        description="Print one canonical TLP 2.0 label (CLEAR, GREEN, AMBER, AMBER+STRICT, RED) per "
                    "value. Accepts TLP 1.0/2.0 labels with or without prefix, MISP tlp tags, CSAF "
                    "labels and STIX marking-definition ids. Exits 2 if a value is not a TLP label.")
    n.add_argument("values", nargs="+", metavar="VALUE")
    n.add_argument("--show-standard", action="store_true",
                   help="also print the standard the spelling belongs to, tab-separated")
    n.set_defaults(func=_normalise)
