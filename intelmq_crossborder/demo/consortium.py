"""The demo consortium: three national hubs and one CSIRT as separate IntelMQ instances.

Used by ``make demo`` (``intelmq-crossborder demo``), tests/test_consortium_e2e.py
and benchmarks.  Each member is an :class:`~intelmq_crossborder.runtime.instance.IntelMQInstance`
with its own ``INTELMQ_ROOT_DIR`` under a scratch directory and its own Redis
database, running the shipped runtime configs:

========== ======= ==================================== =====================================
member     country runtime config                       own inputs
========== ======= ==================================== =====================================
at-hub     AT      intelmq_crossborder/pipelines/national-hub         sensor feed, MISP event
de-hub     DE      intelmq_crossborder/pipelines/consortium/de-hub    sensor feed, CSAF advisory
fi-hub     FI      intelmq_crossborder/pipelines/cross-border-hub     sensor feed, CSAF advisories
at-csirt   AT      intelmq_crossborder/pipelines/csirt                (what at-hub delivers)
========== ======= ==================================== =====================================

A run (:meth:`Consortium.run`) is one day and one night:

1. *Day*: every continuous bot runs; the sample files are dropped into the
   collectors' spool directories; each hub parses, labels (TLP), stamps
   provenance and routes its events; the router writes every decision to its
   audit trail and the exchange outputs spool what each peer may receive.
2. *Night, hub to hub* (the cron line ``intelmqctl restart exchange-output-*``
   at 02:00): the exchange outputs to the peer hubs are stopped, which seals
   and signs their bundles (``seal_on_shutdown``); the bundles are moved into
   the recipients' inboxes (what a push or pull over HTTPS does); each hub's
   scheduled exchange collector runs once and imports them.  The cross-border
   hub's early-warning expert sees the same indicator from two countries and
   raises a warning to EU-CyCLONe and the CSIRTs Network at once.
3. *Night, hub to constituents* (04:00): at-hub's bundle for its CSIRT is
   sealed, moved and imported by at-csirt, which routes it on.

:func:`collect` then reads what every recipient received (the bundles a hub
imported, as archived by its collector and verified again here; the files of
the file outputs) and the routers' audit trails, and :func:`leak_check` grades
each received event independently against the recipient's agreement.
"""
from __future__ import annotations

import collections
import functools
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional


from intelmq_crossborder.formats import bundle

from intelmq_crossborder.core import inputs, tlp

from intelmq_crossborder.demo import analytics as demo_analytics
from intelmq_crossborder.demo import crypto, retraction
from intelmq_crossborder.demo.taxii import TAXIIRecipient
from intelmq_crossborder.policy import audit
from intelmq_crossborder.policy.agreements import Agreement, load_agreements, tlp_ceiling
from intelmq_crossborder.policy.redact import FieldSelector
from intelmq_crossborder.runtime.instance import (PIPELINES_DIR, IntelMQInstance, PipelineError, chown_for_intelmq, load_runtime,
                                        prefix_queues)

SAMPLES = PIPELINES_DIR / "samples" / "consortium"
WARNING_ID = "crossborder-early-warning"


@dataclass
class Member:
    """One IntelMQ instance of the consortium."""

    name: str
    country: str
    config: Path                       # directory with runtime.yaml and agreements
    inputs: Dict[str, List[Path]] = field(default_factory=dict)   # spool subdir -> sample files
    peers: tuple = ()                  # hub ids it exchanges with at night (its exchange outputs)
    constituents: tuple = ()           # instances it delivers to after the hub exchange

    @property
    def runtime_file(self) -> Path:
        return self.config / "runtime.yaml"


