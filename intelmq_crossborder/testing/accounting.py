"""Message accounting for reliability runs: every event in is out, dumped or deliberately filtered.

Used by the fault-injection tests (tests/test_faults_integration.py) and usable by any
run that must prove "nothing lost": tag each input event with a sequence number and a
checksum (:func:`stamp`), collect what reached each output, what was dumped and what
was filtered on purpose, and :func:`account` says what is lost, duplicated (and whether
the duplicate is byte-identical, i.e. IntelMQ's at-least-once redelivery, or a corrupt
copy), or arrived where it must not.

IntelMQ's delivery guarantee on Redis is *at least once*: a bot takes a message into
``<queue>-internal`` (BRPOPLPUSH), processes it, sends, and only then acknowledges (RPOP
of the internal queue).  A bot killed between sending and acknowledging re-processes the
message on restart, so the next queue may see it twice; nothing is lost.  Our router sends
and acknowledges in one round trip (:mod:`intelmq_crossborder.runtime.fanout`): in its
``transaction`` and ``script`` modes atomically (it never duplicates), in the default
``pipeline`` mode not (an interruption inside the round trip can repeat copies).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from intelmq_crossborder.core.fingerprint import digest

__all__ = ["SEQ_FIELD", "SUM_FIELD", "stamp", "checksum", "Accounting", "account"]

SEQ_FIELD = "extra.seq"
SUM_FIELD = "extra.checksum"
#: The fields the checksum covers: what a transformation on the way must not change.
CHECKSUM_FIELDS = ("classification.type", "source.ip", "source.fqdn", "time.source", SEQ_FIELD)


def checksum(event: Mapping, fields: Iterable[str] = CHECKSUM_FIELDS) -> str:
    """The library's digest (SHA-256 of canonical JSON), 16 hex chars, over the given fields of a flat event."""
    return digest([[f, event.get(f)] for f in fields])[:16]


def stamp(event: dict, seq: int) -> dict:
    """Put the sequence number and the checksum on an event (in place) and return it."""
    event[SEQ_FIELD] = seq
    event[SUM_FIELD] = checksum(event)
    return event


@dataclass
class Accounting:
    sent: int
    delivered: Counter = field(default_factory=Counter)          # output -> distinct events
    copies: Counter = field(default_factory=Counter)             # output -> copies (incl. duplicates)
    dumped: int = 0
    filtered: int = 0
    lost: list = field(default_factory=list)                     # (seq, output or None)
    duplicates: Counter = field(default_factory=Counter)         # output -> extra copies
    corrupt: list = field(default_factory=list)                  # (seq, output) checksum mismatch
    misrouted: list = field(default_factory=list)                # (seq, output) where it must not be
    unknown: list = field(default_factory=list)                  # output lines with no/unknown seq

    @property
    def ok(self) -> bool:
        return not (self.lost or self.corrupt or self.misrouted or self.unknown)

    def summary(self) -> dict:
        return {"sent": self.sent, "delivered": dict(self.delivered), "copies": dict(self.copies),
                "dumped": self.dumped, "filtered": self.filtered, "lost": len(self.lost),
                "duplicates": dict(self.duplicates), "corrupt": len(self.corrupt),
                "misrouted": len(self.misrouted), "unknown": len(self.unknown), "ok": self.ok}


def account(expected: Mapping[int, frozenset], received: Mapping[str, Iterable[Mapping]],
            dumped: Iterable[int] = (), filtered: Iterable[int] = (),
            max_duplicates: Optional[int] = None) -> Accounting:
    """Account for every input event.

    ``expected``: seq -> the set of outputs the event must reach (empty: it must be
    filtered or dumped).  ``received``: output -> events found there.  ``dumped`` /
    ``filtered``: seqs dumped / deliberately filtered (from the dump files / audit trail).
    An event expected somewhere that is not there, and not dumped, is lost.
    """
    result = Accounting(sent=len(expected))
    dumped, filtered = set(dumped), set(filtered)
    result.dumped, result.filtered = len(dumped & set(expected)), len(filtered & set(expected))
    seen = {}
    for output, events in received.items():
        counts = Counter()
        for ev in events:
            seq = ev.get(SEQ_FIELD)
            if seq not in expected:
                result.unknown.append((seq, output))
                continue
            counts[seq] += 1
            if ev.get(SUM_FIELD) != checksum(ev):
                result.corrupt.append((seq, output))
            if output not in expected[seq]:
                result.misrouted.append((seq, output))
        seen[output] = counts
        result.copies[output] = sum(counts.values())
        result.delivered[output] = len(counts)
        result.duplicates[output] = sum(c - 1 for c in counts.values())
    for seq, outputs in expected.items():
        if seq in dumped:
            continue
        if not outputs:
            if seq not in filtered:
                result.lost.append((seq, None))
            continue
        for output in outputs:
            if not seen.get(output, {}).get(seq):
                result.lost.append((seq, output))
    return result
