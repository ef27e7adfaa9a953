"""Cross-border CSAF collector: advisories from CSAF 2.0 providers and aggregators."""
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import CollectorBot
from intelmq.lib.utils import create_request_session
from urllib3.util.retry import Retry

from intelmq_crossborder.formats.csaf import distribution as dist
from intelmq_crossborder.core import tlp
class CrossBorderCSAFCollectorBot(CollectorBot):
    """
    Collect CSAF 2.0 advisories from a provider or an aggregator.

    csaf_source is a provider-metadata.json URL, an aggregator.json URL or a
    domain (tried as /.well-known/csaf/provider-metadata.json, then
    security.txt, then csaf.data.security.<domain>). ROLIE feeds are preferred
    over directories (changes.csv, index.txt). Only advisories new or changed
    since the last run are downloaded; the state file keeps track across runs and
    restarts and is written after every advisory, so an interrupted run resumes.
    Each file's .sha512/.sha256 is checked (require_hash), and with
    verify_signatures its OpenPGP .asc against the provider's public keys. A file
    that fails is not emitted; it is logged with its URL and tried again next run.
    Every request is bounded (http_timeout_sec per read, 10 x that per download);
    connection errors, timeouts, cut downloads and HTTP 5xx/429 are tried
    http_timeout_max_tries times in all, waiting http_retry_backoff seconds, then
    twice that, between attempts.
    One report per advisory: raw JSON, feed.url the advisory URL, sharing.tlp the
    feed's TLP label. Feeds labelled AMBER or RED are only read with a client
    certificate (ssl_client_certificate) or an authentication header configured
    (auth_header_token; IntelMQ hides it in its logs, unlike http_header). Use
    run_mode scheduled for nightly runs.
    """

    csaf_source: str = None
    discovery_scheme: str = "https"
    tlp_labels: list = ["WHITE", "GREEN", "AMBER", "RED", "UNLABELED"]
    require_hash: bool = True
    verify_signatures: bool = False
    openpgp_key_files: list = []
    use_provider_keys: bool = True
    gpg_binary: str = "gpg"
    state_file: str = None
    max_age_days: int = 0
    http_timeout_sec: int = 30
    http_timeout_max_tries: int = 3
    http_retry_backoff: float = 2.0
    http_header: dict = {}
    auth_header_name: str = "Authorization"
    auth_header_token: str = None
    auth_hosts: list = []
    ssl_client_certificate: str = None
    http_verify_cert: bool = True
    rate_limit: int = 86400

    _state: dist.RunState = None
    _verifier = None

    def init(self):
        if not self.csaf_source:
            raise ValueError("Parameter csaf_source is required.")
        self.set_request_parameters()
        self._session = create_request_session(self)
        # The Fetcher retries (with backoff, each retry logged with its URL); IntelMQ's session
        # would retry connection and read errors again, at once and silently, multiplying them.
        for adapter in self._session.adapters.values():
            adapter.max_retries = Retry(0, read=False)
        auth_headers = {}
        if self.auth_header_token:
            # IntelMQ logs every parameter at DEBUG except those named *password*/*token*:
            # a secret belongs here, not in http_header.
            auth_headers[self.auth_header_name] = self.auth_header_token
        hosts = _as_list(self.auth_hosts) or sorted(dist.auth_hosts_for(self.csaf_source))
        if not self.state_file:
            self.state_file = os.path.join(VAR_STATE_PATH, f"{self.bot_id}.csaf-state.json")
        self._state = dist.RunState(self.state_file)
        self._fetcher = dist.Fetcher(self._session, timeout=self.http_timeout_sec or 30,
                                     auth_headers=auth_headers, auth_hosts=hosts,
                                     attempts=max(1, int(self.http_timeout_max_tries or 1)),
                                     retry_backoff=float(self.http_retry_backoff), logger=self.logger)
        if self.verify_signatures:
            self._verifier = dist.OpenPGPVerifier(self.gpg_binary)
            for path in _as_list(self.openpgp_key_files):
                with open(path, "rb") as fh:
                    fprs = self._verifier.import_key(fh.read())
                self.logger.info("OpenPGP key file %s imported: %s.", path, ", ".join(fprs))

    def _have_auth(self) -> bool:
        headers = {k for k in (self.http_header or {}) if k.lower() != "user-agent"}
        return bool(headers or self.auth_header_token or self.ssl_client_certificate or getattr(self, "auth", None))

    def process(self):
        options = dist.CollectOptions(
            labels=tuple(_as_list(self.tlp_labels)), have_auth=self._have_auth(),
            require_hash=self.require_hash, verifier=self._verifier,
            use_provider_keys=self.use_provider_keys, max_age_days=int(self.max_age_days or 0),
            scheme=self.discovery_scheme)
        try:
            stats = dist.collect(self.csaf_source, self._fetcher, self._state, self._emit, self.logger, options)
        except dist.FetchError as exc:
            self.logger.error("CSAF discovery from %s failed: %s.", self.csaf_source, exc.reason)
            return
        self.logger.info("CSAF run done: %d provider(s), %d distribution(s), %d listed, %d emitted, "
                         "%d failed, %d feed(s) skipped.", stats.providers, stats.distributions,
                         stats.listed, stats.delivered, stats.failed, stats.skipped_feeds)

    def _emit(self, entry, body: bytes, level):
        report = self.new_report()
        report.add("raw", body.decode("utf-8-sig"))
        report.add("feed.url", entry.url, overwrite=True)
        if level is not None:
            report.add("sharing.tlp", level.label, overwrite=True)
        self.send_message(report)

    def shutdown(self):
        if self._verifier is not None:
            self._verifier.close()

    @staticmethod
    def check(parameters: dict):
        results = []
        if not parameters.get("csaf_source"):
            results.append(["error", "Parameter csaf_source (provider-metadata.json URL, aggregator.json "
                                     "URL or domain) is required."])
        for label in _as_list(parameters.get("tlp_labels", [])):
            if str(label).upper() == "UNLABELED":
                continue
            try:
                tlp.parse_csaf(label, "2.0", "parameter tlp_labels")
            except tlp.UnknownTLPError as exc:
                results.append(["error", f"Parameter tlp_labels: {exc}."])
        backoff = parameters.get("http_retry_backoff", 2.0)
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
            results.append(["error", "Parameter http_retry_backoff must be a number of seconds >= 0."])
        if parameters.get("verify_signatures"):
            import shutil
            if not shutil.which(parameters.get("gpg_binary", "gpg")):
                results.append(["error", "Parameter verify_signatures needs GnuPG: "
                                         f"{parameters.get('gpg_binary', 'gpg')} not found."])
        return results or None


def _as_list(value) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value or [])


BOT = CrossBorderCSAFCollectorBot
