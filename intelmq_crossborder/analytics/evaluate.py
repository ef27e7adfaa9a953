"""Replaying labelled events through the detectors: ``intelmq-crossborder analytics evaluate``.

:func:`evaluate` feeds the events (time order, the clock is their ``time.source``) to every
detector, collects the alerts and compares them with the ground truth:

* an alert **matches** an incident when its span (``start``..``raised``) overlaps the
  incident's (``start``..``end``), it names the incident's ``classification.type`` and at
  least one of its countries;
* **recall**: incidents matched by at least one alert / incidents; **precision**: alerts that
  match an incident / alerts; a **false alarm** matches none (per simulated week: the
  events' time span in weeks);
* **delay** of a detected incident: the first matching alert's ``raised`` minus the
  incident's ``start`` (0 when the alert was raised before); median and 90th percentile
  (linear interpolation) over the detected incidents.

The rule-based early warning is detector ``rule``: :class:`RuleDetector` runs
:class:`~intelmq_crossborder.analytics.early_warning.Evaluator` itself, with a
:class:`ReplayTracker` that keeps the spread windows in memory on the replay's clock
(Redis' expiry runs on the wall clock and cannot replay weeks in seconds).
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.analytics.alerts import (DETECTORS, Alert, EventError, StateError, detector,
                                                  event_time, parse_time, want)
from intelmq_crossborder.core import inputs, tlp

__all__ = ["Incident", "load_truth", "load_events", "ReplayTracker", "RuleDetector", "rule", "matches",
           "score", "evaluate", "Result", "COMBINED", "quantile"]

WEEK = 7 * 86400
#: The union of the alerts of ``surge`` and ``campaign`` (what the analytics expert raises).
COMBINED = ("analytics", ("surge", "campaign"))
_MAX_EVENTS = 5_000_000


@dataclass(frozen=True)
class Incident:
    id: str
    kind: str
    start: float
    end: float
    classification_type: str
    countries: Tuple[str, ...]


def _truth_line(obj: Any, source: str, line: int) -> Incident:
    def bad(reason: str, name: Optional[str] = None) -> inputs.InputError:
        return inputs.InputError(source, reason, line=line, field=name)
    if not isinstance(obj, dict):
        raise bad(f"an incident is a JSON object, not {inputs.kind_of(obj)}")
    for name in ("id", "kind", "start", "end", "classification.type", "countries"):
        if name not in obj:
            raise bad("missing", name)
    ident = obj["id"]
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or not str(ident).strip():
        raise bad(f"a text or number expected, not {inputs.kind_of(ident)}", "id")
    if obj["kind"] not in ("surge", "campaign"):
        raise bad(f"'surge' or 'campaign' expected, not {obj['kind']!r}"[:200], "kind")
    times = {}
    for name in ("start", "end"):
        try:
            times[name] = parse_time(obj[name], name)
        except EventError as exc:
            raise bad(exc.reason, name) from None
        except (OverflowError, OSError, ValueError):
            raise bad("a time out of range", name) from None
    if times["end"] < times["start"]:
        raise bad("before start", "end")
    kind = obj["classification.type"]
    if not isinstance(kind, str) or not kind.strip() or kind != kind.strip():
        raise bad(f"a type without surrounding spaces expected, not {inputs.kind_of(kind)} {kind!r}"[:200],
                  "classification.type")
    countries = obj["countries"]
    if not isinstance(countries, list) or not countries:
        raise bad(f"a non-empty list expected, not {inputs.kind_of(countries)}", "countries")
    for i, cc in enumerate(countries):
        if not isinstance(cc, str) or not (len(cc) == 2 and cc.isascii() and cc.isalpha()):
            raise bad(f"a two-letter country code expected, not {cc!r}"[:200], f"countries[{i}]")
    return Incident(str(ident), obj["kind"], times["start"], times["end"], kind,
                    tuple(sorted({c.upper() for c in countries})))


def load_truth(path) -> List[Incident]:
    """The incidents of a truth file; :class:`inputs.InputError` naming file, line and field."""
    source = str(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise inputs.InputError(source, f"cannot read the file: {exc.strerror or exc}") from None
    out: List[Incident] = []
    seen: Dict[str, int] = {}
    with handle:
        for line, obj in inputs.iter_json_lines(handle, source):
            if isinstance(obj, inputs.InputError):
                raise obj
            incident = _truth_line(obj, source, line)
            if incident.id in seen:
                raise inputs.InputError(source, f"id {incident.id!r} already on line {seen[incident.id]}"[:200],
                                        line=line, field="id")
            seen[incident.id] = line
            out.append(incident)
    return out


def load_events(path, problems: Optional[list] = None) -> List[Tuple[float, int, dict]]:
    """``(time, line, event)`` sorted by time (then line).  A line that is not an event with a
    readable time raises :class:`inputs.InputError`, or with a ``problems`` list is added to
    it and skipped."""
    source = str(path)
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise inputs.InputError(source, f"cannot read the file: {exc.strerror or exc}") from None
    out = []
    with handle:
        for line, obj in inputs.iter_json_lines(handle, source):
            try:
                if isinstance(obj, inputs.InputError):
                    raise obj
                if not isinstance(obj, dict):
                    raise inputs.InputError(source, f"an event is a JSON object, not {inputs.kind_of(obj)}",
                                            line=line)
                try:
                    when = event_time(obj)
                except EventError as exc:
                    raise inputs.InputError(source, exc.reason, line=line, field=exc.field) from None
                except (OverflowError, OSError, ValueError):
                    raise inputs.InputError(source, "a time out of range", line=line, field="time.source") \
                        from None
            except inputs.InputError as exc:
                if problems is None:
                    raise
                problems.append(exc)
                continue
            out.append((when, line, obj))
            if len(out) > _MAX_EVENTS:
                raise inputs.InputError(source, f"more than {_MAX_EVENTS} events: split the file", line=line)
    out.sort(key=lambda item: (item[0], item[1]))
    return out


# --- the rule-based early warning as a detector ---------------------------------------------

class ReplayTracker(ew.Tracker):
    """:class:`early_warning.Tracker` in memory, on the replay's clock (``now``)."""

    def __init__(self, window: int):
        super().__init__(redis=None, window=window)
        self.now = 0.0
        self.seen: Dict[str, Dict[str, float]] = {}
        self.claims: Dict[str, float] = {}
        self.first: Dict[str, float] = {}

    def record(self, key: tuple, contribution: ew.Contribution, now: Optional[float] = None,
               ids: Optional[str] = None) -> ew.Spread:
        now = self.now if now is None else now
        name = self._key("seen", key)
        members = self.seen.setdefault(name, {})
        members[contribution.member()] = now
        for member, t in list(members.items()):
            if t <= now - self.window:
                del members[member]
        self.first[name] = min(members.values())
        return ew.Spread([ew.Contribution.from_member(m) for m in members])

    def claim(self, key: tuple, kind: str) -> bool:
        name = self._key("warned-" + kind, key)
        if self.claims.get(name, -math.inf) > self.now:
            return False
        self.claims[name] = self.now + self.window
        return True

    # what a warning was raised on (for corrections after a retraction): nothing is retracted in a replay
    def remember_ids(self, key: tuple, ids: str, now: Optional[float] = None) -> None:
        return None

    def ids_of(self, key: tuple) -> list:
        return []

    def mark_warned(self, ids: Iterable[str], record: dict, ttl: int) -> None:
        return None

    def warned(self, ids: Iterable[str]) -> list:
        return []

    def claim_correction(self, warning_id: str, retraction_id: str, ttl: int) -> bool:
        return False

    def expire(self) -> None:
        """Forget windows that ended (bounded memory over a long replay)."""
        for name in [n for n, members in self.seen.items() if max(members.values()) <= self.now - self.window]:
            del self.seen[name]
            self.first.pop(name, None)
        for name in [n for n, until in self.claims.items() if until <= self.now]:
            del self.claims[name]


