"""The MISP collector's runs: a paged search (:func:`collect`) and the state kept across runs,
the newest event timestamp seen, in a JSON file.

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
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.files import atomic_write_json
from intelmq_crossborder.formats.misp.push import PermanentMISPError


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
    """The collector's state in the JSON file ``path``, replaced atomically and durably
    (:func:`intelmq_crossborder.core.files.atomic_write_json`) when a run completed."""

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
        atomic_write_json(self.path, {"timestamp": run.newest, "recent": keep}, indent=None)


@dataclass
class Collected:
    """What one :func:`collect` run did: events sent, already seen, without uuid; pages read."""

    sent: int = 0
    skipped: int = 0
    malformed: int = 0
    pages: int = 0
    since: Any = None


def collect(search: Callable[[dict], Any], state: CollectorState, emit: Callable[[dict], None], *,
            page_size: int = 50, tags: Optional[list] = None, org: Optional[str] = None,
            published_only: bool = True, with_attachments: bool = False,
            initial_since: Optional[str] = None) -> Collected:
    """One incremental pull: search page by page (``search(query)``: PyMISP's ``search(**query)``
    through the retrying caller) for events changed since the state's newest
    timestamp, ``emit`` each event not emitted before (a dict: the MISP event), and save the
    state only when every page was read.

    Raises ValueError for a state file that cannot be read and
    :class:`intelmq_crossborder.formats.misp.push.PermanentMISPError` for a search answer
    that is not a list of events; the state is then left as it was."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    current = state.load()
    done = Collected(since=current.since(initial_since))
    run = current.start_run()
    page = 1
    while True:
        query = {"controller": "events", "limit": page_size, "page": page, "tags": list(tags or []) or None,
                 "org": org or None, "published": True if published_only else None,
                 # the spec types the filter as a string (epoch or time span such as "7d")
                 "timestamp": None if done.since is None else str(done.since),
                 "with_attachments": bool(with_attachments)}
        result = search(query)
        if not isinstance(result, list):      # an error document instead of a list
            raise PermanentMISPError("?", json.dumps(result, default=str)[:500])
        for item in result:
            event = item.get("Event", item) if isinstance(item, dict) else None
            if not isinstance(event, dict) or "uuid" not in event:
                done.malformed += 1
                continue
            if not run.is_new(event):
                done.skipped += 1
                continue
            emit(event)
            run.seen(event)
            done.sent += 1
        done.pages = page
        if len(result) < page_size:
            break
        page += 1
    state.save(run)
    return done
