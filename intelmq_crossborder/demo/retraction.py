"""The demo consortium's retraction phase: after the nightly exchange, one ``withdraw`` and one
``erase`` issued at a hub, carried through the peer hubs to a CSIRT, confirmed back, and checked.

What :mod:`intelmq_crossborder.demo.consortium` calls (docs/retraction.md):

- :func:`wire` - before the members' instances are set up (or on a loaded runtime): the sharing
  routers get their ``hub_id`` and the exchange parsers a ``retractions`` path to the router.
- :func:`run_phase` - after :meth:`Consortium.run` (every bot stopped): picks two events the origin
  hub shared that reached a CSIRT through a peer hub, issues a withdraw and an erase with
  ``intelmq-crossborder retract``'s library (the router's Redis queue), runs exchange rounds until no
  bundle moves (retractions out, confirmations back), stops every bot and returns
  :func:`results`.
- :func:`report_section` and :func:`problems` - the report's retraction section and what fails
  the demo: a retraction that reached no holder, a peer that did not confirm, and "still holding"
  above 0.

"Still holding" is checked twice: by every member's holdings index, and independently by reading
every output the demo wrote (the file outputs and the exchange spools): a record of the event (by
any of its copies' ids) that no later tombstone in the same output covers (withdraw), or, for an
erase, any record of it at all that still holds its values.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.fingerprint import identity
from intelmq_crossborder.policy import holdings as H
from intelmq_crossborder.policy.retraction import (ACTIONS, ERASE, KEEP, Retraction, RetractionError, instruction,
                                                   is_retraction, new_retraction)
from intelmq_crossborder.runtime.retraction import ROUTER_MODULES, find_router, inject

__all__ = ["wire", "Issued", "pick_targets", "issue", "exchange_rounds", "run_phase", "results", "report_section",
           "problems", "read_outputs"]

PARSER_MODULE = "intelmq.bots.parsers.crossborder.exchange.parser"
#: Fields whose values an erase must take out of every output (identifying values, not labels).
VALUE_FIELDS = ("source.ip", "source.fqdn", "source.url", "source.account", "source.local_hostname",
                "source.local_ip", "destination.ip", "destination.fqdn", "destination.url", "destination.account",
                "malware.hash.md5", "malware.hash.sha1", "malware.hash.sha256")


def wire(runtime: dict, hub_id: str) -> dict:
    """The runtime changes retractions need, in place: every sharing router gets ``hub_id`` (unless
    it has one), every exchange parser a ``retractions`` path to the (main) sharing router."""
    routers = [b for b, c in runtime.items() if b != "global" and isinstance(c, dict)
               and c.get("module") in ROUTER_MODULES]
    for bot in routers:
        runtime[bot].setdefault("parameters", {}).setdefault("hub_id", hub_id)
    main = "router" if "router" in routers else (routers[0] if routers else None)
    if main is None:
        return runtime
    queue = runtime[main].get("parameters", {}).get("source_queue", f"{main}-queue")
    for bot, conf in runtime.items():
        if bot != "global" and isinstance(conf, dict) and conf.get("module") == PARSER_MODULE:
            dest = conf.setdefault("parameters", {}).setdefault("destination_queues", {})
            if isinstance(dest, dict):
                dest.setdefault("retractions", [queue])
    return runtime


@dataclass
class Issued:
    """One retraction the demo issued."""

    retraction: Retraction
    hub: str
    values: Set[str] = field(default_factory=set)     # the event's identifying values (for an erase)


def _indexes(cons) -> Dict[str, List[H.Holdings]]:
    """Every member's holdings indexes (one per sharing router), read-only."""
    out: Dict[str, List[H.Holdings]] = {}
    for name, inst in cons.instances.items():
        for bot, conf in inst.runtime.items():
            if bot != "global" and isinstance(conf, dict) and conf.get("module") in ROUTER_MODULES:
                where = find_router(inst.etc / "runtime.yaml", bot)
                if where.holdings.is_file():
                    out.setdefault(name, []).append(H.Holdings(where.holdings, readonly=True))
    return out


