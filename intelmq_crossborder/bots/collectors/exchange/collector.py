"""Cross-border exchange collector: verify signed bundles from peer hubs and hand their events on."""
from pathlib import Path

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import CollectorBot
from intelmq.lib.exceptions import ConfigurationError

from intelmq_crossborder.core import secrets
from intelmq_crossborder.exchange import transfer
from intelmq_crossborder.exchange.importer import Importer
from intelmq_crossborder.exchange.state import StateError
from intelmq_crossborder.formats import bundle
from intelmq_crossborder.core.parameters import is_unset, optional


class CrossBorderExchangeCollectorBot(CollectorBot):
    """Imports the signed exchange bundles addressed to this hub from inbox_dir, optionally pulled over HTTPS with mutual TLS first: every signature the trust store requires (Ed25519, ML-DSA-65), recipient, data and sequence number are checked and encrypted data is decrypted with decryption_key_file, a rejected bundle goes to quarantine_dir with its reason, an accepted one is sent on in reports for the exchange parser. Details: docs/bots/exchange.md."""

    hub_id: str = None
    trust_store: str = None
    inbox_dir: str = None
    decryption_key_file: str = ""
    decryption_key_passphrase_env: str = ""
    state_dir: str = ""
    quarantine_dir: str = ""
    archive_dir: str = ""
    keep_imported: bool = True
    events_per_report: int = 1000
    accept_first_sequence: bool = False
    pull_url: str = ""
    client_cert: str = ""
    client_key: str = ""
    ca_bundle: str = ""
    pull_timeout: int = 60
    name: str = "Cross-border exchange"
    provider: str = "intelmq-crossborder"

    #: Optional parameters: IntelMQ Manager saves an untouched one as '' (= the class default).
    OPTIONAL = ("decryption_key_file", "decryption_key_passphrase_env", "state_dir", "quarantine_dir", "archive_dir", "keep_imported", "events_per_report",
                "accept_first_sequence", "pull_url", "client_cert", "client_key", "ca_bundle", "pull_timeout",
                "name", "provider")

    def init(self):
        for name in self.OPTIONAL:
            setattr(self, name, optional(getattr(self, name), getattr(type(self), name)))
        problems = self.check({"hub_id": self.hub_id, "trust_store": self.trust_store, "inbox_dir": self.inbox_dir,
                               "pull_url": self.pull_url, "events_per_report": self.events_per_report,
                               "decryption_key_file": self.decryption_key_file,
                               "decryption_key_passphrase_env": self.decryption_key_passphrase_env})
        if problems:
            raise ConfigurationError("exchange collector", "; ".join(p[1] for p in problems))
        self._decryption_keys = None
        if self.decryption_key_file:
            passphrase = None
            if self.decryption_key_passphrase_env:
                text = secrets.secret(None, self.decryption_key_passphrase_env)
                if text is None:
                    raise ConfigurationError("exchange collector", f"environment variable "
                                             f"{self.decryption_key_passphrase_env} (decryption key passphrase) is "
                                             "not set or empty")
                secrets.redact_in_logs(text, self.logger)
                passphrase = text.encode("utf-8", "surrogateescape")
            try:
                self._decryption_keys = bundle.load_decryption_keys(self.decryption_key_file, passphrase)
            except bundle.BundleError as exc:
                raise ConfigurationError("exchange collector", str(exc)) from None
        base = Path(self.state_dir or Path(VAR_STATE_PATH) / "crossborder-exchange" / self.bot_id)
        self._state_dir = base
        self._quarantine = Path(self.quarantine_dir) if self.quarantine_dir else base / "quarantine"
        self._archive = (Path(self.archive_dir) if self.archive_dir else base / "archive") if self.keep_imported else None
        self._inbox = Path(self.inbox_dir)
        self._inbox.mkdir(parents=True, exist_ok=True)

    def process(self):
        # The trust store is read on every run, so a revocation takes effect without a restart.
        try:
            trust = bundle.TrustStore.from_file(self.trust_store)
        except bundle.BundleError as exc:
            raise ConfigurationError("exchange collector", str(exc)) from None
        try:
            importer = Importer(self.hub_id, trust, self._state_dir, self._quarantine, self._archive,
                                chunk_lines=self.events_per_report,
                                accept_first_sequence=self.accept_first_sequence, logger=self.logger,
                                decryption_keys=self._decryption_keys)
        except StateError as exc:
            raise ConfigurationError("exchange collector", str(exc)) from None
        if self.pull_url:
            self._pull(importer)

        def emit(lines, manifest, first_index, chunk_number):
            report = self.new_report()
            report.add("raw", b"\n".join(lines).decode("utf-8"))
            report.add("feed.url", self.pull_url or self._inbox.as_uri())
            report.add("extra.exchange_bundle_id", manifest.bundle_id)
            report.add("extra.exchange_sender", manifest.sender)
            country = trust.country_of(manifest.sender)
            if country:
                report.add("extra.exchange_sender_country", country)
            report.add("extra.exchange_sequence", manifest.sequence)
            report.add("extra.exchange_first_event", first_index)
            report.add("extra.exchange_chunk", chunk_number)
            self.send_message(report)

        results = importer.run(self._inbox, emit)
        counts = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        if results:
            self.logger.info("Exchange run done: %s.", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))

    def _pull(self, importer):
        import requests

        session = transfer.https_session(self.client_cert or None, self.client_key or None, self.ca_bundle or None)
        try:
            fetched = transfer.pull_bundles(self.pull_url, self._inbox, session, importer.state.get("pulled", []),
                                            timeout=self.pull_timeout, logger=self.logger)
        except (requests.RequestException, ValueError) as exc:
            self.logger.warning("Pull from %s failed, importing what the inbox holds: %s.", self.pull_url, exc)
            return
        finally:
            session.close()
        if fetched:
            importer.remember_pulled(fetched)

    @staticmethod
    def check(parameters: dict):
        results = []
        if not bundle.valid_hub_id(parameters.get("hub_id")):
            results.append(["error", f"Parameter hub_id must be a hub id matching {bundle.HUB_ID_RE.pattern}."])
        if is_unset(parameters.get("trust_store")) or not isinstance(parameters["trust_store"], str):
            results.append(["error", "Parameter trust_store (path of the YAML file with the peers' public keys) "
                                     "is required."])
        else:
            try:
                bundle.TrustStore.from_file(parameters["trust_store"])
            except bundle.BundleError as exc:
                results.append(["error", f"Parameter trust_store: {exc}."])
        key_file = optional(parameters.get("decryption_key_file"), "")
        if key_file and not isinstance(key_file, str):
            results.append(["error", "Parameter decryption_key_file must be the path of the HPKE key file (PEM)."])
        elif key_file:
            problem = bundle.decryption_key_problem(key_file, encrypted=not is_unset(
                parameters.get("decryption_key_passphrase_env")))
            if problem:
                results.append(["error", f"Parameter decryption_key_file: {problem}."])
        if is_unset(parameters.get("inbox_dir")) or not isinstance(parameters["inbox_dir"], str):
            results.append(["error", "Parameter inbox_dir (a folder) is required."])
        url = optional(parameters.get("pull_url"), "")
        if url and not (isinstance(url, str) and url.startswith("https://")):
            results.append(["error", "Parameter pull_url must be an https:// URL."])
        n = optional(parameters.get("events_per_report"), 1000)
        if type(n) is not int or n < 1:
            results.append(["error", "Parameter events_per_report must be a positive integer."])
        return results or None


BOT = CrossBorderExchangeCollectorBot
