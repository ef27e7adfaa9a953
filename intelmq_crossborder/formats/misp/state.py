"""State of the MISP collector across runs: the newest event timestamp seen, in a JSON file.

The state advances only when a run completes (:meth:`CollectorState.save`), so a
failed run is repeated next time instead of silently skipping events.  MISP's
``timestamp`` filter is inclusive, so the next run asks for ``timestamp >=
newest - overlap`` and skips the events it already emitted with exactly that
(uuid, timestamp): nothing is emitted twice, nothing changed at the boundary
second is lost.  ``overlap_seconds`` widens the window for servers whose clocks
or sync deliver events with slightly older timestamps.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Optional

from intelmq_crossborder.core import inputs
@dataclass
class Run:
    newest: Optional[int]
    recent: dict = field(default_factory=dict)     # uuid -> timestamp already emitted
    overlap: int = 0

    def is_new(self, event: dict) -> bool:
        ts = _ts(event)
        return self.recent.get(str(event["uuid"])) != ts

    def seen(self, event: dict) -> None:
        ts = _ts(event)
        self.recent[str(event["uuid"])] = ts
        if ts is not None and (self.newest is None or ts > self.newest):
            self.newest = ts


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ts(event: dict) -> Optional[int]:
    try:
        return int(event.get("timestamp"))
    except (TypeError, ValueError):
        return None


@dataclass
class State:
    newest: Optional[int] = None
    recent: dict = field(default_factory=dict)
    overlap: int = 0

    def since(self, initial: Optional[str]):
        """The ``timestamp`` filter of the next search: an epoch, the configured start, or None."""
        if self.newest is None:
            if initial in (None, ""):
                return None
            return int(initial) if str(initial).isdigit() else str(initial)
        return max(0, self.newest - self.overlap)

    def start_run(self) -> Run:
        return Run(self.newest, dict(self.recent), self.overlap)


class CollectorState:
    def __init__(self, path: str, overlap: int = 0):
        self.path, self.overlap = path, overlap

    def load(self) -> State:
        """The state in the file (an empty state when there is none); ValueError naming the
        file and the field when it cannot be read (not JSON, duplicate keys, wrong types...)."""
        if not os.path.lexists(self.path):
            return State(overlap=self.overlap)
        try:
            data = inputs.read_json(self.path, what="MISP collector state")
        except inputs.InputError as exc:
            raise ValueError(f"unreadable collector state: {exc}; fix or remove the file") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: the collector state must be a JSON object, not "
                             f"{type(data).__name__}; fix or remove the file")
        newest = data.get("timestamp")
        recent = data.get("recent") or {}
        if newest is not None and not _is_int(newest):
            raise ValueError(f"{self.path}: field timestamp must be an integer; fix or remove the file")
        if not isinstance(recent, dict) or not all(t is None or _is_int(t) for t in recent.values()):
            raise ValueError(f"{self.path}: field recent must map uuids to integer timestamps; fix or remove "
                             "the file")
        return State(newest, recent, self.overlap)

    def save(self, run: Run) -> None:
        keep = {}
        if run.newest is not None:
            floor = run.newest - self.overlap
            keep = {u: t for u, t in run.recent.items() if t is not None and t >= floor}
        data = {"timestamp": run.newest, "recent": keep}
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".misp-state-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, self.path)
