"""The demo's surge: one small DDoS surge in two countries, seen by the cross-border hub's analytics expert.

The demo consortium runs for minutes, the surge detector needs a week of history (its
warm-up).  So the demo:

1. :func:`seed_state` replays two weeks of background traffic (the two countries, a daily
   rhythm, every source its own address) through the expert's detectors *offline* and saves
   their state where the expert will read it (``state_file``): the learned baseline;
2. :func:`write_feed` writes the sensor-feed file of the last hours before ``now``: the same
   background, plus from three hours before ``now`` a DDoS wave in both countries from fresh
   sources (no indicator repeats, so the same-indicator rule cannot see it);
3. the expert raises the cross-border surge on the early-warning path as the feed goes by;
   :func:`summarise` reads its alert journal and says whether the surge was detected, and with
   what delay from its start; :func:`write_report` writes the daily report with its section
   *Surges and campaigns detected* (the plot of observed against expected counts).

The lead's wiring (``demo/consortium.py``): call :func:`seed_state` for the cross-border hub
with :data:`EXPERT_PARAMETERS` (the parameters of the ``analytics`` block in its runtime.yaml)
before its bots start, drop :func:`write_feed`'s file into its ``feed`` spool with the day's
samples, print :func:`summarise`'s ``line`` in the report and point to :func:`write_report`'s page.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import random
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from intelmq_crossborder.analytics import stage as analytics_stage
from intelmq_crossborder.analytics.situational import format_delay
from intelmq_crossborder.core.files import atomic_write_text
from intelmq_crossborder.runtime.instance import chown_for_intelmq

__all__ = ["COUNTRIES", "SURGE_TYPE", "EXPERT_PARAMETERS", "background", "surge", "seed_state", "write_feed",
           "summarise", "write_report"]

COUNTRIES = ("AT", "DE")
SURGE_TYPE = "ddos"
LABEL = "GREEN"                # the feed's label (stock field tlp; the hub's TLP expert writes sharing.tlp)
SEED_DAYS = 15                 # the surge detector's week of warm-up, and every weekday seen twice
FEED_HOURS = 6                 # the feed file: the last hours before now
SURGE_HOURS = 3                # the surge: the last hours of the feed
BASE_RATE = 12.0               # background sources per hour and country (a baseline needs counts, not zeros)
SURGE_RATE = 36.0              # extra sources per hour and country during the surge: small, but 3x the usual
#: the parameters of the cross-border hub's analytics expert that the seed must share (paths aside)
EXPERT_PARAMETERS: Dict[str, Any] = {"hub_id": "fi-hub", "country": "FI", "max_tlp": "AMBER", "default_tlp": "RED"}


def _iso(seconds: float) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).replace(microsecond=0).isoformat()


def _rate(seconds: float) -> float:
    """Sources per hour: a daily rhythm (busiest in the evening, UTC)."""
    hour = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).hour
    return BASE_RATE * (1.0 + 0.3 * math.sin((hour - 12) / 24 * 2 * math.pi))


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


def _event(rng: random.Random, when: float, country: str, feed: str) -> dict:
    first = {"AT": 77, "DE": 91}.get(country, 62)        # an address of the country's space, fresh each time
    return {"feed.name": feed, "classification.type": SURGE_TYPE, "classification.taxonomy": "availability",
            "source.ip": f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "source.geolocation.cc": country, "tlp": LABEL, "time.source": _iso(when)}


def background(start: float, end: float, seed: int = 7, countries: Sequence[str] = COUNTRIES) -> List[dict]:
    """Background DDoS sources from ``start`` to ``end`` (epoch seconds), sorted by time."""
    rng = random.Random(seed)
    out = []
    hour = math.floor(start / 3600) * 3600
    while hour < end:
        for country in countries:
            for _ in range(_poisson(rng, _rate(hour))):
                when = hour + rng.uniform(0, 3600)
                if start <= when < end:
                    out.append(_event(rng, when, country, "fi-netflow-feed"))
        hour += 3600
    return sorted(out, key=lambda e: e["time.source"])


def surge(start: float, end: float, seed: int = 11, countries: Sequence[str] = COUNTRIES) -> List[dict]:
    """The injected surge: extra DDoS sources in every country from ``start`` to ``end``."""
    rng = random.Random(seed)
    out = []
    hour = start
    while hour < end:
        for country in countries:
            for _ in range(_poisson(rng, SURGE_RATE)):
                when = hour + rng.uniform(0, 3600)
                if when < end:
                    out.append(_event(rng, when, country, "fi-netflow-feed"))
        hour += 3600
    return sorted(out, key=lambda e: e["time.source"])


def _window(now: float) -> tuple:
    end = math.floor(now / 3600) * 3600              # the feed ends at the last full hour before now
    return end - FEED_HOURS * 3600, end - SURGE_HOURS * 3600, end


def seed_state(state_file: Path, now: float, parameters: Optional[Mapping[str, Any]] = None) -> int:
    """Replay :data:`SEED_DAYS` of background ending where :func:`write_feed`'s file begins through
    detectors built from ``parameters`` (the expert's, default :data:`EXPERT_PARAMETERS`) and save
    their state to ``state_file``; the number of events replayed.  Run it before the expert starts."""
    feed_start, _, _ = _window(now)
    stage = analytics_stage.AnalyticsStage.from_parameters(dict(parameters or EXPERT_PARAMETERS))
    events = background(feed_start - SEED_DAYS * 86400, feed_start, seed=3)
    for event in events:
        # what the hub's TLP expert makes of the feed's label, written as it writes it
        stage.observe({**{k: v for k, v in event.items() if k != "tlp"}, "sharing.tlp": LABEL}, None)
    stage.advance(feed_start)
    state_file = Path(state_file)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    stage.save(state_file)
    chown_for_intelmq(state_file.parent)     # the bot runs as intelmq: it must read and replace the file
    return len(events)


def write_feed(path: Path, now: float) -> dict:
    """Write the sensor-feed file (IntelMQ JSON lines, as the demo's JSON parser reads them): the
    background of the last :data:`FEED_HOURS` before ``now`` and the surge in its last
    :data:`SURGE_HOURS`.  Returns what was injected, for :func:`summarise`."""
    feed_start, surge_start, end = _window(now)
    events = sorted(background(feed_start, end, seed=5) + surge(surge_start, end - 3600),
                    key=lambda e: e["time.source"])
    # one source after the surge's last hour closes it (the detector scores an hour when the next begins)
    events += background(end - 1800, end, seed=13)[:1] or [_event(random.Random(1), end - 60, COUNTRIES[0],
                                                                  "fi-netflow-feed")]
    atomic_write_text(Path(path), "".join(json.dumps(e, sort_keys=True) + "\n" for e in events), mode=0o644)
    return {"type": SURGE_TYPE, "countries": list(COUNTRIES), "start": surge_start, "end": end - 3600,
            "events": len(events)}


def summarise(journal: Path, injected: Mapping[str, Any]) -> dict:
    """Whether the analytics expert detected the injected surge (an alert of its type naming one of
    its countries, raised after it began), with the delay from its start; ``line`` for the report."""
    found = []
    problems = []
    for record, problem in analytics_stage.read_journal(Path(journal)):
        if problem is not None:
            problems.append(problem)
            continue
        alert = record["alert"]
        if alert["kind"] == "surge" and alert["classification.type"] == injected["type"] \
                and set(alert["countries"]) & set(injected["countries"]) and alert["raised"] >= injected["start"]:
            found.append(alert)
    if not found:
        return {"detected": False, "delay_s": None, "problems": problems,
                "line": f"analytics: the injected {injected['type']} surge in {', '.join(injected['countries'])} "
                        "was NOT detected" + (f" ({len(problems)} unreadable journal lines)" if problems else "")}
    first = min(found, key=lambda a: a["raised"])
    delay = first["raised"] - injected["start"]
    evidence = first["evidence"]
    return {"detected": True, "delay_s": delay, "countries": first["countries"], "problems": problems,
            "expected": evidence.get("expected"), "observed": evidence.get("observed"),
            "line": f"analytics: the injected {injected['type']} surge in {', '.join(injected['countries'])} was "
                    f"detected {format_delay(delay)} after it began (countries {', '.join(first['countries'])}; "
                    f"observed {evidence.get('observed')} against {evidence.get('expected')} expected)"}


def write_report(journal: Path, out_dir: Path, day: Optional[str] = None, ceiling: str = "GREEN",
                 store: Optional[Path] = None) -> Path:
    """The daily report (``report daily``) of ``day`` (default: today, UTC) under the TLP ``ceiling``,
    with the analytics expert's ``journal``: the section *Surges and campaigns detected* shows the
    demo's surge, its delay and its plot.  ``store``: the contributions store to report from (default:
    an empty one in ``out_dir``: the cross-border hub of the demo records no contributions)."""
    from intelmq_crossborder.analytics import contributions, report
    from intelmq_crossborder.core import tlp

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    day = day or _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    conn = contributions.connect(Path(store) if store else out_dir / "contributions.sqlite")
    try:
        return report.write_daily(conn, out_dir, day=day, days=2, ceiling=tlp.parse_level(ceiling),
                                  title="Cross-border hub fi-hub: daily situational awareness", alerts=Path(journal))
    finally:
        conn.close()
