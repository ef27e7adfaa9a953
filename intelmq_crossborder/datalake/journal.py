"""The batch of the data-lake output and its Redis journal: nothing acknowledged is lost.

IntelMQ holds one unacknowledged message per bot, so a batch cannot be acknowledged after it
was indexed.  Each buffered event is therefore written first to a :class:`Journal` (a Redis
list ``intelmq-crossborder:es-journal:<bot id>``), then acknowledged; the journal is deleted
once the batch is indexed, rewritten to the documents left when a flush fails, and read back
at the next start (document ids are deterministic, so indexing twice is idempotent).

:class:`Batch` is the buffer: it flushes when it holds ``size`` documents or the oldest has
waited ``max_seconds``; a timer thread (:meth:`Batch.start_timer`) flushes an idle batch.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, List, NamedTuple, Optional, Union

from intelmq_crossborder.datalake.elastic import Doc
from intelmq_crossborder.datalake.indexer import FlushFailed

__all__ = ["JOURNAL_KEY", "journal_key", "Journal", "Batch"]

JOURNAL_KEY = "intelmq-crossborder:es-journal:{bot_id}"
Raw = Union[bytes, str]


def journal_key(bot_id: str) -> str:
    return JOURNAL_KEY.format(bot_id=bot_id)


class Journal:
    """Serialised events buffered but not yet indexed, oldest first, in one Redis list."""

    def __init__(self, redis, key: str):
        self.redis, self.key = redis, key

    def append(self, raw: Raw) -> None:
        self.redis.lpush(self.key, raw)

    def entries(self) -> List[bytes]:
        """Oldest first (LPUSH keeps the oldest at the right)."""
        return list(reversed(self.redis.lrange(self.key, 0, -1)))

    def replace(self, raws: Iterable[Raw]) -> None:
        """The journal holds exactly ``raws`` (in one transaction)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key)
        for raw in raws:
            pipe.lpush(self.key, raw)
        pipe.execute()

    def clear(self) -> None:
        self.redis.delete(self.key)

    def __len__(self) -> int:
        return int(self.redis.llen(self.key))


class _Entry(NamedTuple):
    doc: Doc
    raw: Raw


class Batch:
    """Buffered documents with their serialised events; ``journal`` None: a crash loses them."""

    def __init__(self, size: int, max_seconds: float, journal: Optional[Journal] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.size, self.max_seconds, self.journal, self.clock = size, max_seconds, journal, clock
        self.lock = threading.RLock()
        self._entries: List[_Entry] = []
        self._since: Optional[float] = None
        self._stop = threading.Event()
        self._timer: Optional[threading.Thread] = None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, doc: Doc, raw: Raw, acknowledge: Callable[[], None] = lambda: None) -> None:
        """Journal the event, then ``acknowledge`` it, then buffer it (under the lock, so a timed
        flush cannot run in between)."""
        with self.lock:
            if self.journal is not None:
                self.journal.append(raw)
            acknowledge()
            self._entries.append(_Entry(doc, raw))
            if self._since is None:
                self._since = self.clock()

    def full(self) -> bool:
        return len(self._entries) >= self.size

    def due(self) -> bool:
        return self._since is not None and self.clock() - self._since >= self.max_seconds

    def ready(self) -> bool:
        """Something to flush: full, due, or left over from a failed flush (which restarts the wait)."""
        return bool(self._entries) and (self.full() or self.due())

    def flush(self, send: Callable[[List[Doc]], object]) -> None:
        """Hand the documents to ``send``; on success the batch and the journal are emptied.  When
        ``send`` raises :class:`FlushFailed`, only its ``pending`` documents are kept (journal
        rewritten to match), the wait restarts and the error is raised again."""
        with self.lock:
            if not self._entries:
                return
            try:
                send([e.doc for e in self._entries])
            except FlushFailed as exc:
                left = {id(d) for d in exc.pending}
                self._entries = [e for e in self._entries if id(e.doc) in left]
                if self.journal is not None:
                    self.journal.replace(e.raw for e in self._entries)
                self._since = self.clock()
                raise
            self._entries = []
            self._since = None
            if self.journal is not None:
                self.journal.clear()

    def recover(self, load: Callable[[bytes], Optional[Doc]]) -> int:
        """Buffer the journal left by an earlier run (``load``: its document, or None to leave it
        out); due at once.  Returns the number of documents buffered."""
        if self.journal is None:
            return 0
        with self.lock:
            for raw in self.journal.entries():
                doc = load(raw)
                if doc is not None:
                    self._entries.append(_Entry(doc, raw))
            if self._entries:
                self._since = self.clock() - self.max_seconds
            return len(self._entries)

    # --- the timer ------------------------------------------------------------------------
    def start_timer(self, flush: Callable[[], None], on_error: Callable[[Exception], None]) -> None:
        """A daemon thread that calls ``flush`` when the batch is due; ``on_error`` gets what it raised
        (the documents stay for the next attempt)."""
        tick = max(0.05, min(1.0, self.max_seconds / 4))

        def loop() -> None:
            while not self._stop.wait(tick):
                if self.ready():
                    try:
                        flush()
                    except Exception as exc:  # noqa: BLE001 - kept, retried at the next tick or message
                        on_error(exc)

        self._timer = threading.Thread(target=loop, name="es-flush-timer", daemon=True)
        self._timer.start()

    def stop_timer(self) -> None:
        self._stop.set()
