"""The audit trail of share decisions: JSON lines that rotate and lose nothing.

One line per event, listing its decision for every recipient (in the agreements' order)::

    {"time": "2026-11-23T03:50:01.123456+00:00", "event_uuid": "…"|null,
     "fingerprint": "<sha256 hex>"|null, "bot": "sharing-router",
     "tlp": "AMBER"|null, "tlp_from": "sharing.tlp"|"labels"|"none"|"unreadable",
     "decisions": [{"recipient": "cert-at", "allowed": false,
                    "reasons": ["tlp-above-ceiling: TLP:AMBER is above …"]}, …]}

(``tlp``/``tlp_from``: the event's TLP as :func:`intelmq_crossborder.core.tlp.event_tlp`
read it, and where from; an allowed decision's first reason states the effective TLP
for that recipient.)  For the holdings index (:mod:`intelmq_crossborder.policy.holdings`,
docs/retraction.md) a record may also carry ``"peer"`` (the hub an imported event came
from), ``"pap"`` and ``"copies"`` (per recipient whose copy has ids of its own or a hidden
source: ``{"u": uuid, "f": fingerprint, "h": 1}``).  A retraction the router handled is one
line with ``"retraction"`` (its id), ``action``, the target's ids, ``outcome`` and
``deliveries`` (recipient, hub, action, why), never an event's values:
:func:`read_retractions` reads those, :func:`read_records` skips them.  Files written before (up to 2026-12) hold one line per
(event, recipient) decision: ``{"time", "event_uuid", "fingerprint", "recipient",
"allowed", "reasons", "bot"}``.  :func:`read_records` reads both and yields one such
per-decision dict per decision.

It is a library used by the sharing router, not a bot of its own: the router
writes the decisions of an event *before* it sends the copies and acknowledges
the input message, so every decision that had an effect is on disk, and a
decision cannot be lost between two bots.  (A crash after the write and before
the acknowledgement means the message is processed again after the restart:
its decisions then appear twice, never zero times.)

Durability: each event's record is written with one ``write()`` on a file opened
in append mode, so they are in the operating system's hands before the message
is acknowledged; ``fsync=True`` also forces them to disk (power loss).

Rotation: when the file reaches ``max_bytes`` it is renamed to
``<name>.<UTC timestamp>`` (never deleted, never truncated) and a new file is
started; :func:`rotated_files` lists the pieces in order and
:func:`read_records` reads them all, for the hand-over to a regulator.  Use one
file per bot instance; do not point logrotate's ``copytruncate`` at it.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Optional

from intelmq_crossborder.core import inputs
from intelmq_crossborder.core.files import move_durably

__all__ = ["AuditTrail", "rotated_files", "read_records", "read_retractions", "record", "encode_decision",
           "encode_copies"]

_enc = json.encoder.encode_basestring_ascii     # str -> JSON string literal (C implementation)


def _enc_opt(value) -> str:
    return "null" if value is None else _enc(str(value))


def record(decision, *, event_uuid: Optional[str], fingerprint: Optional[str], bot: Optional[str] = None,
           time: Optional[str] = None) -> dict:
    """The per-decision record of one :class:`intelmq_crossborder.policy.decide.Decision`, as
    :func:`read_records` yields it."""
    return {"time": time or _dt.datetime.now(_dt.timezone.utc).isoformat(), "event_uuid": event_uuid,
            "fingerprint": fingerprint, "recipient": decision.recipient, "allowed": decision.allowed,
            "reasons": list(decision.reasons), "bot": bot}


def encode_decision(recipient: Optional[str], allowed: bool, reasons: Iterable[str]) -> str:
    """One entry of a record's ``decisions``, JSON-encoded."""
    return ('{"recipient":' + _enc_opt(recipient)
            + (',"allowed":true,"reasons":[' if allowed else ',"allowed":false,"reasons":[')
            + ",".join(map(_enc, reasons)) + "]}")


