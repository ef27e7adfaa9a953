"""``intelmq-crossborder convert csaf FILE...``: print the events the CSAF parser bot would emit."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from intelmq_crossborder.cli.common import fail, unusable, short
from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.formats.csaf import document as csaf


def _convert(args) -> int:
    try:
        return _convert_files(args)
    except BrokenPipeError:          # `... | head`: stop quietly, as other CLI tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _convert_files(args) -> int:
    from intelmq.lib.message import Event

    from intelmq_crossborder.harmonization import merged_harmonization

    try:
        default = tlp.parse_level(args.default_tlp, "option --default-tlp")
    except tlp.UnknownTLPError as exc:
        return fail(str(exc))
    status = 0
    usable = []
    for name in args.files:             # files that cannot be opened at all: usage, exit 2
        problem = unusable(Path(name), file_only=False)
        if problem:
            status = fail(problem)
        else:
            usable.append(name)
    harmonization = merged_harmonization()
    statuses = csaf.ALL_STATUSES if args.all_statuses else csaf.AFFECTED_STATUSES
    for path, data in csaf.iter_documents(usable):
        try:
            if isinstance(data, inputs.InputError):
                raise csaf.input_error(data, path)
            result = csaf.parse_document(data, source=path, default_tlp=default, include_raw=args.raw,
                                         statuses=statuses)
        except (csaf.CSAFError, tlp.UnknownTLPError) as exc:
            status = max(status, fail(str(exc) if isinstance(exc, csaf.CSAFError) else f"{path}: {exc}", 1))
            continue
        if result.tlp_source == "default":
            print(f"intelmq-crossborder: {path}: no document.distribution.tlp.label, "
                  f"default {result.tlp_level.label} applied", file=sys.stderr)
        for flat in result.events:
            event = Event(harmonization=harmonization)
            for key, value in csaf.fill_event(event, flat):
                print(f"intelmq-crossborder: {path}: field {key} value {short(value)} rejected by the "
                      "harmonization, left out", file=sys.stderr)
            print(json.dumps(event.to_dict(hierarchical=False), sort_keys=True, ensure_ascii=False))
    return status


def register_convert_csaf(convert_sub) -> None:
    """Add ``csaf`` to the ``convert`` command group's subparsers."""
    p = convert_sub.add_parser(
        "csaf", help="print the events the CSAF parser bot would emit",
        description="Validate each CSAF 2.0 (or 2.1) document against the shipped schema and print "
                    "the events the CSAF parser bot would emit, one JSON object per line in IntelMQ's "
                    "flat key form. A directory is read for *.json files. An invalid document is named "
                    "on stderr with the schema error path and its tracking id, as is a file that is not JSON "
                    "the hub accepts (not UTF-8, duplicate keys, numbers of more than 64 characters, nesting "
                    "deeper than 128) or carries a TLP label that cannot be read; the exit status is then 1, "
                    "after all files were processed. A file that does not exist or cannot be read: exit 2.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--default-tlp", default="AMBER", metavar="LABEL",
                   help="TLP for documents without document.distribution.tlp.label (default: AMBER)")
    p.add_argument("--all-statuses", action="store_true",
                   help="one event per product in every product status, not only the affected ones "
                        "(csaf_vex documents always get every status)")
    p.add_argument("--no-raw", dest="raw", action="store_false",
                   help="leave out the raw field (the vulnerability object as JSON)")
    p.set_defaults(func=_convert)
