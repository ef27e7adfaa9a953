"""The cross-border harmonization: load it, merge it into IntelMQ's, check a file.

The schema itself is ``harmonization/crossborder.json`` in the repository
(installed as package data of ``intelmq_crossborder.harmonization``).  It only
*adds* fields; stock IntelMQ fields keep their stock definitions so that events
from stock bots still validate.  ``docs/harmonization.md`` explains the choices.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.files import atomic_write_text
__all__ = [
    "HarmonizationError", "UnreadableHarmonization", "load_schema", "stock_harmonization_path", "load_stock",
    "merged_harmonization", "merge", "MergeReport", "install", "check", "read",
]

#: Valid IntelMQ keys: the same rule as intelmq.lib.message.Message, matched whole
#: (``fullmatch``: a trailing newline is not part of a valid key).
_KEY_RE = re.compile(r"[a-z_][a-z_0-9]+(\.[a-z_0-9]+)*")
_FIELD_KEYS = {"type", "description", "length", "regex", "iregex"}
MAX_HARMONIZATION_BYTES = 16 * 1024 * 1024
MAX_REGEX_CHARS = 10_000


class HarmonizationError(CrossBorderError, ValueError):
    """A harmonization file or field is invalid; the message names file and field."""


class UnreadableHarmonization(HarmonizationError):
    """The harmonization file cannot be read as JSON at all (missing, a directory, not
    UTF-8, not JSON, duplicate keys, too large or too deep): nothing could be checked."""


def load_schema() -> dict:
    """The cross-border schema shipped with the package."""
    text = resources.files("intelmq_crossborder.harmonization").joinpath("crossborder.json").read_text("utf-8")
    return json.loads(text)


def stock_harmonization_path() -> Path:
    """Path of the ``harmonization.conf`` shipped inside the installed ``intelmq`` package."""
    return Path(str(resources.files("intelmq").joinpath("etc/harmonization.conf")))


def load_stock() -> dict:
    return json.loads(stock_harmonization_path().read_text("utf-8"))


def merged_harmonization(base: Optional[dict] = None) -> dict:
    """IntelMQ's stock harmonization (or ``base``) with the cross-border fields added."""
    merged, _ = merge(load_stock() if base is None else base, load_schema())
    return merged


@dataclass
class MergeReport:
    added: list = field(default_factory=list)        # "event.sharing.tlp"
    unchanged: list = field(default_factory=list)    # present with the same definition
    kept: list = field(default_factory=list)         # present with another definition: left alone

    @property
    def changed(self) -> bool:
        return bool(self.added)

    def lines(self) -> list:
        out = [f"added {name}" for name in self.added]
        out += [f"kept existing definition of {name} (differs from the cross-border schema)"
                for name in self.kept]
        if not out:
            out.append(f"nothing to do: all {len(self.unchanged)} cross-border fields already present")
        return out


def merge(target: dict, schema: dict) -> tuple[dict, MergeReport]:
    """Add the fields of ``schema`` to ``target``; never drop or change a field of ``target``.

    Returns a new dict (``target`` is not modified) and what was done.
    """
    merged = copy.deepcopy(target)
    report = MergeReport()
    for section, fields in schema.items():
        dest = merged.setdefault(section, {})
        for name, definition in fields.items():
            qualified = f"{section}.{name}"
            if name not in dest:
                dest[name] = copy.deepcopy(definition)
                report.added.append(qualified)
            elif dest[name] == definition:
                report.unchanged.append(qualified)
            else:
                report.kept.append(qualified)
    return merged, report


def read(path: Path):
    """The parsed harmonization file; :class:`UnreadableHarmonization` naming the file
    (and line) if it cannot be read as JSON.  The structure is not checked here."""
    try:
        return inputs.read_json(path, max_bytes=MAX_HARMONIZATION_BYTES, max_depth=8,
                                what="harmonization file")
    except inputs.InputError as exc:
        raise UnreadableHarmonization(str(exc)) from None


_read = read