def _close(indexes: Dict[str, List[H.Holdings]]) -> None:
    for items in indexes.values():
        for index in items:
            index.close()


def _ids_everywhere(indexes: Dict[str, List[H.Holdings]], uuid: Optional[str], fp: Optional[str],
                    scope: str = "event") -> Tuple[Set[str], Set[str]]:
    """Every uuid and fingerprint the event has at any member: its ids and each copy's own ids,
    followed from hub to hub (a copy's ids are the next hub's ids of the event).  Followed by
    uuid (an indicator retraction, or an event without one: by fingerprint)."""
    uuids, fps = {uuid} - {None}, {fp} - {None}
    by_fp = scope == "indicator" or uuid is None
    frontier = set(fps) if by_fp else set(uuids)
    visited: Set[str] = set()
    while frontier and len(visited) < 10_000:
        visited |= frontier
        new: Set[str] = set()
        for items in indexes.values():
            for index in items:
                for key in frontier:
                    copies = index.copies(fingerprint=key, scope="indicator") if by_fp else index.copies(key)
                    for c in copies:
                        fps.update({c.fingerprint, c.sent_fingerprint} - {None})
                        uuids.update({c.event_uuid, c.sent_uuid} - {None})
                        nxt = c.sent_fingerprint if by_fp else c.sent_uuid
                        if nxt:
                            new.add(nxt)
        frontier = new - visited
    return uuids, fps


def _is_copy(rec: dict, uuids: Set[str], fps: Set[str]) -> Tuple[bool, Optional[str], Optional[str]]:
    """Whether an output record is a copy of the event (by uuid; by fingerprint without one)."""
    u, f = rec.get("provenance.event_uuid"), rec.get("provenance.fingerprint")
    return (u in uuids if u else f in fps), u, f


def pick_targets(cons, origin: str, via: str, count: int = 2) -> List[Tuple[str, Optional[str]]]:
    """``count`` events ``origin`` shared with hub ``via`` that ``via`` passed on to one of its
    constituents (a CSIRT): ``(event uuid, fingerprint)`` at ``origin``."""
    constituents = {c for m in cons.members if m.name == via for c in m.constituents}
    indexes = _indexes(cons)
    try:
        picked: List[Tuple[str, Optional[str]]] = []
        seen = set()
        for index in indexes.get(origin, []):
            for row in H.query_any(index, "SELECT uuid, fp FROM sent WHERE recipient = ? AND state = 'held' "
                                          "AND uuid IS NOT NULL ORDER BY rowid", (via,)):
                uuid = H._uuid_text(row[0])
                fp = None if row[1] is None else row[1].hex()
                if uuid in seen:
                    continue
                seen.add(uuid)
                copy = next(c for c in index.copies(uuid) if c.recipient == via)
                downstream = [c for i in indexes.get(via, []) for c in i.copies(copy.sent_uuid)
                              if c.recipient in constituents and c.held]
                if downstream:
                    picked.append((uuid, fp))
                    if len(picked) == count:
                        return picked
        return picked
    finally:
        _close(indexes)


def read_outputs(cons) -> Dict[str, List[dict]]:
    """Every record the demo's outputs hold: ``"<member>:<file>"`` -> records in order (the file
    outputs' JSON lines and the exchange outputs' unsealed spools), read as hostile input."""
    out: Dict[str, List[dict]] = {}
    for name, inst in cons.instances.items():
        paths = []
        for bot, conf in inst.runtime.items():
            params = conf.get("parameters", {}) if isinstance(conf, dict) else {}
            if bot != "global" and conf.get("group") == "Output" and isinstance(params.get("file"), str):
                paths.append(Path(params["file"]))
        paths += sorted(inst.root.glob("var/lib/**/spool.jsonl"))
        for path in paths:
            if not path.is_file():
                continue
            records = []
            with open(path, "rb") as fh:
                for _, value in inputs.iter_json_lines(fh, path):
                    if isinstance(value, dict):
                        records.append(value)
            out[f"{name}:{path.relative_to(inst.root)}"] = records
    return out


