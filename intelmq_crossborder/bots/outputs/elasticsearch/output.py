"""Cross-border Elasticsearch / OpenSearch output: bulk-index events into the hub's data lake."""
from __future__ import annotations

import threading
import time
import traceback
from datetime import datetime, timezone

from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue
from intelmq.lib.message import MessageFactory

from intelmq_crossborder.datalake import elastic

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.retry import Backoff

JOURNAL_KEY = "intelmq-crossborder:es-journal:{bot_id}"


class FlushFailed(RuntimeError):
    """The lake did not take the batch after all retries; the batch is kept and retried later."""


class CrossBorderElasticsearchOutputBot(OutputBot):
    """
    Bulk-index events into Elasticsearch 8/9 or OpenSearch 2 (the hub's data lake).

    Uses the official elasticsearch client and its bulk helpers. Events are batched
    (bulk_size events or bulk_max_seconds, whichever comes first); a buffered event
    is first written to a Redis journal, then acknowledged, so a crash loses
    nothing: the journal is indexed again at the next start (document ids are
    deterministic, so that is idempotent). Documents the server throttles (429) or
    cannot take right now are retried one by one with exponential backoff; a
    document the server refuses (mapping error) is dumped with the server's reason.
    Index names rotate daily or monthly and carry the retention period of the
    sharing agreement (sharing.retention_days) which selects an ILM (Elasticsearch)
    or ISM (OpenSearch) delete policy. An index template is generated from the
    cross-border harmonization. sharing.tlp is stored on every document (the event's
    effective TLP, tlp.event_tlp; default_tlp when it has no label; an unreadable label is
    dumped); events above tlp_ceiling never enter the index (filtered, counted, logged at
    debug, or sent to the optional path "above_ceiling"). A hidden source's fields
    (tlp.SOURCE_FIELDS) are left out of the document.
    """

    hosts: list = ["http://127.0.0.1:9200"]
    server_flavour: str = "elasticsearch9"
    api_token: str = None  # the Elasticsearch API key; "token" in the name makes IntelMQ hide it in its logs
    username: str = None
    password: str = None
    verify_certs: bool = True
    ca_certs: str = None
    request_timeout: float = 30.0
    index_prefix: str = "crossborder-events"
    rotation: str = "daily"
    tlp_ceiling: str = "GREEN"
    default_tlp: str = "AMBER"
    default_retention_days: int = None
    manage_templates: bool = True
    number_of_shards: int = 1
    number_of_replicas: int = 1
    drop_fields: list = ["raw"]
    id_fields: list = ["provenance.fingerprint", "provenance.event_uuid"]
    bulk_size: int = 500
    bulk_max_seconds: float = 5.0
    max_chunk_bytes: int = 10 * 1024 * 1024
    max_retries: int = 5
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    journal: bool = True
    journal_redis_host: str = "127.0.0.1"
    journal_redis_port: int = 6379
    journal_redis_db: int = 2
    journal_redis_password: str = None

    _client = None

    def init(self):
        params = {name: getattr(self, name) for name in (
            "tlp_ceiling", "default_tlp", "server_flavour", "rotation", "index_prefix", "bulk_size",
            "max_retries", "default_retention_days")}
        for problem in self.check(params) or []:
            raise ConfigurationError("elasticsearch output", problem[1])
        if isinstance(self.hosts, str):
            self.hosts = [h.strip() for h in self.hosts.split(",") if h.strip()]
        try:
            self._backoff = Backoff(self.initial_backoff, self.max_backoff)
        except ValueError as exc:
            raise ConfigurationError("elasticsearch output", f"parameters initial_backoff/max_backoff: {exc}") from None
        self._ceiling = tlp.parse_level(self.tlp_ceiling, "parameter tlp_ceiling")
        self._default_level = tlp.parse_level(self.default_tlp, "parameter default_tlp")
        self._mapping = elastic.mapping_from_harmonization(
            {"event": {k: v for k, v in self.harmonization["event"].items()}}, drop_fields=self.drop_fields)
        self._templates_done: set = set()
        self._buffer: list = []
        self._buffer_since = None
        self._lock = threading.RLock()
        self._stop_timer = threading.Event()
        self._shut_down = False
        self.filtered = 0
        self.indexed = 0
        self.rejected = 0
        self._redis = None
        self._journal_key = JOURNAL_KEY.format(bot_id=self.bot_id)
        self._client = elastic.make_client(
            self.hosts, self.server_flavour, api_key=self.api_token, username=self.username,
            password=self.password, verify_certs=self.verify_certs, ca_certs=self.ca_certs,
            request_timeout=self.request_timeout) if self.server_flavour != "opensearch2" else None
        if self.bulk_size > 1 and self.journal:
            import redis
            self._redis = redis.Redis(host=self.journal_redis_host, port=self.journal_redis_port,
                                      db=self.journal_redis_db, password=self.journal_redis_password)
            self._recover_journal()
        if self.bulk_size > 1:
            self._timer = threading.Thread(target=self._timer_loop, name="es-flush-timer", daemon=True)
            self._timer.start()

    # -- client ------------------------------------------------------------------
    def _get_client(self):
        # opensearch2 reads GET / first; done lazily so a lake that is down at
        # start-up is retried like any other refused connection.
        if self._client is None:
            self._client = elastic.make_client(
                self.hosts, self.server_flavour, api_key=self.api_token, username=self.username,
                password=self.password, verify_certs=self.verify_certs, ca_certs=self.ca_certs,
                request_timeout=self.request_timeout)
        return self._client

    # -- messages ----------------------------------------------------------------
    def process(self):
        # A batch that is due (or left over from a failed flush) goes first: while
        # the lake is down no new message is taken from the queue.
        if self._buffer and (len(self._buffer) >= self.bulk_size or self._due()):
            self.flush()
        event = self.receive_message()
        doc = self._document(event)
        if doc is None:
            return
        if self.bulk_size <= 1:
            self._index_now(doc)
            self.acknowledge_message()
            return
        with self._lock:
            if self._redis is not None:
                self._redis.lpush(self._journal_key, MessageFactory.serialize(event))
            self.acknowledge_message()
            self._buffer.append(doc)
            if self._buffer_since is None:
                self._buffer_since = time.monotonic()
        if len(self._buffer) >= self.bulk_size:
            self.flush()

    def _document(self, event, recovering: bool = False):
        flat = event.to_dict(hierarchical=False)
        try:
            level = elastic.event_level(flat, self._default_level)
        except tlp.UnknownTLPError as exc:
            field = getattr(exc, "field", "sharing.tlp")
            raise InvalidValue(field, exc.value, reason=f"{exc}; the event is dumped") from None
        if level > self._ceiling:
            self.filtered += 1
            self.logger.debug("Event with TLP %s is above the index ceiling %s: not indexed (%d so far).",
                              level.label, self._ceiling.label, self.filtered)
            if recovering:   # from the journal: already acknowledged, the ceiling was lowered since
                return None
            self.send_message(event, path="above_ceiling", path_permissive=True)
            self.acknowledge_message()
            return None
        when = flat.get("time.observation")
        try:
            when = datetime.fromisoformat(when) if when else datetime.now(timezone.utc)
        except ValueError:
            when = datetime.now(timezone.utc)
        doc = elastic.build_document(
            flat, level=level, prefix=self.index_prefix, rotation=self.rotation,
            default_retention_days=self.default_retention_days, now=when,
            drop_fields=self.drop_fields, id_fields=self.id_fields)
        doc.event = event
        return doc

    def _index_now(self, doc):
        """bulk_size 1: index, retry, and acknowledge only afterwards; a refused document is dumped."""
        rejected = self._send_batch([doc], dump=False)
        if rejected:
            reason = rejected[0][1]
            raise InvalidValue("document", doc.id, reason=f"the lake refused the document: {reason}")

    # -- batches -----------------------------------------------------------------
    def _due(self) -> bool:
        return self._buffer_since is not None and time.monotonic() - self._buffer_since >= self.bulk_max_seconds

    def _timer_loop(self):
        tick = max(0.05, min(1.0, self.bulk_max_seconds / 4))
        while not self._stop_timer.wait(tick):
            if self._buffer and self._due():
                try:
                    self.flush()
                except Exception as exc:  # kept in the buffer; retried at the next tick/message
                    self.logger.warning("Timed flush failed, %d events kept for the next attempt: %s.",
                                        len(self._buffer), exc)

    def flush(self):
        """Index the buffer. Raises FlushFailed (buffer and journal kept) when the lake stays unavailable."""
        with self._lock:
            if not self._buffer:
                return
            batch = list(self._buffer)
            try:
                self._send_batch(batch, dump=True)
            except FlushFailed as exc:
                self._buffer_since = time.monotonic()  # wait a full period before the timer tries again
                raise exc
            self._buffer.clear()
            self._buffer_since = None
            if self._redis is not None:
                self._redis.delete(self._journal_key)

    def _send_batch(self, batch: list, dump: bool) -> list:
        """Index ``batch``; retries what is retryable; returns [(doc, reason)] refused by the lake."""
        from elasticsearch import ApiError, helpers
        from elastic_transport import TransportError

        pending, refused, attempt = list(batch), [], 0
        while pending:
            results, failure = [], None
            try:
                client = self._get_client()
                self._ensure_templates(client, pending)
                for _ok, item in helpers.streaming_bulk(
                        client, (d.action() for d in pending), chunk_size=max(1, self.bulk_size),
                        max_chunk_bytes=self.max_chunk_bytes, raise_on_error=False,
                        raise_on_exception=True, max_retries=0, yield_ok=True):
                    results.append(item)
            except ApiError as exc:
                if exc.status_code not in elastic.RETRY_STATUSES and exc.status_code < 500:
                    raise ConfigurationError("elasticsearch output",
                                             f"the lake refused the bulk request ({exc.status_code}: {exc.message})") from None
                failure = f"HTTP {exc.status_code} {exc.message}"
            except (TransportError, elastic.ElasticConfigError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            retry = []
            for i, doc in enumerate(pending):
                if i >= len(results):
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
                    refused.append((doc, reason))
                    if dump:
                        self._dump_refused(doc, status, reason)
            pending = retry
            if not pending:
                break
            attempt += 1
            if attempt > self.max_retries:
                # keep only the unindexed documents (the journal is rewritten to match)
                self._keep(pending)
                raise FlushFailed(f"{len(pending)} of {len(batch)} events not indexed after "
                                  f"{self.max_retries} retries, kept for later: {failure}")
            delay = self._backoff.delay(attempt)
            self.logger.info("Lake busy or unreachable (%s), retrying %d events in %.2f s.",
                             failure, len(pending), delay)
            time.sleep(delay)
        return refused

    def _keep(self, pending: list):
        if self._buffer is None or pending is None:
            return
        ids = {id(d) for d in pending}
        if not any(id(d) in ids for d in self._buffer):
            return   # bulk_size 1: the message is not acknowledged, IntelMQ retries it
        self._buffer[:] = [d for d in self._buffer if id(d) in ids]
        if self._redis is not None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._journal_key)
            for doc in self._buffer:
                pipe.lpush(self._journal_key, MessageFactory.serialize(doc.event))
            pipe.execute()

    def _dump_refused(self, doc, status, reason):
        self.logger.error("The lake refused document %s in %s (status %s): %s; the event is dumped.",
                          doc.id, doc.index, status, reason.rstrip("."))
        exc = InvalidValue("document", doc.id, reason=f"the lake refused the document (status {status}): {reason}")
        self._dump_message(traceback.format_exception_only(type(exc), exc), message=doc.event)

    def _ensure_templates(self, client, docs):
        if not self.manage_templates:
            return
        for days in sorted({d.source.get("sharing", {}).get("retention_days", self.default_retention_days) or 0
                            for d in docs}):
            if days in self._templates_done:
                continue
            if days:
                if self.server_flavour == "opensearch2":
                    from elasticsearch import ConflictError
                    try:
                        client.perform_request(
                            "PUT", f"/_plugins/_ism/policies/{elastic.policy_name(self.index_prefix, days)}",
                            headers={"accept": "application/json", "content-type": "application/json"},
                            body=elastic.ism_policy(self.index_prefix, days))
                    except ConflictError:
                        pass  # exists already (ISM answers 409); never overwritten here
                else:
                    body = elastic.ilm_policy(days)
                    client.ilm.put_lifecycle(name=elastic.policy_name(self.index_prefix, days),
                                             policy=body["policy"])
            tpl = elastic.index_template(self.index_prefix, days or None, self._mapping, self.server_flavour,
                                         self.number_of_shards, self.number_of_replicas)
            client.indices.put_index_template(name=elastic.template_name(self.index_prefix, days or None),
                                              index_patterns=tpl["index_patterns"], priority=tpl["priority"],
                                              template=tpl["template"], meta=tpl["_meta"])
            self._templates_done.add(days)
            self.logger.info("Index template %s is in place.", elastic.template_name(self.index_prefix, days or None))

    def _recover_journal(self):
        raw = self._redis.lrange(self._journal_key, 0, -1)
        if not raw:
            return
        for item in reversed(raw):      # LPUSH: oldest at the right
            event = MessageFactory.unserialize(item, harmonization=self.harmonization)
            doc = self._document_for_recovery(event)
            if doc is not None:
                self._buffer.append(doc)
        self._buffer_since = time.monotonic() - self.bulk_max_seconds
        self.logger.info("Recovered %d buffered events from the journal; they are indexed first.",
                         len(self._buffer))

    def _document_for_recovery(self, event):
        try:
            return self._document(event, recovering=True)
        except InvalidValue:
            return None

    def shutdown(self):
        # IntelMQ may call this twice (stop(), then Bot.__del__ at interpreter exit): once is enough,
        # and a second flush at exit could block on a half-torn-down connection pool.
        if getattr(self, "_shut_down", True):
            return
        self._shut_down = True
        self._stop_timer.set()
        if self._buffer:
            try:
                self.flush()
            except Exception as exc:
                self.logger.warning("%d buffered events not indexed at shutdown; they stay in the journal "
                                    "and are indexed at the next start: %s.", len(self._buffer), exc)
        self.logger.info("Indexed %d, refused and dumped %d, filtered above TLP %s: %d.",
                         self.indexed, self.rejected, self._ceiling.label, self.filtered)

    @staticmethod
    def check(parameters: dict):
        results = []
        for name in ("tlp_ceiling", "default_tlp"):
            if name in parameters and parameters[name] is not None:
                try:
                    tlp.parse_level(parameters[name], f"parameter {name}")
                except tlp.UnknownTLPError as exc:
                    results.append(["error", f"Parameter {name}: {exc}."])
        flavour = parameters.get("server_flavour", "elasticsearch9")
        if flavour not in elastic.FLAVOURS:
            results.append(["error", f"Parameter server_flavour must be one of {', '.join(elastic.FLAVOURS)}."])
        rotation = parameters.get("rotation", "daily")
        if rotation not in elastic.ROTATIONS:
            results.append(["error", f"Parameter rotation must be one of {', '.join(elastic.ROTATIONS)}."])
        problem = elastic.check_prefix(parameters.get("index_prefix", "crossborder-events"))
        if problem:
            results.append(["error", f"Parameter {problem}."])
        for name in ("bulk_size", "max_retries"):
            value = parameters.get(name)
            if value is not None and (not isinstance(value, int) or value < (1 if name == "bulk_size" else 0)):
                results.append(["error", f"Parameter {name} must be a positive integer."])
        days = parameters.get("default_retention_days")
        if days is not None and (not isinstance(days, int) or days < 0):
            results.append(["error", "Parameter default_retention_days must be a positive integer or null."])
        return results or None


BOT = CrossBorderElasticsearchOutputBot