def install(target: Path, backup: bool = True) -> tuple[MergeReport, Optional[Path]]:
    """Merge the cross-border schema into the IntelMQ harmonization file ``target``.

    A missing target is created from IntelMQ's stock file.  The target is checked
    before and after; on a change the old file is kept as ``<target>.bak-<time>``
    and the new one is written atomically.  Running it twice changes nothing.
    """
    target = Path(target)
    exists = os.path.lexists(target)
    base = read(target) if exists else load_stock()
    if exists:
        problems = check_structure(base, str(target))
        if problems:
            raise HarmonizationError("; ".join(problems))
    merged, report = merge(base, load_schema())
    backup_path = None
    if report.changed or not exists:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if exists and backup:
                stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
                backup_path = target.with_name(f"{target.name}.bak-{stamp}")
                shutil.copy2(target, backup_path)
            # IntelMQ's own layout (indent 4, sorted keys, final newline); the file keeps its
            # permissions (IntelMQ's bots, another user, must still read it), a new one is 0644
            mode = stat.S_IMODE(os.stat(target).st_mode) if exists else 0o644
            atomic_write_text(target, json.dumps(merged, indent=4, sort_keys=True) + "\n", mode=mode)
        except OSError as exc:
            where = exc.filename or target
            raise HarmonizationError(f"{where}: cannot write the harmonization: {exc.strerror or exc}") from None
    return report, backup_path


def check_structure(data, source: str = "harmonization") -> list:
    """Problems with the structure of a harmonization dict, each naming the field."""
    from intelmq.lib import harmonization as types  # imported late: keep the library import light

    problems = []
    if not isinstance(data, dict):
        return [f"{source}: top level must be an object with 'event' and 'report'"]
    for section in ("event", "report"):
        if section not in data:
            problems.append(f"{source}: section '{section}' is missing")
        elif not isinstance(data[section], dict):
            problems.append(f"{source}: section '{section}' must be an object")
    for section in data:
        if section not in ("event", "report"):
            problems.append(f"{source}: section {section!r} is unknown (IntelMQ reads 'event' and 'report')")
    for section in ("event", "report"):
        fields = data.get(section)
        if not isinstance(fields, dict):
            continue
        for name, definition in fields.items():
            shown = name if name.isprintable() and not any(c.isspace() for c in name) else repr(name)
            where = f"{source}: field {section}.{shown}"
            if _KEY_RE.fullmatch(name) is None:
                problems.append(f"{where}: invalid key (lowercase letters, digits, '_' and '.')")
            if not isinstance(definition, dict):
                problems.append(f"{where}: definition must be an object")
                continue
            unknown = set(definition) - _FIELD_KEYS
            if unknown:
                problems.append(f"{where}: unknown keys {sorted(unknown)}")
            typ = definition.get("type")
            cls = getattr(types, typ, None) if isinstance(typ, str) else None
            if not (isinstance(cls, type) and issubclass(cls, types.GenericType)):
                problems.append(f"{where}: type {typ!r} is not an IntelMQ harmonization type")
            if not isinstance(definition.get("description"), str) or not definition["description"].strip():
                problems.append(f"{where}: description is missing")
            if "length" in definition and (not isinstance(definition["length"], int)
                                           or isinstance(definition["length"], bool)
                                           or definition["length"] <= 0):
                problems.append(f"{where}: length must be a positive integer")
            for key in ("regex", "iregex"):
                if key in definition:
                    pattern = definition[key]
                    if not isinstance(pattern, str):
                        problems.append(f"{where}: {key} must be a string")
                        continue
                    if len(pattern) > MAX_REGEX_CHARS:
                        problems.append(f"{where}: {key} is longer than {MAX_REGEX_CHARS} characters")
                        continue
                    try:
                        re.compile(pattern)
                    except (re.error, RecursionError, OverflowError, ValueError) as exc:
                        problems.append(f"{where}: {key} does not compile: {exc}")
    return problems


def check(path: Path, require_crossborder: bool = True) -> list:
    """Problems of the harmonization file at ``path``; an empty list means it is fine.

    With ``require_crossborder`` every cross-border field must be present with
    the schema's definition (a differing one is reported: it may be weaker).
    """
    try:
        data = _read(Path(path))
    except HarmonizationError as exc:
        return [str(exc)]
    problems = check_structure(data, str(path))
    if require_crossborder and not problems:
        for section, fields in load_schema().items():
            have = data.get(section, {})
            for name, definition in fields.items():
                if name not in have:
                    problems.append(f"{path}: field {section}.{name}: cross-border field is missing "
                                    f"(run 'intelmq-crossborder harmonization install --target {path}')")
                elif have[name] != definition:
                    problems.append(f"{path}: field {section}.{name}: differs from the cross-border schema")
    return problems
