"""``intelmq-crossborder convert stix FILE...``: print what the STIX parser bot would emit."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from intelmq_crossborder.cli.common import fail, printable, short, unusable


def _convert_stix(args) -> int:
    from intelmq.lib.exceptions import InvalidValue
    from intelmq.lib.harmonization import ClassificationType
    from intelmq.lib.message import Event

    from intelmq_crossborder.core import tlp
    from intelmq_crossborder.formats.stix import parse as stix
    from intelmq_crossborder.harmonization import merged_harmonization

    mapping = {}
    for item in args.type_classification or []:
        kind, sep, ctype = item.partition("=")
        if not sep or not kind.strip():
            return fail(f"--type-classification {short(item)} is not INDICATOR_TYPE=CLASSIFICATION")
        mapping[kind.strip()] = ctype.strip()
    for ctype in list(mapping.values()) + [args.default_classification]:
        if ctype not in ClassificationType.allowed_values:
            return fail(f"{short(ctype)} is not an IntelMQ classification.type")
    try:
        default = None if args.default_tlp in (None, "", "none") else tlp.parse_level(args.default_tlp, "--default-tlp")
    except tlp.UnknownTLPError as exc:
        return fail(str(exc))
    try:
        hub_id = stix.check_hub_id(args.hub_id)
    except ValueError as exc:
        return fail("--" + printable(str(exc)).replace("hub_id", "hub-id", 1))
    harmonization = merged_harmonization()
    status = 0
    out = sys.stdout
    for name in args.files:
        path = Path(name)
        problem = unusable(path, what="STIX JSON file")
        if problem:                      # cannot be opened at all: usage, exit 2 (after the others)
            fail(printable(problem))
            status = 2
            continue
        where = printable(name)
        converter = stix.Converter(default_tlp=default, default_classification=args.default_classification,
                                   type_classification=mapping, where=where, hub_id=hub_id)
        try:
            bundle = stix.load_file(path)
        except stix.STIXFormatError as exc:
            fail(printable(exc), 1)
            status = max(status, 1)
            continue
        for item in converter.items(bundle):
            if item.error is not None:
                fail(printable(item.error), 1)
                status = max(status, 1)
                continue
            lines = []
            try:
                for fields in item.events + item.retractions:
                    ev = Event(harmonization=harmonization)
                    for key, value in fields.items():
                        try:
                            ev.add(key, value)
                        except InvalidValue:
                            raise stix.STIXFormatError(f"value {short(value)} is not a valid {key}", where,
                                                       item.path) from None
                    lines.append(json.dumps(ev.to_dict(hierarchical=False), sort_keys=True, ensure_ascii=False))
            except stix.STIXFormatError as exc:
                converter.stats.refused += 1
                fail(printable(exc), 1)
                status = max(status, 1)
                continue
            for line in lines:
                out.write(line + "\n")
        print(f"{where}: {converter.stats.summary()}", file=sys.stderr)
    return status


def register_convert_stix(convert_sub) -> None:
    """Add ``stix`` to the ``convert`` command group's subparsers."""
    p = convert_sub.add_parser(
        "stix", help="print the events the STIX parser bot would emit",
        description="Convert STIX 2.0/2.1 JSON files (a bundle, a plain array of objects or a TAXII envelope) to "
                    "IntelMQ events, one JSON object per line in IntelMQ's flat key form, exactly as the cross-border "
                    "STIX parser bot emits them (without raw). With --hub-id, every event carries the "
                    "provenance.event_uuid the bot gives it and a revoked object gives one withdraw retraction per event "
                    "its non-revoked version gives, printed as JSON lines too (retraction.* fields only). A per-file "
                    "summary (objects, events, revoked, retractions, refused, what was not converted) goes to stderr. A file that is not STIX the hub accepts, or an object "
                    "that cannot be converted (a TLP marking that cannot be read, a pattern that is not valid, a "
                    "field of the wrong type), gives an error on stderr naming file and JSON path; exit status 1 "
                    "after all files are processed. A file that does not exist or cannot be read: exit 2.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--default-tlp", default="AMBER", metavar="LABEL",
                   help="TLP of an object that carries none (default: AMBER, as the bot; 'none' for no label)")
    p.add_argument("--hub-id", metavar="HUB_ID",
                   help="this hub's id, as the bot's hub_id: deterministic event uuids, and revoked objects become "
                        "withdraw retractions issued by this hub (without it they are only counted)")
    p.add_argument("--default-classification", default="undetermined", metavar="TYPE",
                   help="classification.type when nothing else classifies (default: undetermined)")
    p.add_argument("--type-classification", action="append", metavar="INDICATOR_TYPE=TYPE",
                   help="classification.type for an indicator type or label (repeatable)")
    p.set_defaults(func=_convert_stix)
