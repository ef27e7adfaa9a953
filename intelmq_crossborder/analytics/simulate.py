"""Labelled pooled traffic for the detectors: ``intelmq-crossborder analytics simulate``.

:func:`simulate` returns (and :func:`write` writes) a pair of JSON-lines files, the
formats ``analytics evaluate`` reads (docs/analytics.md, "Formats"):

* **events**: IntelMQ flat events sorted by ``time.source``, as the hubs of a consortium pool
  them: one hub per country (``provenance.origin_hub`` ``hub-<cc>``, ``provenance.origin_country``),
  ``classification.taxonomy``/``type``, ``source.geolocation.cc``, ``source.ip``/``source.asn``, the
  indicators of the type (``source.url``/``source.fqdn``, ``malware.hash.sha256``, ``malware.name``,
  ``product.vulnerabilities``) and a TLP (``sharing.tlp``; a few RED, a few with the source hidden).
* **truth**: one incident per line, ``{"id", "kind", "start", "end", "classification.type",
  "countries"}`` plus how it was made (``shape``, ``magnitude``, ``shared``).

Background traffic per (country, type): sources arrive as a Poisson process whose rate
follows a daily profile (office hours for phishing and spam, evenings for infected
systems) and a weekly one (quieter weekends); each source sends a heavy-tailed number
of events (Pareto, capped) in a burst, and sources recur from a per-country pool with
Zipf popularity.  Common malware families and CVEs recur in every country (as they do).

Injected incidents, after ``warmup_weeks``:

* **surge**: one type rising in 2..6 countries at once (abrupt: the rate jumps; gradual:
  it ramps up over half the incident), every extra event from a fresh source with its own
  indicators, so the same-indicator rule cannot see it;
* **campaign**: a handful of events per country and hour in 2..6 countries, each with its own
  source but sharing infrastructure: one ASN and /24, a registered domain (different hosts
  and paths), a file hash (different URLs), a CVE or a rare malware family.

Everything comes from one ``random.Random(seed)``: the same seed and parameters give the
same files byte for byte.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from intelmq_crossborder.core import files

__all__ = ["Settings", "simulate", "write", "TYPES", "COUNTRIES", "EPOCH"]

#: Monday 5 January 2026, 00:00 UTC: the first simulated hour.
EPOCH = _dt.datetime(2026, 1, 5, tzinfo=_dt.timezone.utc)
COUNTRIES = ("DE", "FR", "IT", "ES", "PL", "NL", "BE", "AT", "SE", "CZ", "PT", "FI")
#: RSIT type -> (taxonomy, events per hour in a mid-sized country, daily profile)
TYPES: Dict[str, Tuple[str, float, str]] = {
    "scanner": ("information-gathering", 0.9, "flat"),
    "brute-force": ("intrusion-attempts", 0.5, "night"),
    "phishing": ("fraud", 0.35, "office"),
    "spam": ("abusive-content", 0.5, "office"),
    "infected-system": ("malicious-code", 0.7, "evening"),
    "malware-distribution": ("malicious-code", 0.3, "flat"),
    "ddos": ("availability", 0.15, "evening"),
    "exploit": ("intrusion-attempts", 0.25, "flat"),
    "vulnerable-system": ("vulnerable", 0.3, "office"),
}
_FAMILIES = ("mirai", "emotet", "qakbot", "lokibot", "agenttesla", "formbook", "redline", "gafgyt")
_COMMON_CVES = ("CVE-2021-44228", "CVE-2023-4966", "CVE-2024-3400", "CVE-2023-34362", "CVE-2022-1388",
                "CVE-2019-19781")
#: A simulation is held in memory: at most this many events (about 1 GB).
MAX_EVENTS = 2_000_000
_TLP = (("CLEAR", 0.2), ("GREEN", 0.5), ("AMBER", 0.25), ("RED", 0.05))


@dataclass(frozen=True)
class Settings:
    """What to simulate.  ``surges``/``campaigns``: incidents per week after the warm-up."""

    seed: int = 1
    weeks: int = 4
    warmup_weeks: int = 1
    countries: int = 8
    surges: int = 3
    campaigns: int = 3
    volume: float = 1.0                 # scales every background rate
    burst_alpha: float = 1.6            # Pareto shape of events per source (smaller: heavier tail)
    burst_cap: int = 60
    hidden_fraction: float = 0.05       # events with sharing.do_not_disclose_source

    def problems(self) -> List[str]:
        out = []
        if not 1 <= self.weeks <= 52:
            out.append("weeks must be between 1 and 52")
        if not 0 <= self.warmup_weeks < self.weeks:
            out.append("warmup_weeks must be at least 0 and fewer than weeks")
        if not 2 <= self.countries <= len(COUNTRIES):
            out.append(f"countries must be between 2 and {len(COUNTRIES)}")
        for name in ("surges", "campaigns"):
            if not 0 <= getattr(self, name) <= 50:
                out.append(f"{name} must be between 0 and 50 per week")
        if not 0.01 <= self.volume <= 20:
            out.append("volume must be between 0.01 and 20")
        if not 1.05 <= self.burst_alpha <= 5:
            out.append("burst_alpha must be between 1.05 and 5")
        if not 1 <= self.burst_cap <= 10000:
            out.append("burst_cap must be between 1 and 10000")
        if not 0 <= self.hidden_fraction <= 1:
            out.append("hidden_fraction must be between 0 and 1")
        if not out and self.expected_events() > MAX_EVENTS:
            out.append(f"about {self.expected_events():,.0f} events: more than {MAX_EVENTS:,} (fewer weeks, "
                       "countries or volume)")
        return out

    def expected_events(self) -> float:
        """About how many background events these settings make (30 an hour for 8 countries at volume 1)."""
        return 30.0 * 168 * self.weeks * self.volume * self.countries / 8


def _profile(kind: str, hour: int, weekday: int) -> float:
    """Relative rate at an hour of the day and a weekday (0 Monday); mean about 1."""
    if kind == "office":
        day = 0.35 + 1.6 * math.exp(-((hour - 12.5) / 3.5) ** 2)
    elif kind == "evening":
        day = 0.5 + 1.2 * math.exp(-((hour - 20) / 3.0) ** 2)
    elif kind == "night":
        day = 0.7 + 0.7 * math.exp(-((hour - 3) / 3.0) ** 2)
    else:
        day = 0.85 + 0.3 * math.sin(2 * math.pi * (hour - 9) / 24)
    week = 0.55 if weekday >= 5 and kind == "office" else (0.8 if weekday >= 5 else 1.05)
    return day * week


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _burst(rng: random.Random, alpha: float, cap: int) -> int:
    """Events sent by one source: 1 + a Pareto tail, capped (mean about 2 for alpha 1.6)."""
    return min(cap, int(rng.paretovariate(alpha)))


def _zipf_index(rng: random.Random, n: int, s: float = 1.1) -> int:
    """An index 0..n-1, low ones more popular (inverse transform of a continuous power law)."""
    u = rng.random()
    x = (1 + u * ((n + 1) ** (1 - s) - 1)) ** (1 / (1 - s))
    return min(n - 1, int(x) - 1)


def _hex(rng: random.Random, n: int = 64) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


@dataclass
class _World:
    rng: random.Random
    countries: Tuple[str, ...]
    size: Dict[str, float] = field(default_factory=dict)        # country volume factor
    asn: Dict[str, List[int]] = field(default_factory=dict)
    octet: Dict[str, int] = field(default_factory=dict)         # first octet of a country's space
    counter: int = 0
    hidden_fraction: float = 0.0

    def fresh_ip(self, cc: str) -> Tuple[str, int]:
        self.counter += 1
        r = self.rng
        return (f"{self.octet[cc]}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}",
                r.choice(self.asn[cc]))


def _world(rng: random.Random, countries: Tuple[str, ...]) -> _World:
    w = _World(rng, countries)
    for i, cc in enumerate(countries):
        w.size[cc] = math.exp(rng.gauss(0, 0.5))
        w.asn[cc] = [64512 + 100 * i + j for j in range(12)]
        w.octet[cc] = 20 + 7 * i
    return w


def _event(w: _World, when: float, cc: str, kind: str, ip: str, asn: int, *, url: Optional[str] = None,
           sha: Optional[str] = None, family: Optional[str] = None, cve: Optional[str] = None,
           feed: str = "background") -> dict:
    r = w.rng
    taxonomy = TYPES[kind][0]
    ev = {"time.source": _iso(when), "classification.taxonomy": taxonomy, "classification.type": kind,
          "source.ip": ip, "source.asn": asn, "source.geolocation.cc": cc,
          "provenance.origin_hub": f"hub-{cc.lower()}", "provenance.origin_country": cc,
          "feed.name": f"{cc.lower()}-{feed}"}
    roll, acc = r.random(), 0.0
    for label, p in _TLP:
        acc += p
        if roll < acc:
            ev["sharing.tlp"] = label
            break
    else:
        ev["sharing.tlp"] = "GREEN"
    if r.random() < w.hidden_fraction:
        ev["sharing.do_not_disclose_source"] = True
    if url:
        ev["source.url"] = url
        ev["source.fqdn"] = url.split("/")[2]
    if sha:
        ev["malware.hash.sha256"] = sha
    if family:
        ev["malware.name"] = family
    if cve:
        ev["product.vulnerabilities"] = cve
    return ev


def _iso(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).replace(microsecond=0).isoformat()


def _indicators(w: _World, kind: str, cc: str, source: int, fresh: bool) -> dict:
    """Type-specific indicators of a background source (``fresh``: a one-off source)."""
    r = w.rng
    tag = f"{cc.lower()}{source}" if not fresh else _hex(r, 10)
    out: dict = {}
    if kind in ("phishing", "malware-distribution"):
        host = f"{'www.' if r.random() < 0.3 else ''}{tag}-{_hex(r, 4) if fresh else 'site'}.example-{cc.lower()}.com"
        out["url"] = f"http://{host}/{_hex(r, 6)}"
    if kind == "malware-distribution":
        out["sha"] = hashlib.sha256(f"{tag}/{r.randrange(50)}".encode()).hexdigest()
    if kind == "infected-system":
        out["family"] = _FAMILIES[_zipf_index(r, len(_FAMILIES))]
    if kind in ("exploit", "vulnerable-system"):
        out["cve"] = _COMMON_CVES[_zipf_index(r, len(_COMMON_CVES))]
    return out


def _background(w: _World, settings: Settings, hours: int) -> List[dict]:
    r = w.rng
    events: List[dict] = []
    pools: Dict[Tuple[str, str], List[Tuple[str, int]]] = {}
    for cc in w.countries:
        for kind in TYPES:
            pools[(cc, kind)] = [w.fresh_ip(cc) for _ in range(300)]
    mean_burst = sum(min(settings.burst_cap, k) * (k ** -settings.burst_alpha - (k + 1) ** -settings.burst_alpha)
                     for k in range(1, 2000))
    for h in range(hours):
        start = EPOCH.timestamp() + 3600 * h
        dt = _dt.datetime.fromtimestamp(start, _dt.timezone.utc)
        for cc in w.countries:
            for kind, (_tax, rate, shape) in TYPES.items():
                lam = settings.volume * rate * w.size[cc] * _profile(shape, dt.hour, dt.weekday()) / mean_burst
                for _ in range(_poisson(r, lam)):
                    index = _zipf_index(r, len(pools[(cc, kind)]))
                    ip, asn = pools[(cc, kind)][index]
                    ind = _indicators(w, kind, cc, index, fresh=False)
                    t0 = start + r.uniform(0, 3600)
                    for i in range(_burst(r, settings.burst_alpha, settings.burst_cap)):
                        events.append(_event(w, min(start + 3599, t0 + 20 * i), cc, kind, ip, asn, **ind))
    return events


def _incident_countries(w: _World, few: bool) -> List[str]:
    most = len(w.countries)
    n = w.rng.randint(2, min(3, most)) if few else w.rng.randint(min(4, most), min(6, most))
    return sorted(w.rng.sample(list(w.countries), n))


def _surge(w: _World, n: int, start: float, settings: Settings) -> Tuple[dict, List[dict]]:
    r = w.rng
    kind = r.choice(list(TYPES))
    countries = _incident_countries(w, few=r.random() < 0.5)
    shape = r.choice(("abrupt", "gradual"))
    hours = r.randint(4, 12)
    magnitude = r.uniform(2.0, 5.0)             # extra events/h relative to the type's usual rate
    end = start + 3600 * hours
    events = []
    for cc in countries:
        base = settings.volume * TYPES[kind][1] * w.size[cc]
        offset = r.uniform(0, 5400)             # countries do not start in the same minute
        for h in range(hours):
            ramp = 1.0 if shape == "abrupt" else min(1.0, (h + 1) / max(1, hours / 2))
            lam = max(3.0, magnitude * base * 3) * ramp
            t0 = start + offset + 3600 * h
            for _ in range(_poisson(r, lam)):
                t = t0 + r.uniform(0, 3600)
                if t >= end:
                    continue
                ip, asn = w.fresh_ip(cc)
                ind = _indicators(w, kind, cc, 0, fresh=True)
                ind.pop("family", None)
                if "family" in _indicators(w, kind, cc, 0, fresh=False):
                    ind["family"] = _FAMILIES[_zipf_index(r, len(_FAMILIES))]
                events.append(_event(w, t, cc, kind, ip, asn, feed="background", **ind))
    truth = {"id": f"surge-{n}", "kind": "surge", "start": _iso(start), "end": _iso(end),
             "classification.type": kind, "countries": countries, "shape": shape,
             "magnitude": round(magnitude, 2), "shared": []}
    return truth, events


_CAMPAIGN_TYPES = ("phishing", "malware-distribution", "infected-system", "exploit")


def _campaign(w: _World, n: int, start: float, settings: Settings) -> Tuple[dict, List[dict]]:
    r = w.rng
    kind = r.choice(_CAMPAIGN_TYPES)
    countries = _incident_countries(w, few=r.random() < 0.5)
    shape = r.choice(("abrupt", "gradual"))
    hours = r.randint(6, 36)
    end = start + 3600 * hours
    options = {"phishing": ("asn24", "domain"), "malware-distribution": ("asn24", "hash", "domain"),
               "infected-system": ("asn24", "family"), "exploit": ("asn24", "cve")}[kind]
    shared = sorted(r.sample(options, r.randint(1, len(options))))
    net = f"{r.randrange(150, 200)}.{r.randrange(256)}.{r.randrange(256)}"
    net_asn = 65000 + r.randrange(500)
    domain = f"{_hex(r, 8)}-secure.example.net"
    sha = _hex(r, 64)
    family = f"{r.choice(('zloader', 'darkgate', 'pikabot', 'latrodectus'))}-{_hex(r, 3)}"
    cve = f"CVE-2026-{r.randrange(10000, 60000)}"
    events = []
    for cc in countries:
        offset = r.uniform(0, 4 * 3600 if shape == "gradual" else 1800)
        for h in range(hours):
            lam = r.uniform(0.4, 1.5)
            t0 = start + offset + 3600 * h
            for _ in range(_poisson(r, lam)):
                t = t0 + r.uniform(0, 3600)
                if t >= end:
                    continue
                if "asn24" in shared:
                    ip, asn = f"{net}.{r.randrange(1, 255)}", net_asn
                else:
                    ip, asn = w.fresh_ip(cc)
                ind = _indicators(w, kind, cc, 0, fresh=True)
                if "domain" in shared and "url" in ind:
                    ind["url"] = f"https://{_hex(r, 5)}.{domain}/{_hex(r, 8)}"
                if "hash" in shared:
                    ind["sha"] = sha
                if "family" in shared:
                    ind["family"] = family
                if "cve" in shared:
                    ind["cve"] = cve
                events.append(_event(w, t, cc, kind, ip, asn, feed="background", **ind))
    truth = {"id": f"campaign-{n}", "kind": "campaign", "start": _iso(start), "end": _iso(end),
             "classification.type": kind, "countries": countries, "shape": shape, "magnitude": None,
             "shared": shared}
    return truth, events


def simulate(settings: Settings) -> Tuple[List[dict], List[dict]]:
    """``(events sorted by time.source, truth sorted by start)``; ValueError for bad settings."""
    problems = settings.problems()
    if problems:
        raise ValueError("; ".join(problems))
    rng = random.Random(settings.seed)
    countries = tuple(COUNTRIES[:settings.countries])
    w = _world(rng, countries)
    w.hidden_fraction = settings.hidden_fraction
    hours = 168 * settings.weeks
    events = _background(w, settings, hours)
    truth: List[dict] = []
    first = 168 * settings.warmup_weeks
    for week in range(settings.warmup_weeks, settings.weeks):
        plan = ["surge"] * settings.surges + ["campaign"] * settings.campaigns
        rng.shuffle(plan)
        # spread the week's incidents out so that two of one type rarely overlap
        slots = sorted(rng.sample(range(0, 168 - 40, 6), len(plan))) if plan else []
        for kind, slot in zip(plan, slots):
            start = EPOCH.timestamp() + 3600 * (168 * week + slot) + rng.uniform(0, 3600)
            if start < EPOCH.timestamp() + 3600 * first:
                continue
            maker = _surge if kind == "surge" else _campaign
            record, extra = maker(w, len(truth) + 1, start, settings)
            truth.append(record)
            events.extend(extra)
    events.sort(key=lambda e: (e["time.source"], e["provenance.origin_hub"], e["classification.type"],
                               e["source.ip"]))
    truth.sort(key=lambda t: (t["start"], t["id"]))
    return events, truth


def _lines(items: Sequence[dict]) -> bytes:
    return "".join(json.dumps(i, sort_keys=True, separators=(",", ":")) + "\n" for i in items).encode("utf-8")


def write(settings: Settings, events_path, truth_path) -> Tuple[int, int]:
    """Simulate and write both files atomically; ``(events, incidents)``."""
    events, truth = simulate(settings)
    files.atomic_write(Path(events_path), _lines(events))
    files.atomic_write(Path(truth_path), _lines(truth))
    return len(events), len(truth)
