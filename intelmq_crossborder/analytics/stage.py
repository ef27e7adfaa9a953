"""The analytics stage: what the analytics expert runs on every pooled event, without IntelMQ.

* the detectors (``surge`` of :mod:`.surge`, ``campaign`` of :mod:`.campaign`), with the
  expert's parameters split between them (``surge_*``, ``campaign_*``; ``max_tlp``,
  ``default_tlp`` and ``max_ahead`` shared): :func:`detector_parameters`, :func:`parameter_problems`;
* :class:`AnalyticsStage`: one event in, the alerts it raises and the campaign id it may carry out;
  its state in one JSON file, written atomically, read as hostile input (:func:`load_state`);
* the observed-versus-expected series of each surge (``SeriesSurge``), for the daily report's plots;
* :class:`AlertJournal`: one JSON line per alert, the file the daily report reads
  (:func:`read_journal`).

The alerts go to the early warning as :func:`early_warning.build_detection_warning` builds them.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Tuple

from intelmq_crossborder.analytics import campaign as _campaign
from intelmq_crossborder.analytics import surge as _surge
from intelmq_crossborder.analytics.alerts import Alert, StateError
from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.files import atomic_write_text
from intelmq_crossborder.core.parameters import as_list, is_unset

__all__ = ["DETECTORS", "SHARED", "SURGE_PARAMETERS", "CAMPAIGN_PARAMETERS", "detector_parameters",
           "parameter_problems", "SeriesSurge", "AnalyticsStage", "load_state", "StateUnreadable", "AlertJournal", "read_journal",
           "JournalError"]

#: the detectors the expert can run, in the order they see an event
DETECTORS = ("surge", "campaign")
SHARED = ("max_tlp", "default_tlp", "max_ahead")
SURGE_PARAMETERS = ("model", "bucket", "warmup", "sensitivity", "min_countries", "window", "min_count", "count",
                    "max_keys")
CAMPAIGN_PARAMETERS = ("window", "min_countries", "min_hubs", "link_keys", "max_keys", "warmup", "common_after")
STATE_NAME = "analytics-stage"
STATE_VERSION = 1
MAX_STATE_BYTES = 512 * 1024 * 1024
SERIES_BUCKETS = 48          # buckets of observed/expected kept per (type, country) for the plots


def detector_parameters(params: Mapping[str, Any]) -> Dict[str, dict]:
    """The expert's parameters as each detector names them: ``{"surge": {...}, "campaign": {...}}``
    (``surge_window`` becomes the surge detector's ``window``; '' stays '' = unset)."""
    out: Dict[str, dict] = {}
    for name, own in (("surge", SURGE_PARAMETERS), ("campaign", CAMPAIGN_PARAMETERS)):
        out[name] = {p: params.get(f"{name}_{p}") for p in own if f"{name}_{p}" in params}
        out[name].update({p: params[p] for p in SHARED if p in params})
    return out


def enabled_detectors(params: Mapping[str, Any]) -> Tuple[str, ...]:
    """The ``detectors`` parameter (default both); ValueError naming what is wrong."""
    raw = params.get("detectors")
    if is_unset(raw):
        return DETECTORS
    try:
        items = as_list(raw)
    except ValueError:
        items = None
    if not items or not all(isinstance(i, str) and i in DETECTORS for i in items):
        raise ValueError(f"Parameter detectors must be a non-empty list of {', '.join(DETECTORS)}.")
    return tuple(d for d in DETECTORS if d in items)


_SURGE_NAME = re.compile(r"(Parameters? )(" + "|".join(SURGE_PARAMETERS) + r")\b")


def parameter_problems(params: Mapping[str, Any]) -> List[list]:
    """``[level, text]`` per problem of the expert's detector parameters (IntelMQ's ``check()``)."""
    out: List[list] = []
    try:
        enabled = enabled_detectors(params)
    except ValueError as exc:
        return [["error", str(exc)]]
    split = detector_parameters(params)
    if "surge" in enabled:
        for level, text in _surge.parameter_problems(split["surge"]):
            out.append([level, _SURGE_NAME.sub(lambda m: f"{m.group(1)}surge_{m.group(2)}", text)])
    if "campaign" in enabled:
        out += _campaign.parameter_problems(split["campaign"], prefix="campaign_")
    seen, unique = set(), []
    for level, text in out:                      # max_tlp is checked by both: said once
        if text not in seen:
            seen.add(text)
            unique.append([level, text])
    return unique


class SeriesSurge(_surge.SurgeDetector):
    """The surge detector, keeping for each (type, country) the last :data:`SERIES_BUCKETS`
    buckets' observed count and the baseline's expectation, for the plot of each surge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.series: Dict[Tuple[str, str], Deque[Tuple[float, int, float]]] = {}

    def _close(self, start: float) -> List[Alert]:
        mode = self.settings.count
        for key, k in self.keys.items():
            try:
                point = (start, k.open.value(mode), round(self._expected(key, k, start), 3))
            except (AttributeError, TypeError, ValueError):      # the surge model changed: no series
                continue
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = deque(maxlen=SERIES_BUCKETS)
            series.append(point)
        return super()._close(start)

    def series_of(self, alert: Alert) -> Dict[str, List[list]]:
        """``{country: [[bucket start, observed, expected], ...]}`` of a surge alert's named countries:
        the closed buckets, and the open one as counted so far (a surge is often raised in it)."""
        out = {}
        for country in alert.countries:
            key = (alert.classification_type, country)
            points = [list(p) for p in self.series.get(key, ())]
            k = self.keys.get(key)
            if k is not None and self.clock is not None and (not points or points[-1][0] < self.clock):
                try:
                    expected = getattr(k.open, "expected", None)
                    if expected is None:
                        expected = self._expected(key, k, self.clock)
                    points.append([self.clock, k.open.value(self.settings.count), round(expected, 3)])
                except (AttributeError, TypeError, ValueError):      # the surge model changed: no open point
                    pass
            if points:
                out[country] = points
        return out


def surge_defaults() -> "_surge.SurgeSettings":
    """The surge detector's default settings (the expert shows them as its ``surge_*`` defaults)."""
    return _surge.SurgeSettings()


def _make_surge(params: Mapping[str, Any]) -> SeriesSurge:
    return SeriesSurge(_surge.SurgeSettings.from_parameters(dict(params)), name="surge")


class AnalyticsStage:
    """The detectors of the expert.  :meth:`observe` gives one event to each (the campaign
    detector first: it reads every field it needs before it counts anything) and returns
    ``(alerts, campaign id or None)``."""

    def __init__(self, detectors: Mapping[str, Any]):
        self.detectors = dict(detectors)

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> "AnalyticsStage":
        """ValueError naming the first bad parameter."""
        errors = [text for level, text in parameter_problems(params) if level == "error"]
        if errors:
            raise ValueError(errors[0])
        split = detector_parameters(params)
        made: Dict[str, Any] = {}
        for name in enabled_detectors(params):
            made[name] = _make_surge(split["surge"]) if name == "surge" else _campaign.campaign(split["campaign"])
        return cls(made)

    def observe(self, event: Mapping[str, Any], now: Optional[float] = None) -> Tuple[List[Alert], Optional[str]]:
        """Raises ``tlp.LabelError`` and :class:`EventError` (naming the field): nothing counted."""
        if isinstance(event, dict) and type(event) is not dict:
            # an IntelMQ Event: its get() checks the harmonization on every call (about 4 us, ~25
            # calls per event); a plain copy has the same fields and values
            event = dict(event)
        read = tlp.event_tlp(event)           # the labels, once (tlp.LabelError: nothing counted)
        alerts: List[Alert] = []
        campaign_id = None
        detector = self.detectors.get("campaign")
        if detector is not None:
            found, campaign_id = detector.assign(event, now, read)
            alerts += found
        detector = self.detectors.get("surge")
        if detector is not None:
            alerts += detector.observe(event, now)
        return alerts, campaign_id

    def advance(self, now: float) -> List[Alert]:
        alerts: List[Alert] = []
        for detector in self.detectors.values():
            alerts += detector.advance(now)
        return alerts

    def series_of(self, alert: Alert) -> Dict[str, List[list]]:
        surge = self.detectors.get("surge")
        return surge.series_of(alert) if alert.kind == "surge" and isinstance(surge, SeriesSurge) else {}

    def state(self) -> dict:
        return {"name": STATE_NAME, "version": STATE_VERSION,
                "saved_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                "detectors": {name: d.state() for name, d in self.detectors.items()}}

    def save(self, path: Path) -> None:
        """Write the state atomically, readable by the owner only (it holds network prefixes,
        domains and hashes the events carried)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.state(), separators=(",", ":"), allow_nan=False), mode=0o600)

    def restore(self, state: Any) -> List[str]:
        """Load a saved state into this stage's detectors; the notes to log (a detector whose
        parameters changed starts afresh).  :class:`StateError` naming the field when unusable."""
        if not isinstance(state, dict):
            raise StateError(f"a mapping expected, not {inputs.kind_of(state)}")
        if state.get("name") != STATE_NAME:
            raise StateError(f"{STATE_NAME!r} expected", "name")
        if state.get("version") != STATE_VERSION:
            raise StateError(f"version {STATE_VERSION} expected, not {state.get('version')!r}", "version")
        saved = state.get("detectors")
        if not isinstance(saved, dict):
            raise StateError(f"a mapping expected, not {inputs.kind_of(saved)}", "detectors")
        notes, restored = [], {}
        for name, current in self.detectors.items():
            if name not in saved:
                notes.append(f"no saved state of detector {name}: it starts afresh")
                continue
            raw = saved[name]
            if not isinstance(raw, dict):
                raise StateError(f"a mapping expected, not {inputs.kind_of(raw)}", f"detectors.{name}")
            if raw.get("settings") != current.state().get("settings"):
                notes.append(f"the parameters of detector {name} changed since its state was saved: "
                             "it starts afresh (with its warm-up)")
                continue
            kind = type(current)
            try:
                restored[name] = kind.from_state(raw)
            except StateError as exc:
                raise StateError(exc.reason, f"detectors.{name}" + (f".{exc.field}" if exc.field else "")) from None
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
                raise StateError(f"unusable ({type(exc).__name__})", f"detectors.{name}") from None
        self.detectors.update(restored)
        return notes


def load_state(stage: AnalyticsStage, path: Path) -> List[str]:
    """Restore ``stage`` from the file ``path`` (nothing to do when it does not exist); the notes
    to log.  :class:`StateError` naming the field (or the file and line) when it is unusable."""
    path = Path(path)
    try:
        if not path.exists():
            return [f"no state file {path}: the detectors start afresh (with their warm-up)"]
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        with open(path, "rb"):                   # permissions: a deployment error, not a bad state
            pass
    except OSError as exc:
        raise StateUnreadable(f"{path}: {exc.strerror or exc}") from None
    try:
        data = inputs.read_json(path, max_bytes=MAX_STATE_BYTES, what="state file of the analytics expert")
    except inputs.InputError as exc:
        raise StateError(str(exc)) from None
    return stage.restore(data)


class StateUnreadable(StateError):
    """The state file cannot be opened at all (permissions, a directory): a deployment error,
    not a bad state; nothing can be saved there either."""


# --- the alert journal ---------------------------------------------------------------------

class JournalError(CrossBorderError, ValueError):
    """A line of the alert journal that cannot be read (file and line named)."""


class AlertJournal:
    """One JSON line per alert: ``{"alert": Alert.as_dict(), "series": {...}, "sent": bool}``.
    Appended and flushed to disk at once; the daily report reads it (:func:`read_journal`)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, alert: Alert, series: Optional[Mapping[str, Any]] = None, sent: bool = True) -> None:
        record = {"alert": alert.as_dict(), "series": dict(series or {}), "sent": bool(sent)}
        line = json.dumps(record, separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _journal_record(obj: Any, where: str) -> dict:
    """A journal line checked: the alert's fields of the right types (else JournalError)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("alert"), dict):
        raise JournalError(f"{where}: a mapping with an 'alert' mapping expected")
    a = obj["alert"]
    for name, ok in (("detector", lambda v: isinstance(v, str)), ("kind", lambda v: v in ("surge", "campaign",
                                                                                          "indicator")),
                     ("start", _finite), ("raised", _finite), ("classification.type", lambda v: isinstance(v, str)),
                     ("countries", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v)),
                     ("hubs", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                     ("undisclosed", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                     ("tlp", lambda v: v is None or isinstance(v, str)),
                     ("evidence", lambda v: isinstance(v, dict))):
        if name not in a or not ok(a[name]):
            raise JournalError(f"{where}: field alert.{name}: missing or of the wrong type "
                               f"({inputs.kind_of(a.get(name))})")
    series = obj.get("series", {})
    if not isinstance(series, dict):
        raise JournalError(f"{where}: field series: a mapping expected, not {inputs.kind_of(series)}")
    clean: Dict[str, list] = {}
    for country, points in series.items():
        if not isinstance(points, list) or not all(
                isinstance(p, list) and len(p) == 3 and all(_finite(x) for x in p) for p in points[:1000]):
            raise JournalError(f"{where}: field series.{country}: [[start, observed, expected], ...] expected")
        clean[country] = points[:1000]
    return {"alert": a, "series": clean, "sent": bool(obj.get("sent", True))}


def read_journal(path: Path) -> Iterator[Tuple[Optional[dict], Optional[str]]]:
    """``(record, None)`` per good line and ``(None, problem naming file and line)`` per bad one;
    nothing when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line_no, obj in inputs.iter_json_lines(handle, source=str(path)):
            if isinstance(obj, inputs.InputError):
                yield None, str(obj)
                continue
            try:
                yield _journal_record(obj, f"{path}, line {line_no}"), None
            except JournalError as exc:
                yield None, str(exc)
