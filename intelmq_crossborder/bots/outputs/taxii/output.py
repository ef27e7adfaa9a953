"""Cross-border TAXII 2.1 output: push one recipient's events as STIX 2.1 objects to its collection."""
from __future__ import annotations

import traceback

from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue
from intelmq.lib.message import MessageFactory

from intelmq_crossborder.core import secrets, tlp
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.datalake.indexer import FlushFailed
from intelmq_crossborder.datalake.journal import Batch, Journal
from intelmq_crossborder.formats.stix import export, taxii
from intelmq_crossborder.policy import retraction
from intelmq_crossborder.runtime.state_store import redis_client
from intelmq_crossborder.runtime.retraction import received_retraction

__all__ = ["CrossBorderTAXIIOutputBot", "BOT", "PARAMETERS", "read_parameters"]


class CrossBorderTAXIIOutputBot(OutputBot):
    """Push one recipient's events as STIX 2.1 objects (an indicator or observed-data per event, deterministic ids, TLP 2.0 or OpenCTI markings) to its TAXII 2.1 collection, in batches journaled in Redis, polling each status until every object is accepted or refused; RED, AMBER+STRICT, unlabelled events and what the server refuses are dumped, retractions revoke what was pushed. Details: docs/bots/stix.md."""

    taxii_url: str = ""
    api_root: str = ""
    collection: str = ""
    username: str = ""
    password: str = ""
    password_env: str = "TAXII_PASSWORD"
    api_token: str = ""
    api_token_env: str = ""
    api_key_header: str = "Authorization"
    api_key_prefix: str = ""
    verify_ssl: bool = True
    http_timeout_sec: float = 60.0
    hub_id: str = ""
    recipient_profile: str = "oasis"
    export_kind: str = "indicator"
    max_tlp: str = "AMBER"
    push_extension_definition: bool = True
    batch_size: int = 100
    batch_max_seconds: float = 5.0
    poll_interval: float = 1.0
    poll_timeout: float = 60.0
    retry_attempts: int = 5
    retry_backoff: float = 1.0
    retry_max_backoff: float = 60.0
    journal: bool = True
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 2
    redis_password: str = ""

    _batch: Batch = None
    _pusher: taxii.Pusher = None
    _shut_down = True

    def init(self):
        values, problems = read_parameters({name: getattr(self, name) for name in PARAMETERS})
        if problems:
            raise ConfigurationError("taxii output", " ".join(problems))
        for name, value in values.items():
            setattr(self, name, value)
        self._settings = export.ExportSettings(self.hub_id, kind=self.export_kind, profile=self.recipient_profile,
                                               max_tlp=tlp.parse_level(self.max_tlp, "parameter max_tlp"))
        password = secrets.secret(self.password or None, self.password_env or None)
        token = secrets.secret(self.api_token or None, self.api_token_env or None)
        for value in (password, token):
            secrets.redact_in_logs(value, self.logger)
        if self.username and not password:
            raise ConfigurationError("taxii output", f"username is set but no password: set the environment variable "
                                                     f"{self.password_env or '(password_env)'}")
        self._connection = taxii.Connection(
            self.taxii_url, user=self.username or None, password=password, api_key=token,
            api_key_header=self.api_key_header, api_key_prefix=self.api_key_prefix, verify=self.verify_ssl,
            timeout=self.http_timeout_sec, attempts=self.retry_attempts,
            backoff=Backoff(self.retry_backoff, self.retry_max_backoff), logger=self.logger)
        self._pusher = None
        try:
            self._resolve()
        except taxii.TAXIIUnavailable as exc:
            # the server is down: start anyway, the events wait in the journal until it is back
            self.logger.warning("TAXII server not reachable at start, the collection is looked up again at the "
                                "first push: %s.", exc)
        self._known: set = set()
        self.pushed = self.refused = self.retracted = 0
        redis = redis_client(self.redis_host, self.redis_port, self.redis_db, self.redis_password or None)
        self._store = taxii.PushedStore(redis, f"intelmq-crossborder:taxii:{self.bot_id}")
        journal = Journal(redis, f"intelmq-crossborder:taxii-journal:{self.bot_id}") if self.journal else None
        self._batch = Batch(self.batch_size, self.batch_max_seconds, journal)
        recovered = self._batch.recover(self._recovered)
        if recovered:
            self.logger.info("Recovered %d journaled events; they are pushed first.", recovered)
        if self.batch_size > 1:
            self._batch.start_timer(self._flush, self._timed_flush_failed)
        self._shut_down = False

    def _resolve(self) -> taxii.Pusher:
        """The pusher of the collection (looked up once); ConfigurationError for a collection that
        is not there or not writable, TAXIIUnavailable while the server cannot be reached."""
        if self._pusher is None:
            try:
                target = self._connection.collection(self.collection, self.api_root or None)
            except taxii.TAXIIUnavailable:
                raise
            except taxii.TAXIIError as exc:
                raise ConfigurationError("taxii output", str(exc)) from None
            if target.can_write is False:
                raise ConfigurationError("taxii output", f"collection {self.collection!r} at {self.taxii_url} is "
                                                         "not writable for these credentials")
            self._pusher = taxii.Pusher(self._connection, target, poll_interval=self.poll_interval,
                                        poll_timeout=self.poll_timeout)
            self.logger.info("Pushing to TAXII collection %r (%s) at %s, profile %s, up to TLP:%s.", target.title,
                             target.id, self.taxii_url, self.recipient_profile, self._settings.max_tlp.label)
        return self._pusher

    # --- messages ------------------------------------------------------------------------
    def process(self):
        if self._batch.ready():
            self._flush()
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        if retraction.is_retraction(flat):
            self._flush()                 # what the retraction names may be in the batch
            self._retract(flat)
            self.acknowledge_message()
            return
        item = self._outgoing(flat, event)
        self._batch.add(item, MessageFactory.serialize(event), self.acknowledge_message)
        if self._batch.full():
            self._flush()

    def _outgoing(self, flat: dict, event) -> taxii.Outgoing:
        """The objects of one event, or InvalidValue (the event is dumped) naming the field."""
        try:
            copy, level = export.admit(flat, self._settings)
            out = export.event_objects(copy, level, self._settings)
        except export.ExportRefused as exc:
            raise InvalidValue(exc.field, exc.value, reason=f"{exc.reason} (TAXII collection {self.collection})") \
                from None
        ids = {name: flat.get(name) for name in ("provenance.event_uuid", "provenance.fingerprint")}
        return taxii.Outgoing(out.objects, out.level, [out.identity] if out.identity else [],
                              ids["provenance.event_uuid"] or None, ids["provenance.fingerprint"] or None, event)

    def _recovered(self, raw: bytes):
        event = MessageFactory.unserialize(raw, harmonization=self.harmonization)
        try:
            return self._outgoing(event.to_dict(hierarchical=False), event)
        except InvalidValue as exc:
            self.logger.warning("A journaled event is not pushed, it is no longer admitted: %s.", exc)
            return None

    # --- pushing -------------------------------------------------------------------------
    def _flush(self):
        """Push the batch; FlushFailed (what is pending stays in the batch and the journal)."""
        self._batch.flush(self._send)

    def _send(self, items: list) -> None:
        definitions = self._definitions({i.level for i in items})
        try:
            outcome = taxii.push_batch(self._resolve(), items, definitions, self._known)
        except taxii.TAXIIError as exc:
            raise FlushFailed(str(exc), items) from None
        for item in outcome.done:
            self._store.record(item)
        self.pushed += len(outcome.done)
        for item, reason in outcome.refused:
            self._dump_refused(item, reason)
        if outcome.pending:
            raise FlushFailed(outcome.error or "objects pending", outcome.pending)

    def _definitions(self, levels: set) -> list:
        """The marking definitions of ``levels`` (and the TLP 2.0 extension definition, unless
        push_extension_definition is false)."""
        objects = export.definitions(self.recipient_profile, levels)
        if not self.push_extension_definition:
            objects = [o for o in objects if o["type"] != "extension-definition"]
        return objects

    def _dump_refused(self, item: taxii.Outgoing, reason: str) -> None:
        self.refused += 1
        self.logger.error("The TAXII server refused %s: %s; the event is dumped.", item.primary["id"],
                          reason.rstrip("."))
        exc = InvalidValue("extra.stix_id", item.primary["id"], reason=f"the TAXII server refused it: {reason}")
        self._dump_message(traceback.format_exception_only(type(exc), exc), message=item.message)

    def _timed_flush_failed(self, exc: Exception):
        self.logger.warning("Timed push failed, %d events kept for the next attempt: %s.", len(self._batch), exc)

    # --- retractions -----------------------------------------------------------------------
    def _retract(self, flat: dict) -> None:
        notice = received_retraction(flat, "the retraction is not applied")
        if notice.is_confirmation:
            self.logger.debug("Retraction confirmation %s ignored.", notice.id)
            return
        held = self._store.held(notice.target_event_uuid, notice.target_fingerprint)
        updates = []
        for label, obj in held:
            level = tlp.Level.from_label(label)
            what = retraction.instruction(notice, event_uuid=notice.target_event_uuid,
                                          fingerprint=notice.target_fingerprint, level=level,
                                          ceiling=self._settings.max_tlp)
            if what == retraction.KEEP:
                continue
            if what == retraction.RELABEL:
                new = notice.new_level(level)
                updates.append((export.relabelled(obj, new, self.recipient_profile), new))
            else:
                updates.append((export.revoked(obj), level))
        if not updates:
            self.logger.info("Retraction %s (%s): nothing of it was pushed to this collection.", notice.id,
                             notice.target)
            return
        items = [taxii.Outgoing([obj], level) for obj, level in updates]
        definitions = self._definitions({lvl for _, lvl in updates})
        outcome = taxii.push_batch(self._resolve(), items, definitions, self._known)
        if outcome.pending or outcome.refused:
            reasons = outcome.error or "; ".join(r for _, r in outcome.refused)
            raise ConnectionError(f"retraction {notice.id} not applied at the TAXII server: {reasons}")
        for obj, level in updates:
            self._store.replace(obj, level)
        self.retracted += len(updates)
        self.logger.info("Retraction %s (%s, %s): %d object version(s) pushed.", notice.id, notice.action,
                         notice.target, len(updates))

    def shutdown(self):
        if self._shut_down:
            return
        self._shut_down = True
        self._batch.stop_timer()
        if len(self._batch):
            try:
                self._flush()
            except Exception as exc:  # noqa: BLE001 - the journal keeps them for the next start
                self.logger.warning("%d buffered events not pushed at shutdown; they stay in the journal: %s.",
                                    len(self._batch), exc)
        self.logger.info("Pushed %d events, %d refused and dumped, %d retraction updates.", self.pushed,
                         self.refused, self.retracted)

    @staticmethod
    def check(parameters: dict):
        _, problems = read_parameters(parameters)
        return [["error", problem] for problem in problems] or None