def default_members(small: bool = False) -> List[Member]:
    """The demo consortium.  ``small``: only the sensor feeds and one CSAF advisory (the e2e test)."""
    csaf = SAMPLES / "csaf"
    at_inputs = {"feed": [SAMPLES / "at-feed.jsonl"]}
    de_inputs = {"feed": [SAMPLES / "de-feed.jsonl"]}
    fi_inputs = {"feed": [SAMPLES / "fi-feed.jsonl"], "csaf": [csaf / "icsma-17-009-01a.json"]}
    if not small:
        at_inputs["misp"] = [SAMPLES / "misp" / "endor.json"]
        de_inputs["csaf"] = [csaf / "bsi-2022-0001.json"]
        fi_inputs["csaf"].append(csaf / "2022-evd-uc-01-a-001.json")
    return [
        Member("at-hub", "AT", PIPELINES_DIR / "national-hub", at_inputs, ("de-hub", "fi-hub"), ("at-csirt",)),
        Member("de-hub", "DE", PIPELINES_DIR / "consortium" / "de-hub", de_inputs, ("at-hub", "fi-hub")),
        Member("fi-hub", "FI", PIPELINES_DIR / "cross-border-hub", fi_inputs, ("at-hub", "de-hub")),
        Member("at-csirt", "AT", PIPELINES_DIR / "csirt"),
    ]


TAXII_OUTPUT = "intelmq.bots.outputs.crossborder.taxii.output"
TAXII_COLLECTOR = "intelmq.bots.collectors.crossborder.taxii.collector"
ANALYTICS = "intelmq.bots.experts.crossborder.analytics.expert"
FILE_COLLECTOR = "intelmq.bots.collectors.file.collector_file"
#: A member with a TAXII output (or collector) gets the partner's local TAXII server.
TAXII_OUTPUT = "intelmq.bots.outputs.crossborder.taxii.output"
TAXII_COLLECTOR = "intelmq.bots.collectors.crossborder.taxii.collector"
ANALYTICS = "intelmq.bots.experts.crossborder.analytics.expert"
FILE_COLLECTOR = "intelmq.bots.collectors.file.collector_file"
#: Redis databases of the members, in the order of :func:`default_members`, of a
#: :class:`Consortium` made without ``dbs``.  ``make demo`` (:func:`run_demo`) leases free ones instead.
DEFAULT_DBS = (1, 5, 7, 8)
#: Key prefixes of the bots' Redis state (loop guard, early warning): cleared before and after a run.
STATE_PREFIXES = ("crossborder:",)


def _router_ids(runtime: dict) -> List[str]:
    return [b for b, c in runtime.items() if b != "global"
            and c.get("module") == "intelmq.bots.experts.crossborder.sharing_router.expert"]


