"""``intelmq-crossborder``: the command-line interface.

Scripts depend on the commands and their output; keep them stable.  :data:`COMMANDS`
is the one registry of commands; each lives in its own module of this package.

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

from intelmq_crossborder import __version__
from intelmq_crossborder.cli.common import fail

#: Every command of ``intelmq-crossborder``, in the order ``--help`` lists them: one
#: "module:function" string per command (group); the function is ``register(subparsers)``
#: and adds its parser with ``set_defaults(func=...)``.  A new command is one more line
#: here and a module in cli/; modules are imported when the parser is built.
COMMANDS = [
    "intelmq_crossborder.cli.tlp:register",              # tlp normalise
    "intelmq_crossborder.cli.harmonization:register",    # harmonization install / check
    "intelmq_crossborder.cli:register_convert",          # convert <FORMAT> (see CONVERTERS)
    "intelmq_crossborder.cli.check:register",            # check
    "intelmq_crossborder.cli.policy:register",           # policy check
    "intelmq_crossborder.cli.bundle:register",           # bundle verify / keygen
    "intelmq_crossborder.cli.demo:register",             # demo
    "intelmq_crossborder.cli.init:register",             # init ROLE --root DIR
    "intelmq_crossborder.cli.stats:register",            # stats contributions / record / import-dumps, report daily
    "intelmq_crossborder.cli.analytics:register",        # analytics simulate / evaluate
    "intelmq_crossborder.cli.stix_export:register",      # export stix
    "intelmq_crossborder.cli.retract:register",          # retract, retraction status / list
]


def _registered(spec: str):
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


# --- convert -------------------------------------------------------------------

#: Subcommands of ``intelmq-crossborder convert``: "module:function" strings, each
#: function is ``register(convert_subparsers)`` and adds one subcommand (``csaf``,
#: ``misp``, ...). A new format is one more line here; the module is imported lazily.
CONVERTERS = [
    "intelmq_crossborder.cli.csaf:register_convert_csaf",
    "intelmq_crossborder.cli.misp:register_convert_misp",
    "intelmq_crossborder.cli.stix:register_convert_stix",
]


def register_convert(sub) -> None:
    p = sub.add_parser("convert", help="convert documents into IntelMQ events",
                       description="Print the events a parser bot would emit for documents of a format, "
                                   "one JSON object per line in IntelMQ's flat key form.")
    csub = p.add_subparsers(dest="convert_command", required=True, metavar="FORMAT")
    for spec in CONVERTERS:
        _registered(spec)(csub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intelmq-crossborder",
        description="Tools of intelmq-crossborder, the IntelMQ extension for cross-border cyber hubs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in COMMANDS:
        _registered(spec)(sub)
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
        return fail(f"internal error in {command_name(args)}: {type(exc).__name__}: {text}"
                     + ("" if _debug() else f" (set {DEBUG_ENV}=1 for the traceback)"))
