"""Surge detection: one classification type rising in several countries at once.

The detector counts, per ``(classification.type, source.geolocation.cc)`` and per
``bucket`` (an hour by default), the distinct indicators reported (``count: indicators``;
a source that sends 50 events in a burst is one) or the events (``count: events``).  When
a bucket closes, each key's count is compared with what its baseline expects for that
hour of the week; a key far above it is a per-country **signal**.  The same type
signalling in at least ``min_countries`` countries within ``window`` seconds is a
cross-border **surge**: one :class:`~intelmq_crossborder.analytics.alerts.Alert` per
episode (a new one only after every signal of that type has ended), with the type, the
countries and, per country, the expected and observed counts.  See docs/analytics.md.

Three models, selectable by ``model`` (and as detectors ``surge-seasonal``,
``surge-cusum``, ``surge-river`` of :data:`~intelmq_crossborder.analytics.alerts.DETECTORS`):

``seasonal``
    a multiplicative seasonal baseline ``E = level x day-of-week factor x hour-of-day
    factor`` learned by exponential smoothing, an over-dispersed Poisson variance
    ``E + phi E^2`` (``phi`` learned too), and a threshold: signal when the count is at
    least ``min_count`` and ``sensitivity`` standard deviations above ``E``.  Robust:
    every update is winsorised at ``E + 2 sd``, so a surge barely moves the baseline.
``cusum``
    the same baseline, with a one-sided CUSUM control chart over the standardised
    residuals (reference ``k = 0.5``, decision interval ``h = sensitivity``): slow,
    gradual rises add up.
``river``
    the baseline is a Poisson regression (``river.linear_model.LinearRegression`` with
    the Poisson loss: ``log E`` linear in one-hot hour-of-day and day-of-week) learned
    online, one bucket at a time; the same variance and threshold as ``seasonal``.

Warm-up: a key signals only after ``warmup`` seconds of its history (a week by default:
every hour of the week seen once).  Memory is bounded: at most ``max_keys`` keys (more are
counted in ``dropped``, not tracked).

TLP: an event's level is read by :func:`intelmq_crossborder.core.tlp.event_tlp` only
(:func:`~intelmq_crossborder.analytics.early_warning.read_level`); events above ``max_tlp``
are not counted at all (``withheld``); an unlabelled event counts as ``default_tlp``.  The
alert's ``tlp`` is the most restrictive level of the events that made it.  Hubs are never
named: the alert counts them (``hubs``) and how many hid their source (``undisclosed``); a
country whose events in the surge all came from hidden sources counts towards
``min_countries`` but is not named (``evidence.undisclosed_countries``).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.analytics.alerts import Alert, EventError, StateError, event_time, want
from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.parameters import optional

__all__ = ["MODELS", "SurgeSettings", "parameter_problems", "SurgeDetector", "best", "seasonal", "cusum",
           "river_model", "BEST_MODEL"]

MODELS = ("seasonal", "cusum", "river")
#: The model ``surge`` (the default) uses: the best of the comparison in docs/analytics.md.
BEST_MODEL = "cusum"
#: Default sensitivity per model (z threshold for seasonal/river, decision interval h for cusum).
DEFAULT_SENSITIVITY = {"seasonal": 2.5, "cusum": 3.5, "river": 4.0}
STATE_VERSION = 1
_MAX_INDICATORS = 50_000      # distinct indicators kept per key and bucket; more count as events
_MAX_GAP_BUCKETS = 2 * 168    # a longer silence is a gap in the data: no scoring across it


@dataclass(frozen=True)
class SurgeSettings:
    """The detector's parameters (``from_parameters`` reads them as IntelMQ Manager saves them)."""

    model: str = BEST_MODEL
    bucket: int = 3600
    warmup: int = 7 * 86400
    sensitivity: Optional[float] = None           # None: DEFAULT_SENSITIVITY[model]
    min_countries: int = 2
    window: int = 3 * 3600
    min_count: int = 3
    count: str = "indicators"
    max_keys: int = 20_000
    max_tlp: str = "AMBER"
    default_tlp: str = "RED"
    max_ahead: int = 3600

    @property
    def threshold(self) -> float:
        return self.sensitivity if self.sensitivity is not None else DEFAULT_SENSITIVITY[self.model]

    @property
    def warmup_buckets(self) -> int:
        return max(1, self.warmup // self.bucket)

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], **defaults: Any) -> "SurgeSettings":
        """ValueError naming the first bad parameter (:func:`parameter_problems`)."""
        errors = [text for level, text in parameter_problems(params) if level == "error"]
        if errors:
            raise ValueError(errors[0])
        base = replace(cls(), **defaults)
        values = {}
        for f in fields(cls):
            raw = params.get(f.name)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue
            values[f.name] = _coerce(f.name, raw)
        return replace(base, **values)

    def as_dict(self) -> dict:
        return asdict(self)