#: Fields the early warning reads as text (IntelMQ's harmonization guarantees it in a pipeline;
#: a replayed file does not).
_RULE_TEXT_FIELDS = ("provenance.origin_hub", "provenance.origin_country", "provenance.hub_path", "sharing.pap",
                     "classification.type", "provenance.event_uuid", "provenance.fingerprint")


class RuleDetector:
    """Detector ``rule``: the early-warning expert's evaluation (``early_warning.Evaluator``)."""

    name = "rule"

    def __init__(self, params: Optional[Mapping[str, Any]] = None):
        self.params = dict(params or {})
        self.settings = ew.Settings.from_parameters(self.params)
        self.tracker = ReplayTracker(self.settings.window)
        self.evaluator = ew.Evaluator(self.settings, self.tracker)
        self._n = 0

    def observe(self, event: Mapping[str, Any]) -> List[Alert]:
        now = event_time(event)
        for name in _RULE_TEXT_FIELDS:
            value = event.get(name)
            if value is not None and not isinstance(value, str):
                raise EventError(name, f"a text expected, not {inputs.kind_of(value)}")
        self.tracker.now = max(self.tracker.now, now)
        self._n += 1
        if self._n % 5000 == 0:
            self.tracker.expire()
        out = []
        for warning in self.evaluator.evaluate(event, now=self.tracker.now):
            f = warning.fields
            key = ew.indicator_key(event, self.settings.key_fields)
            start = self.tracker.first.get(self.tracker._key("seen", key), self.tracker.now) if key else \
                self.tracker.now
            out.append(Alert("rule", "indicator", start, self.tracker.now,
                             f.get("extra.reported_classification_type") or "(unknown)",
                             tuple(f.get("extra.contributing_countries") or ()),
                             {"trigger": warning.trigger, "hub_count": f.get("extra.hub_count"),
                              "country_count": f.get("extra.country_count"), "window_s": self.settings.window},
                             hubs=int(f.get("extra.hub_count") or 0),
                             undisclosed=int(f.get("extra.undisclosed_contributors") or 0),
                             tlp=warning.level.label))
        return out

    def advance(self, now: float) -> List[Alert]:
        self.tracker.now = max(self.tracker.now, now)
        return []

    def state(self) -> dict:
        return {"name": self.name, "version": 1, "params": self.params}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "RuleDetector":
        """The rule keeps its windows in Redis; only its parameters are saved here."""
        if not isinstance(state, Mapping) or state.get("version") != 1:
            raise StateError("version 1 expected", "version")
        params = want(state, "params", dict)
        try:
            return cls(params)
        except ValueError as exc:
            raise StateError(str(exc), "params") from None


