"""Cross-border Elasticsearch / OpenSearch output: bulk-index events into the hub's data lake."""
from __future__ import annotations

import os
import traceback
from datetime import datetime, timezone

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue
from intelmq.lib.message import MessageFactory

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.datalake import elastic, retract
from intelmq_crossborder.datalake.indexer import BulkIndexer, BulkRequestRefused, Refused
from intelmq_crossborder.datalake.journal import Batch, Journal, journal_key
from intelmq_crossborder.datalake.lifecycle import Lifecycle
from intelmq_crossborder.core.parameters import as_float, as_int, as_list, is_unset
from intelmq_crossborder.policy.retraction import is_retraction
from intelmq_crossborder.runtime.state_store import redis_client
from intelmq_crossborder.runtime.retraction import received_retraction

__all__ = ["CrossBorderElasticsearchOutputBot", "BOT", "PARAMETERS"]


class CrossBorderElasticsearchOutputBot(OutputBot):
    """Bulk-index events into Elasticsearch 8/9 or OpenSearch 2, the hub's data lake: batches are journaled in Redis so that no acknowledged event is lost, document ids are deterministic, throttled documents are retried, and each sharing agreement's retention period selects an ILM/ISM delete policy; events above tlp_ceiling are not indexed; a retraction deletes (or relabels) the documents it names and leaves a tombstone. Details: docs/bots/elasticsearch.md."""

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
    retraction_ids_file: str = None   # default: <IntelMQ var/lib/bots>/<bot id>.lake-ids.sqlite

    _batch: Batch = None          # None: bulk_size 1, each event indexed, then acknowledged
    _idmap: retract.IdMap = None  # the original ids of hidden-source documents (init())
    _shut_down = True             # until init() has run

    def init(self):
        values, problems = _read_parameters({name: getattr(self, name) for name in PARAMETERS})
        if problems:
            raise ConfigurationError("elasticsearch output", "; ".join(problems))
        for name, value in values.items():
            setattr(self, name, value)
        self._ceiling = tlp.parse_level(self.tlp_ceiling, "parameter tlp_ceiling")
        self._default_level = tlp.parse_level(self.default_tlp, "parameter default_tlp")
        self.filtered = 0
        mapping = elastic.mapping_from_harmonization(
            {"event": dict(self.harmonization["event"])}, drop_fields=self.drop_fields)
        lifecycle = Lifecycle(self.index_prefix, mapping, self.server_flavour, shards=self.number_of_shards,
                              replicas=self.number_of_replicas, default_retention_days=self.default_retention_days,
                              manage=self.manage_templates, logger=self.logger)
        self._indexer = BulkIndexer(
            self._connect, Backoff(self.initial_backoff, self.max_backoff), max_retries=self.max_retries,
            chunk_size=self.bulk_size, max_chunk_bytes=self.max_chunk_bytes, lifecycle=lifecycle, logger=self.logger)
        if self.server_flavour != "opensearch2":
            self._indexer.client()      # no request yet; opensearch2 reads GET / at the first flush
        if self.bulk_size > 1:
            journal = None
            if self.journal:
                journal = Journal(redis_client(self.journal_redis_host, self.journal_redis_port,
                                               self.journal_redis_db, self.journal_redis_password),
                                  journal_key(self.bot_id))
            self._batch = Batch(self.bulk_size, self.bulk_max_seconds, journal)
            recovered = self._batch.recover(self._recovered_document)
            if recovered:
                self.logger.info("Recovered %d buffered events from the journal; they are indexed first.", recovered)
            self._batch.start_timer(self._flush, self._timed_flush_failed)
        self._idmap = retract.IdMap(self.retraction_ids_file or
                                    os.path.join(VAR_STATE_PATH, f"{self.bot_id}.lake-ids.sqlite"))
        self._shut_down = False

    def _connect(self):
        return elastic.make_client(
            self.hosts, self.server_flavour, api_key=self.api_token, username=self.username,
            password=self.password, verify_certs=self.verify_certs, ca_certs=self.ca_certs,
            request_timeout=self.request_timeout)

    def process(self):
        # A batch that is due (or left over from a failed flush) goes first: while the lake is
        # down no new message is taken from the queue.
        if self._batch is not None and self._batch.ready():
            self._flush()
        event = self.receive_message()
        if is_retraction(event):
            self._retract(event.to_dict(hierarchical=False))
            self.acknowledge_message()
            return
        doc = self._document(event)
        if doc is None:
            return
        if self._batch is None:
            refused = self._send_batch([doc], dump=False)
            if refused:
                raise InvalidValue("document", doc.id, reason=f"the lake refused the document: {refused[0].reason}")
            self.acknowledge_message()
            return
        self._batch.add(doc, MessageFactory.serialize(event), self.acknowledge_message)
        if self._batch.full():
            self._flush()

    def _document(self, event, recovering: bool = False):
        """The document of ``event``; None when it is above the ceiling (sent to "above_ceiling")."""
        flat = event.to_dict(hierarchical=False)
        try:
            label = elastic.lake_tlp(flat, self._default_level)
        except tlp.UnknownTLPError as exc:
            field = getattr(exc, "field", "sharing.tlp")
            raise InvalidValue(field, exc.value, reason=f"{exc}; the event is dumped") from None
        if label.level > self._ceiling:
            self.filtered += 1
            self.logger.debug("Event with TLP %s is above the index ceiling %s: not indexed (%d so far).",
                              label.level.label, self._ceiling.label, self.filtered)
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
            flat, label=label, prefix=self.index_prefix, rotation=self.rotation,
            default_retention_days=self.default_retention_days, now=when,
            drop_fields=self.drop_fields, id_fields=self.id_fields)
        doc.event = event
        if label.hide_source and self._idmap is not None:
            self._idmap.remember(flat, doc)
        return doc

    def _retract(self, flat: dict):
        """Apply a retraction: the batch goes first (a target still in it, or in the journal, is
        indexed and then deleted with the others), then :func:`retract.apply`."""
        retraction = received_retraction(flat, "the retraction is not applied")
        if self._batch is not None and len(self._batch):
            self._flush()
        deleted, relabelled = retract.apply(
            self._indexer.client(), retraction, prefix=self.index_prefix, ceiling=self._ceiling,
            default=self._default_level, drop_fields=self.drop_fields, idmap=self._idmap)
        self.logger.info("Retraction %s (%s, %s) applied: %d document(s) deleted, %d relabelled; tombstone in "
                         "%s.", retraction.id, retraction.action, retraction.target, deleted, relabelled,
                         retract.tombstone_index(self.index_prefix))

    def _recovered_document(self, raw: bytes):
        event = MessageFactory.unserialize(raw, harmonization=self.harmonization)
        try:
            return self._document(event, recovering=True)
        except InvalidValue as exc:
            self.logger.warning("A journaled event is not indexed, its labels cannot be read: %s.", exc)
            return None

    def _send_batch(self, batch: list, dump: bool) -> list:
        """Index ``batch`` (the library's retry loop); ``dump``: dump each refused document at once."""
        try:
            return self._indexer.send(batch, on_refused=self._dump_refused if dump else None)
        except BulkRequestRefused as exc:
            raise ConfigurationError("elasticsearch output", str(exc)) from None

    def _flush(self):
        """Index the batch; raises FlushFailed (batch and journal kept) when the lake stays unavailable."""
        self._batch.flush(lambda docs: self._send_batch(docs, dump=True))

    def _timed_flush_failed(self, exc: Exception):
        self.logger.warning("Timed flush failed, %d events kept for the next attempt: %s.", len(self._batch), exc)

    def _dump_refused(self, refused: Refused):
        doc, status, reason = refused
        self.logger.error("The lake refused document %s in %s (status %s): %s; the event is dumped.",
                          doc.id, doc.index, status, reason.rstrip("."))
        exc = InvalidValue("document", doc.id, reason=f"the lake refused the document (status {status}): {reason}")
        self._dump_message(traceback.format_exception_only(type(exc), exc), message=doc.event)

    def shutdown(self):
        # IntelMQ may call this twice (stop(), then Bot.__del__ at interpreter exit): once is enough,
        # and a second flush at exit could block on a half-torn-down connection pool.
        if self._shut_down:
            return
        self._shut_down = True
        if self._batch is not None:
            self._batch.stop_timer()
            if len(self._batch):
                try:
                    self._flush()
                except Exception as exc:  # noqa: BLE001 - the journal keeps them for the next start
                    self.logger.warning("%d buffered events not indexed at shutdown; they stay in the journal "
                                        "and are indexed at the next start: %s.", len(self._batch), exc)
        self.logger.info("Indexed %d, refused and dumped %d, filtered above TLP %s: %d.",
                         self._indexer.indexed, self._indexer.rejected, self._ceiling.label, self.filtered)

    @staticmethod
    def check(parameters: dict):
        _, problems = _read_parameters(parameters)
        return [["error", problem] for problem in problems] or None