_INTS = {"bucket": (60, 86400), "warmup": (0, 365 * 86400), "min_countries": (1, 1000),
         "window": (1, 30 * 86400), "min_count": (1, 10**9), "max_keys": (1, 10**7), "max_ahead": (0, 30 * 86400)}


def _coerce(name: str, raw: Any) -> Any:
    if name in _INTS:
        if isinstance(raw, bool):
            raise ValueError(name)
        value = int(raw.strip()) if isinstance(raw, str) else raw
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(name)
        return value
    if name == "sensitivity":
        if isinstance(raw, bool):
            raise ValueError(name)
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)
        return value
    return raw.strip() if isinstance(raw, str) else raw


def parameter_problems(params: Mapping[str, Any]) -> List[list]:
    """``[level, text]`` per problem of the surge parameters (IntelMQ's ``check()`` form)."""
    out: List[list] = []
    for name, (low, high) in _INTS.items():
        raw = optional(params.get(name))
        if raw is None:
            continue
        try:
            value = _coerce(name, raw)
        except (ValueError, TypeError, OverflowError):
            out.append(["error", f"Parameter {name} must be an integer, not {inputs.kind_of(raw)} {raw!r}."[:300]])
            continue
        if not low <= value <= high:
            out.append(["error", f"Parameter {name} must be between {low} and {high}, not {value}."])
    raw = optional(params.get("sensitivity"))
    if raw is not None:
        try:
            value = _coerce("sensitivity", raw)
            if not (math.isfinite(value) and 0.5 <= value <= 100):
                raise ValueError
        except (ValueError, TypeError, OverflowError):
            out.append(["error", f"Parameter sensitivity must be a number between 0.5 and 100, not {raw!r}."[:300]])
    for name, allowed in (("model", MODELS), ("count", ("indicators", "events"))):
        raw = optional(params.get(name))
        if raw is not None and (not isinstance(raw, str) or raw.strip() not in allowed):
            out.append(["error", f"Parameter {name} must be one of {', '.join(allowed)}, not {raw!r}."[:300]])
    for name, default in (("max_tlp", "AMBER"), ("default_tlp", "RED")):
        try:
            level = tlp.parse_level(optional(params.get(name), default), f"parameter {name}")
            if name == "max_tlp" and level >= tlp.Level.AMBER_STRICT:
                out.append(["error", f"Parameter max_tlp: TLP:{level.label} cannot go to the early warning "
                                     "automatically; use AMBER or lower."])
        except (tlp.UnknownTLPError, TypeError, AttributeError):
            out.append(["error", f"Parameter {name}: not a TLP label: {params.get(name)!r}."[:300]])
    try:
        bucket = _coerce("bucket", optional(params.get("bucket"), 3600))
        window = _coerce("window", optional(params.get("window"), 3 * 3600))
        if isinstance(bucket, int) and isinstance(window, int) and 0 < window < bucket:
            out.append(["warning", f"Parameter window ({window} s) is shorter than a bucket ({bucket} s): "
                                   "only countries signalling in the same bucket count together."])
    except (ValueError, TypeError, OverflowError):
        pass
    if _safe_int(params.get("min_countries")) == 1:
        out.append(["warning", "Parameter min_countries is 1: a surge in one country is reported as cross-border."])
    return out


