"""State files of the exchange (the spool's ``state.json``, the importer's ``import-state.json``).

They are JSON objects written with :func:`intelmq_crossborder.core.files.atomic_write_json`;
reading one that cannot be used (unreadable, not JSON, wrong shape) raises :class:`StateError`
naming the file and the field, and nothing is guessed: the operator repairs or removes it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

from intelmq_crossborder.core import inputs
from intelmq_crossborder.formats.bundle import BundleError

__all__ = ["StateError", "load_state", "is_count", "is_time", "remove_temp_files"]


class StateError(BundleError):
    """A state file of the exchange cannot be used (unreadable, not JSON, wrong shape)."""

    def __init__(self, path: Union[str, Path], message: str):
        super().__init__("state", f"{path}: {message}; repair or remove it deliberately")


def load_state(path: Path, default: Any, check: Callable[[dict], Optional[str]]) -> Any:
    """A state file (``default`` if it does not exist); :class:`StateError` if it cannot be used.
    ``check(state)`` returns what is wrong with its shape, or None."""
    if not os.path.lexists(path):
        return default
    try:
        state = inputs.read_json(path, what="state file")
    except inputs.InputError as exc:
        raise StateError(exc.source, f"state file is not usable: {exc.reason}"
                                     + (f" (line {exc.line})" if exc.line else "")) from None
    problem = check(state) if isinstance(state, dict) else "top level: must be a JSON object"
    if problem:
        raise StateError(path, f"state file field {problem}")
    return state


def is_count(value: Any, minimum: int = 0) -> bool:
    """An integer (not a boolean) of at least ``minimum``."""
    return type(value) is int and value >= minimum


def is_time(value: Any) -> bool:
    """A time in seconds since the epoch, or None."""
    return value is None or (type(value) in (int, float) and value >= 0)


def remove_temp_files(directory: Path) -> List[str]:
    """Remove the ``.*.tmp`` files an interrupted write left in ``directory``; their names."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp.name)
        except OSError:
            pass
    return removed