BOT = CrossBorderElasticsearchOutputBot

#: every parameter and how it is read; an unset value ('' from IntelMQ Manager, null, missing) is the default
PARAMETERS = {
    "hosts": list, "server_flavour": str, "api_token": str, "username": str, "password": str,
    "verify_certs": bool, "ca_certs": str, "request_timeout": float, "index_prefix": str, "rotation": str,
    "tlp_ceiling": str, "default_tlp": str, "default_retention_days": int, "manage_templates": bool,
    "number_of_shards": int, "number_of_replicas": int, "drop_fields": list, "id_fields": list,
    "bulk_size": int, "bulk_max_seconds": float, "max_chunk_bytes": int, "max_retries": int,
    "initial_backoff": float, "max_backoff": float, "journal": bool, "journal_redis_host": str,
    "journal_redis_port": int, "journal_redis_db": int, "journal_redis_password": str,
    "retraction_ids_file": str,
}
_MINIMUM = {"bulk_size": 1, "max_retries": 0, "default_retention_days": 0, "number_of_shards": 1,
            "number_of_replicas": 0, "max_chunk_bytes": 1, "journal_redis_port": 1, "journal_redis_db": 0,
            "bulk_max_seconds": 0}


def _read_parameters(parameters: dict) -> tuple:
    """(values, problems): every parameter of ``parameters`` typed, unset ones as the class default."""
    values, problems = {}, []
    for name, kind in PARAMETERS.items():
        default = getattr(CrossBorderElasticsearchOutputBot, name)
        raw = parameters.get(name)
        try:
            values[name] = _typed(name, kind, raw, default)
        except ValueError as exc:
            problems.append(f"{exc}.")
            values[name] = default
    for name, low in _MINIMUM.items():
        if values[name] is not None and values[name] < low:
            problems.append(f"Parameter {name} must be at least {low}, not {values[name]}.")
    if values["request_timeout"] <= 0:
        problems.append(f"Parameter request_timeout must be above 0, not {values['request_timeout']}.")
    for name in ("tlp_ceiling", "default_tlp"):
        try:
            tlp.parse_level(values[name], f"parameter {name}")
        except tlp.UnknownTLPError as exc:
            problems.append(f"Parameter {name}: {exc}.")
    if values["server_flavour"] not in elastic.FLAVOURS:
        problems.append(f"Parameter server_flavour must be one of {', '.join(elastic.FLAVOURS)}.")
    if values["rotation"] not in elastic.ROTATIONS:
        problems.append(f"Parameter rotation must be one of {', '.join(elastic.ROTATIONS)}.")
    problem = elastic.check_prefix(values["index_prefix"])
    if problem:
        problems.append(f"Parameter {problem}.")
    try:
        Backoff(values["initial_backoff"], values["max_backoff"])
    except ValueError as exc:
        problems.append(f"Parameters initial_backoff/max_backoff: {exc}.")
    if not values["hosts"]:
        problems.append("Parameter hosts must name at least one URL.")
    return values, problems


def _typed(name: str, kind: type, raw, default):
    if kind is int:
        return as_int(raw, default, name)
    if kind is float:
        return as_float(raw, default, name)
    if is_unset(raw):
        return list(default) if isinstance(default, list) else default
    if kind is list:
        try:
            return as_list(raw)
        except ValueError as exc:
            raise ValueError(f"Parameter {name}: {exc}") from None
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise ValueError(f"Parameter {name}: expected true or false, got {raw!r}")
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)             # a password or host name YAML read as a number
    if not isinstance(raw, str):
        raise ValueError(f"Parameter {name}: expected a string, got {type(raw).__name__}")
    return raw
