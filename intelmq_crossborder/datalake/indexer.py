"""The bulk indexer of the data lake: one ``_bulk`` loop with per-document retries.

:meth:`BulkIndexer.send` indexes a list of :class:`~intelmq_crossborder.datalake.elastic.Doc`
with the official client's ``helpers.streaming_bulk``.  Each item of the answer is classified
(:func:`~intelmq_crossborder.datalake.elastic.classify_item`):

* indexed (2xx): counted;
* retry (429, 5xx), or the whole request failed (HTTP 429/5xx, refused connection, timeout):
  only those documents are sent again after :class:`~intelmq_crossborder.core.retry.Backoff`'s
  wait, at most ``max_retries`` times; then :class:`FlushFailed` names the documents left;
* refused (any other 4xx, e.g. a mapping error): returned with the server's reason, and handed
  to ``on_refused`` at once when given.

A 4xx answer to the whole request, or to a template or policy put before it (401, 403, 400), is
:class:`BulkRequestRefused`: a configuration problem, not something a retry fixes.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, List, NamedTuple, Optional

from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.datalake import elastic
from intelmq_crossborder.datalake.lifecycle import Lifecycle, LifecycleRefused

__all__ = ["BulkIndexer", "Refused", "FlushFailed", "BulkRequestRefused"]


class FlushFailed(CrossBorderError, RuntimeError):
    """The lake did not take every document after all retries; ``pending`` are those it did not take."""

    def __init__(self, message: str, pending: list):
        super().__init__(message)
        self.pending = pending


class BulkRequestRefused(CrossBorderError):
    """The lake refused the whole ``_bulk`` request, or a template or policy put before it, with a 4xx
    other than 429 (credentials, rights, an API the server does not have)."""


class Refused(NamedTuple):
    """A document the lake refused, with the HTTP status of its item and the server's reason."""

    doc: elastic.Doc
    status: int
    reason: str


class BulkIndexer:
    """``connect()`` builds the client; it is called at the first send (and again after it failed),
    so a lake that is down at start-up is retried like any refused connection."""

    def __init__(self, connect: Callable[[], object], backoff: Backoff, *, max_retries: int = 5,
                 chunk_size: int = 500, max_chunk_bytes: int = 10 * 1024 * 1024,
                 lifecycle: Optional[Lifecycle] = None, logger: Optional[logging.Logger] = None,
                 sleep: Callable[[float], None] = time.sleep):
        self._connect, self._client = connect, None
        self.backoff, self.max_retries = backoff, max_retries
        self.chunk_size, self.max_chunk_bytes = max(1, chunk_size), max_chunk_bytes
        self.lifecycle = lifecycle
        self.logger = logger or logging.getLogger(__name__)
        self.sleep = sleep
        self.indexed = 0
        self.rejected = 0

    def client(self):
        if self._client is None:
            self._client = self._connect()
        return self._client

    def send(self, docs: List[elastic.Doc],
             on_refused: Optional[Callable[[Refused], None]] = None) -> List[Refused]:
        """Index ``docs``; returns what the lake refused. Raises :class:`FlushFailed` (with the
        documents not indexed) after ``max_retries`` retries, :class:`BulkRequestRefused` on a 4xx
        answer to the whole request."""
        from elastic_transport import TransportError
        from elasticsearch import ApiError, helpers

        pending: List[elastic.Doc] = list(docs)
        refused: List[Refused] = []
        attempt = 0
        while pending:
            results: list = []
            failure: Optional[str] = None
            try:
                client = self.client()
                if self.lifecycle is not None:
                    self.lifecycle.ensure(client, (d.source for d in pending))
                for _ok, item in helpers.streaming_bulk(
                        client, (d.action() for d in pending), chunk_size=self.chunk_size,
                        max_chunk_bytes=self.max_chunk_bytes, raise_on_error=False,
                        raise_on_exception=True, max_retries=0, yield_ok=True):
                    results.append(item)
            except ApiError as exc:
                if not _retryable(exc.status_code):
                    raise BulkRequestRefused(f"the lake refused the bulk request ({exc.status_code}: "
                                             f"{exc.message})") from None
                failure = f"HTTP {exc.status_code} {exc.message}"
            except LifecycleRefused as exc:
                if not _retryable(exc.status):
                    raise BulkRequestRefused(f"the lake refused {exc}") from None
                failure = str(exc)
            except (TransportError, elastic.ElasticConfigError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            retry = []
            for i, doc in enumerate(pending):
                if i >= len(results):          # not answered: the request failed on the way
                    retry.append(doc)
                    continue
                outcome, status, reason = elastic.classify_item(results[i])
                if outcome == elastic.INDEXED:
                    self.indexed += 1
                elif outcome == elastic.RETRY:
                    retry.append(doc)
                    failure = failure or f"status {status} {reason}"
                else:
                    self.rejected += 1
                    one = Refused(doc, status, reason)
                    refused.append(one)
                    if on_refused is not None:
                        on_refused(one)
            pending = retry
            if not pending:
                break
            attempt += 1
            if attempt > self.max_retries:
                raise FlushFailed(f"{len(pending)} of {len(docs)} events not indexed after "
                                  f"{self.max_retries} retries, kept for later: {failure}", pending)
            delay = self.backoff.delay(attempt)
            self.logger.info("Lake busy or unreachable (%s), retrying %d events in %.2f s.",
                             failure, len(pending), delay)
            self.sleep(delay)
        return refused


def _retryable(status: int) -> bool:
    return status in elastic.RETRY_STATUSES or status >= 500