def _safe_int(raw: Any) -> Optional[int]:
    try:
        return _coerce("min_countries", raw) if optional(raw) is not None else None
    except (ValueError, TypeError, OverflowError):
        return None


# --- per-key state ----------------------------------------------------------------------

@dataclass
class _Bucket:
    """The open bucket of one key: what has been counted so far."""

    events: int = 0
    indicators: Set[str] = field(default_factory=set)
    extra: int = 0                     # events without an indicator, or beyond _MAX_INDICATORS
    level: int = -1                    # most restrictive tlp.Level counted (-1: none)
    hubs: Set[str] = field(default_factory=set)
    hidden: Set[str] = field(default_factory=set)     # hubs that hid their source
    disclosed: bool = False            # at least one event whose source is not hidden
    expected: Optional[float] = None   # the baseline's expectation for this bucket (cached, not saved)

    def value(self, mode: str) -> int:
        return self.events if mode == "events" else len(self.indicators) + self.extra


@dataclass
class _Key:
    """Baseline, model and signal of one (type, country)."""

    n: int = 0                                        # buckets seen
    level: float = 0.0                                # deseasonalised level (seasonal/cusum)
    hod: List[float] = field(default_factory=lambda: [1.0] * 24)
    hod_n: List[int] = field(default_factory=lambda: [0] * 24)
    dow: List[float] = field(default_factory=lambda: [1.0] * 7)
    dow_obs: List[float] = field(default_factory=lambda: [0.0] * 7)     # decayed sums per weekday:
    dow_pred: List[float] = field(default_factory=lambda: [0.0] * 7)    # observed, and level x hod
    phi: float = 0.0                                  # over-dispersion
    cusum: float = 0.0
    rise: Optional[float] = None                      # CUSUM: start of the bucket where it left 0
    weights: Dict[str, float] = field(default_factory=dict)   # river model
    intercept: float = 0.0
    open: _Bucket = field(default_factory=_Bucket)
    # the current signal episode (since is None: no signal)
    since: Optional[float] = None
    last: float = 0.0
    expected: float = 0.0
    observed: int = 0
    sig_level: int = -1
    sig_hubs: Set[str] = field(default_factory=set)
    sig_hidden: Set[str] = field(default_factory=set)
    sig_disclosed: bool = False
    sig_alerted: bool = False                         # named in an alert of this episode
    early: Optional[List[float]] = None               # [expected, observed]: the open bucket signalled early


_ALPHA, _GAMMA, _DELTA, _BETA = 0.01, 0.1, 0.01, 0.02
_RIVER_LR = 0.03
_MAX_WEIGHT = 30.0            # |river weight|: exp(30) is 1e13 events per bucket, far beyond any feed
_MAX_COUNT = 1e9
_WEIGHT_NAME = re.compile(r"h(?:1?[0-9]|2[0-3])|d[0-6]")
_PSEUDO = 10.0
#: the variance of a count is never taken below this: one event where 0.05 are expected is no surge
_VAR_FLOOR = 0.5


def _features(start: float) -> Dict[str, float]:
    when = _dt.datetime.fromtimestamp(start, _dt.timezone.utc)
    return {f"h{when.hour}": 1.0, f"d{when.weekday()}": 1.0}


