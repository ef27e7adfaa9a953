"""``intelmq-crossborder harmonization install|check``: the cross-border fields in harmonization.conf."""
from __future__ import annotations

import sys
from pathlib import Path

from intelmq_crossborder.cli.common import fail


def _install(args) -> int:
    from intelmq_crossborder import harmonization as h
    target = Path(args.target) if args.target else _default_target()
    try:
        report, backup = h.install(target, backup=not args.no_backup)
    except h.HarmonizationError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{target}: {exc.strerror}")
    for line in report.lines():
        print(f"{target}: {line}")
    if backup:
        print(f"{target}: backup written to {backup}")
    return 0


def _default_target() -> Path:
    from intelmq import HARMONIZATION_CONF_FILE
    return Path(HARMONIZATION_CONF_FILE)


def _check(args) -> int:
    from intelmq_crossborder import harmonization as h
    try:
        h.read(Path(args.file))
    except h.HarmonizationError as exc:
        return fail(str(exc))
    problems = h.check(Path(args.file), require_crossborder=not args.structure_only)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: OK")
    return 0


def register(sub) -> None:
    p = sub.add_parser("harmonization", help="install or check the cross-border harmonization",
                       description="Manage the cross-border fields in an IntelMQ harmonization.conf.")
    hsub = p.add_subparsers(dest="harmonization_command", required=True, metavar="COMMAND")
    i = hsub.add_parser(
        "install", help="merge the cross-border fields into harmonization.conf",
        description="Add the cross-border fields to an IntelMQ harmonization.conf. Idempotent; writes "
                    "a backup before a change; never drops or changes a field the file already has.")
    i.add_argument("--target", metavar="FILE",
                   help="harmonization file (default: the one IntelMQ reads, "
                        "$INTELMQ_ROOT_DIR/etc/harmonization.conf or /opt/intelmq/etc/harmonization.conf)")
    i.add_argument("--no-backup", action="store_true", help="do not write a backup copy")
    i.set_defaults(func=_install)
    c = hsub.add_parser(
        "check", help="validate a harmonization file",
        description="Validate an IntelMQ harmonization file: structure, types, regexes, and that the "
                    "cross-border fields are present. Exits 1 naming each bad field.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--structure-only", action="store_true",
                   help="check only the structure, not the presence of the cross-border fields")
    c.set_defaults(func=_check)
