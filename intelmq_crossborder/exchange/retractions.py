"""Retractions in the hub-to-hub exchange: the sender's spool and the receiver's checks.

Retractions and confirmations travel in the signed bundles as events (one JSON line each,
``retraction.*`` fields only; docs/retraction.md).  On the sending side the exchange output
applies a retraction to what it has not sealed yet (:func:`apply_to_spool`: a withdrawn or
erased event never leaves in a later bundle; a relabelled one leaves with its new labels, or
not at all above the exchange's ``max_tlp``) and then spools the retraction itself
(:func:`retraction_line`).  On the receiving side :func:`check_received` makes sure a
retraction read from a peer's bundle was sent by that peer (the last hub of its path is the
bundle's signed sender).
"""
from __future__ import annotations

import json
from typing import Mapping, Optional, Tuple

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.exchange.spool import Spool
from intelmq_crossborder.policy.redact import without_source
from intelmq_crossborder.policy.retraction import (KEEP, PAP_ORDER, RELABEL, Retraction, RetractionError,
                                                   instruction, is_retraction)

__all__ = ["apply_to_spool", "retraction_line", "check_received"]


def _line(obj: Mapping) -> bytes:
    return json.dumps(dict(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def retraction_line(flat: Mapping) -> Tuple[Retraction, bytes]:
    """The retraction (or confirmation) as read strictly, and its bundle line: only its own
    fields, as the router addressed it (:class:`RetractionError` naming a bad field)."""
    msg = Retraction.from_event({k: v for k, v in flat.items() if k != "__type"})
    out = msg.to_event()
    if flat.get("sharing.agreement"):
        out["sharing.agreement"] = flat["sharing.agreement"]
    return msg, _line(out)


def apply_to_spool(spool: Spool, msg: Retraction, max_level: tlp.Level) -> Tuple[int, int]:
    """Apply ``msg`` to the events waiting in ``spool`` (not sealed yet); returns (events
    deleted, events relabelled).  Withdraw and erase delete the event's line (erase: its values
    are gone from the file); a relabel rewrites the labels, never lower, and deletes the event
    when the new level is above ``max_level`` (the exchange's ``max_tlp``)."""
    if msg.is_confirmation:
        return 0, 0

    def change(line: bytes) -> Optional[bytes]:
        try:
            rec = inputs.loads_json(line, "exchange spool")
        except inputs.InputError:
            return line                     # not ours to judge: the seal reports it
        if not isinstance(rec, dict) or is_retraction(rec):
            return line
        try:
            level = tlp.event_tlp(rec).level
        except tlp.LabelError:
            return line
        what = instruction(msg, event_uuid=rec.get("provenance.event_uuid"),
                           fingerprint=rec.get("provenance.fingerprint"), level=level, ceiling=max_level)
        if what == KEEP:
            return line
        if what != RELABEL:
            return None
        new_level = msg.new_level(level)
        if new_level is not None:
            rec["sharing.tlp"] = new_level.label
        if msg.new_pap is not None:
            old = rec.get("sharing.pap")
            if not isinstance(old, str) or PAP_ORDER.get(old, -1) < PAP_ORDER[msg.new_pap]:
                rec["sharing.pap"] = msg.new_pap
        if msg.new_do_not_disclose_source:
            rec = without_source(rec)
        return _line(rec)

    return spool.rewrite(change)


def check_received(flat: Mapping, sender: Optional[str]) -> Retraction:
    """A retraction (or confirmation) read from a bundle of ``sender``: strict, and the last
    hub of its path must be the bundle's (signed) sender, so a peer cannot speak for another.
    :class:`RetractionError` naming the field otherwise."""
    msg = Retraction.from_event(flat)
    if not sender:
        raise RetractionError("provenance.hub_path", "a retraction from a bundle without a sender")
    if not msg.hub_path or msg.hub_path[-1] != sender:
        raise RetractionError("provenance.hub_path", f"the retraction's path ends at "
                                                     f"{(msg.hub_path or ('nothing',))[-1]!r}, not at the bundle's "
                                                     f"sender {sender!r}; refused")
    if msg.is_confirmation and msg.confirmed_by != sender:
        raise RetractionError("retraction.confirmed_by", f"a confirmation by {msg.confirmed_by!r} in a bundle of "
                                                         f"{sender!r}; refused")
    return msg
