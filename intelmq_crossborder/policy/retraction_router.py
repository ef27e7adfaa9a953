"""The sharing router's part of a retraction, without IntelMQ: who gets it, who may send it.

:class:`RetractionRouter` holds the router's :class:`~intelmq_crossborder.policy.holdings.Holdings`
and agreements.  For every event the router shares, :meth:`RetractionRouter.copies` and
:meth:`RetractionRouter.audit_extra` say what its audit record carries for the index, which
follows the audit trail (:meth:`~intelmq_crossborder.policy.holdings.Holdings.catch_up`).
For a retraction, :meth:`RetractionRouter.plan` works out, from the index alone:

- whether it may be applied here: a retraction issued at this hub (no hub path) must name
  this hub as originator and target an event that did not come from a peer; a peer's
  retraction is applied only for events that peer sent this hub; one that already passed
  through this hub is a loop (the hub-path rule of :mod:`intelmq_crossborder.policy.provenance`);
- to whom: exactly the recipients that hold the target, each under the ids of its own copy;
  a relabel goes as a relabel to the holders whose agreement still admits the new labels, and
  as a withdraw-style removal (without the new labels) to the others;
- the confirmation to the peer that sent it (in this hub's next bundle to that peer).

:meth:`RetractionRouter.commit` then records the plan (after the audit trail).  Planning is
idempotent: a retraction seen again (a retry after a crash, a replayed bundle) goes to the
same holders again, and outputs apply a retraction twice as once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from intelmq_crossborder.core.tlp import Level
from intelmq_crossborder.policy import holdings as H
from intelmq_crossborder.policy.agreements import Agreement
from intelmq_crossborder.policy.audit import encode_copies
from intelmq_crossborder.policy.decide import label_denials
from intelmq_crossborder.policy.retraction import (ERASE, PAP_ORDER, RELABEL_ACTION, WITHDRAW, Retraction,
                                                   RetractionError, confirmation)

__all__ = ["Plan", "RetractionRouter", "peer_of"]


def peer_of(hub_path: Iterable[str], hub_id: Optional[str]) -> Optional[str]:
    """The peer hub a message came from: the last hub of its path that is not this hub
    (an outbound provenance stamp may already have added this hub at the end)."""
    path = [h for h in hub_path if h]
    if hub_id and path and path[-1] == hub_id:
        path.pop()
    if not path or not hub_id:
        return None
    return path[-1]


@dataclass
class Plan:
    """What the router does with one retraction or confirmation."""

    retraction: Retraction
    from_peer: Optional[str]
    outcome: str                                    # routed, refused: ..., loop, confirmation, ...
    items: list = field(default_factory=list)       # (recipient, event dict) to send
    deliveries: list = field(default_factory=list)  # (recipient, hub, action, why) for the index
    marks: list = field(default_factory=list)       # (rowids, state, level, pap, hidden)
    confirm_to: Optional[str] = None                # the recipient (path) the confirmation goes to
    log: str = ""

    @property
    def refused(self) -> bool:
        return self.outcome.startswith("refused")

    def audit_entry(self) -> dict:
        """The audit trail's record of this retraction: ids, recipients, actions, reasons."""
        r = self.retraction
        entry: dict[str, Any] = {"retraction": r.id, "action": r.action, "scope": r.scope, "originator": r.originator,
                                 "event_uuid": r.target_event_uuid, "fingerprint": r.target_fingerprint,
                                 "from_peer": self.from_peer, "outcome": self.outcome,
                                 "deliveries": [{"recipient": rc, "hub": hub, "action": action, "why": why}
                                                for rc, hub, action, why in self.deliveries]}
        if r.is_confirmation:
            entry.update(confirmed_by=r.confirmed_by, confirmed_time=r.confirmed_time,
                         holders_reached=r.holders_reached)
        return entry


