"""The daily situational-awareness report: one self-contained HTML page with matplotlib PNG plots.

Everything on the page is read through :func:`collect`, which reads only rows at
or below the TLP ceiling (the level recorded is each event's effective label, read
by :func:`intelmq_crossborder.core.tlp.event_tlp`; events without a label count as
``default_tlp``; events whose labels could not be read never appear); so nothing
above the ceiling can reach a plot, a table or a number.  The page
carries the ceiling as its own TLP label in the header.
"""
from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from intelmq_crossborder.analytics import contributions as cb  # noqa: E402
from intelmq_crossborder.analytics.situational import format_delay, mix  # noqa: E402
from intelmq_crossborder.core import tlp  # noqa: E402
from intelmq_crossborder.core.files import atomic_write_text  # noqa: E402

TLP_COLOURS = {"CLEAR": "#d9d9d9", "GREEN": "#33ff00", "AMBER": "#ffc000", "AMBER+STRICT": "#c08a00",
               "RED": "#ff2b2b", cb.NO_TLP: "#999999"}


@dataclass
class DailyData:
    day: str
    since: str
    ceiling: tlp.Level
    days: list
    by_country: Counter
    by_class_day: dict          # classification -> [count per day]
    tlp_mix: Counter
    multi_hub: list             # (indicator, hubs, events)
    warnings: list
    contributions: list
    events_in_period: int
    detections: Any = None      # report_detections.Detections: the analytics expert's surges and campaigns


