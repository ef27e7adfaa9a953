"""What every detector of :mod:`intelmq_crossborder.analytics` raises, and the protocol it follows.

A *detector* watches the pooled event stream and raises :class:`Alert` s: a surge
(:mod:`.surge`), a campaign (:mod:`.campaign`), or the rule-based early warning adapted
by :mod:`.evaluate` (detector ``rule``).  Detectors are selected by name from
:data:`DETECTORS` (``evaluate --detector NAME``, the analytics expert's parameters).

Times are **epoch seconds (UTC) as floats** everywhere in this interface: ``Alert.start``,
``Alert.raised`` and the ``now`` of :meth:`Detector.advance`.  In a replay the clock is
the events' ``time.source``; :func:`event_time` reads it.

An alert carries no event content: no indicator, no raw, no hub names.  It names the
classification type and the countries of the activity, expected versus observed counts
(``evidence``), how many hubs contributed (``hubs``; ``undisclosed`` of them hid their
source and are counted, never named) and the most restrictive TLP of the events that
counted (``tlp``; a detector counts no event above its ``max_tlp``).

State (:meth:`Detector.state` / ``from_state``) is a JSON-safe dict with the detector's
``name`` and a ``version``; ``from_state`` treats it as hostile input and raises
:class:`StateError` naming the field that is wrong.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple, runtime_checkable

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.errors import CrossBorderError

__all__ = ["KINDS", "Alert", "Detector", "DETECTORS", "detector", "restore", "StateError", "EventError",
           "event_time", "parse_time", "iso", "want"]

#: ``surge``: one type rising in several countries; ``campaign``: shared infrastructure;
#: ``indicator``: the rule-based early warning (one indicator seen by several hubs or countries).
KINDS = ("surge", "campaign", "indicator")

#: Detector name -> ``"module:factory"``; ``factory(params: Mapping | None) -> Detector``.
#: A new detector is one more line here (imported lazily, like the CLI's registry).
DETECTORS: Dict[str, str] = {
    "surge": "intelmq_crossborder.analytics.surge:best",
    "surge-seasonal": "intelmq_crossborder.analytics.surge:seasonal",
    "surge-cusum": "intelmq_crossborder.analytics.surge:cusum",
    "surge-river": "intelmq_crossborder.analytics.surge:river_model",
    "campaign": "intelmq_crossborder.analytics.campaign:campaign",
    "rule": "intelmq_crossborder.analytics.evaluate:rule",
}


class StateError(CrossBorderError, ValueError):
    """A detector state that cannot be loaded; ``field`` names where (a dotted path)."""

    def __init__(self, reason: str, field: Optional[str] = None):
        self.field = field
        self.reason = reason
        super().__init__(f"detector state: {'field ' + field + ': ' if field else ''}{reason}")


class EventError(CrossBorderError, ValueError):
    """An event a detector cannot use (no readable time, a list where a text is expected):
    the bot dumps it, ``evaluate`` reports it with its line.  ``field`` names the field."""

    def __init__(self, field_name: str, reason: str):
        self.field = field_name
        self.reason = reason
        super().__init__(f"field {field_name}: {reason}")


def parse_time(value: Any, field_name: str = "time") -> float:
    """Epoch seconds of an ISO 8601 time (a naive time is UTC); :class:`EventError` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise EventError(field_name, f"an ISO 8601 time expected, not {inputs.kind_of(value)}")
    text = value.strip()
    if len(text) > 64:
        raise EventError(field_name, "an ISO 8601 time expected, not a text of "
                                     f"{len(text)} characters")
    try:
        when = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        raise EventError(field_name, f"not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):      # 0001-01-01T00:00:00-01:00
        raise EventError(field_name, f"a time out of range: {text!r}") from None


def event_time(event: Mapping[str, Any]) -> float:
    """The event's time for a detector: ``time.source``, else ``time.observation``."""
    for name in ("time.source", "time.observation"):
        if event.get(name) not in (None, ""):
            return parse_time(event.get(name), name)
    raise EventError("time.source", "missing (and no time.observation)")


def iso(seconds: float) -> str:
    """``2026-12-01T17:00:00+00:00`` for epoch seconds."""
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Alert:
    """One alert of a detector.  ``start``: when the anomalous activity began, as far as the
    detector can tell; ``raised``: when the detector raised it (its clock).  Epoch seconds."""

    detector: str
    kind: str
    start: float
    raised: float
    classification_type: str
    countries: Tuple[str, ...]
    evidence: Dict[str, Any] = field(default_factory=dict)
    hubs: int = 0
    undisclosed: int = 0
    tlp: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        object.__setattr__(self, "countries", tuple(sorted(set(self.countries))))

    @property
    def delay(self) -> float:
        return self.raised - self.start

    def as_dict(self) -> dict:
        """JSON-safe (times as ISO strings too, for people)."""
        return {"detector": self.detector, "kind": self.kind, "start": self.start, "raised": self.raised,
                "start_iso": iso(self.start), "raised_iso": iso(self.raised),
                "classification.type": self.classification_type, "countries": list(self.countries),
                "evidence": self.evidence, "hubs": self.hubs, "undisclosed": self.undisclosed, "tlp": self.tlp}


@runtime_checkable
class Detector(Protocol):
    """What a detector offers.  Methods may raise :class:`EventError` for an event they
    cannot use, and ``tlp.LabelError`` for one whose labels cannot be read (never counted)."""

    name: str

    def observe(self, event: Mapping[str, Any]) -> List[Alert]:
        """Count one event (its time: :func:`event_time`); the alerts this raises."""
        ...

    def advance(self, now: float) -> List[Alert]:
        """Time passes to ``now`` without events (closes buckets); the alerts this raises."""
        ...

    def state(self) -> dict:
        """The detector's whole state, JSON-safe, with ``name`` and ``version``."""
        ...

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Detector":
        """The detector :meth:`state` saved; :class:`StateError` naming the field otherwise."""
        ...


def _factory(name: str) -> Callable[..., Detector]:
    try:
        spec = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r} (known: {', '.join(sorted(DETECTORS))})") from None
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def detector(name: str, params: Optional[Mapping[str, Any]] = None) -> Detector:
    """A new detector by its registry name; ValueError naming a bad parameter."""
    return _factory(name)(params or {})


def restore(state: Any) -> Detector:
    """A detector from its saved :meth:`Detector.state`; :class:`StateError` when unusable."""
    if not isinstance(state, dict):
        raise StateError(f"a mapping expected, not {inputs.kind_of(state)}")
    name = state.get("name")
    if not isinstance(name, str) or name not in DETECTORS:
        raise StateError(f"unknown detector {name!r}", "name")
    probe = _factory(name)({})
    return type(probe).from_state(state)


# --- small checks for from_state -------------------------------------------------------

def want(state: Mapping[str, Any], key: str, kind: type, where: str = "", *, finite: bool = True,
         minimum: Optional[float] = None) -> Any:
    """``state[key]`` of JSON type ``kind`` (int accepted for float); :class:`StateError` otherwise."""
    path = f"{where}.{key}" if where else key
    if key not in state:
        raise StateError("missing", path)
    value = state[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise StateError(f"{_kind_name(kind)} expected, not {inputs.kind_of(value)}", path)
    if isinstance(value, float) and finite and not math.isfinite(value):
        raise StateError("a finite number expected", path)
    if minimum is not None and isinstance(value, (int, float)) and value < minimum:
        raise StateError(f"at least {minimum} expected, not {value}", path)
    return value


def _kind_name(kind: type) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(kind, kind.__name__)