def rule(params: Optional[Mapping[str, Any]] = None) -> RuleDetector:
    return RuleDetector(params)


# --- scoring ---------------------------------------------------------------------------------

def matches(alert: Alert, incident: Incident) -> bool:
    return (alert.start <= incident.end and alert.raised >= incident.start
            and alert.classification_type == incident.classification_type
            and bool(set(alert.countries) & set(incident.countries)))


def quantile(values: Sequence[float], q: float) -> Optional[float]:
    """The ``q`` quantile by linear interpolation (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Result:
    name: str
    alerts: List[Alert] = field(default_factory=list)
    refused: int = 0
    delays: Dict[str, float] = field(default_factory=dict)      # incident id -> delay
    metrics: Dict[str, Any] = field(default_factory=dict)


def score(name: str, alerts: Sequence[Alert], incidents: Sequence[Incident], weeks: float) -> Result:
    result = Result(name, list(alerts))
    matched = 0
    for alert in alerts:
        if any(matches(alert, i) for i in incidents):
            matched += 1
    for incident in incidents:
        hits = [a.raised for a in alerts if matches(a, incident)]
        if hits:
            result.delays[incident.id] = max(0.0, min(hits) - incident.start)
    delays = list(result.delays.values())
    wide = [i for i in incidents if len(i.countries) >= 3]
    by_kind = {}
    for kind in ("surge", "campaign"):
        of_kind = [result.delays.get(i.id) for i in incidents if i.kind == kind]
        found = [d for d in of_kind if d is not None]
        by_kind[kind] = {"recall": _ratio(len(found), len(of_kind)),
                         "delay_median_s": _round(statistics.median(found)) if found else None}
    false_alarms = len(alerts) - matched
    result.metrics = {
        "precision": _ratio(matched, len(alerts)),
        "recall": _ratio(len(delays), len(incidents)),
        "delay_median_s": _round(statistics.median(delays)) if delays else None,
        "delay_p90_s": _round(quantile(delays, 0.9)),
        "false_alarms_per_week": round(false_alarms / weeks, 3) if weeks > 0 else None,
        "recall_3plus_countries": _ratio(sum(1 for i in wide if i.id in result.delays), len(wide)),
        "by_kind": by_kind,
        "alerts": len(alerts),
        "false_alarms": false_alarms,
        "detected": sorted(result.delays),
        "delays_s": {i: round(d, 1) for i, d in sorted(result.delays.items())},
    }
    return result


def _ratio(a: int, b: int) -> Optional[float]:
    return round(a / b, 4) if b else None


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


def _versus(result: Result, baseline: Result) -> dict:
    both = sorted(set(result.delays) & set(baseline.delays))
    if not both:
        return {"incidents_both_detect": 0, "delay_median_s": None, "rule_delay_median_s": None}
    return {"incidents_both_detect": len(both),
            "delay_median_s": _round(statistics.median(result.delays[i] for i in both)),
            "rule_delay_median_s": _round(statistics.median(baseline.delays[i] for i in both))}


def evaluate(events: Sequence[Tuple[float, int, dict]], incidents: Sequence[Incident],
             names: Optional[Iterable[str]] = None, params: Optional[Mapping[str, Mapping[str, Any]]] = None,
             problems: Optional[list] = None, source: str = "<events>") -> Dict[str, Any]:
    """Replay ``events`` (from :func:`load_events`) through the detectors ``names`` (default:
    all of :data:`DETECTORS`); the report ``{"detectors": {name: metrics}, ...}``.  An event a
    detector refuses (no usable field, labels that cannot be read) is counted as ``refused``
    and, with ``problems``, reported once per line."""
    names = list(dict.fromkeys(names or DETECTORS))
    params = params or {}
    detectors = {n: detector(n, params.get(n)) for n in names}
    collected: Dict[str, List[Alert]] = {n: [] for n in names}
    refused = {n: 0 for n in names}
    reported = set()
    last = None
    for when, line, event in events:
        for n, d in detectors.items():
            try:
                collected[n].extend(d.observe(event))
            except (EventError, tlp.LabelError) as exc:
                refused[n] += 1
                if problems is not None and line not in reported:
                    reported.add(line)
                    problems.append(inputs.InputError(source, f"refused: {getattr(exc, 'reason', exc)}",
                                                      line=line, field=getattr(exc, "field", None)))
        last = when
    if last is not None:
        for n, d in detectors.items():
            collected[n].extend(d.advance(last + 2 * 86400))
    first = events[0][0] if events else 0.0
    weeks = ((last or 0.0) - first) / WEEK
    results = {n: score(n, collected[n], incidents, weeks) for n in names}
    combined_name, parts = COMBINED
    if all(p in results for p in parts):
        results[combined_name] = score(combined_name, [a for p in parts for a in collected[p]], incidents, weeks)
    report: Dict[str, Any] = {"detectors": {}}
    for n, r in results.items():
        metrics = dict(r.metrics)
        metrics["refused"] = refused.get(n, 0)
        if "rule" in results and n != "rule":
            metrics["versus_rule"] = _versus(r, results["rule"])
        report["detectors"][n] = metrics
    report["events"] = len(events)
    report["incidents"] = len(incidents)
    report["incidents_3plus_countries"] = sum(1 for i in incidents if len(i.countries) >= 3)
    report["weeks"] = round(weeks, 3)
    report["alerts"] = {n: [a.as_dict() for a in r.alerts] for n, r in results.items() if n != combined_name}
    return report


def table(report: Mapping[str, Any]) -> str:
    """The report as a text table, one detector per line."""
    head = ("detector", "precision", "recall", "recall>=3cc", "delay med", "delay p90", "FA/week", "alerts")
    rows = [head]

    def num(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{v:.2f}" if pct else (_duration(v) if isinstance(v, (int, float)) else str(v))
    for name, m in report["detectors"].items():
        rows.append((name, num(m["precision"], True), num(m["recall"], True), num(m["recall_3plus_countries"], True),
                     num(m["delay_median_s"]), num(m["delay_p90_s"]),
                     "-" if m["false_alarms_per_week"] is None else f"{m['false_alarms_per_week']:.2f}",
                     str(m["alerts"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def write_json(report: Mapping[str, Any], path) -> None:
    from intelmq_crossborder.core import files
    slim = {k: v for k, v in report.items() if k != "alerts"}
    files.atomic_write_text(Path(path), json.dumps(slim, indent=1, sort_keys=True) + "\n")




#: The figures :func:`compare` summarises over the seeds.
SUMMARY = ("precision", "recall", "recall_3plus_countries", "delay_median_s", "delay_p90_s", "false_alarms_per_week")


def compare(seeds: Sequence[int], settings: Optional[Mapping[str, Any]] = None,
            names: Optional[Iterable[str]] = None,
            params: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Dict[str, Any]:
    """Simulate each seed (:mod:`.simulate`, ``settings`` as its keyword arguments), evaluate it,
    and summarise each detector's figures over the seeds: mean, standard deviation, min, max
    (a seed where a figure is undefined, such as a delay with nothing detected, is left out
    of that figure and counted in ``n``).  ``per_seed`` holds each seed's report."""
    from intelmq_crossborder.analytics import simulate as sim
    per_seed = {}
    for seed in seeds:
        events, truth = sim.simulate(sim.Settings(**{**dict(settings or {}), "seed": seed}))
        timed = [(event_time(e), i + 1, e) for i, e in enumerate(events)]
        incidents = [_truth_line(t, f"seed {seed}", i + 1) for i, t in enumerate(truth)]
        report = evaluate(timed, incidents, names, params)
        report.pop("alerts")
        per_seed[str(seed)] = report
    summary: Dict[str, Any] = {}
    for name in next(iter(per_seed.values()))["detectors"] if per_seed else ():
        figures = {}
        for key in SUMMARY + ("surge", "campaign", "delay_surge"):
            if key in ("surge", "campaign"):
                values = [r["detectors"][name]["by_kind"][key]["recall"] for r in per_seed.values()]
                key = f"recall_{key}"
            elif key == "delay_surge":
                values = [r["detectors"][name]["by_kind"]["surge"]["delay_median_s"] for r in per_seed.values()]
                key = "delay_median_s_surges"
            else:
                values = [r["detectors"][name][key] for r in per_seed.values()]
            values = [v for v in values if v is not None]
            figures[key] = {"mean": _round4(statistics.fmean(values)) if values else None,
                            "sd": _round4(statistics.stdev(values)) if len(values) > 1 else None,
                            "min": min(values) if values else None, "max": max(values) if values else None,
                            "n": len(values)}
        # on the incidents both this detector and the rule detect, pooled over the seeds
        mine, theirs, seeds_with = [], [], 0
        for r in per_seed.values():
            if name == "rule" or "rule" not in r["detectors"]:
                break
            own, rule_delays = r["detectors"][name]["delays_s"], r["detectors"]["rule"]["delays_s"]
            both = sorted(set(own) & set(rule_delays))
            seeds_with += bool(both)
            mine += [own[i] for i in both]
            theirs += [rule_delays[i] for i in both]
        if mine:
            figures["versus_rule"] = {"incidents_both_detect": len(mine), "seeds": seeds_with,
                                      "delay_median_s": _round(statistics.median(mine)),
                                      "rule_delay_median_s": _round(statistics.median(theirs)),
                                      "ratio": _round4(statistics.median(mine) / statistics.median(theirs))
                                      if statistics.median(theirs) > 0 else None}
        summary[name] = figures
    return {"seeds": list(seeds), "settings": dict(settings or {}), "detectors": summary, "per_seed": per_seed}


def _round4(value: float) -> float:
    return round(value, 4)


def summary_table(result: Mapping[str, Any]) -> str:
    """:func:`compare`'s summary as text: mean ± sd (min..max) per figure."""
    head = ("detector",) + SUMMARY[:3] + ("recall_surge", "recall_campaign") + SUMMARY[3:5] \
        + ("delay_median_s_surges",) + SUMMARY[5:]
    rows = [head]
    for name, figures in result["detectors"].items():
        row = [name]
        for key in head[1:]:
            f = figures[key]
            if f["mean"] is None:
                row.append("-")
            elif key.startswith("delay"):
                row.append(f"{_duration(f['mean'])}±{_duration(f['sd'] or 0)}")
            else:
                row.append(f"{f['mean']:.2f}±{f['sd'] or 0:.2f}")
        rows.append(tuple(row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)