class AuditTrail:
    """Append-only JSON-lines file with size-based rotation."""

    def __init__(self, path, *, max_bytes: int = 100 * 1024 * 1024, fsync: bool = False,
                 bot: Optional[str] = None):
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.fsync = bool(fsync)
        self.bot = bot
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        # Binary append mode: every write goes to the end, also after a restart.
        self._fh = open(self.path, "ab", buffering=0)
        self._size = self._fh.seek(0, os.SEEK_END)

    def write_decisions(self, decisions: Iterable, *, event_uuid: Optional[str],
                        fingerprint: Optional[str], tlp: Optional[str] = None,
                        tlp_from: Optional[str] = None, extra: str = "") -> int:
        """Append the event's record (one line, one write) listing every decision; returns the
        number of decisions (nothing is written for none).

        ``tlp``/``tlp_from``: the event's TLP and where it came from (the keys are written
        when ``tlp_from`` is given).  The line is assembled from JSON-encoded pieces
        (:func:`encode_decision`; the result of
        :meth:`~intelmq_crossborder.policy.decide.PolicySet.decide` carries them as
        ``audit_parts``); it parses to what the docstring of this module shows.
        ``extra``: JSON members (``,"peer":"at-hub"``...) for the holdings index, see
        :func:`encode_copies`.
        """
        parts = getattr(decisions, "audit_parts", None)      # encoded by PolicySet.decide already
        if parts is None:
            parts = []
            for d in decisions:
                part = d.__dict__.get("_audit_json")
                if part is None:
                    part = encode_decision(d.recipient, d.allowed, d.reasons)
                    if not d.allowed:
                        d._audit_json = part
                parts.append(part)
        if not parts:
            return 0
        now = _dt.datetime.now(_dt.timezone.utc).isoformat()
        head = ('{"time":' + _enc(now) + ',"event_uuid":' + _enc_opt(event_uuid)
                + ',"fingerprint":' + _enc_opt(fingerprint) + ',"bot":' + _enc_opt(self.bot))
        if tlp_from is not None:
            head += ',"tlp":' + _enc_opt(tlp) + ',"tlp_from":' + _enc(tlp_from)
        if extra:
            head += extra
        self._write((head + ',"decisions":[' + ",".join(parts) + "]}\n").encode("utf-8"))
        return len(parts)

    def write_retraction(self, entry: dict) -> None:
        """Append the record of a retraction the router handled (one line, no ``decisions``:
        :func:`read_records` skips it, :func:`read_retractions` reads it).  ``entry`` holds
        ids, recipients, actions and reasons, never an event's values."""
        entry = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(), "bot": self.bot, **entry}
        self._write((json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n").encode("utf-8"))

    def write_lines(self, lines: list) -> None:
        """Append already encoded JSON lines (without newlines) with a single write."""
        self._write(("\n".join(lines) + "\n").encode("utf-8"))

    def _write(self, data: bytes) -> None:
        if self.max_bytes and self._size and self._size + len(data) > self.max_bytes:
            self.rotate()
        view = memoryview(data)
        while view:
            written = self._fh.write(view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fh.fileno())
        self._size += len(data)

    def rotate(self) -> Optional[Path]:
        """Rename the current file to ``<name>.<UTC timestamp>`` and start a new one."""
        self._fh.close()
        target = None
        if self.path.exists() and self.path.stat().st_size:
            stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.path.with_name(f"{self.path.name}.{stamp}")
            n = 0
            while target.exists():
                n += 1
                target = self.path.with_name(f"{self.path.name}.{stamp}-{n}")
            move_durably(self.path, target)
        self._open()
        return target

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def encode_copies(peer: Optional[str], copies: dict, pap: Optional[str] = None) -> str:
    """The ``extra`` of :meth:`AuditTrail.write_decisions` for the holdings index: the peer hub
    the event was imported from, its PAP, and per recipient whose copy has ids of its own
    (derived uuid, recomputed fingerprint) or a hidden source ``{"u": uuid, "f": fingerprint,
    "h": 1}``.  Empty when there is nothing to say."""
    out = ""
    if peer:
        out += ',"peer":' + _enc(peer)
    if pap:
        out += ',"pap":' + _enc(pap)
    if copies:
        out += ',"copies":' + json.dumps(copies, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return out


def rotated_files(path) -> list:
    """The rotated pieces of an audit file, oldest first, then the current file."""
    path = Path(path)
    pieces = sorted(p for p in path.parent.glob(path.name + ".*") if p.is_file())
    return pieces + ([path] if path.exists() else [])


def read_records(path) -> Iterator[dict]:
    """Every decision of an audit trail (all rotated pieces, oldest first) as a per-decision
    dict (:func:`record`'s keys, plus ``tlp``/``tlp_from`` when the event's record has them),
    from per-event records and from the per-decision lines of older files alike.  Read with
    the hostile-input reader: a damaged line raises :class:`inputs.InputError` naming the
    piece and the line (a record is never skipped in silence)."""
    for piece in rotated_files(path):
        with open(piece, "rb") as fh:
            for line, value in inputs.iter_json_lines(fh, piece):
                if isinstance(value, inputs.InputError):
                    raise value
                if not isinstance(value, dict):
                    raise inputs.InputError(piece, "an audit record is a JSON object", line=line)
                if "retraction" in value:
                    continue                        # a retraction's record: read_retractions
                if "decisions" not in value:
                    yield value                     # a per-decision line (older files)
                    continue
                decisions = value["decisions"]
                if not isinstance(decisions, list):
                    raise inputs.InputError(piece, "decisions is not a list", line=line, field="decisions")
                head = {"time": value.get("time"), "event_uuid": value.get("event_uuid"),
                        "fingerprint": value.get("fingerprint")}
                extra = {k: value[k] for k in ("tlp", "tlp_from", "peer", "pap") if k in value}
                copies = value.get("copies")
                if not isinstance(copies, dict):
                    copies = {}
                for d in decisions:
                    if not isinstance(d, dict):
                        raise inputs.InputError(piece, "a decision is not a JSON object", line=line,
                                                field="decisions")
                    out = {**head, "recipient": d.get("recipient"), "allowed": d.get("allowed"),
                           "reasons": d.get("reasons"), "bot": value.get("bot"), **extra}
                    copy = copies.get(d.get("recipient")) if isinstance(d.get("recipient"), str) else None
                    if isinstance(copy, dict):
                        out.update(sent_uuid=copy.get("u"), sent_fingerprint=copy.get("f"), hidden=bool(copy.get("h")))
                    yield out


def read_retractions(path) -> Iterator[dict]:
    """The records of the retractions a router handled (:meth:`AuditTrail.write_retraction`),
    oldest first, read like :func:`read_records`."""
    for piece in rotated_files(path):
        with open(piece, "rb") as fh:
            for _line, value in inputs.iter_json_lines(fh, piece):
                if isinstance(value, inputs.InputError):
                    raise value
                if isinstance(value, dict) and "retraction" in value:
                    yield value