class SurgeDetector:
    """See the module docstring.  ``name`` is the detector's registry name."""

    def __init__(self, settings: Optional[SurgeSettings] = None, name: Optional[str] = None):
        self.settings = settings or SurgeSettings()
        s = self.settings
        if s.model not in MODELS or s.count not in ("indicators", "events"):
            raise ValueError(f"model must be one of {', '.join(MODELS)} and count indicators or events")
        self.name = name or f"surge-{s.model}"
        self._max = tlp.parse_level(s.max_tlp, "parameter max_tlp")
        self._default = tlp.parse_level(s.default_tlp, "parameter default_tlp")
        self.keys: Dict[Tuple[str, str], _Key] = {}
        self.clock: Optional[float] = None            # start of the open bucket
        self.withheld = self.dropped = self.late = self.uncounted = 0
        self._river: Dict[Tuple[str, str], Any] = {}

    # --- the protocol ---------------------------------------------------------------

    def observe(self, event: Mapping[str, Any], now: Optional[float] = None) -> List[Alert]:
        """Count one event.  ``now`` (the bot's wall clock) refuses an event dated more than
        ``max_ahead`` seconds in the future (:class:`EventError`) and dates it no later than now.
        An event older than the open bucket counts in it (late, counted in ``late``)."""
        s = self.settings
        when = event_time(event)
        if now is not None:
            if when > now + s.max_ahead:
                raise EventError("time.source", f"more than {s.max_ahead} s in the future")
            when = min(when, now)
        kind = _text(event, "classification.type")
        country = _text(event, "source.geolocation.cc")
        level, hidden = ew.read_level(event, self._default)
        hub = _text(event, "provenance.origin_hub") or "(unknown)"
        alerts = self.advance(when)
        if level > self._max:
            self.withheld += 1
            return alerts
        if kind is None or country is None:
            return alerts
        country = country.upper()
        if len(country) != 2 or not country.isascii() or not country.isalpha():
            self.uncounted += 1         # not a country code (IntelMQ's harmonization refuses it anyway)
            return alerts
        key = (kind, country)
        state = self.keys.get(key)
        if state is None:
            if len(self.keys) >= s.max_keys:
                self.dropped += 1
                return alerts
            state = self.keys[key] = _Key()
        if self.clock is not None and when < self.clock:
            self.late += 1
        b = state.open
        b.events += 1
        indicator = ew.indicator_key(event)
        if indicator is None:
            b.extra += 1
        else:
            digest = hashlib.blake2b(f"{indicator[0]}\x00{indicator[1]}".encode("utf-8", "replace"),
                                     digest_size=8).hexdigest()
            if digest not in b.indicators:
                if len(b.indicators) < _MAX_INDICATORS:
                    b.indicators.add(digest)
                else:
                    b.extra += 1
        b.level = max(b.level, int(level))
        b.hubs.add(hub)
        if hidden:
            b.hidden.add(hub)
        else:
            b.disclosed = True
        if state.early is None and self.clock is not None and b.value(s.count) >= s.min_count:
            alerts += self._early(key, state, max(when, self.clock))
        return alerts

    def _test(self, k: _Key, x: int, expected: float) -> Tuple[bool, float]:
        """``(anomalous, new CUSUM)`` of a count ``x`` against ``expected`` for this key."""
        s = self.settings
        sd = math.sqrt(max(expected, _VAR_FLOOR) + k.phi * expected * expected)
        z = (x - expected) / sd
        if k.n < s.warmup_buckets:
            return False, 0.0
        if s.model == "cusum":
            value = max(0.0, k.cusum + min(z, 8.0) - 0.5)
            return value >= s.threshold and x > expected, value
        return x >= s.min_count and z >= s.threshold, k.cusum

    def _early(self, key: Tuple[str, str], k: _Key, now: float) -> List[Alert]:
        """The open bucket already holds more than the whole bucket may: signal now, not at
        its end (counts only grow, so the closed bucket will signal too)."""
        if self.clock is None:          # observe() sets the clock before any bucket is open
            raise RuntimeError("surge detector: an open bucket without a clock")
        x = k.open.value(self.settings.count)
        if k.open.expected is None:
            k.open.expected = self._expected(key, k, self.clock)
        expected = k.open.expected
        anomalous, _ = self._test(k, x, expected)
        if not anomalous:
            return []
        k.early = [expected, float(x)]
        self._signal(k, self.clock, self.clock + self.settings.bucket, 0.0, 0, k.open)
        return self._cross_border(now)

    def _signal(self, k: _Key, start: float, end: float, expected: float, x: int, b: _Bucket) -> None:
        if k.since is None:
            # CUSUM's change point: where the sum left 0 (at most a window back)
            rise = k.rise if k.rise is not None and start - k.rise <= self.settings.window else start
            k.since, k.expected, k.observed = min(start, rise), 0.0, 0
            k.sig_level, k.sig_hubs, k.sig_hidden, k.sig_disclosed, k.sig_alerted = -1, set(), set(), False, False
        k.last = end
        k.expected += expected
        k.observed += x
        k.sig_level = max(k.sig_level, b.level)
        k.sig_hubs |= b.hubs
        k.sig_hidden |= b.hidden
        k.sig_disclosed = k.sig_disclosed or b.disclosed

    def advance(self, now: float) -> List[Alert]:
        """Close every bucket that ended by ``now``; the alerts that raises."""
        if not isinstance(now, (int, float)) or isinstance(now, bool) or not math.isfinite(now):
            raise ValueError("now must be a finite number of epoch seconds")
        size = self.settings.bucket
        start = math.floor(now / size) * size
        if self.clock is None:
            self.clock = float(start)
            return []
        alerts: List[Alert] = []
        if start - self.clock > _MAX_GAP_BUCKETS * size:
            # a gap in the data: the open bucket is scored, the silence is not
            alerts += self._close(self.clock)
            self._forget_signals()
            self.clock = float(start)
            return alerts
        while self.clock < start:
            alerts += self._close(self.clock)
            self.clock += size
        return alerts

    def state(self) -> dict:
        keys = []
        for (kind, country), k in sorted(self.keys.items()):
            d = {name: getattr(k, name) for name in ("n", "level", "hod", "hod_n", "dow", "dow_obs", "dow_pred", "phi", "cusum",
                                                     "intercept", "since", "rise", "last", "expected", "observed",
                                                     "sig_level", "sig_disclosed", "sig_alerted", "early")}
            d["weights"] = dict(sorted(k.weights.items()))
            d["sig_hubs"], d["sig_hidden"] = sorted(k.sig_hubs), sorted(k.sig_hidden)
            b = k.open
            d["open"] = {"events": b.events, "indicators": sorted(b.indicators), "extra": b.extra,
                         "level": b.level, "hubs": sorted(b.hubs), "hidden": sorted(b.hidden),
                         "disclosed": b.disclosed}
            keys.append([kind, country, d])
        return {"name": self.name, "version": STATE_VERSION, "settings": self.settings.as_dict(),
                "clock": self.clock, "keys": keys,
                "counters": {"withheld": self.withheld, "dropped": self.dropped, "late": self.late,
                             "uncounted": self.uncounted}}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SurgeDetector":
        if not isinstance(state, Mapping):
            raise StateError(f"a mapping expected, not {inputs.kind_of(state)}")
        if state.get("version") != STATE_VERSION:
            raise StateError(f"version {STATE_VERSION} expected, not {state.get('version')!r}", "version")
        name = want(state, "name", str)
        raw = want(state, "settings", dict)
        known = {f.name for f in fields(SurgeSettings)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise StateError("unknown setting", f"settings.{unknown[0]}")
        problems = [t for lvl, t in parameter_problems(raw) if lvl == "error"]
        if problems:
            raise StateError(problems[0], "settings")
        try:
            detector = cls(SurgeSettings.from_parameters(raw), name=name)
        except (ValueError, TypeError) as exc:
            raise StateError(str(exc), "settings") from None
        clock = state.get("clock")
        if clock is not None:
            clock = want(state, "clock", float)
        detector.clock = clock
        counters = want(state, "counters", dict)
        for c in ("withheld", "dropped", "late", "uncounted"):
            setattr(detector, c, want(counters, c, int, "counters", minimum=0))
        keys = want(state, "keys", list)
        if len(keys) > detector.settings.max_keys:
            raise StateError(f"more than max_keys ({detector.settings.max_keys}) keys", "keys")
        for i, item in enumerate(keys):
            where = f"keys[{i}]"
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], str) and isinstance(item[2], dict)):
                raise StateError("[type, country, {...}] expected", where)
            detector.keys[(item[0], item[1])] = _load_key(item[2], where)
        return detector

    # --- internals --------------------------------------------------------------------

    def _forget_signals(self) -> None:
        for k in self.keys.values():
            k.since, k.cusum = None, 0.0
            k.open = _Bucket()
            k.early = None

    def _expected(self, key: Tuple[str, str], k: _Key, start: float) -> float:
        if self.settings.model == "river":
            model = self._river_for(key, k)
            return max(0.05, min(1e6, float(model.predict_one(_features(start)))))
        when = _dt.datetime.fromtimestamp(start, _dt.timezone.utc)
        return max(0.05, k.level * k.dow[when.weekday()] * k.hod[when.hour])

    def _river_for(self, key: Tuple[str, str], k: _Key):
        model = self._river.get(key)
        if model is None:
            from river import linear_model, optim
            model = linear_model.LinearRegression(optimizer=optim.SGD(_RIVER_LR), loss=optim.losses.Poisson(),
                                                  intercept_lr=_RIVER_LR, l2=0.0)
            for name, value in k.weights.items():
                model._weights[name] = value
            model.intercept = k.intercept
            self._river[key] = model
        return model

    def _learn(self, key: Tuple[str, str], k: _Key, start: float, x: float, expected: float) -> None:
        k.n += 1
        if self.settings.model == "river":
            model = self._river_for(key, k)
            model.learn_one(_features(start), x)
            for name in list(model._weights):       # bounded: never an overflow in the Poisson loss
                model._weights[name] = min(_MAX_WEIGHT, max(-_MAX_WEIGHT, float(model._weights[name])))
            model.intercept = min(_MAX_WEIGHT, max(-_MAX_WEIGHT, float(model.intercept)))
            k.weights = {name: float(model._weights[name]) for name in model._weights}
            k.intercept = float(model.intercept)
        else:
            when = _dt.datetime.fromtimestamp(start, _dt.timezone.utc)
            h, d = when.hour, when.weekday()
            alpha = max(_ALPHA, 1.0 / k.n)
            k.level += alpha * (x / max(0.05, k.dow[d] * k.hod[h]) - k.level)
            if k.level > 0.01:
                k.hod_n[h] += 1
                gamma = max(_GAMMA, 1.0 / k.hod_n[h])
                k.hod[h] += gamma * (x / max(0.01, k.level * k.dow[d]) - k.hod[h])
                # the weekday factor: a ratio of decayed sums, shrunk towards 1 by _PSEUDO counts
                # (learned from the first day when the data are plentiful, stays near 1 when sparse)
                k.dow_obs[d] = k.dow_obs[d] * (1 - _DELTA) + x
                k.dow_pred[d] = k.dow_pred[d] * (1 - _DELTA) + k.level * k.hod[h]
                k.dow[d] = (k.dow_obs[d] + _PSEUDO) / (k.dow_pred[d] + _PSEUDO)
                k.hod[h] = min(50.0, max(0.01, k.hod[h]))
                k.dow[d] = min(50.0, max(0.01, k.dow[d]))
                if k.n % 24 == 0:                   # the hour factors keep a mean of 1 (a day at a time)
                    mean = sum(k.hod) / 24
                    k.hod[:] = [min(50.0, max(0.01, v / mean)) for v in k.hod]
                    k.level *= mean                 # the expectation stays what it was
        beta = max(_BETA, 1.0 / k.n)
        dispersion = ((x - expected) ** 2 - expected) / (expected * expected)
        k.phi = min(10.0, max(0.0, k.phi + beta * (dispersion - k.phi)))

    def _close(self, start: float) -> List[Alert]:
        """Score the bucket ``start``..``start + bucket`` of every key; the alerts it raises."""
        s = self.settings
        end = start + s.bucket
        for key, k in self.keys.items():
            b = k.open
            x = b.value(s.count)
            expected = b.expected if b.expected is not None else self._expected(key, k, start)
            sd = math.sqrt(max(expected, _VAR_FLOOR) + k.phi * expected * expected)
            before = k.cusum
            anomalous, k.cusum = self._test(k, x, expected)
            if k.cusum <= 0:
                k.rise = None
            elif before <= 0 or k.rise is None:
                k.rise = start
            anomalous = anomalous or k.early is not None
            # robust: a surge barely moves the baseline
            self._learn(key, k, start, min(float(x), expected + 2 * sd), expected)
            if anomalous:
                self._signal(k, start, end, expected, x, b)
            elif k.since is not None and end - k.last >= s.window:
                k.since = None
                if s.model == "cusum":
                    k.cusum = 0.0
            k.open = _Bucket()
            k.early = None
        return self._cross_border(end)

    def _cross_border(self, now: float) -> List[Alert]:
        s = self.settings
        by_type: Dict[str, List[Tuple[str, _Key]]] = {}
        for (kind, country), k in self.keys.items():
            if k.since is not None and now - k.last < s.window:
                by_type.setdefault(kind, []).append((country, k))
        alerts = []
        for kind, signals in sorted(by_type.items()):
            # one alert per episode: again only when min_countries countries signal that no alert named yet
            if sum(1 for _, k in signals if not k.sig_alerted) < s.min_countries:
                continue
            for _, k in signals:
                k.sig_alerted = True
            named = sorted((c, k) for c, k in signals if k.sig_disclosed)
            hubs = set().union(*(k.sig_hubs for _, k in signals))
            hidden = set().union(*(k.sig_hidden for _, k in signals))
            level = max(k.sig_level for _, k in signals)
            evidence = {
                "model": s.model, "count": s.count, "bucket_s": s.bucket, "window_s": s.window,
                "countries": {c: {"expected": round(_pending(k)[0], 2), "observed": int(_pending(k)[1]),
                                  "since": k.since} for c, k in named},
                "expected": round(sum(_pending(k)[0] for _, k in signals), 2),
                "observed": int(sum(_pending(k)[1] for _, k in signals)),
                "undisclosed_countries": len(signals) - len(named),
            }
            alerts.append(Alert(self.name, "surge", min(k.since for _, k in signals), now, kind,
                                tuple(c for c, _ in named), evidence, hubs=len(hubs),
                                undisclosed=len(hidden),
                                tlp=tlp.Level(level).label if level >= 0 else None))
        return alerts


