"""``intelmq-crossborder``: the command-line interface.

Scripts depend on the commands and their output; keep them stable.  Each command
group is a ``register(subparsers)`` function: add its module to ``GROUP_MODULES``.

Exit status: 0 success, 1 the input was checked and found bad, 2 usage or
configuration error (argparse's convention).  These hold on any input: :func:`main`
is a last-resort guard that turns an exception a command did not handle into one
line "internal error in <command>" and exit 2 (the traceback only with
``INTELMQ_CROSSBORDER_DEBUG=1``).  Such a line is a bug to fix in the command, and
the hostile-input suite (tests/test_hostile_inputs.py) fails on it.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from intelmq_crossborder import __version__
def _fail(message: str, status: int = 2) -> int:
    print(f"intelmq-crossborder: error: {message}", file=sys.stderr)
    return status


# --- tlp ---------------------------------------------------------------------

def _tlp_normalise(args) -> int:
    from intelmq_crossborder.core import tlp
    status = 0
    for value in args.values:
        try:
            parsed = tlp.parse(value)
        except tlp.UnknownTLPError as exc:
            print(f"intelmq-crossborder: error: {exc}", file=sys.stderr)
            status = 2
            continue
        if parsed.level is None:
            print(f"intelmq-crossborder: error: {value!r} is the Chatham House flag "
                  "(do not disclose the source), not a TLP level", file=sys.stderr)
            status = 2
            continue
        print(f"{parsed.label}\t{parsed.standard}" if args.show_standard else parsed.label)
    return status


def register_tlp(sub) -> None:
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
    n.set_defaults(func=_tlp_normalise)


# --- harmonization -------------------------------------------------------------

def _harmonization_install(args) -> int:
    from intelmq_crossborder import harmonization as h
    target = Path(args.target) if args.target else _default_harmonization_target()
    try:
        report, backup = h.install(target, backup=not args.no_backup)
    except h.HarmonizationError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{target}: {exc.strerror}")
    for line in report.lines():
        print(f"{target}: {line}")
    if backup:
        print(f"{target}: backup written to {backup}")
    return 0


def _default_harmonization_target() -> Path:
    from intelmq import HARMONIZATION_CONF_FILE
    return Path(HARMONIZATION_CONF_FILE)


def _harmonization_check(args) -> int:
    from intelmq_crossborder import harmonization as h
    try:
        h.read(Path(args.file))
    except h.HarmonizationError as exc:
        return _fail(str(exc))
    problems = h.check(Path(args.file), require_crossborder=not args.structure_only)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: OK")
    return 0


def register_harmonization(sub) -> None:
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
    i.set_defaults(func=_harmonization_install)
    c = hsub.add_parser(
        "check", help="validate a harmonization file",
        description="Validate an IntelMQ harmonization file: structure, types, regexes, and that the "
                    "cross-border fields are present. Exits 1 naming each bad field.")
    c.add_argument("file", metavar="FILE")
    c.add_argument("--structure-only", action="store_true",
                   help="check only the structure, not the presence of the cross-border fields")
    c.set_defaults(func=_harmonization_check)


#: Command groups kept in their own modules, each with ``register(subparsers)``.
#: Add one line per group; modules are imported when the parser is built.
GROUP_MODULES = [
    "intelmq_crossborder.runtime.check",     # check
    "intelmq_crossborder.cli.policy",      # policy check
    "intelmq_crossborder.cli.bundle",      # bundle verify / keygen
    "intelmq_crossborder.demo.first_pipeline",            # demo
    "intelmq_crossborder.analytics.situational",     # stats contributions / report daily
]

# --- convert -------------------------------------------------------------------

#: Subcommands of ``intelmq-crossborder convert``: "module:function" strings, each
#: function is ``register(convert_subparsers)`` and adds one subcommand (``csaf``,
#: ``misp``, ...). A new format is one more line here; the module is imported lazily.
CONVERTERS = [
    "intelmq_crossborder.formats.csaf.document:register_convert",
    "intelmq_crossborder.cli.misp:register_convert_misp",
]


def register_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert documents into IntelMQ events",
                       description="Print the events a parser bot would emit for documents of a format, "
                                   "one JSON object per line in IntelMQ's flat key form.")
    csub = p.add_subparsers(dest="convert_command", required=True, metavar="FORMAT")
    for spec in CONVERTERS:
        module, _, function = spec.partition(":")
        getattr(importlib.import_module(module), function)(csub)


GROUPS = [register_tlp, register_harmonization, register_convert]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intelmq-crossborder",
        description="Tools of intelmq-crossborder, the IntelMQ extension for cross-border cyber hubs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in GROUPS:
        register(sub)
    for module in GROUP_MODULES:
        importlib.import_module(module).register(sub)
    return parser


#: Environment variable: set to 1 to get the traceback of an internal error.
DEBUG_ENV = "INTELMQ_CROSSBORDER_DEBUG"
#: Exit status after Ctrl-C (the shell's 128 + SIGINT).
INTERRUPTED = 130


def command_name(args) -> str:
    """``policy check``, ``convert csaf``...: the command and its subcommands, for messages."""
    names = [args.command] + [value for key, value in vars(args).items()
                              if key.endswith("_command") and isinstance(value, str)]
    return " ".join(names)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):   # no real file descriptor (tests capture stdout)
        pass


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def main(argv=None) -> int:
    """Run one command; returns its exit status (argparse exits 2 itself on a usage error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (`... | head`): stop quietly; the output is incomplete
        _quiet_stdout()
        return 1
    except KeyboardInterrupt:
        print("intelmq-crossborder: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last-resort guard, see the module docstring
        if _debug():
            import traceback
            traceback.print_exc()
        text = " ".join(str(exc).split())
        if len(text) > 500:
            text = text[:500] + "..."
        return _fail(f"internal error in {command_name(args)}: {type(exc).__name__}: {text}"
                     + ("" if _debug() else f" (set {DEBUG_ENV}=1 for the traceback)"))