class Consortium:
    """The members as IntelMQ instances under ``workdir``; see the module docstring."""

    def __init__(self, workdir: Path, members: Optional[List[Member]] = None,
                 dbs: Iterable[int] = DEFAULT_DBS, broker: str = "redis", timeout: float = 90,
                 queue_prefix: str = "", surge: bool = False):
        self.workdir = Path(workdir)
        self.members = members or default_members()
        self.dbs = list(dbs)
        if len(self.dbs) < len(self.members):
            raise ValueError(f"{len(self.members)} members need as many Redis databases, got {self.dbs}")
        self.broker = broker
        self.queue_prefix = queue_prefix
        self.timeout = timeout
        self.instances: Dict[str, IntelMQInstance] = {}
        self.timeline: List[str] = []
        self.links: Dict[str, str] = {}
        self.taxii: Optional[TAXIIRecipient] = None
        self.surge = surge                 # inject the demo's small DDoS surge for the analytics expert
        self.injected: Optional[dict] = None
        self.analytics_journal: Optional[Path] = None

    # --- set-up -------------------------------------------------------------------------------
    def setup(self) -> "Consortium":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)
        for member, db in zip(self.members, self.dbs):
            root = self.workdir / member.name
            runtime = load_runtime(member.runtime_file, root)
            for conf in runtime.values():
                params = conf.get("parameters", {}) if isinstance(conf, dict) else {}
                if "redis_cache_db" in params:        # bot state in the member's own database
                    params["redis_cache_db"] = db
                if conf.get("module") == TAXII_OUTPUT:   # the partner's TAXII server, started for the run
                    params.update(self._taxii_partner().connection(), redis_db=db)
                elif conf.get("module") == TAXII_COLLECTOR:   # scheduled, not run by the demo: its server
                    server = self._taxii_partner().connection()
                    params.update({k: server[k] for k in ("taxii_url", "username", "password")})
            if self.broker == "amqp":
                # AMQP queue names are global: each member's queues get its name as prefix
                prefix_queues(runtime, f"{self.queue_prefix}{member.name}.")
            inst = IntelMQInstance(root, runtime, redis_db=db, broker=self.broker)
            self.instances[member.name] = inst
            for sub in list(member.inputs) + ["exchange-inbox"]:
                (root / "var" / "spool" / sub).mkdir(parents=True, exist_ok=True)
            for conf in runtime.values():      # every spool a file collector watches, fed or not (--small)
                if isinstance(conf, dict) and conf.get("module") == FILE_COLLECTOR:
                    Path(conf["parameters"]["path"]).mkdir(parents=True, exist_ok=True)
            (root / "var" / "lib" / "output").mkdir(parents=True, exist_ok=True)
            (root / "var" / "lib" / "audit").mkdir(parents=True, exist_ok=True)
        # throwaway keys and trust stores (never in the repository): hybrid post-quantum and
        # encrypted between de-hub and fi-hub, Ed25519 in clear on every other link
        self.links = crypto.setup_consortium(self)
        for inst in self.instances.values():
            inst.setup()
            inst.clear_queues()
        self._setup_analytics()
        self.clear_state()
        return self

    def clear_state(self) -> None:
        """Delete the bots' state keys (loop guard, early warning) in the members' own databases."""
        for inst in self.instances.values():
            r = inst.redis()
            for prefix in STATE_PREFIXES:
                names = list(r.scan_iter(match=prefix + "*", count=1000))
                if names:
                    r.delete(*names)

    def _setup_analytics(self) -> None:
        """The analytics expert's learned baseline (two weeks of background replayed offline: the demo
        runs for minutes, the surge detector needs a week of warm-up) and, with ``surge``, the day's
        feed file with a small DDoS wave in two countries (demo/analytics.py)."""
        now = time.time()
        for member in self.members:
            inst = self.instances[member.name]
            expert = next((c for b, c in inst.runtime.items() if b != "global" and c.get("module") == ANALYTICS), None)
            if expert is None:
                continue
            params = expert["parameters"]
            demo_analytics.seed_state(Path(params["state_file"]), now,
                                      {k: v for k, v in params.items() if k in demo_analytics.EXPERT_PARAMETERS})
            self.analytics_journal = Path(params["alerts_file"])
            if self.surge:
                feed = self.workdir / "samples" / f"{member.name}-analytics-surge.jsonl"
                feed.parent.mkdir(parents=True, exist_ok=True)
                self.injected = demo_analytics.write_feed(feed, now)
                member.inputs.setdefault("feed", []).append(feed)

    def _taxii_partner(self) -> TAXIIRecipient:
        """The partner CTI platform's TAXII server (a local medallion), started on first use."""
        if self.taxii is None:
            self.taxii = TAXIIRecipient(self.workdir / "taxii-partner").start()
        return self.taxii

    # --- helpers ------------------------------------------------------------------------------
    def root(self, name: str) -> Path:
        return self.instances[name].root

    def _continuous(self, inst: IntelMQInstance) -> List[str]:
        return [b for b, c in inst.runtime.items() if b != "global" and c.get("enabled", True)]

    def _inbox(self, name: str) -> Path:
        return self.root(name) / "var" / "spool" / "exchange-inbox"

    def _wait_all(self, done=None) -> None:
        for name, inst in self.instances.items():
            inst.wait_until_drained(timeout=self.timeout, done=(lambda n=name: done(n)) if done else None)

    def _log(self, text: str) -> None:
        elapsed = time.monotonic() - self._t0 if getattr(self, "_t0", None) else 0.0
        self.timeline.append(f"[{elapsed:5.1f}s] {text}")

    # --- the run ------------------------------------------------------------------------------
    @staticmethod
    def _parallel(calls: list) -> None:
        """Run intelmqctl calls side by side (each waits for its bot to start or stop)."""
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(fn, *args) for fn, *args in calls]:
                future.result()

    def start(self) -> None:
        """``intelmqctl start`` per member: every enabled bot (the scheduled collector is disabled)."""
        self._parallel([(inst.ctl, "start") for inst in self.instances.values()])

    def stop(self, bots: Optional[Dict[str, List[str]]] = None) -> None:
        """Stop the given bots per member (default: all bots of all members)."""
        if bots is None:   # intelmqctl stop: all bots of a member, one intelmqctl process each
            self._parallel([(functools.partial(inst.ctl, check=False), "stop") for inst in self.instances.values()])
            return
        targets = bots
        self._parallel([(self.instances[name].stop, [bot]) for name, ids in targets.items() for bot in ids])

    def day(self) -> None:
        """Drop the sample files into the spool directories; wait until every hub has routed them."""
        dropped = []
        for member in self.members:
            for sub, files in member.inputs.items():
                spool = self.root(member.name) / "var" / "spool" / sub
                for sample in files:
                    target = spool / sample.name
                    shutil.copy(sample, spool / (sample.name + ".part"))
                    os.replace(spool / (sample.name + ".part"), target)
                    dropped.append(target)
                chown_for_intelmq(spool)
        self._wait_all(done=lambda name: not any(p.exists() for p in dropped))
        self._log(f"day: {len(dropped)} sample file(s) read, parsed, labelled and routed by the members")

    def seal_and_move(self, senders: Dict[str, Iterable[str]]) -> int:
        """Stop the senders' exchange outputs for their recipients (seals them); move the bundles."""
        bots = {s: [f"exchange-output-{r}" for r in rs] for s, rs in senders.items()}
        self.stop(bots)   # IntelMQInstance.stop waits until the sealing outputs have exited
        return sum(self._move(s, rs) for s, rs in senders.items())

    def _move(self, sender: str, recipients: Iterable[str]) -> int:
        moved = 0
        for r in recipients:
            outbox = self.root(sender) / "var" / "lib" / "exchange" / "outbox" / r
            for path in sorted(outbox.glob("*" + bundle.BUNDLE_SUFFIX)) if outbox.exists() else []:
                target = self._inbox(r) / path.name
                shutil.copy(path, target.with_name(target.name + ".part"))
                os.replace(target.with_name(target.name + ".part"), target)
                path.unlink()
                moved += 1
            chown_for_intelmq(self._inbox(r))
        return moved

    def import_bundles(self, names: Iterable[str]) -> None:
        """Run the scheduled exchange collector of each member once (what cron/systemd does)."""
        names = list(names)
        self._parallel([(functools.partial(self.instances[n].ctl, check=False), "start", "exchange-collector")
                        for n in names])

        def inbox_empty(name):
            return name not in names or not any(self._inbox(name).glob("*" + bundle.BUNDLE_SUFFIX))
        self._wait_all(done=inbox_empty)

    def night(self) -> None:
        hubs = [m for m in self.members if m.peers]
        moved = self.seal_and_move({m.name: m.peers for m in hubs})
        self._log(f"night 02:00: {moved} signed bundle(s) sealed and moved between the hubs")
        self.import_bundles([m.name for m in hubs])
        self._log("night 03:30: the hubs' scheduled exchange collectors imported them")
        delivered = [m for m in self.members if m.constituents]
        moved = self.seal_and_move({m.name: m.constituents for m in delivered})
        self._log(f"night 04:00: {moved} bundle(s) sealed and moved from the hubs to their CSIRTs")
        self.import_bundles([c for m in delivered for c in m.constituents])
        self._log("night 04:30: the CSIRTs imported them")

    def run(self) -> dict:
        """Set up, run a day and a night, stop every bot; returns :func:`collect`'s result."""
        self._t0 = time.monotonic()
        self.setup()
        try:
            self.start()
            self._log(f"{sum(len(self._continuous(i)) for i in self.instances.values())} bots started")
            self.day()
            self.night()
        finally:
            self.stop()
        self._log("all bots stopped")
        return collect(self)

    def cleanup(self) -> None:
        for name, inst in self.instances.items():
            try:
                inst.clear_queues()
            except Exception as exc:  # pragma: no cover - broker gone
                print(f"consortium cleanup: queues of {name} not cleared: {exc}", file=sys.stderr)
        self.clear_state()
        if self.taxii is not None:
            self.taxii.stop()