def _pending(k: _Key) -> Tuple[float, float]:
    """Expected and observed counts of a signal, with the open bucket that signalled early."""
    extra = k.early or [0.0, 0.0]
    return k.expected + extra[0], k.observed + extra[1]


def _text(event: Mapping[str, Any], name: str) -> Optional[str]:
    value = event.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EventError(name, f"a text expected, not {inputs.kind_of(value)}")
    value = value.strip()
    if len(value) > 200:
        raise EventError(name, f"a text of at most 200 characters expected, not {len(value)}")
    return value or None


def _floats(d: Mapping[str, Any], key: str, where: str, n: int, low: float, high: float) -> List[float]:
    value = want(d, key, list, where)
    if len(value) != n:
        raise StateError(f"{n} numbers expected, not {len(value)}", f"{where}.{key}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not low <= v <= high:
            raise StateError(f"a number from {low} to {high} expected, not {inputs.kind_of(v)} {v!r}"[:200],
                             f"{where}.{key}[{i}]")
        out.append(float(v))
    return out


def _strings(d: Mapping[str, Any], key: str, where: str, limit: int = _MAX_INDICATORS) -> Set[str]:
    value = want(d, key, list, where)
    if len(value) > limit or not all(isinstance(v, str) and len(v) <= 200 for v in value):
        raise StateError(f"a list of at most {limit} short strings expected", f"{where}.{key}")
    return set(value)


def _load_key(d: Mapping[str, Any], where: str) -> _Key:
    k = _Key()
    k.n = want(d, "n", int, where, minimum=0)
    for name, low, high in (("level", 0, _MAX_COUNT), ("phi", 0, 10), ("cusum", 0, _MAX_COUNT),
                            ("intercept", -_MAX_WEIGHT, _MAX_WEIGHT), ("last", None, None),
                            ("expected", 0, _MAX_COUNT * 1e4)):
        value = want(d, name, float, where)
        if low is not None and not low <= value <= high:
            raise StateError(f"a number from {low} to {high} expected", f"{where}.{name}")
        setattr(k, name, value)
    k.hod, k.dow = _floats(d, "hod", where, 24, 0.0, 50.0), _floats(d, "dow", where, 7, 0.0, 50.0)
    hod_n = want(d, "hod_n", list, where)
    if len(hod_n) != 24 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in hod_n):
        raise StateError("24 integers >= 0 expected", f"{where}.hod_n")
    k.hod_n = list(hod_n)
    k.dow_obs = _floats(d, "dow_obs", where, 7, 0.0, _MAX_COUNT * 1e3)
    k.dow_pred = _floats(d, "dow_pred", where, 7, 0.0, _MAX_COUNT * 1e3)
    k.since = None if d.get("since") is None else want(d, "since", float, where)
    k.rise = None if d.get("rise") is None else want(d, "rise", float, where)
    k.observed = want(d, "observed", int, where, minimum=0)
    k.sig_level = want(d, "sig_level", int, where, minimum=-1)
    if k.sig_level > int(tlp.Level.RED):
        raise StateError("a TLP level index expected", f"{where}.sig_level")
    k.sig_disclosed = want(d, "sig_disclosed", bool, where)
    k.sig_alerted = want(d, "sig_alerted", bool, where)
    early = d.get("early")
    if early is not None:
        k.early = _floats(d, "early", where, 2, 0.0, _MAX_COUNT * 1e4)
    k.sig_hubs, k.sig_hidden = _strings(d, "sig_hubs", where, 10_000), _strings(d, "sig_hidden", where, 10_000)
    weights = want(d, "weights", dict, where)
    if len(weights) > 64:
        raise StateError("at most 64 weights expected", f"{where}.weights")
    for name in weights:
        if not _WEIGHT_NAME.fullmatch(name):
            raise StateError("a weight of hNN or dN expected", f"{where}.weights.{name[:40]}")
        value = want(weights, name, float, f"{where}.weights")
        if not -_MAX_WEIGHT <= value <= _MAX_WEIGHT:
            raise StateError(f"a number from {-_MAX_WEIGHT} to {_MAX_WEIGHT} expected", f"{where}.weights.{name}")
        k.weights[name] = value
    o = want(d, "open", dict, where)
    ow = f"{where}.open"
    b = _Bucket(events=want(o, "events", int, ow, minimum=0), extra=want(o, "extra", int, ow, minimum=0),
                level=want(o, "level", int, ow, minimum=-1), disclosed=want(o, "disclosed", bool, ow))
    if b.level > int(tlp.Level.RED):
        raise StateError("a TLP level index expected", f"{ow}.level")
    b.indicators = _strings(o, "indicators", ow)
    b.hubs, b.hidden = _strings(o, "hubs", ow, 10_000), _strings(o, "hidden", ow, 10_000)
    k.open = b
    return k


def _make(model: Optional[str], name: str, params: Optional[Mapping[str, Any]]) -> SurgeDetector:
    params = dict(params or {})
    if model is not None:
        params["model"] = model
    return SurgeDetector(SurgeSettings.from_parameters(params), name=name)


def best(params: Optional[Mapping[str, Any]] = None) -> SurgeDetector:
    """Detector ``surge``: the best model (:data:`BEST_MODEL`) unless ``model`` says otherwise."""
    return _make(None, "surge", params)


def seasonal(params: Optional[Mapping[str, Any]] = None) -> SurgeDetector:
    return _make("seasonal", "surge-seasonal", params)


def cusum(params: Optional[Mapping[str, Any]] = None) -> SurgeDetector:
    return _make("cusum", "surge-cusum", params)


def river_model(params: Optional[Mapping[str, Any]] = None) -> SurgeDetector:
    return _make("river", "surge-river", params)
