"""``intelmq-crossborder export stix EVENTS.jsonl``: events to one STIX 2.1 bundle on stdout."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from intelmq_crossborder.cli.common import fail, printable, unusable


def register(sub) -> None:
    p = sub.add_parser("export", help="export IntelMQ events to another format",
                       description="Export IntelMQ events (flat-key JSON lines) to another format.")
    esub = p.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    s = esub.add_parser("stix", help="events to one STIX 2.1 bundle",
                        description="Print one STIX 2.1 bundle for the events of EVENTS.jsonl (IntelMQ flat keys, one "
                                    "JSON object per line; - for stdin). Events the TLP guard refuses (RED, "
                                    "AMBER+STRICT, no or an unreadable label, above --max-tlp) and events without "
                                    "an observable are named on stderr and left out. Exit 1 when a line is not "
                                    "an event; 2 when the file cannot be read. See docs/bots/stix.md.")
    s.add_argument("events", metavar="EVENTS.jsonl")
    s.add_argument("--recipient-profile", choices=("oasis", "opencti", "both"), default="oasis",
                   help="marking ids: the OASIS TLP 2.0 extension's (default), OpenCTI's, or both")
    s.add_argument("--kind", choices=("indicator", "observed-data"), default="indicator",
                   help="one indicator with a STIX pattern per event (default), or observed-data with its SCOs")
    s.add_argument("--hub-id", default="intelmq-crossborder",
                   help="the exporting hub: keys the deterministic object ids (default: %(default)s)")
    s.add_argument("--max-tlp", default="AMBER", help="highest level exported: CLEAR, GREEN or AMBER (default)")
    s.set_defaults(func=_export_stix)


def _export_stix(args) -> int:
    from intelmq_crossborder.core import inputs, tlp
    from intelmq_crossborder.formats.stix import export

    try:
        settings = export.ExportSettings(args.hub_id, kind=args.kind, profile=args.recipient_profile,
                                         max_tlp=tlp.parse_level(args.max_tlp, "--max-tlp"))
    except (ValueError, tlp.UnknownTLPError) as exc:
        return fail(str(exc))
    if args.events == "-":
        stream, source = sys.stdin.buffer, "<stdin>"
    else:
        path = Path(args.events)
        problem = unusable(path)
        if problem:
            return fail(printable(problem))
        try:
            stream, source = open(path, "rb"), printable(path)
        except OSError as exc:
            return fail(f"{printable(path)}: {exc.strerror}")
    builder = export.BundleBuilder(settings)
    status = 0
    try:
        for number, value in inputs.iter_json_lines(stream, source):
            if isinstance(value, inputs.InputError):
                print(f"intelmq-crossborder: error: {value}", file=sys.stderr)
                status = 1
                continue
            if not isinstance(value, dict):
                print(f"intelmq-crossborder: error: {source}:{number}: an event is a JSON object, not "
                      f"{inputs.kind_of(value)}", file=sys.stderr)
                status = 1
                continue
            builder.add(value, f"{source}:{number}")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    for where, field, reason in builder.refused:
        print(f"intelmq-crossborder: not exported: {where}: field {field}: {reason}", file=sys.stderr)
    bundle = builder.bundle()
    sys.stdout.write(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
    print(f"exported {builder.exported} event(s) as {len(bundle.get('objects', []))} STIX object(s); "
          f"{len(builder.refused)} not exported", file=sys.stderr)
    return status