def collect(conn, day: str, days: int = 7, ceiling: tlp.Level = tlp.Level.GREEN,
            default_tlp: tlp.Level = tlp.Level.AMBER, top: int = 15, alerts: Optional[Path] = None) -> DailyData:
    """The report's data: only rows at or below ``ceiling``.  ``alerts``: the analytics expert's
    alert journal (default: ``analytics-alerts.jsonl`` beside the store)."""
    from intelmq_crossborder.analytics import report_detections
    end = date.fromisoformat(day)
    since = (end - timedelta(days=max(1, days) - 1)).isoformat()
    rows = cb.event_rows(conn, since=since, until=day, ceiling=ceiling, default_tlp=default_tlp)
    day_list = [(end - timedelta(days=i)).isoformat() for i in range(max(1, days) - 1, -1, -1)]
    by_country = Counter(r["country"] for r in rows)
    by_class_day: dict = defaultdict(lambda: [0] * len(day_list))
    index = {d: i for i, d in enumerate(day_list)}
    for r in rows:
        by_class_day[r["classification"]][index[r["day"]]] += 1
    tlp_mix = Counter(r["level"] for r in rows)
    hubs, counts = defaultdict(set), Counter()
    for r in rows:
        if r["indicator"]:
            hubs[r["indicator"]].add(r["hub"])
            counts[r["indicator"]] += 1
    multi = sorted(((ind, sorted(h), counts[ind]) for ind, h in hubs.items() if len(h) >= 2),
                   key=lambda t: (-len(t[1]), -t[2], t[0]))[:top]
    return DailyData(
        day=day, since=since, ceiling=ceiling, days=day_list, by_country=by_country,
        by_class_day=dict(by_class_day), tlp_mix=tlp_mix, multi_hub=multi,
        warnings=cb.warning_rows(conn, since=since, until=day, ceiling=ceiling, default_tlp=default_tlp),
        contributions=cb.contributions(conn, since=since, until=day, ceiling=ceiling, default_tlp=default_tlp),
        events_in_period=len(rows),
        detections=report_detections.collect(alerts or report_detections.journal_beside(conn), since, day, ceiling))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _empty(ax, text="no events at or below the ceiling"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_countries(data: DailyData, top: int = 15) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    items = data.by_country.most_common(top)
    if items:
        names = [k for k, _ in items][::-1]
        ax.barh(names, [v for _, v in items][::-1], color="#3b6ea5")
        ax.set_xlabel("events")
    else:
        _empty(ax)
    ax.set_title(f"Events per country of origin (source.geolocation.cc), {data.since} to {data.day}")
    return _png(fig)


def plot_classifications(data: DailyData, top: int = 8) -> str:
    fig, ax = plt.subplots(figsize=(8, 3.8))
    if data.by_class_day:
        totals = sorted(data.by_class_day.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
        shown, rest = totals[:top], totals[top:]
        series = list(shown)
        if rest:
            series.append(("other types", [sum(v[i] for _, v in rest) for i in range(len(data.days))]))
        bottom = [0] * len(data.days)
        labels = [d[5:] for d in data.days]
        cmap = plt.get_cmap("tab10")
        for n, (name, values) in enumerate(series):
            ax.bar(labels, values, bottom=bottom, label=name, color=cmap(n % 10))
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_ylabel("events")
    else:
        _empty(ax)
    ax.set_title("Events per RSIT classification (classification.type), per day")
    return _png(fig)


def plot_tlp(data: DailyData) -> str:
    fig, ax = plt.subplots(figsize=(5, 2.8))
    order = [t for t in TLP_COLOURS if data.tlp_mix.get(t)]
    if order:
        ax.bar(order, [data.tlp_mix[t] for t in order], color=[TLP_COLOURS[t] for t in order], edgecolor="#333333")
        ax.set_ylabel("events")
    else:
        _empty(ax)
    ax.set_title(f"TLP mix (ceiling TLP:{data.ceiling.label})")
    return _png(fig)


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def render_html(data: DailyData, title: str) -> str:
    e = html.escape
    label = data.ceiling.label
    colour = TLP_COLOURS.get(label, "#999999")
    parts = [f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="tlp" content="TLP:{e(label)}">
<title>TLP:{e(label)} {e(title)} {e(data.day)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.tlp {{ background: #000; color: {colour}; font-weight: bold; padding: 0.2em 0.6em; display: inline-block; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; }}
th {{ background: #eee; }}
img {{ max-width: 100%; }}
</style></head><body>
<header>
<p><span class="tlp" id="tlp-ceiling">TLP:{e(label)}</span></p>
<h1>{e(title)} &mdash; {e(data.day)}</h1>
<p>TLP ceiling of this report: <strong>TLP:{e(label)}</strong>. It holds no data above TLP:{e(label)}:
events labelled above the ceiling (and events without a label, counted as their default level when that
is above it) are not read into any plot, table or number. Period: {e(data.since)} to {e(data.day)} (UTC),
{data.events_in_period} events at or below the ceiling.</p>
</header>
<h2>Events per country of origin</h2>
{_img(plot_countries(data), "events per country of origin")}
<h2>Events per RSIT classification over the last days</h2>
{_img(plot_classifications(data), "events per classification per day")}
<h2>TLP mix</h2>
{_img(plot_tlp(data), "TLP mix")}
<h2>Top indicators reported by several hubs</h2>
"""]
    if data.multi_hub:
        parts.append("<table><tr><th>indicator</th><th>hubs</th><th>events</th></tr>")
        for ind, hubs, n in data.multi_hub:
            parts.append(f"<tr><td>{e(ind)}</td><td>{e(', '.join(hubs))}</td><td>{n}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None: no indicator was reported by more than one hub.</p>")
    parts.append("<h2>Early warnings raised</h2>")
    if data.warnings:
        parts.append("<table><tr><th>time (UTC)</th><th>TLP</th><th>trigger</th><th>classification</th>"
                     "<th>description</th></tr>")
        for w in data.warnings:
            parts.append(f"<tr><td>{e(w['arrived_at'][:19])}</td><td>{e(w['level'])}</td>"
                         f"<td>{e(w['trigger'] or '-')}</td><td>{e(w['classification'] or '-')}</td>"
                         f"<td>{e(w['description'] or '-')}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    if data.detections is not None:
        from intelmq_crossborder.analytics import report_detections
        parts.append(report_detections.render_section(data.detections, data.ceiling))
    parts.append("<h2>Contributions</h2>")
    if data.contributions:
        parts.append("<table><tr><th>day</th><th>contributor</th><th>hub</th><th>events</th><th>by TLP</th>"
                     "<th>by classification</th><th>unique indicators</th><th>duplicates</th><th>invalid</th>"
                     "<th>median delay</th><th>retracted</th></tr>")
        for c in data.contributions:
            parts.append(
                f"<tr><td>{e(c.day)}</td><td>{e(c.contributor)}</td><td>{e(c.hub)}</td><td>{c.events}</td>"
                f"<td>{e(mix(c.by_tlp) or '-')}</td><td>{e(mix(c.by_classification) or '-')}</td>"
                f"<td>{c.unique_indicators}</td><td>{c.duplicates}</td><td>{c.invalid}</td>"
                f"<td>{e(format_delay(c.median_delay_seconds))}</td><td>{e(mix(c.retracted) or '-')}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append(f"<footer><p><span class=\"tlp\">TLP:{e(label)}</span> Generated by intelmq-crossborder."
                 "</p></footer></body></html>\n")
    return "".join(parts)


def write_daily(conn, out_dir: Path, day: str, days: int = 7, ceiling: tlp.Level = tlp.Level.GREEN,
                default_tlp: tlp.Level = tlp.Level.AMBER, title: Optional[str] = None,
                alerts: Optional[Path] = None) -> Path:
    data = collect(conn, day, days=days, ceiling=ceiling, default_tlp=default_tlp, alerts=alerts)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"daily-{day}.html"
    atomic_write_text(path, render_html(data, title or "Cross-border hub: daily situational awareness"), mode=0o644)
    return path
