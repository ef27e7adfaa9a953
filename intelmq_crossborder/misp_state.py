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
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return State(overlap=self.overlap)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: unreadable collector state ({exc}); fix or remove the file") from None
        newest = data.get("timestamp")
        recent = data.get("recent") or {}
        if newest is not None and not isinstance(newest, int) or not isinstance(recent, dict):
            raise ValueError(f"{self.path}: field timestamp/recent has the wrong type; fix or remove the file")
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
