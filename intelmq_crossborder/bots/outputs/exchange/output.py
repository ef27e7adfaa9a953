"""Cross-border exchange output: spool events for one recipient hub and seal them into signed bundles."""
import json
import threading
import time
from pathlib import Path

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.core import secrets, tlp
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.exchange import outgoing, retractions, transfer
from intelmq_crossborder.exchange.seal import SealSchedule, schedule_problems
from intelmq_crossborder.exchange.spool import RedeliveryGuard, Spool
from intelmq_crossborder.formats import bundle
from intelmq_crossborder.core.parameters import is_unset, optional
from intelmq_crossborder.policy.retraction import RetractionError, is_retraction


class CrossBorderExchangeOutputBot(OutputBot):
    """Writes the events of one recipient hub's router path into signed (optionally hybrid post-quantum signed and encrypted) exchange bundles: each event is spooled durably before it is acknowledged, a bundle is sealed by size, age or a daily cut time and optionally pushed to the peer over HTTPS with mutual TLS; events above max_tlp, RED, AMBER+STRICT or without a readable label are dumped. Details: docs/bots/exchange.md."""

    hub_id: str = None
    recipient: str = None
    signing_key_file: str = None
    signing_key_passphrase_env: str = ""
    trust_store: str = ""
    require_encryption: bool = False
    spool_dir: str = ""
    outbox_dir: str = ""
    sent_dir: str = ""
    max_bundle_events: int = 100000
    max_bundle_age: int = 86400
    seal_at: str = ""
    seal_check_interval: int = 60
    seal_on_shutdown: bool = False
    seal_empty: bool = False
    fsync_each_event: bool = False
    compresslevel: int = 6
    max_tlp: str = "AMBER"
    push_url: str = ""
    client_cert: str = ""
    client_key: str = ""
    ca_bundle: str = ""
    push_timeout: int = 60
    push_retry_backoff: float = 60.0
    push_retry_max_backoff: float = 900.0

    _spool: Spool = None
    _schedule: SealSchedule = None
    _redelivery: RedeliveryGuard = None
    _lock = None
    _stop_event = None
    _timer = None
    _pusher: transfer.Pusher = None
    _wake = None

    #: Optional parameters: IntelMQ Manager saves an untouched one as '' (= the class default).
    OPTIONAL = ("signing_key_passphrase_env", "trust_store", "require_encryption", "spool_dir", "outbox_dir", "sent_dir", "max_bundle_events",
                "max_bundle_age", "seal_at", "seal_check_interval", "seal_on_shutdown", "seal_empty",
                "fsync_each_event", "compresslevel", "max_tlp", "push_url", "client_cert", "client_key",
                "ca_bundle", "push_timeout", "push_retry_backoff", "push_retry_max_backoff")

    def init(self):
        for name in self.OPTIONAL:
            setattr(self, name, optional(getattr(self, name), getattr(type(self), name)))
        problems = self.check({name: getattr(self, name) for name in self.CHECKED})
        if problems:
            raise ConfigurationError("exchange output", "; ".join(p[1] for p in problems))
        passphrase = None
        if self.signing_key_passphrase_env:
            text = secrets.secret(None, self.signing_key_passphrase_env)
            if text is None:
                raise ConfigurationError("exchange output", f"environment variable {self.signing_key_passphrase_env} "
                                                            "(signing key passphrase) is not set or empty")
            secrets.redact_in_logs(text, self.logger)
            passphrase = text.encode("utf-8", "surrogateescape")      # the variable's bytes, UTF-8 or not
        try:
            key = bundle.load_signing_keys(self.signing_key_file, passphrase)
        except bundle.BundleError as exc:
            raise ConfigurationError("exchange output", str(exc)) from None
        self.logger.info("Signing bundles for %s with %s.", self.recipient, ", ".join(key.key_ids()))
        base = Path(self.spool_dir or Path(VAR_STATE_PATH) / "crossborder-exchange" / self.bot_id)
        self._outbox = Path(self.outbox_dir) if self.outbox_dir else base / "outbox"
        self._sent = Path(self.sent_dir) if self.sent_dir else base / "sent"
        self._max_level = tlp.parse_level(self.max_tlp, "parameter max_tlp")
        self._schedule = SealSchedule.from_parameters(self.max_bundle_events, self.max_bundle_age, self.seal_at)
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        if self.push_url:
            self._pusher = transfer.Pusher(
                self._outbox, self.push_url, self._session,
                Backoff(float(self.push_retry_backoff), float(self.push_retry_max_backoff)),
                sent_dir=self._sent, timeout=self.push_timeout, logger=self.logger)
        self._spool = Spool(base, self._outbox, self.hub_id, self.recipient, key,
                            fsync_each=self.fsync_each_event, compresslevel=self.compresslevel,
                            sent_dir=self._sent, logger=self.logger,
                            encryption_key=self._encryption_key if self.trust_store or self.require_encryption
                            else None)
        with self._lock:
            try:
                self._spool.recover()
                self._redelivery = RedeliveryGuard(self._spool.redelivery_digest())
                self._seal_if_due()
            except bundle.BundleError as exc:       # the trust store (recipient's key) cannot be used
                raise ConfigurationError("exchange output", str(exc)) from None
        self._push()
        if self.seal_check_interval and self.seal_check_interval > 0:
            self._timer = threading.Thread(target=self._timer_loop, name="exchange-seal-timer", daemon=True)
            self._timer.start()

    #: The parameters check() looks at.
    CHECKED = ("hub_id", "recipient", "signing_key_file", "signing_key_passphrase_env", "trust_store",
               "require_encryption", "max_tlp",
               "max_bundle_events", "max_bundle_age", "seal_at", "push_url", "client_cert", "client_key",
               "push_retry_backoff", "push_retry_max_backoff")

    # --- sealing and pushing -------------------------------------------------------------
    def _encryption_key(self):
        """The recipient's encryption key, from the trust store read again at every seal (a key
        added or revoked takes effect at the next bundle), or None: data in clear."""
        return outgoing.encryption_key_for(self.trust_store or None, self.recipient, self.require_encryption)

    def _seal_if_due(self, now: float = None) -> bool:
        spool = self._spool
        if self._schedule.due(spool.count, spool.opened_at, time.time() if now is None else now):
            return self._seal()
        return False

    def _seal(self) -> bool:
        path = self._spool.seal(seal_empty=self.seal_empty)
        if path is not None and self._pusher is not None:
            self._pusher.mark_pending()
        return path is not None

    def _session(self):
        return transfer.https_session(self.client_cert or None, self.client_key or None, self.ca_bundle or None)

    def _push(self) -> None:
        """One push round now, if one is due (never while backing off after a failure)."""
        if self._pusher is not None:
            self._pusher.push()

    def _push_soon(self) -> None:
        """After each message, if a round is due: the timer thread pushes, so process() never
        waits for the peer; without a timer, push here. While backing off this does nothing."""
        if self._pusher is None or not self._pusher.due():
            return
        if self._timer is not None:
            self._wake.set()
        else:
            self._push()

    def _timer_loop(self) -> None:
        while True:
            self._wake.wait(self.seal_check_interval)
            self._wake.clear()
            if self._stop_event.is_set():
                return
            try:
                with self._lock:
                    self._seal_if_due()
            except Exception:
                self.logger.exception("Timed seal failed, will retry.")
            try:
                if self._pusher is not None and not self._pusher.pending and self._pusher.waiting():
                    self._pusher.mark_pending()      # put into the outbox by hand, say
                self._push()
            except Exception:
                self.logger.exception("Timed push failed, will retry.")

    # --- messages ------------------------------------------------------------------------
    def process(self):
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        if is_retraction(flat):
            return self._process_retraction(flat)
        line = json.dumps(self._bundled_copy(flat), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        with self._lock:
            if self._redelivery is not None and self._redelivery.is_repeat(line):
                self.logger.info("First message after restart is the last one spooled before the stop; "
                                 "acknowledged without spooling it twice.")
                self.acknowledge_message()
                return
            self._spool.append(line)       # durable: an error here leaves the message unacknowledged
            try:
                self._seal_if_due()
            except (OSError, bundle.BundleError) as exc:       # disk, or a trust store that cannot be used
                # The event is safe in the spool: acknowledge it (dumping it too would duplicate it)
                # and seal again at the next event or timer tick.
                self.logger.error("Sealing a bundle for %s failed, the events stay in the spool and the "
                                  "seal is retried: %s.", self.recipient, exc)
        self.acknowledge_message()
        self._push_soon()

    def _process_retraction(self, flat: dict) -> None:
        """A retraction (or confirmation) for this peer: applied to the events not sealed yet, then
        spooled itself for the next bundle (docs/retraction.md)."""
        try:
            msg, line = retractions.retraction_line(flat)
        except RetractionError as exc:
            raise InvalidValue(exc.field or "retraction.id", str(flat.get(exc.field or "retraction.id"))[:100],
                               reason=f"{exc.reason}; not bundled for {self.recipient}") from None
        with self._lock:
            if self._redelivery is not None and self._redelivery.is_repeat(line):
                self.acknowledge_message()
                return
            deleted, changed = retractions.apply_to_spool(self._spool, msg, self._max_level)
            self._spool.append(line)
            try:
                self._seal_if_due()
            except (OSError, bundle.BundleError) as exc:
                self.logger.error("Sealing a bundle for %s failed, the events stay in the spool and the "
                                  "seal is retried: %s.", self.recipient, exc)
        what = "Confirmation of retraction" if msg.is_confirmation else f"Retraction {msg.action}"
        self.logger.info("%s %s spooled for %s; events not sealed yet: %d deleted, %d relabelled.", what, msg.id,
                         self.recipient, deleted, changed)
        self.acknowledge_message()
        self._push_soon()

    def _bundled_copy(self, flat: dict) -> dict:
        """The copy of an event that goes into the bundle (exchange.outgoing.bundled_copy, the
        code bundle seal uses too), or InvalidValue naming the field."""
        try:
            return outgoing.bundled_copy(flat, self._max_level, self.recipient)
        except outgoing.NotBundled as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None

    def shutdown(self):
        if self._stop_event is not None:
            self._stop_event.set()
            self._wake.set()
        if self._spool is None:
            return
        # Called from the SIGTERM handler too: never block on a lock the interrupted code holds.
        sealed = False
        if self._lock.acquire(timeout=10):
            try:
                if self.seal_on_shutdown and self._spool.count:
                    sealed = self._seal()
                else:
                    self._spool.close()
            finally:
                self._lock.release()
        else:
            self._spool.close()
        if sealed:
            self._push()      # one round if due; while backing off the bundle waits for the next start

    @staticmethod
    def check(parameters: dict):
        def get(name, default=None):
            return optional(parameters.get(name), default)

        results = []
        for name in ("hub_id", "recipient"):
            if not bundle.valid_hub_id(parameters.get(name)):
                results.append(["error", f"Parameter {name} must be a hub id matching {bundle.HUB_ID_RE.pattern}."])
        if parameters.get("hub_id") and parameters.get("hub_id") == parameters.get("recipient"):
            results.append(["error", "Parameters hub_id and recipient are the same hub: a hub does not send "
                                     "bundles to itself."])
        key_file = parameters.get("signing_key_file")
        if is_unset(key_file) or not isinstance(key_file, str):
            results.append(["error", "Parameter signing_key_file (Ed25519 and optionally ML-DSA-65 private keys, PEM) is required."])
        else:
            # Without a passphrase the key is loaded whole; an encrypted key's passphrase may live
            # only in the bot's environment, so then the file is only read.
            problem = bundle.signing_key_problem(key_file, encrypted=not is_unset(
                parameters.get("signing_key_passphrase_env")))
            if problem:
                results.append(["error", f"Parameter signing_key_file: {problem}."])
        store = get("trust_store", "")
        if store and not isinstance(store, str):
            results.append(["error", "Parameter trust_store must be the path of the trust store (YAML)."])
        elif store:
            try:
                trust = bundle.TrustStore.from_file(store)
                if trust.encryption_key(parameters.get("recipient")) is None and get("require_encryption", False):
                    results.append(["error", f"Parameter require_encryption: the trust store {store} has no "
                                             f"encryption key of {parameters.get('recipient')}."])
            except bundle.BundleError as exc:
                results.append(["error", f"Parameter trust_store: {exc}."])
        elif get("require_encryption", False):
            results.append(["error", "Parameter require_encryption needs trust_store (where the recipient's "
                                     "encryption key is listed)."])
        if not isinstance(get("require_encryption", False), bool):
            results.append(["error", "Parameter require_encryption must be true or false."])
        try:
            level = tlp.parse_level(get("max_tlp", "AMBER"), "parameter max_tlp")
            if level >= tlp.Level.AMBER_STRICT:
                results.append(["error", f"Parameter max_tlp: TLP:{level.label} never leaves the organisation "
                                         "through the exchange; use AMBER or lower."])
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter max_tlp: {exc}."])
        results.extend(["error", problem] for problem in schedule_problems(
            parameters.get("max_bundle_events"), parameters.get("max_bundle_age"), parameters.get("seal_at")))
        url = get("push_url", "")
        if url and not (isinstance(url, str) and url.startswith("https://")):
            results.append(["error", "Parameter push_url must be an https:// URL."])
        initial, maximum = get("push_retry_backoff", 60.0), get("push_retry_max_backoff", 900.0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (initial, maximum)):
            results.append(["error", "Parameters push_retry_backoff and push_retry_max_backoff must be positive "
                                     "numbers of seconds."])
        elif maximum < initial:
            results.append(["error", "Parameter push_retry_max_backoff must not be below push_retry_backoff."])
        if get("client_key") and not get("client_cert"):
            results.append(["error", "Parameter client_key is set without client_cert."])
        return results or None


BOT = CrossBorderExchangeOutputBot