class RetractionRouter:
    """See the module docstring.  ``paths``: the router's named paths (a recipient without
    one cannot be reached: its delivery is recorded as undeliverable)."""

    def __init__(self, holdings: H.Holdings, agreements: Iterable[Agreement], hub_id: Optional[str],
                 paths: Iterable[str]):
        self.holdings = holdings
        self.agreements = {a.recipient: a for a in agreements}
        self.hub_id = hub_id or None
        self.paths = set(paths)
        self.by_hub = {a.hub_id: a.recipient for a in self.agreements.values() if a.hub_id}

    # --- events -----------------------------------------------------------------------------
    def copies(self, decisions: Iterable, level: Optional[Level], hide: bool) -> list:
        """``(recipient, copy uuid, copy fingerprint, level, PAP, hidden)`` of each allowed
        decision (PAP is filled in by :meth:`record`)."""
        out = []
        for d in decisions:
            if not d.allowed:
                continue
            a = self.agreements.get(d.recipient)
            copy = d.event_out
            lvl = level if level is not None else (a.no_label if a is not None else None)
            out.append((d.recipient, copy.get("provenance.event_uuid"), copy.get("provenance.fingerprint"),
                        None if lvl is None else lvl.label, None,
                        hide or (a is not None and not a.disclose_source)))
        return out

    def audit_extra(self, event_uuid: Optional[str], fingerprint: Optional[str], copies: list,
                    peer: Optional[str], pap: Optional[str]) -> str:
        """The audit record's members for :func:`intelmq_crossborder.policy.holdings.rebuild`."""
        own = {}
        for recipient, c_uuid, c_fp, _level, _pap, hidden in copies:
            entry = {}
            if c_uuid and c_uuid != event_uuid:
                entry["u"] = c_uuid
            if c_fp and c_fp != fingerprint:
                entry["f"] = c_fp
            if hidden:
                entry["h"] = 1
            if entry:
                own[recipient] = entry
        return encode_copies(peer, own, pap)

    # --- retractions ------------------------------------------------------------------------
    def plan(self, msg: Retraction) -> Plan:
        """What to do with a retraction or a confirmation (nothing is written)."""
        path = list(msg.hub_path)
        if self.hub_id and path and path[-1] == self.hub_id:
            path.pop()
        from_peer = path[-1] if path else None
        if self.hub_id and self.hub_id in path:
            return Plan(msg, from_peer, "loop", log=f"it already passed through this hub ({','.join(path)})")
        if msg.is_confirmation:
            return self._confirmation(msg, from_peer)
        if from_peer is None:
            if self.hub_id and msg.originator != self.hub_id:
                return Plan(msg, None, "refused: not-originator",
                            log=f"issued here but names hub {msg.originator!r} as originator; this hub is "
                                f"{self.hub_id!r}")
            peers = self.holdings.received_from(msg.target_event_uuid, msg.target_fingerprint, scope=msg.scope)
            if peers:
                return Plan(msg, None, "refused: not-originator",
                            log=f"the event came from peer hub(s) {', '.join(sorted(peers))}: only its originating "
                                "hub may retract it (ask them)")
        else:
            if not self.hub_id:
                return Plan(msg, from_peer, "refused: no-hub-id",
                            log="the router has no hub_id parameter: it cannot tell which peer sent the retraction")
            peers = self.holdings.received_from(msg.target_event_uuid, msg.target_fingerprint, scope=msg.scope)
            if from_peer not in peers:
                plan = Plan(msg, from_peer, "refused: not-sent-by-peer",
                            log=f"peer hub {from_peer!r} never sent this hub the event it retracts")
                plan.confirm_to = self._confirm_path(from_peer)
                return plan
        copies = [c for c in self.holdings.copies(msg.target_event_uuid, msg.target_fingerprint, scope=msg.scope)
                  if c.held or c.retraction == msg.id]
        if msg.action == RELABEL_ACTION:
            try:
                for c in copies:
                    if c.retraction != msg.id:
                        msg.check_relabel(c.level, c.pap)
            except RetractionError as exc:
                return Plan(msg, from_peer, f"refused: lowers-label ({exc.field})", log=exc.reason)
        plan = Plan(msg, from_peer, "routed")
        seen = set()
        for c in copies:
            a = self.agreements.get(c.recipient)
            hub = a.hub_id if a is not None else None
            if a is None or c.recipient not in self.paths:
                plan.deliveries.append((c.recipient, hub, "undeliverable", "no agreement or named path for this "
                                                                           "recipient any more"))
                continue
            out, state, why, new = self._for_copy(msg, c, a)
            key = (c.recipient, out.target_event_uuid, out.target_fingerprint)
            if hub and from_peer and hub == from_peer:
                # the peer that sent it holds it too (it shared it with us and we shared it back): it has its own
                plan.deliveries.append((c.recipient, hub, "skipped", "the peer that sent the retraction"))
                continue
            plan.marks.append(([c.rowid], state, *new))
            if key in seen:
                continue
            seen.add(key)
            event = out.to_event()
            if self.hub_id:
                event["provenance.hub_path"] = ",".join(path + [self.hub_id])
            elif path:
                event["provenance.hub_path"] = ",".join(path)
            event["sharing.agreement"] = c.recipient
            plan.items.append((c.recipient, event))
            plan.deliveries.append((c.recipient, hub, out.action, why))
        if from_peer is not None:
            plan.confirm_to = self._confirm_path(from_peer)
        n = len(plan.items)
        plan.log = f"sent to {n} holder(s)" + (f" ({', '.join(r for r, _ in plan.items)})" if n else
                                               ": nobody holds the event as far as this hub knows")
        return plan

    def _for_copy(self, msg: Retraction, c: H.Holding, a: Agreement) -> tuple:
        """The message for one held copy, the copy's new state, why, and (level, PAP, hidden)."""
        held = msg.for_holder(c.sent_uuid, c.sent_fingerprint)
        if msg.action == WITHDRAW:
            return held, H.WITHDRAWN, None, (None, None, None)
        if msg.action == ERASE:
            return held, H.ERASED, None, (None, None, None)
        level = msg.new_level(c.level)
        pap = c.pap
        if msg.new_pap is not None and (pap is None or PAP_ORDER[msg.new_pap] > PAP_ORDER.get(pap, -1)):
            pap = msg.new_pap
        reasons = label_denials(a, level, pap)
        if msg.new_do_not_disclose_source and not c.hidden:
            reasons.append("source-disclosed: the copy names the source, which must now be hidden")
        if reasons:
            code = reasons[0].split(":", 1)[0]
            return held.as_removal(f"no longer admitted by the agreement ({code})"), H.REMOVED, code, \
                (None, None, None)
        return held, H.RELABELLED, None, (level, pap, True if msg.new_do_not_disclose_source else None)

    def _confirm_path(self, peer: str) -> Optional[str]:
        recipient = self.by_hub.get(peer)
        return recipient if recipient in self.paths else None

    def confirmation_event(self, plan: Plan) -> Optional[tuple]:
        """``(recipient, event)`` of the confirmation to the peer that sent the retraction, or None."""
        if plan.from_peer is None or plan.confirm_to is None or not self.hub_id or plan.outcome == "loop":
            return None
        reached = sum(1 for d in plan.deliveries if d[2] in (WITHDRAW, ERASE, RELABEL_ACTION))
        conf = confirmation(plan.retraction, self.hub_id, reached)
        event = conf.to_event()
        event["provenance.hub_path"] = self.hub_id
        event["sharing.agreement"] = plan.confirm_to
        if plan.refused:
            event["retraction.holders_reached"] = 0
        return plan.confirm_to, event

    def _confirmation(self, msg: Retraction, from_peer: Optional[str]) -> Plan:
        if from_peer is None or msg.confirmed_by != from_peer:
            return Plan(msg, from_peer, "refused: confirmation-not-from-confirming-hub",
                        log=f"a confirmation by {msg.confirmed_by!r} arrived from {from_peer or 'this hub'}: a hub "
                            "confirms only for itself")
        return Plan(msg, from_peer, "confirmation", log=f"hub {from_peer!r} confirmed it applied the retraction")

    def commit(self, plan: Plan) -> None:
        """Record the plan in the index (call after the audit trail has it)."""
        msg = plan.retraction
        if plan.outcome == "confirmation":
            expected = self.holdings.record_confirmation(msg.id, msg.confirmed_by, msg.confirmed_time or "",
                                                         msg.holders_reached)
            if not expected:
                plan.log += " (this hub did not send it that retraction: recorded as unexpected)"
            return
        if plan.outcome == "loop":
            return
        for rowids, state, level, pap, hidden in plan.marks:
            self.holdings.mark(rowids, state, msg.id, level=level, pap=pap, hidden=hidden)
        self.holdings.record_retraction(msg, from_peer=plan.from_peer, outcome=plan.outcome,
                                         deliveries=plan.deliveries)

