"""When the sender seals its open bundle: the seal schedule of the exchange.

A spool is sealed when it holds ``max_events`` events, when its first event is ``max_age``
seconds old, or when a daily cut time ``seal_at`` (``HH:MM``, UTC) passed since its first
event.  An empty spool is never due (sealing an empty bundle is the caller's choice).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from intelmq_crossborder.core.parameters import is_unset

__all__ = ["SealSchedule", "last_cut", "parse_seal_at", "schedule_problems"]

DEFAULT_MAX_EVENTS = 100000
DEFAULT_MAX_AGE = 86400


def parse_seal_at(value: str) -> Tuple[int, int]:
    """``(hours, minutes)`` of a UTC time of day ``HH:MM``; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"seal_at must be a time of day HH:MM, not {type(value).__name__}")
    parts = value.strip().split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 2 for p in parts):
        raise ValueError(f"seal_at must be a time of day HH:MM, not {value!r}")
    hours, minutes = int(parts[0]), int(parts[1])
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"seal_at must be a time of day HH:MM, not {value!r}")
    return hours, minutes


def last_cut(seal_at: str, now: float) -> float:
    """The most recent daily cut time ``HH:MM`` (UTC) at or before ``now``, as a timestamp."""
    hours, minutes = parse_seal_at(seal_at)
    current = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    cut = current.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if cut.timestamp() > now:
        cut -= dt.timedelta(days=1)
    return cut.timestamp()


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def schedule_problems(max_events: Any, max_age: Any, seal_at: Any) -> List[str]:
    """What is wrong with these schedule parameters (empty list: nothing). Unset values
    (None, ``''``) stand for the defaults."""
    problems = []
    if not is_unset(seal_at):
        try:
            parse_seal_at(seal_at)
        except ValueError:
            problems.append("Parameter seal_at must be a UTC time of day HH:MM, e.g. 02:00.")
    if not is_unset(max_events) and not _is_count(max_events, 1):
        problems.append("Parameter max_bundle_events must be a positive integer.")
    if not is_unset(max_age) and not _is_count(max_age, 0):
        problems.append("Parameter max_bundle_age must be a positive integer.")
    return problems


@dataclass(frozen=True)
class SealSchedule:
    """When a spool is due to be sealed (see module docstring); ``max_age`` 0 means no age
    bound, ``seal_at`` None no daily cut. Invalid values raise ValueError."""

    max_events: int = DEFAULT_MAX_EVENTS
    max_age: int = DEFAULT_MAX_AGE
    seal_at: Optional[str] = None

    def __post_init__(self) -> None:
        problems = schedule_problems(self.max_events, self.max_age, self.seal_at)
        if problems:
            raise ValueError(" ".join(problems))

    @classmethod
    def from_parameters(cls, max_events: Any, max_age: Any, seal_at: Any) -> "SealSchedule":
        """From bot parameters: unset values (None, ``''``) give the defaults."""
        return cls(DEFAULT_MAX_EVENTS if is_unset(max_events) else max_events,
                   DEFAULT_MAX_AGE if is_unset(max_age) else max_age,
                   None if is_unset(seal_at) else seal_at.strip())

    def due(self, count: int, opened_at: Optional[float], now: float) -> bool:
        """Whether a spool holding ``count`` events, the first spooled at ``opened_at``, is to
        be sealed at ``now``."""
        if count >= self.max_events:
            return True
        if not count or opened_at is None:
            return False
        if self.max_age and now - opened_at >= self.max_age:
            return True
        return bool(self.seal_at) and opened_at < last_cut(self.seal_at, now)
