"""``intelmq-crossborder analytics simulate`` and ``analytics evaluate``: the detectors, measured.

``simulate`` writes labelled pooled traffic (:mod:`intelmq_crossborder.analytics.simulate`);
``evaluate`` replays events through the detectors and the rule-based early warning and
compares their alerts with the ground truth (:mod:`intelmq_crossborder.analytics.evaluate`).
See docs/analytics.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from intelmq_crossborder.analytics import evaluate as ev
from intelmq_crossborder.analytics import simulate as sim
from intelmq_crossborder.analytics.alerts import DETECTORS
from intelmq_crossborder.cli.common import fail, printable, unusable_paths
from intelmq_crossborder.core import inputs

MAX_PROBLEMS_SHOWN = 20


def _int_in(low: int, high: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(f"not an integer from {low} to {high}: {value[:40]!r}")
        return number
    return parse


def _float_in(low: float, high: float):
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise argparse.ArgumentTypeError(f"not a number from {low} to {high}: {value[:40]!r}")
        return number
    return parse


def _param(value: str) -> tuple:
    name, eq, setting = value.partition("=")
    detector, dot, parameter = name.partition(".")
    if not eq or not dot or detector not in DETECTORS or not parameter.strip():
        raise argparse.ArgumentTypeError(f"not DETECTOR.PARAMETER=VALUE with a known detector: {value[:60]!r}")
    return detector, parameter.strip(), setting


def _seeds(value: str) -> list:
    seeds: list = []
    try:
        for part in value.split(","):
            low, dash, high = part.strip().partition("-")
            first, last = int(low), int(high if dash else low)
            if not 0 <= first <= last <= 2**31 - 1 or last - first > 50:
                raise ValueError
            seeds.extend(range(first, last + 1))
    except ValueError:
        seeds = []
    if not seeds or len(seeds) > 50:
        raise argparse.ArgumentTypeError(f"not a list of 1 to 50 seeds such as 1,2,3 or 1-5: {value[:40]!r}")
    return list(dict.fromkeys(seeds))


def register(sub) -> None:
    p = sub.add_parser("analytics", help="simulate labelled traffic and evaluate the detectors",
                       description="Detection analytics on pooled data: simulate labelled traffic, and evaluate "
                                   "the detectors and the rule-based early warning against ground truth "
                                   "(docs/analytics.md).")
    asub = p.add_subparsers(dest="analytics_command", required=True, metavar="SUBCOMMAND")

    s = asub.add_parser("simulate", help="write simulated pooled events and their ground truth",
                        description="Write several weeks of simulated pooled traffic (IntelMQ flat JSON lines, "
                                    "sorted by time.source) with injected surges and campaigns, and the ground "
                                    "truth (one incident per line). The same seed gives the same files.")
    d = sim.Settings()
    s.add_argument("--seed", type=_int_in(0, 2**31 - 1), default=d.seed, help=f"random seed (default {d.seed})")
    s.add_argument("--weeks", type=_int_in(1, 52), default=d.weeks, help=f"weeks of traffic (default {d.weeks})")
    s.add_argument("--warmup-weeks", type=_int_in(0, 51), default=d.warmup_weeks,
                   help=f"weeks without incidents at the start (default {d.warmup_weeks})")
    s.add_argument("--countries", type=_int_in(2, len(sim.COUNTRIES)), default=d.countries,
                   help=f"countries, one hub each (default {d.countries})")
    s.add_argument("--surges", type=_int_in(0, 50), default=d.surges, help=f"surges per week (default {d.surges})")
    s.add_argument("--campaigns", type=_int_in(0, 50), default=d.campaigns,
                   help=f"campaigns per week (default {d.campaigns})")
    s.add_argument("--volume", type=_float_in(0.01, 20), default=d.volume,
                   help="factor on every background rate (default 1)")
    s.add_argument("--out-events", required=True, metavar="FILE", help="events file to write")
    s.add_argument("--out-truth", required=True, metavar="FILE", help="ground-truth file to write")
    s.set_defaults(func=_simulate)

    e = asub.add_parser("evaluate", help="replay events through the detectors and score them against the truth",
                        description="Replay time-stamped events through the detectors and the rule-based early "
                                    "warning (detector 'rule'), compare the alerts with the ground truth and print "
                                    "per detector: precision and recall of incidents, median and 90th-percentile "
                                    "detection delay, false alarms per simulated week. Exit 1 when the truth or "
                                    "some event lines are bad (those lines are named and skipped).")
    e.add_argument("--events", required=True, metavar="EVENTS.jsonl", help="IntelMQ flat events, one per line")
    e.add_argument("--truth", required=True, metavar="TRUTH.jsonl", help="incidents, one per line")
    e.add_argument("--detector", action="append", choices=sorted(DETECTORS), metavar="NAME",
                   help=f"evaluate only this detector (repeatable; default all: {', '.join(sorted(DETECTORS))})")
    e.add_argument("--param", action="append", type=_param, default=[], metavar="DETECTOR.PARAMETER=VALUE",
                   help="a detector parameter, as in the bot's configuration (repeatable), e.g. "
                        "surge.min_countries=3")
    e.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    e.add_argument("--alerts", metavar="FILE", help="also write every alert, one JSON object per line")
    e.set_defaults(func=_evaluate)

    c = asub.add_parser("compare", help="simulate several seeds, evaluate each, print mean and spread",
                        description="The model comparison of docs/analytics.md: for each seed, simulate "
                                    "(as 'analytics simulate' with that seed), evaluate (as 'analytics evaluate') "
                                    "and print each figure's mean ± standard deviation over the seeds.")
    c.add_argument("--seeds", type=_seeds, default=[1, 2, 3, 4, 5], metavar="LIST",
                   help="comma-separated seeds or a range such as 1-5 (default 1-5; at most 50)")
    c.add_argument("--weeks", type=_int_in(2, 52), default=d.weeks, help=f"weeks per seed (default {d.weeks})")
    c.add_argument("--detector", action="append", choices=sorted(DETECTORS), metavar="NAME",
                   help="compare only this detector (repeatable; default all)")
    c.add_argument("--param", action="append", type=_param, default=[], metavar="DETECTOR.PARAMETER=VALUE",
                   help="a detector parameter (repeatable)")
    c.add_argument("--json", metavar="FILE", help="also write the summary and every seed's figures as JSON")
    c.set_defaults(func=_compare)


def _simulate(args) -> int:
    if args.warmup_weeks >= args.weeks:
        return fail("--warmup-weeks must be fewer than --weeks")
    settings = sim.Settings(seed=args.seed, weeks=args.weeks, warmup_weeks=args.warmup_weeks,
                            countries=args.countries, surges=args.surges, campaigns=args.campaigns,
                            volume=args.volume)
    for path in (args.out_events, args.out_truth):
        if Path(path).is_dir():
            return fail(f"{printable(path)}: is a directory, not a file to write")
    try:
        events, incidents = sim.write(settings, args.out_events, args.out_truth)
    except ValueError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write: {printable(getattr(exc, 'filename', '') or '')}: {exc.strerror or exc}")
    print(f"{events} events, {incidents} incidents (seed {args.seed}, {args.weeks} weeks): "
          f"{printable(args.out_events)}, {printable(args.out_truth)}")
    return 0


def _evaluate(args) -> int:
    problems = unusable_paths([Path(args.events), Path(args.truth)])
    if problems:
        return fail(printable(problems[0]))
    params = _params(args)
    try:
        incidents = ev.load_truth(args.truth)
    except inputs.InputError as exc:
        return fail(printable(exc), 1)
    bad: list = []
    try:
        events = ev.load_events(args.events, bad)
    except inputs.InputError as exc:
        return fail(printable(exc), 1)
    try:
        report = ev.evaluate(events, incidents, args.detector, params, problems=bad, source=args.events)
    except ValueError as exc:           # a bad --param
        return fail(printable(exc))
    print(ev.table(report))
    combined = report["detectors"]
    for name, m in combined.items():
        vs = m.get("versus_rule")
        if vs and vs["incidents_both_detect"]:
            print(f"{name} vs rule on the {vs['incidents_both_detect']} incidents both detect: median delay "
                  f"{vs['delay_median_s']:.0f} s vs {vs['rule_delay_median_s']:.0f} s")
    print(f"{report['events']} events, {report['incidents']} incidents "
          f"({report['incidents_3plus_countries']} in 3 or more countries), {report['weeks']:.2f} weeks")
    try:
        if args.json:
            ev.write_json(report, args.json)
        if args.alerts:
            from intelmq_crossborder.core import files
            lines = "".join(json.dumps(a, sort_keys=True) + "\n" for alerts in report["alerts"].values()
                            for a in alerts)
            files.atomic_write_text(Path(args.alerts), lines)
    except OSError as exc:
        return fail(f"cannot write: {printable(getattr(exc, 'filename', '') or '')}: {exc.strerror or exc}")
    if bad:
        for problem in bad[:MAX_PROBLEMS_SHOWN]:
            print(f"intelmq-crossborder: {printable(problem)}", file=sys.stderr)
        if len(bad) > MAX_PROBLEMS_SHOWN:
            print(f"intelmq-crossborder: ... and {len(bad) - MAX_PROBLEMS_SHOWN} more bad event lines",
                  file=sys.stderr)
        return fail(f"{len(bad)} event line(s) of {printable(args.events)} skipped or refused", 1)
    return 0


def _params(args) -> dict:
    params: dict = {}
    for detector, name, value in args.param:
        params.setdefault(detector, {})[name] = value
    return params


def _compare(args) -> int:
    try:
        result = ev.compare(args.seeds, {"weeks": args.weeks}, args.detector, _params(args))
    except ValueError as exc:           # a bad --param
        return fail(printable(exc))
    print(f"seeds {','.join(map(str, args.seeds))}, {args.weeks} weeks each: mean ± sd over the seeds")
    print(ev.summary_table(result))
    for name, figures in result["detectors"].items():
        vs = figures.get("versus_rule")
        if vs:
            print(f"{name} vs rule on the {vs['incidents_both_detect']} incidents both detect ({vs['seeds']} seeds): "
                  f"median delay {vs['delay_median_s']:.0f} s vs {vs['rule_delay_median_s']:.0f} s"
                  + (f" (ratio {vs['ratio']:.2f})" if vs["ratio"] is not None else ""))
    if args.json:
        from intelmq_crossborder.core import files
        try:
            files.atomic_write_text(Path(args.json), json.dumps(result, indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            return fail(f"cannot write: {printable(args.json)}: {exc.strerror or exc}")
    return 0
