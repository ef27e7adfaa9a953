"""``intelmq-crossborder check``: run the bots' own ``check()`` on a runtime.yaml and fail properly.

``intelmqctl check`` logs the errors that a bot's ``check(parameters)`` returns
but still ends with exit 0.  Scripts and CI need a command that fails: this one
imports each configured bot, calls its ``check()`` with the parameters IntelMQ
would give it (``global`` merged with the bot's ``parameters``) and exits 1 when
any bot reports an error.  It also checks the harmonization next to the runtime
file when there is one.
"""
from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path

import yaml


def _bot_class(module_name: str):
    for ep in entry_points(group="console_scripts"):
        if ep.name == module_name:
            return importlib.import_module(ep.value.replace(":BOT.run", "")).BOT
    raise LookupError(f"no installed bot has the module (entry point) {module_name!r}")


def check_runtime(path: Path) -> list:
    """``[(bot_id, level, message)]`` for a runtime.yaml; level is 'error' or 'warning'."""
    try:
        runtime = yaml.safe_load(Path(path).read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [("-", "error", f"{path}: cannot read runtime config: {exc}")]
    if not isinstance(runtime, dict):
        return [("-", "error", f"{path}: top level must be a mapping of bot ids")]
    findings = []
    glob = runtime.get("global", {}) or {}
    for bot_id, conf in runtime.items():
        if bot_id == "global":
            continue
        if not isinstance(conf, dict) or "module" not in conf:
            findings.append((bot_id, "error", f"{path}: bot {bot_id}: no 'module'"))
            continue
        try:
            cls = _bot_class(conf["module"])
        except Exception as exc:  # ImportError of optional deps, LookupError
            findings.append((bot_id, "error", f"{path}: bot {bot_id}: {exc}"))
            continue
        params = {**glob, **(conf.get("parameters") or {})}
        try:
            results = cls.check(params) or []
        except Exception as exc:
            results = [["error", f"check() raised {type(exc).__name__}: {exc}"]]
        for level, msg in results:
            findings.append((bot_id, level.lower(), f"{path}: bot {bot_id}: {msg}"))
    harm = Path(path).parent / "harmonization.conf"
    if harm.exists():
        from intelmq_crossborder import harmonization
        findings += [("-", "error", p) for p in harmonization.check(harm)]
    return findings


def _run(args) -> int:
    status = 0
    for runtime in args.runtime:
        for bot_id, level, msg in check_runtime(Path(runtime)):
            print(f"{level}: {msg}", file=sys.stderr if level == "error" else sys.stdout)
            if level == "error":
                status = 1
    if status == 0:
        print("No errors found.")
    return status


def register(sub) -> None:
    p = sub.add_parser("check", help="run every bot's check() on a runtime.yaml; exit 1 on errors",
                       description=__doc__.split("\n\n")[1].replace("\n", " "))
    from intelmq import RUNTIME_CONF_FILE
    p.add_argument("runtime", nargs="*", default=[RUNTIME_CONF_FILE], metavar="RUNTIME_YAML",
                   help=f"runtime config(s) to check (default: {RUNTIME_CONF_FILE})")
    p.set_defaults(func=_run)