def _values(records: Iterable[dict], uuids: Set[str], fps: Set[str]) -> Set[str]:
    found = set()
    for rec in records:
        if not is_retraction(rec) and _is_copy(rec, uuids, fps)[0]:
            found.update(str(v) for k, v in identity(rec, VALUE_FIELDS).items() if v not in (None, ""))
    return found


def issue(cons, hub: str, action: str, event_uuid: str, fingerprint: Optional[str], reason: str) -> Issued:
    """Issue a retraction at ``hub`` as ``intelmq-crossborder retract`` does (its router's queue)."""
    where = find_router(cons.instances[hub].etc / "runtime.yaml", "router")
    msg = new_retraction(action, reason, where.hub_id or hub, target_event_uuid=event_uuid,
                         target_fingerprint=fingerprint)
    issued = Issued(msg, hub)
    if action == ERASE:
        indexes = _indexes(cons)
        try:
            uuids, fps = _ids_everywhere(indexes, event_uuid, fingerprint)
        finally:
            _close(indexes)
        for records in read_outputs(cons).values():
            issued.values |= _values(records, uuids, fps)
    inject(where, msg.to_event())
    return issued


def exchange_rounds(cons, max_rounds: int = 4) -> int:
    """Nightly exchanges until no bundle moves: every bot runs and drains, every member's exchange
    outputs seal and their bundles move, the bots start again, every member imports.  Returns the
    number of rounds that moved bundles."""
    senders = {m.name: tuple(m.peers) + tuple(m.constituents) for m in cons.members if m.peers or m.constituents}
    rounds = 0
    for n in range(max_rounds):
        cons.start()
        cons._wait_all()
        moved = cons.seal_and_move(senders)
        cons._log(f"retraction round {n + 1}: {moved} bundle(s) sealed and moved")
        if not moved:
            break
        rounds += 1
        cons.start()
        cons.import_bundles([m.name for m in cons.members])
    return rounds


def run_phase(cons, origin: str = "de-hub", via: str = "at-hub") -> dict:
    """Issue one withdraw and one erase at ``origin`` after the nightly exchange, carry them
    (and the confirmations) through the consortium, stop every bot, and return :func:`results`."""
    targets = pick_targets(cons, origin, via, 2)
    if len(targets) < 2:
        return {"issued": [], "error": f"{origin} shared fewer than two events that reached a CSIRT through {via}"}
    issued = []
    try:
        cons.start()
        issued.append(issue(cons, origin, "withdraw", *targets[0], "demo: the indicator was a false positive"))
        issued.append(issue(cons, origin, ERASE, *targets[1], "demo: the event holds personal data"))
        cons._log(f"retractions: {origin} issued a withdraw and an erase")
        cons._wait_all()
        exchange_rounds(cons)
    finally:
        cons.stop()
    return results(cons, issued)


def _holding(records: List[dict], issued: Issued, uuids: Set[str], fps: Set[str]) -> int:
    """The records of the event in one output that still count as held (see the module docstring)."""
    msg = issued.retraction
    held = 0
    for i, rec in enumerate(records):
        if is_retraction(rec):
            continue
        copy, u, f = _is_copy(rec, uuids, fps)
        if not copy:
            continue
        if msg.action == ERASE:
            values = {str(v) for v in identity(rec, VALUE_FIELDS).values() if v not in (None, "")}
            held += 1 if (values & issued.values or not issued.values) else 0
            continue
        tombstoned = False
        for later in records[i + 1:]:
            if not is_retraction(later):
                continue
            try:
                r = Retraction.from_event({k: v for k, v in later.items() if k != "__type"})
            except RetractionError:
                continue
            if r.id == msg.id and instruction(r, event_uuid=u, fingerprint=f) != KEEP:
                tombstoned = True
                break
        held += 0 if tombstoned else 1
    return held