# --- what arrived where -------------------------------------------------------------------------

@dataclass
class Delivery:
    """The events one recipient received from one member (the sender)."""

    sender: str
    recipient: str
    events: list
    how: str                            # 'bundle' or 'file'


def _load_agreements(directory: Path) -> dict:
    return load_agreements(directory)


def _router_dirs(inst: IntelMQInstance) -> Dict[str, Path]:
    return {b: Path(inst.runtime[b]["parameters"]["agreements_dir"]) for b in _router_ids(inst.runtime)}


def _audit_records(inst: IntelMQInstance) -> List[dict]:
    out = []
    for router in _router_ids(inst.runtime):
        path = Path(inst.runtime[router]["parameters"]["audit_log"])
        try:
            out.extend(dict(record, router=router) for record in audit.read_records(path))
        except inputs.InputError as exc:
            raise PipelineError(f"an audit record cannot be read: {exc}") from None
    return out


def read_jsonl(path: Path, what: str = "received event") -> list:
    """The JSON objects of a JSON-lines file a bot wrote (``[]`` if there is none yet), read as
    hostile input: a duplicate key would otherwise be read as one of its values (a lowered
    label the leak check would not see).  :class:`PipelineError` names the file and line."""
    if not path.exists():
        return []
    objects = []
    with open(path, "rb") as fh:
        for _, value in inputs.iter_json_lines(fh, path):
            if isinstance(value, inputs.InputError):
                raise PipelineError(f"a {what} cannot be read: {value}")
            if not isinstance(value, dict):
                raise PipelineError(f"{path}: a {what} that is not a JSON object")
            objects.append(value)
    return objects