BOT = CrossBorderTAXIIOutputBot

#: every parameter and how it is read; an unset value ('' from IntelMQ Manager, null, missing) is the default
PARAMETERS = {
    "taxii_url": str, "api_root": str, "collection": str, "username": str, "password": str, "password_env": str,
    "api_token": str, "api_token_env": str, "api_key_header": str, "api_key_prefix": str, "verify_ssl": bool,
    "http_timeout_sec": float, "hub_id": str, "recipient_profile": str, "export_kind": str, "max_tlp": str,
    "push_extension_definition": bool,
    "batch_size": int, "batch_max_seconds": float, "poll_interval": float, "poll_timeout": float,
    "retry_attempts": int, "retry_backoff": float, "retry_max_backoff": float, "journal": bool,
    "redis_host": str, "redis_port": int, "redis_db": int, "redis_password": str,
}
_MINIMUM = {"batch_size": 1, "batch_max_seconds": 0, "poll_interval": 0, "poll_timeout": 0, "retry_attempts": 0,
            "retry_backoff": 0, "redis_port": 1, "redis_db": 0, "http_timeout_sec": 0}
_REQUIRED = ("taxii_url", "collection", "hub_id")


def read_parameters(parameters: dict) -> tuple:
    """(values, problems) of the output's parameters (``taxii.read_parameters``)."""
    defaults = {name: getattr(CrossBorderTAXIIOutputBot, name) for name in PARAMETERS}
    return taxii.read_parameters(parameters, defaults, _MINIMUM, _REQUIRED)
