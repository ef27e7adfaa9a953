"""``intelmq-crossborder demo``: the demo consortium (default) or the first pipeline.

``make demo`` runs the same command.  The orchestration lives in
:mod:`intelmq_crossborder.demo.consortium` and :mod:`intelmq_crossborder.demo.first_pipeline`.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def _add_arguments(parser) -> None:
    parser.add_argument("--workdir", help="scratch directory (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis",
                        help="IntelMQ pipeline broker (amqp: RabbitMQ on 127.0.0.1:5672)")
    parser.add_argument("--first-pipeline", action="store_true",
                        help="run only the first pipeline (file collector, JSON parser, TLP expert, file output)")
    parser.add_argument("--small", action="store_true",
                        help="consortium with the sensor feeds and one CSAF advisory only")
    parser.add_argument("--redis-dbs", metavar="A,B,C,D",
                        help="Redis databases of at-hub, de-hub, fi-hub, at-csirt, used as given (default: "
                             "those of XB_DEMO_REDIS_DBS, else four free ones leased for the run; "
                             "--small needs as many)")


def _run(args) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="intelmq-crossborder-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)  # bots run as the intelmq user when started by root
    if not args.first_pipeline:
        from intelmq_crossborder.demo import consortium
        return consortium.run_demo(workdir, keep=args.keep, broker=args.broker, small=args.small,
                                   dbs=args.redis_dbs)
    from intelmq_crossborder.demo import first_pipeline
    try:
        result = first_pipeline.run_first_pipeline(workdir, broker=args.broker)
        print(first_pipeline.summarise(result))
        if result["input_count"] != len(result["events"]) + sum(len(v) for v in result["dumps"].values()):
            print("ERROR: events were lost between input and output")
            return 1
    finally:
        if args.keep:
            print(f"Scratch directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the demo consortium (three hubs, one CSIRT) and report",
                       description="Run the demo consortium: three national hubs (AT, DE, FI) and one CSIRT as "
                                   "separate IntelMQ instances with real bots on the shipped sample data, one "
                                   "nightly signed exchange and an early warning; print what each recipient "
                                   "received, what was withheld and why, the early warnings and the leak count; "
                                   "stop all bots and clean up. Exit 1 on a leak or a lost event. "
                                   "--first-pipeline runs the first single-instance pipeline instead.")
    _add_arguments(p)
    p.set_defaults(func=_run)