def collect(cons: Consortium) -> dict:
    """Deliveries per (sender, recipient), audit records, dumps, timeline."""
    deliveries: List[Delivery] = []
    for member in cons.members:
        inst = cons.instances[member.name]
        # bundles this member imported: verified again here, against its own trust store
        archive = inst.root / "var" / "lib" / "exchange" / "import" / "archive"
        per_sender = collections.defaultdict(list)
        for path in sorted(archive.rglob("*" + bundle.BUNDLE_SUFFIX)) if archive.exists() else []:
            with crypto.open_imported(path, inst.root, member.name) as b:
                b.verify_data()
                per_sender[b.manifest.sender].extend(ev for _, ev in bundle.iter_events(b))
        for sender, events in per_sender.items():
            deliveries.append(Delivery(sender, member.name, events, "bundle"))
        # the partner CTI platform this member pushes to over TAXII, read back as events
        if cons.taxii is not None and any(c.get("module") == TAXII_OUTPUT for b, c in inst.runtime.items()
                                          if b != "global"):
            deliveries.append(Delivery(member.name, cons.taxii.recipient, cons.taxii.events(), "taxii"))
        # file outputs of this member: recipients outside the consortium
        for bot_id, conf in inst.runtime.items():
            if bot_id.startswith("file-output-"):
                deliveries.append(Delivery(member.name, bot_id[len("file-output-"):],
                                           read_jsonl(Path(conf["parameters"]["file"])), "file"))
    quarantined = {m.name: sorted(p.name for p in (cons.instances[m.name].root / "var" / "lib" / "exchange" / "import"
                                                   / "quarantine").glob("*" + bundle.BUNDLE_SUFFIX))
                   for m in cons.members}
    return {"deliveries": deliveries, "quarantined": {k: v for k, v in quarantined.items() if v},
            "audit": {m.name: _audit_records(cons.instances[m.name]) for m in cons.members},
            "dumps": {m.name: cons.instances[m.name].dumps() for m in cons.members},
            "timeline": list(cons.timeline),
            "links": crypto.consortium_links(cons),
            "analytics": (demo_analytics.summarise(cons.analytics_journal, cons.injected)
                          if cons.injected is not None and cons.analytics_journal is not None else None),
            "taxii": ({"lines": cons.taxii.report_lines(), "leaks": cons.taxii.leaks()}
                      if cons.taxii is not None else None),
            "routers": {m.name: _router_dirs(cons.instances[m.name]) for m in cons.members}}


