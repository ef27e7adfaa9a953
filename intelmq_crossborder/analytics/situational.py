"""Text renderings of the contribution indicators: the table and CSV of ``stats contributions``,
the delay and mix columns the daily report shares (:mod:`intelmq_crossborder.analytics.report`).

The commands themselves (``stats ...``, ``report daily``) are in :mod:`intelmq_crossborder.cli.stats`.
"""
from __future__ import annotations

import csv
import io
from typing import Optional

from intelmq_crossborder.analytics import contributions as cb

TLP_COLUMNS = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED", cb.NO_TLP)


def format_delay(seconds: Optional[float]) -> str:
    """A delay in seconds, short: ``45s``, ``3m05s``, ``2h10m``, ``1d03h``; ``-`` for none."""
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    s = int(round(abs(seconds)))
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{sign}{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{sign}{s // 86400}d{(s % 86400) // 3600:02d}h"


def mix(counts: dict) -> str:
    """``key:count`` pairs, the largest count first."""
    return " ".join(f"{k}:{v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def render_table(rows: list) -> str:
    header = ["day", "contributor", "hub", "events", "by TLP", "by classification", "unique", "duplicates",
              "invalid", "median delay", "retracted"]
    body = [[r.day, r.contributor, r.hub, str(r.events), mix(r.by_tlp) or "-", mix(r.by_classification) or "-",
             str(r.unique_indicators), str(r.duplicates), str(r.invalid), format_delay(r.median_delay_seconds),
             mix(r.retracted) or "-"]
            for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    return "\n".join(out)


def render_csv(rows: list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["day", "contributor", "hub", "events"] + [f"tlp_{t}" for t in TLP_COLUMNS] +
               ["by_classification", "unique_indicators", "duplicates", "invalid", "median_delay_seconds",
                "retracted"])
    for r in rows:
        w.writerow([r.day, r.contributor, r.hub, r.events] + [r.by_tlp.get(t, 0) for t in TLP_COLUMNS] +
                   [";".join(f"{k}={v}" for k, v in sorted(r.by_classification.items())),
                    r.unique_indicators, r.duplicates, r.invalid,
                    "" if r.median_delay_seconds is None else r.median_delay_seconds,
                    ";".join(f"{k}={v}" for k, v in sorted(r.retracted.items()))])
    return buf.getvalue()