def results(cons, issued: List[Issued]) -> dict:
    """Per retraction: holders reached and outcome per member, the origin's confirmations, who
    still holds the event by the indexes and by the outputs."""
    indexes = _indexes(cons)
    outputs = read_outputs(cons)
    out = []
    try:
        for item in issued:
            msg = item.retraction
            uuids, fps = _ids_everywhere(indexes, msg.target_event_uuid, msg.target_fingerprint, msg.scope)
            per_member, confirmations, unconfirmed, index_still = {}, [], [], []
            for name, items in indexes.items():
                for index in items:
                    status = index.status(msg.id)
                    if status is None:
                        continue
                    reached = [d["recipient"] for d in status["deliveries"] if d["action"] in ACTIONS]
                    per_member[name] = {"outcome": status["outcome"], "from_peer": status["from_peer"],
                                        "holders": reached}
                    index_still += [f"{name}:{r}" for r in index.still_held(
                        status["target_event_uuid"], status["target_fingerprint"], scope=status["scope"])]
                    if name == item.hub:
                        confirmations = status["confirmations"]
                        unconfirmed = status["unconfirmed"]
            holding = {where: n for where, records in outputs.items()
                       if (n := _holding(records, item, uuids, fps))}
            out.append({"id": msg.id, "action": msg.action, "hub": item.hub, "target": msg.target,
                        "members": per_member,
                        "holders_reached": sum(len(m["holders"]) for m in per_member.values()),
                        "confirmations": confirmations, "unconfirmed": unconfirmed,
                        "still_holding_index": sorted(index_still), "still_holding_outputs": holding,
                        "erased_values": len(item.values)})
    finally:
        _close(indexes)
    return {"issued": out}


def report_section(result: dict) -> str:
    """The demo report's retraction section."""
    lines = ["Retractions (after the nightly exchange)"]
    if result.get("error"):
        return "\n".join(lines + [f"  not run: {result['error']}"])
    for r in result["issued"]:
        lines.append(f"  {r['action']} {r['id']} of {r['target']}, issued at {r['hub']}")
        for name, m in sorted(r["members"].items()):
            came = f" (from {m['from_peer']})" if m["from_peer"] else ""
            lines.append(f"    {name:<9} {m['outcome']}{came}: sent to {len(m['holders'])} holder(s)"
                         + (f" - {', '.join(m['holders'])}" if m["holders"] else ""))
        conf = ", ".join(f"{c['hub']} ({c['holders_reached']} holder(s))" for c in r["confirmations"]) or "none"
        lines.append(f"    holders reached {r['holders_reached']}; confirmations {conf}; not confirmed "
                     f"{', '.join(r['unconfirmed']) or 'none'}")
        still = sum(r["still_holding_outputs"].values())
        lines.append(f"    still holding: {still} (read from every output"
                     + (f": {', '.join(f'{k} {v}' for k, v in sorted(r['still_holding_outputs'].items()))}"
                        if still else "") + f"); by the holdings indexes: {len(r['still_holding_index'])}")
    return "\n".join(lines)


def problems(result: dict) -> List[str]:
    """What fails the demo's retraction phase."""
    if result.get("error"):
        return [f"retractions: {result['error']}"]
    out = []
    counts = collections.Counter()
    for r in result["issued"]:
        counts[r["action"]] += 1
        if not r["holders_reached"]:
            out.append(f"retraction {r['id']} ({r['action']}) reached no holder")
        if r["unconfirmed"]:
            out.append(f"retraction {r['id']} ({r['action']}) not confirmed by {', '.join(r['unconfirmed'])}")
        if r["still_holding_outputs"]:
            out.append(f"retraction {r['id']} ({r['action']}): still held in "
                       + ", ".join(f"{k} ({v})" for k, v in sorted(r["still_holding_outputs"].items())))
        if r["still_holding_index"]:
            out.append(f"retraction {r['id']} ({r['action']}): the holdings indexes still list "
                       + ", ".join(r["still_holding_index"]))
    return out