def is_warning(event: dict) -> bool:
    return event.get("classification.identifier") == WARNING_ID


def _agreement_for(result: dict, delivery: Delivery, event: dict) -> Optional[Agreement]:
    """The sender's agreement with the recipient that governs ``event``: warnings under the
    early-warning router's agreements, everything else under the main router's."""
    dirs = result["routers"].get(delivery.sender, {})
    order = sorted(dirs, key=lambda r: (("early-warning" in r) != is_warning(event), r))
    for router in order:
        agreements = _load_agreements(dirs[router])
        if delivery.recipient in agreements:
            return agreements[delivery.recipient]
    return None


def _looks_pseudonymised(value) -> bool:
    text = str(value)
    return text.startswith(("pseudo-", "fd")) or text.endswith(".invalid")


def effective_label(event: dict) -> str:
    """The event's effective TLP as the TLP core reads it (every label counts), ``(none)``
    without any, ``(unreadable)`` when its labels cannot be read: for the report's counts."""
    try:
        return tlp.event_tlp(event).label or "(none)"
    except tlp.LabelError:
        return "(unreadable)"


def leak_check(result: dict) -> List[str]:
    """Every received event graded on its own against the recipient's agreement: its
    effective TLP (:func:`tlp.event_tlp`: the most restrictive label it carries, in any
    field) within :func:`tlp_ceiling`, none of the removed fields, no pseudonymised
    field in clear, no field that names or points at the originator (the agreement's
    ``originator_fields`` and :data:`tlp.SOURCE_FIELDS`) when the agreement does not
    disclose the source or the event says to hide it.  Returns one line per leak (empty:
    no leak).  The router's own decisions are not used: only what arrived and the agreements."""
    leaks = []
    for d in result["deliveries"]:
        for ev in d.events:
            where = f"{d.sender} -> {d.recipient}: event {ev.get('provenance.event_uuid', '?')}"
            a = _agreement_for(result, d, ev)
            if a is None:
                leaks.append(f"{where}: the sender has no agreement with this recipient")
                continue
            hide = not a.disclose_source
            try:
                read = tlp.event_tlp(ev)
            except tlp.LabelError as exc:
                leaks.append(f"{where}: labels that cannot be read arrived ({exc})")
                read, hide = None, True
            if read is not None:
                hide = hide or read.hide_source
                if read.level is None:
                    leaks.append(f"{where}: no readable TLP label arrived")
                elif read.level > tlp_ceiling(a):
                    leaks.append(f"{where}: TLP:{read.level.label} above the agreement's ceiling "
                                 f"TLP:{tlp_ceiling(a).label}")
            removed = FieldSelector(a.remove_fields)
            pseudo = FieldSelector(a.pseudonymise_fields)
            source = FieldSelector(tuple(a.originator_fields) + tuple(tlp.SOURCE_FIELDS))
            for key, value in ev.items():
                if removed.matches(key):
                    leaks.append(f"{where}: removed field {key} present")
                elif pseudo.matches(key) and not _looks_pseudonymised(value):
                    leaks.append(f"{where}: field {key} in clear")
                elif hide and source.matches(key) and not _looks_pseudonymised(value):
                    leaks.append(f"{where}: originator field {key} disclosed")
            if "raw" in ev and not a.keep_raw:
                leaks.append(f"{where}: raw kept")
    # the partner CTI platform, read back over TAXII: every object's marking within its agreement
    leaks += (result.get("taxii") or {}).get("leaks", [])
    return leaks


