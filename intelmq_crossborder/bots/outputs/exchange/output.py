"""Cross-border exchange output: spool events for one recipient hub and seal them into signed bundles."""
import datetime as dt
import hashlib
import json
import os
import threading
import time
from pathlib import Path

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.formats import bundle

from intelmq_crossborder.exchange import transfer as exchange

from intelmq_crossborder.policy.redact import without_source

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.retry import Backoff


class CrossBorderExchangeOutputBot(OutputBot):
    """
    Write the events of one recipient path into signed exchange bundles (format 1.0).

    One instance per recipient hub: connect it to the router path of that recipient.
    Every event is appended to a spool file and flushed before it is acknowledged,
    so intelmqctl stop (or a crash) loses nothing that was acknowledged; the spool
    is kept and reopened at the next start. A bundle is sealed when it holds
    max_bundle_events events or its first event is max_bundle_age seconds old:
    gzip JSON lines plus a manifest signed with Ed25519 (signing_key_file), written
    to a temporary file and renamed into outbox_dir. With push_url set, sealed
    bundles are PUT over HTTPS with mutual TLS (client_cert, client_key, ca_bundle),
    in sequence order, and moved to sent_dir. A failed push (peer slow beyond
    push_timeout, HTTP error, connection dropped) leaves the bundles in the outbox
    and backs off: push_retry_backoff seconds, doubling up to push_retry_max_backoff;
    meanwhile events keep being spooled and sealed, and no push is attempted. When the
    peer answers again every waiting bundle is pushed in sequence order. The level is
    the effective TLP of the event (tlp.event_tlp), written to sharing.tlp; events without
    a label, above max_tlp, AMBER+STRICT or RED, or with an unreadable label are dumped,
    and a hidden source's fields (tlp.SOURCE_FIELDS) are left out of the bundle.
    """

    hub_id: str = None
    recipient: str = None
    signing_key_file: str = None
    signing_key_passphrase_env: str = ""
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

    _spool: exchange.Spool = None
    _lock = None
    _stop_event = None
    _timer = None
    _pusher: exchange.Pusher = None
    _wake = None

    def init(self):
        problems = self.check(self._parameters())
        if problems:
            raise ConfigurationError("exchange output", "; ".join(p[1] for p in problems))
        passphrase = None
        if self.signing_key_passphrase_env:
            value = os.environb.get(self.signing_key_passphrase_env.encode("utf-8"))
            if value is None:
                raise ConfigurationError("exchange output", f"environment variable "
                                         f"{self.signing_key_passphrase_env} (signing key passphrase) is not set")
            passphrase = value
        try:
            key = bundle.load_private_key(self.signing_key_file, passphrase)
        except bundle.BundleError as exc:
            raise ConfigurationError("exchange output", str(exc)) from None
        base = Path(self.spool_dir or os.path.join(VAR_STATE_PATH, "crossborder-exchange", self.bot_id))
        self._outbox = Path(self.outbox_dir) if self.outbox_dir else base / "outbox"
        self._sent = Path(self.sent_dir) if self.sent_dir else base / "sent"
        self._max_level = tlp.parse_level(self.max_tlp, "parameter max_tlp")
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        if self.push_url:
            self._pusher = exchange.Pusher(
                self._outbox, self.push_url, self._session,
                Backoff(float(self.push_retry_backoff), float(self.push_retry_max_backoff)),
                sent_dir=self._sent, timeout=self.push_timeout, logger=self.logger)
        self._spool = exchange.Spool(base, self._outbox, self.hub_id, self.recipient, key,
                                     fsync_each=self.fsync_each_event, compresslevel=self.compresslevel,
                                     sent_dir=self._sent, logger=self.logger)
        with self._lock:
            self._spool.recover()
            # The message IntelMQ may deliver again after a stop between our append and
            # its acknowledgement: the last spooled (or last sealed) line.
            last = self._spool.last_line
            self._redelivery_digest = (hashlib.sha256(last).hexdigest() if last is not None
                                       else self._spool.state.get("last_line_sha256"))
            self._seal_if_due()
        self._push()
        if self.seal_check_interval and self.seal_check_interval > 0:
            self._timer = threading.Thread(target=self._timer_loop, name="exchange-seal-timer", daemon=True)
            self._timer.start()

    def _parameters(self) -> dict:
        return {name: getattr(self, name) for name in (
            "hub_id", "recipient", "signing_key_file", "max_tlp", "max_bundle_events", "max_bundle_age", "seal_at",
            "push_url", "client_cert", "client_key", "push_retry_backoff", "push_retry_max_backoff")}

    # --- sealing and pushing -------------------------------------------------------------
    def _seal_if_due(self, now: float = None) -> bool:
        spool = self._spool
        now = time.time() if now is None else now
        due = spool.count >= self.max_bundle_events or (
            self.max_bundle_age and spool.count and spool.age(now) >= self.max_bundle_age)
        if not due and self.seal_at and spool.count and spool.opened_at is not None:
            due = spool.opened_at < last_cut(self.seal_at, now)
        return self._seal() if due else False

    def _seal(self) -> bool:
        if self._spool.last_line is not None:
            self._spool.state["last_line_sha256"] = hashlib.sha256(self._spool.last_line).hexdigest()
        path = self._spool.seal(seal_empty=self.seal_empty)
        if path is not None and self._pusher is not None:
            self._pusher.mark_pending()
        return path is not None

    def _session(self):
        return exchange.https_session(self.client_cert or None, self.client_key or None, self.ca_bundle or None)

    def _push(self) -> None:
        """One push round now, if one is due (never while backing off after a failure)."""
        if self._pusher is not None:
            self._pusher.push()

    def _push_soon(self) -> None:
        """After each message, if a round is due (a bundle was sealed, or the backoff after a
        failure is over): the timer thread pushes, so process() never waits for the peer;
        without a timer, push here. While backing off this does nothing."""
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
        line = json.dumps(self._bundled_copy(event.to_dict(hierarchical=False)), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        with self._lock:
            if self._redelivery_digest is not None:
                digest, self._redelivery_digest = self._redelivery_digest, None
                if hashlib.sha256(line).hexdigest() == digest:
                    self.logger.info("First message after restart is the last one spooled before the stop; "
                                     "acknowledged without spooling it twice.")
                    self.acknowledge_message()
                    return
            self._spool.append(line)       # durable: an error here leaves the message unacknowledged
            try:
                self._seal_if_due()
            except OSError as exc:
                # The event is safe in the spool: acknowledge it (dumping it too would duplicate it)
                # and seal again at the next event or timer tick.
                self.logger.error("Sealing a bundle for %s failed, the events stay in the spool and the "
                                  "seal is retried: %s.", self.recipient, exc)
        self.acknowledge_message()
        self._push_soon()

    def _bundled_copy(self, flat: dict) -> dict:
        """The copy of an event that goes into the bundle, or InvalidValue naming the field.

        The level is the effective TLP of tlp.event_tlp (the most restrictive label in any
        field); the copy carries it in sharing.tlp. A hidden source (sharing.do_not_disclose_source
        or tlp:ex:chr) leaves every field of tlp.SOURCE_FIELDS out of the copy."""
        try:
            labels = tlp.event_tlp(flat)
        except tlp.LabelError as exc:
            raise InvalidValue(exc.field, exc.value, reason=f"{exc.reason}; not bundled for "
                                                            f"{self.recipient}") from None
        level = labels.level
        if level is None:
            raise InvalidValue("sharing.tlp", None, reason="event without a TLP label is not bundled for "
                               f"{self.recipient}; run the cross-border TLP expert before this bot")
        field = labels.field
        if level is tlp.Level.RED:
            raise InvalidValue(field, level.label, reason="TLP:RED is never forwarded automatically; "
                                                          f"not bundled for {self.recipient}")
        if level is tlp.Level.AMBER_STRICT:
            raise InvalidValue(field, level.label, reason="TLP:AMBER+STRICT never leaves the organisation; "
                                                          f"not bundled for {self.recipient}")
        if level > self._max_level:
            raise InvalidValue(field, level.label, reason=f"TLP:{level.label} is above max_tlp "
                               f"{self._max_level.label} of the exchange with {self.recipient}; not bundled")
        if labels.hide_source:
            flat = without_source(flat)
        flat["sharing.tlp"] = level.label
        return flat

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
        results = []
        for name in ("hub_id", "recipient"):
            if not bundle.valid_hub_id(parameters.get(name)):
                results.append(["error", f"Parameter {name} must be a hub id matching {bundle.HUB_ID_RE.pattern}."])
        if parameters.get("hub_id") and parameters.get("hub_id") == parameters.get("recipient"):
            results.append(["error", "Parameters hub_id and recipient are the same hub: a hub does not send "
                                     "bundles to itself."])
        if not parameters.get("signing_key_file"):
            results.append(["error", "Parameter signing_key_file (Ed25519 private key, PEM) is required."])
        try:
            level = tlp.parse_level(parameters.get("max_tlp", "AMBER"), "parameter max_tlp")
            if level >= tlp.Level.AMBER_STRICT:
                results.append(["error", f"Parameter max_tlp: TLP:{level.label} never leaves the organisation "
                                         "through the exchange; use AMBER or lower."])
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter max_tlp: {exc}."])
        if parameters.get("seal_at"):
            try:
                last_cut(parameters["seal_at"], time.time())
            except ValueError:
                results.append(["error", "Parameter seal_at must be a UTC time of day HH:MM, e.g. 02:00."])
        for name in ("max_bundle_events", "max_bundle_age"):
            value = parameters.get(name, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 \
                    or (name == "max_bundle_events" and value < 1):
                results.append(["error", f"Parameter {name} must be a positive integer."])
        url = parameters.get("push_url") or ""
        if url and not url.startswith("https://"):
            results.append(["error", "Parameter push_url must be an https:// URL."])
        initial, maximum = parameters.get("push_retry_backoff", 60.0), parameters.get("push_retry_max_backoff", 900.0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (initial, maximum)):
            results.append(["error", "Parameters push_retry_backoff and push_retry_max_backoff must be positive "
                                     "numbers of seconds."])
        elif maximum < initial:
            results.append(["error", "Parameter push_retry_max_backoff must not be below push_retry_backoff."])
        if bool(parameters.get("client_cert")) != bool(parameters.get("client_key")) and parameters.get("client_key"):
            results.append(["error", "Parameter client_key is set without client_cert."])
        return results or None


def last_cut(seal_at: str, now: float) -> float:
    """The most recent daily cut time ``HH:MM`` (UTC) at or before ``now``, as a timestamp."""
    hours, minutes = (int(part) for part in seal_at.strip().split(":"))
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(seal_at)
    current = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    cut = current.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    if cut.timestamp() > now:
        cut -= dt.timedelta(days=1)
    return cut.timestamp()


BOT = CrossBorderExchangeOutputBot
