"""The daily report's section "Surges and campaigns detected": the analytics expert's alert journal,
TLP-capped like the rest of the report, with a plot of observed against expected counts per surge.

The journal (:class:`intelmq_crossborder.analytics.stage.AlertJournal`) has one line per alert.
An alert is shown only when its TLP (the most restrictive level of the events it was built
from) is at or below the report's ceiling; an alert without a level is never shown.  The
alerts name no hub and no indicator: the section shows the type, the countries the alert
names, how many hubs (and how many of them undisclosed), when the activity started, when it
was detected and the delay, and the expected and observed counts.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from intelmq_crossborder.analytics import report  # noqa: E402
from intelmq_crossborder.analytics.situational import format_delay  # noqa: E402
from intelmq_crossborder.analytics.stage import read_journal  # noqa: E402
from intelmq_crossborder.core import tlp  # noqa: E402

__all__ = ["JOURNAL_NAME", "Detections", "journal_beside", "collect", "plot_surge", "render_section"]

#: the alert journal's name beside the contributions store (the analytics expert's default)
JOURNAL_NAME = "analytics-alerts.jsonl"


@dataclass
class Detections:
    alerts: List[dict] = field(default_factory=list)     # journal records at or below the ceiling, by time
    withheld: int = 0                                    # alerts above the ceiling: never shown, not even counted
    problems: List[str] = field(default_factory=list)    # journal lines that could not be read
    journal: Optional[str] = None


def journal_beside(conn) -> Optional[Path]:
    """The journal beside the SQLite store ``conn`` is connected to (None for a store in memory)."""
    try:
        rows = conn.execute("PRAGMA database_list").fetchall()
    except Exception:                     # noqa: BLE001 - a store we cannot ask: no journal
        return None
    for _seq, name, path in rows:
        if name == "main" and path:
            return Path(path).parent / JOURNAL_NAME
    return None


def _level(label) -> Optional[tlp.Level]:
    if not isinstance(label, str):
        return None
    try:
        return tlp.Level.from_label(label)
    except tlp.UnknownTLPError:
        return None


def collect(path: Optional[Path], since: str, day: str, ceiling: tlp.Level) -> Detections:
    """The alerts raised from ``since`` to the end of ``day`` (UTC) at or below ``ceiling``."""
    out = Detections(journal=str(path) if path else None)
    if path is None:
        return out
    start = datetime.combine(date.fromisoformat(since), datetime.min.time(), timezone.utc).timestamp()
    end = (datetime.combine(date.fromisoformat(day), datetime.min.time(), timezone.utc)
           + timedelta(days=1)).timestamp()
    for record, problem in read_journal(path):
        if problem is not None:
            out.problems.append(problem)
            continue
        alert = record["alert"]
        if not start <= alert["raised"] < end or alert["kind"] not in ("surge", "campaign"):
            continue
        level = _level(alert["tlp"])      # not an event label: the alert's level, written by the detector
        if level is None or level > ceiling:
            out.withheld += 1
            continue
        out.alerts.append(record)
    out.alerts.sort(key=lambda r: (r["alert"]["raised"], r["alert"]["kind"]))
    return out


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M")


def plot_surge(record: dict) -> str:
    """PNG (base64) of a surge: per named country, the observed count per bucket against the
    baseline's expectation, and when it was detected; bars of the totals when no series was kept."""
    alert = record["alert"]
    evidence = alert["evidence"]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    cmap = plt.get_cmap("tab10")
    series = record.get("series") or {}
    if series:
        for n, (country, points) in enumerate(sorted(series.items())):
            times = [datetime.fromtimestamp(p[0], timezone.utc) for p in points]
            colour = cmap(n % 10)
            ax.plot(times, [p[1] for p in points], color=colour, marker=".", label=f"{country} observed")
            ax.plot(times, [p[2] for p in points], color=colour, linestyle="--", label=f"{country} expected")
        ax.axvline(datetime.fromtimestamp(alert["raised"], timezone.utc), color="#c00000", linewidth=1)
        ax.axvline(datetime.fromtimestamp(alert["start"], timezone.utc), color="#888888", linewidth=1,
                   linestyle=":")
        bucket = evidence.get("bucket_s")
        per = "hour" if bucket == 3600 else f"{format_delay(bucket)}" if isinstance(bucket, (int, float)) else "bucket"
        ax.set_ylabel(f"{evidence.get('count', 'indicators')} per {per}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.autofmt_xdate()
    else:
        countries = evidence.get("countries") if isinstance(evidence.get("countries"), dict) else {}
        names = sorted(c for c, v in countries.items() if isinstance(v, dict))
        if names:
            xs = range(len(names))
            ax.bar([x - 0.2 for x in xs], [_number(countries[c].get("expected")) for c in names], width=0.4,
                   label="expected", color="#999999")
            ax.bar([x + 0.2 for x in xs], [_number(countries[c].get("observed")) for c in names], width=0.4,
                   label="observed", color="#c00000")
            ax.set_xticks(list(xs))
            ax.set_xticklabels(names)
            ax.legend(fontsize=7)
        else:
            report._empty(ax, "no per-country counts in this alert")
    ax.set_title(f"Surge of {alert['classification.type']}: observed against expected "
                 f"(detected {_utc(alert['raised'])} UTC)", fontsize=9)
    return report._png(fig)


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _countries(alert: dict) -> str:
    named = ", ".join(alert["countries"])
    evidence = alert["evidence"]
    total = evidence.get("observed_countries") if alert["kind"] == "campaign" else None
    hidden = evidence.get("undisclosed_countries") if alert["kind"] == "surge" else None
    if isinstance(total, int) and total > len(alert["countries"]):
        hidden = total - len(alert["countries"])
    return named + (f" (+{hidden} not named)" if isinstance(hidden, int) and hidden > 0 else "") or "-"


def render_section(data: Detections, ceiling: tlp.Level) -> str:
    """The section's HTML (a heading, a table, a plot per surge)."""
    e = html.escape
    parts = ["<h2 id=\"detections\">Surges and campaigns detected</h2>"]
    if data.journal is None:
        parts.append("<p>No alert journal of the analytics expert beside the store: none shown.</p>")
        return "".join(parts)
    if not data.alerts:
        parts.append("<p>None in this period.</p>")
    else:
        parts.append("<table><tr><th>kind</th><th>classification</th><th>countries</th><th>hubs</th>"
                     "<th>TLP</th><th>started (UTC)</th><th>detected (UTC)</th><th>delay</th>"
                     "<th>expected / observed</th><th>campaign</th></tr>")
        for record in data.alerts:
            a, ev = record["alert"], record["alert"]["evidence"]
            hubs = f"{a['hubs']}" + (f" ({a['undisclosed']} undisclosed)" if a["undisclosed"] else "")
            level = str(a["tlp"])             # not an event label: the alert's level, checked in collect()
            if a["kind"] == "surge":
                counts = f"{ev.get('expected', '-')} / {ev.get('observed', '-')} {ev.get('count', '')}".strip()
                campaign = "-"
            else:
                counts = (f"{ev.get('min_countries', '-')} countries / {ev.get('observed_countries', '-')} "
                          f"countries, {ev.get('events', '-')} events")
                campaign = str(ev.get("campaign_id", "-"))
            parts.append(
                f"<tr><td>{e(a['kind'])}</td><td>{e(a['classification.type'])}</td><td>{e(_countries(a))}</td>"
                f"<td>{e(hubs)}</td><td>{e(level)}</td><td>{e(_utc(a['start']))}</td>"
                f"<td>{e(_utc(a['raised']))}</td><td>{e(format_delay(a['raised'] - a['start']))}</td>"
                f"<td>{e(counts)}</td><td>{e(campaign)}</td></tr>")
        parts.append("</table>")
        for record in data.alerts:
            if record["alert"]["kind"] == "surge":
                a = record["alert"]
                parts.append(report._img(plot_surge(record), f"surge of {a['classification.type']}: observed "
                                                             "against expected"))
    # alerts above the ceiling (data.withheld) are not even counted here: the number would tell the
    # reader that something above the ceiling exists
    if data.problems:
        parts.append(f"<p>{len(data.problems)} line(s) of the alert journal could not be read.</p>")
    return "".join(parts)