def loss_check(result: dict) -> List[str]:
    """Every copy a router allowed arrived at its recipient (counts per sender and recipient)."""
    allowed = collections.Counter()
    for sender, records in result["audit"].items():
        for rec in records:
            if rec["allowed"]:
                allowed[(sender, rec["recipient"])] += 1
    received = collections.Counter()
    for d in result["deliveries"]:
        received[(d.sender, d.recipient)] += len(d.events)
    problems = []
    for key in sorted(set(allowed) | set(received)):
        if allowed[key] != received[key]:
            problems.append(f"{key[0]} -> {key[1]}: the router allowed {allowed[key]} event(s), "
                            f"{received[key]} arrived")
    return problems


def withheld(result: dict) -> Dict[str, collections.Counter]:
    """recipient -> Counter of (sender, reason code) from the routers' audit trails."""
    out = collections.defaultdict(collections.Counter)
    for sender, records in result["audit"].items():
        for rec in records:
            if not rec["allowed"]:
                codes = sorted({r.split(":", 1)[0] for r in rec["reasons"]})
                out[rec["recipient"]][(sender, ", ".join(codes))] += 1
    return out


def warnings(result: dict) -> List[tuple]:
    """(recipient, warning event) for every early warning a recipient received."""
    return [(d.recipient, ev) for d in result["deliveries"] for ev in d.events if is_warning(ev)]


def identity(event: dict) -> str:
    """A readable identity of an event for reports and tests: origin hub, type, indicator
    (for an advisory: its CVE and product, which survive the removal of the CSAF fields)."""
    if is_warning(event):
        return f"early-warning:{event.get('extra.indicator_type', '?')}={event.get('source.ip', '?')}"
    for key in ("source.ip", "destination.ip", "source.url", "malware.hash.sha256", "malware.hash.sha1",
                "malware.hash.md5", "source.fqdn"):
        if event.get(key):
            indicator = f"{key}={event[key]}"
            break
    else:
        indicator = f"{event.get('product.vulnerabilities', '?')}@{event.get('product.name', '?')}"
    return f"{event.get('provenance.origin_hub', '?')}:{event.get('classification.type', '?')}:{indicator}"


def received(result: dict) -> Dict[str, Dict[str, str]]:
    """recipient -> {identity: TLP} of everything it received (from any sender)."""
    out = collections.defaultdict(dict)
    for d in result["deliveries"]:
        for ev in d.events:
            out[d.recipient][identity(ev)] = effective_label(ev)
    return dict(out)


_TLP_ORDER = ["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"]


