"""Run the bots' own ``check()`` on a runtime.yaml (``intelmq-crossborder check``, cli/check.py).

``intelmqctl check`` logs the errors that a bot's ``check(parameters)`` returns
but still ends with exit 0.  Scripts and CI need a command that fails: this one
imports each configured bot, calls its ``check()`` with the parameters IntelMQ
would give it (``global`` merged with the bot's ``parameters``) and exits 1 when
any bot reports an error.  It also checks the harmonization next to the runtime
file when there is one.  A runtime file that cannot be read as YAML (missing,
not UTF-8, an alias bomb, duplicate keys, ...) exits 2.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

from intelmq_crossborder.core import inputs

MAX_RUNTIME_BYTES = 8 * 1024 * 1024


def _bot_class(module_name: str):
    for ep in entry_points(group="console_scripts"):
        if ep.name == module_name:
            return importlib.import_module(ep.value.replace(":BOT.run", "")).BOT
    raise LookupError(f"no installed bot has the module (entry point) {module_name!r}")


def read_runtime(path: Path):
    """The parsed runtime.yaml; :class:`inputs.InputError` if it cannot be read as YAML
    (missing, a directory, not UTF-8, an alias bomb, a huge value, duplicate keys, ...)."""
    try:
        return inputs.read_yaml(path, max_bytes=MAX_RUNTIME_BYTES, what="runtime config")
    except inputs.InputError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:    # a YAML constructor refused a value
        raise inputs.InputError(path, f"not valid YAML: {exc}") from None


def _kind(value) -> str:
    return inputs.kind_of(value, none="empty")


def check_runtime(path: Path) -> list:
    """``[(bot_id, level, message)]`` for a runtime.yaml; level is 'error' or 'warning'.

    A file that cannot be read as YAML is one finding of level 'unreadable'."""
    try:
        runtime = read_runtime(path)
    except inputs.InputError as exc:
        return [("-", "unreadable", f"cannot read runtime config: {exc}")]
    if runtime is None:
        runtime = {}
    if not isinstance(runtime, dict):
        return [("-", "error", f"{path}: top level must be a mapping of bot ids, not {_kind(runtime)}")]
    findings = []
    glob = runtime.get("global")
    if glob is None:
        glob = {}
    if not isinstance(glob, dict):
        findings.append(("global", "error", f"{path}: field global: must be a mapping of parameters, "
                                            f"not {_kind(glob)}"))
        glob = {}
    for bot_id, conf in runtime.items():
        if bot_id == "global":
            continue
        where = f"{path}: bot {bot_id}"
        if not isinstance(bot_id, str):
            findings.append((str(bot_id), "error", f"{where}: the bot id must be a string"))
            continue
        if not isinstance(conf, dict):
            findings.append((bot_id, "error", f"{where}: must be a mapping with 'module', not {_kind(conf)}"))
            continue
        module = conf.get("module")
        if module is None:
            findings.append((bot_id, "error", f"{where}: no 'module'"))
            continue
        if not isinstance(module, str):
            findings.append((bot_id, "error", f"{where}: field module: must be a string, not {_kind(module)}"))
            continue
        params = conf.get("parameters")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            findings.append((bot_id, "error", f"{where}: field parameters: must be a mapping, not {_kind(params)}"))
            continue
        try:
            cls = _bot_class(module)
        except Exception as exc:  # ImportError of optional deps, LookupError
            findings.append((bot_id, "error", f"{where}: {exc}"))
            continue
        merged = {**glob, **params}
        placeholders = _placeholders(merged)
        for name, found in placeholders:
            findings.append((bot_id, "warning", f"{where}: parameter {name}: {found} is not expanded "
                                                "(a template: expand it, as intelmq-crossborder init does)"))
        try:
            # some stock checks create the folders their paths name (the file output does): a
            # template's unexpanded paths must not turn up as folders where the command runs
            with _scratch_cwd() if placeholders else contextlib.nullcontext():
                results = cls.check(merged) or []
            results = [(str(level).lower(), str(msg)) for level, msg in results]
            if placeholders:      # "... has now been created": in the scratch folder, not here
                results = [(level, msg) for level, msg in results if level != "info"]
        except Exception as exc:  # a bot's check() must not end the whole check
            results = [("error", f"check() raised {type(exc).__name__}: {exc}")]
        for level, msg in results:
            findings.append((bot_id, level, f"{where}: {msg}"))
    harm = Path(path).parent / "harmonization.conf"
    if harm.exists():
        from intelmq_crossborder import harmonization
        findings += [("-", "error", p) for p in harmonization.check(harm)]
    return findings


_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def _placeholders(parameters: dict) -> list:
    """``[(parameter, placeholder)]`` of the string parameters with an unexpanded ``${NAME}``."""
    out = []
    for name, value in parameters.items():
        if isinstance(value, str):
            match = _PLACEHOLDER.search(value)
            if match:
                out.append((str(name), match.group(0)))
    return out


@contextlib.contextmanager
def _scratch_cwd():
    """Run in a temporary working directory, removed afterwards."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="xb-check-") as scratch:
        os.chdir(scratch)
        try:
            yield
        finally:
            os.chdir(before)
