"""``intelmq-crossborder check``: the bots' own check() on runtime.yaml files, with an exit status."""
from __future__ import annotations

import sys
from pathlib import Path

from intelmq_crossborder.cli.common import fail, printable
from intelmq_crossborder.runtime import check


def _run(args) -> int:
    """Exit 2 if a runtime file cannot be read as YAML, else 1 if any error was found, else 0."""
    status = 0
    for runtime in args.runtime:
        for _bot_id, level, msg in check.check_runtime(Path(runtime)):
            if level == "unreadable":
                status = fail(printable(msg))
                continue
            print(printable(f"{level}: {msg}"), file=sys.stderr if level == "error" else sys.stdout)
            if level == "error":
                status = max(status, 1)
    if status == 0:
        print("No errors found.")
    return status


def register(sub) -> None:
    p = sub.add_parser("check", help="run every bot's check() on a runtime.yaml; exit 1 on errors",
                       description=check.__doc__.split("\n\n")[1].replace("\n", " "))
    from intelmq import RUNTIME_CONF_FILE
    p.add_argument("runtime", nargs="*", default=[RUNTIME_CONF_FILE], metavar="RUNTIME_YAML",
                   help=f"runtime config(s) to check (default: {RUNTIME_CONF_FILE})")
    p.set_defaults(func=_run)