def report(result: dict) -> str:
    lines = ["Demo consortium: at-hub (AT), de-hub (DE), fi-hub (FI, cross-border hub), at-csirt (AT).", ""]
    lines += ["Timeline:"] + [f"  {t}" for t in result["timeline"]] + [""]
    per_recipient = collections.defaultdict(list)
    for d in result["deliveries"]:
        per_recipient[d.recipient].append(d)
    held = withheld(result)
    lines.append("Per recipient:")
    for recipient in sorted(set(per_recipient) | set(held)):
        deliveries = per_recipient.get(recipient, [])
        total = sum(len(d.events) for d in deliveries)
        srcs = ", ".join(f"{d.sender} {len(d.events)} ({d.how})" for d in deliveries if d.events) or "nothing"
        lines.append(f"  {recipient}: received {total} event(s): {srcs}")
        counts = collections.Counter((effective_label(ev), ev.get("classification.type", "?"))
                                     for d in deliveries for ev in d.events)
        for (label, ctype), n in sorted(counts.items(), key=lambda kv: (
                _TLP_ORDER.index(kv[0][0]) if kv[0][0] in _TLP_ORDER else 9, kv[0][1])):
            lines.append(f"      TLP:{label:<13} {ctype:<22} {n}")
        for (sender, why), n in sorted(held.get(recipient, {}).items()):
            lines.append(f"      withheld by {sender}: {n} x {why}")
    if result.get("taxii"):
        lines += result["taxii"]["lines"]
    lines.append("")
    if result.get("analytics"):
        lines += ["Detection analytics (cross-border hub):", f"  {result['analytics']['line']}", ""]
    if result.get("links"):
        lines += ["Exchange links (what protected the bundles each recipient imported):"]
        lines += [f"  {line}" for line in result["links"]] + [""]
    ews = warnings(result)
    raised = {(ev.get("provenance.origin_hub"), ev.get("comment"), ev.get("extra.early_warning_trigger"))
              for _, ev in ews}
    lines.append(f"Early warnings raised: {len(raised)}")
    for recipient, ev in ews:
        lines.append(f"  to {recipient} (TLP:{effective_label(ev)}): {ev.get('comment')}")
    dumps = {(m, bot): entries for m, per in result["dumps"].items() for bot, entries in per.items()}
    lines.append("")
    lines.append(f"Dumped (malformed input, kept in the dump files): {sum(len(v) for v in dumps.values())}")
    for (m, bot), entries in sorted(dumps.items()):
        for entry in entries:
            why = entry["traceback"][-1].strip() if entry.get("traceback") else "?"
            lines.append(f"  {m}/{bot}: {why[:160]}")
    leaks, lost = leak_check(result), loss_check(result)
    lines.append(f"Bundles rejected (quarantined): {sum(len(v) for v in result.get('quarantined', {}).values())}")
    for member, names in sorted(result.get("quarantined", {}).items()):
        lines += [f"  {member}: {n}" for n in names]
    lines.append("")
    lines.append(f"Leak count: {len(leaks)}")
    lines += [f"  LEAK {l}" for l in leaks]
    lines.append(f"Lost events: {len(lost)}")
    lines += [f"  LOST {l}" for l in lost]
    return "\n".join(lines)


def run_demo(workdir: Path, *, keep: bool = False, broker: str = "redis", small: bool = False,
             dbs: Optional[Iterable[int]] = None) -> int:
    """``make demo``: run, print the report, stop and clean up; 0 only without leaks and losses.

    ``dbs``: the members' Redis databases; by default those of ``XB_DEMO_REDIS_DBS``, else four
    free ones leased for the run (runtime.redis_dbs), so two demos, or a demo and a test run,
    never share one.  2 when they cannot be had."""
    from intelmq_crossborder.runtime.redis_dbs import DEMO_ENV, HeldDatabases

    members = default_members(small)
    held = HeldDatabases(len(members), given=dbs, env=DEMO_ENV, option="--redis-dbs", wait=300)
    try:
        held.acquire()
    except (ValueError, PipelineError) as exc:
        print(f"ERROR: {exc}")
        return 2
    try:
        print(held.describe() + ": " + ", ".join(f"{m.name} {db}" for m, db in zip(members, held.dbs)),
              flush=True)
        try:
            cons = Consortium(workdir, members, dbs=held.dbs, broker=broker, surge=not small)
        except ValueError as exc:
            print(f"ERROR: {exc}")
            return 2
        started = time.monotonic()
        try:
            result = cons.run()
            # after what arrived where is read: a withdraw and an erase cross the consortium
            result["retractions"] = retraction.run_phase(cons)
        except PipelineError as exc:
            print(f"ERROR: {exc}")
            return 1
        finally:
            cons.cleanup()
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        held.release()
    print(report(result))
    print("\n" + retraction.report_section(result["retractions"]))
    print(f"\nAll bots stopped; finished in {time.monotonic() - started:.0f}s."
          + (f" Scratch directory kept: {workdir}" if keep else " Scratch directory removed."))
    if leak_check(result) or loss_check(result) or result["quarantined"]:
        return 1
    if result.get("analytics") and not result["analytics"]["detected"]:
        print("ERROR: the analytics expert did not detect the demo's surge.")
        return 1
    failed = retraction.problems(result["retractions"])
    if failed:
        print("ERROR: " + "; ".join(failed))
        return 1
    if not warnings(result):
        print("ERROR: the demo raised no early warning.")
        return 1
    return 0
