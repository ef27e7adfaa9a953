"""``intelmq-crossborder convert misp FILE...``: print what the MISP parser bot would emit."""
from __future__ import annotations

import json
import sys

from intelmq_crossborder.cli.common import short


def _convert_misp(args) -> int:
    from intelmq.lib.exceptions import InvalidValue
    from intelmq.lib.message import Event

    from intelmq_crossborder.formats.misp import convert as misp
    from intelmq_crossborder.harmonization import merged_harmonization

    harmonization = merged_harmonization()
    mapping = {}
    for item in args.type_classification or []:
        mtype, sep, ctype = item.partition("=")
        if not sep:
            print(f"intelmq-crossborder: error: --type-classification {item!r} is not TYPE=CLASSIFICATION",
                  file=sys.stderr)
            return 2
        mapping[mtype] = ctype
    from intelmq.lib.harmonization import ClassificationType
    for ctype in list(mapping.values()) + [args.default_classification]:
        if ctype not in ClassificationType.allowed_values:
            print(f"intelmq-crossborder: error: {short(ctype)} is not an IntelMQ classification.type",
                  file=sys.stderr)
            return 2
    status = 0
    out = sys.stdout
    for path in args.files:
        problem = _unusable(path)
        if problem:                      # cannot be opened at all: usage, exit 2 (after the others)
            print(f"intelmq-crossborder: error: {path}: {problem}", file=sys.stderr)
            status = 2
            continue
        converter = misp.Converter(keep_non_ids=not args.drop_non_ids, type_classification=mapping,
                                   default_classification=args.default_classification, where=path)
        try:
            events = misp.load_file(path)
        except misp.MISPFormatError as exc:
            print(f"intelmq-crossborder: error: {exc}", file=sys.stderr)
            status = max(status, 1)
            continue
        for event in events:
            try:
                rows = list(converter.rows(event))
            except misp.MISPFormatError as exc:
                print(f"intelmq-crossborder: error: {exc}", file=sys.stderr)
                status = max(status, 1)
                continue
            for row in rows:
                try:
                    fields = converter.convert(row)
                    if fields is None:
                        continue
                    ev = Event(harmonization=harmonization)
                    for key, value in fields.items():
                        try:
                            ev.add(key, value)
                        except InvalidValue:
                            raise misp.MISPFormatError(
                                f"value {short(value)} ({short(row.attribute.get('type'))}) is not a valid "
                                f"{key}", path, f"{row.path}.value") from None
                except misp.MISPFormatError as exc:
                    print(f"intelmq-crossborder: error: {exc}", file=sys.stderr)
                    status = max(status, 1)
                    continue
                out.write(json.dumps(ev.to_dict(hierarchical=False), sort_keys=True, ensure_ascii=False) + "\n")
        stats = converter.stats
        if args.stats or stats.unmapped:
            print(f"{path}: {stats.events} event(s), {stats.attributes} attribute(s), {stats.emitted} emitted, "
                  f"{stats.filtered} filtered, {sum(stats.unmapped.values())} without IntelMQ field"
                  + (f" ({stats.unmapped_summary()})" if stats.unmapped else ""), file=sys.stderr)
    return status


def _unusable(path: str) -> str:
    """Why a path cannot be read at all ('' when it can)."""
    import os

    if not os.path.exists(path):
        return "no such file or directory"
    if os.path.isdir(path):
        return "is a directory, not a MISP JSON file"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return ""


def register_convert_misp(convert_sub) -> None:
    """Add ``misp`` to the ``convert`` command group's subparsers."""
    p = convert_sub.add_parser(
        "misp", help="print the events the MISP parser bot would emit",
        description="Convert MISP event JSON files ({\"Event\": ...} or {\"response\": [...]}) to IntelMQ "
                    "events, one JSON object per line in IntelMQ's flat key form, exactly as the "
                    "cross-border MISP parser bot emits them (without raw). A per-file summary of "
                    "attributes without an IntelMQ field goes to stderr. A file that is not MISP JSON the hub "
                    "accepts (not UTF-8, duplicate keys, numbers of more than 64 characters, nesting deeper "
                    "than 128, a list where an object belongs) or an attribute that cannot be converted (a TLP "
                    "tag that cannot be read, a look-alike spelling of one, a tag that is not MISP's "
                    "{\"name\": ...}) gives an error on stderr naming file and field; exit status 1 after all "
                    "files are processed. A file that does not exist or cannot be read: exit 2.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--drop-non-ids", action="store_true", help="drop attributes with to_ids false")
    p.add_argument("--default-classification", default="undetermined", metavar="TYPE",
                   help="classification.type when no rsit/ecsirt tag and no type mapping applies "
                        "(default: undetermined)")
    p.add_argument("--type-classification", action="append", metavar="MISPTYPE=TYPE",
                   help="classification.type for a MISP attribute type (repeatable)")
    p.add_argument("--stats", action="store_true", help="always print the per-file summary on stderr")
    p.set_defaults(func=_convert_misp)
