"""Cross-border CSAF collector: advisories from CSAF 2.0 providers and aggregators."""
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import CollectorBot
from intelmq.lib.utils import create_request_session
from urllib3.util.retry import Retry

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.csaf import distribution as dist
from intelmq_crossborder.core.parameters import as_float, as_int, as_list, is_unset, optional

#: The defaults of the optional parameters, also for '' (IntelMQ Manager's untouched field) and null.
DEFAULTS = {"discovery_scheme": "https", "tlp_labels": ["WHITE", "GREEN", "AMBER", "RED", "UNLABELED"],
            "require_hash": True, "verify_signatures": False, "use_provider_keys": True, "gpg_binary": "gpg",
            "max_age_days": 0, "http_timeout_sec": 30, "http_timeout_max_tries": 3, "http_retry_backoff": 2.0,
            "auth_header_name": "Authorization", "http_verify_cert": True, "rate_limit": 86400}
BOOLEANS = ("require_hash", "verify_signatures", "use_provider_keys", "http_verify_cert")


class CrossBorderCSAFCollectorBot(CollectorBot):
    """Collect CSAF 2.0 advisories from a provider or an aggregator (csaf_source: a provider-metadata.json URL, an aggregator.json URL or a domain), only those new or changed since the last run, each checked against its .sha512/.sha256 (and with verify_signatures its OpenPGP signature) before it is sent as one report with the advisory as raw, its URL as feed.url and the feed's TLP label as sharing.tlp; a file that fails is logged with its URL and tried again at the next run. Details: docs/bots/csaf.md."""

    csaf_source: str = None
    discovery_scheme: str = DEFAULTS["discovery_scheme"]
    tlp_labels: list = DEFAULTS["tlp_labels"]
    require_hash: bool = DEFAULTS["require_hash"]
    verify_signatures: bool = DEFAULTS["verify_signatures"]
    openpgp_key_files: list = []
    use_provider_keys: bool = DEFAULTS["use_provider_keys"]
    gpg_binary: str = DEFAULTS["gpg_binary"]
    state_file: str = None
    max_age_days: int = DEFAULTS["max_age_days"]
    http_timeout_sec: int = DEFAULTS["http_timeout_sec"]
    http_timeout_max_tries: int = DEFAULTS["http_timeout_max_tries"]
    http_retry_backoff: float = DEFAULTS["http_retry_backoff"]
    http_header: dict = {}
    auth_header_name: str = DEFAULTS["auth_header_name"]
    auth_header_token: str = None
    auth_hosts: list = []
    ssl_client_certificate: str = None
    http_verify_cert: bool = DEFAULTS["http_verify_cert"]
    rate_limit: int = DEFAULTS["rate_limit"]

    _state: dist.RunState = None
    _verifier = None

    def init(self):
        if is_unset(self.csaf_source):
            raise ValueError("Parameter csaf_source is required.")
        for name, value in settings({n: getattr(self, n) for n in SETTINGS}).items():
            setattr(self, name, value)
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
        hosts = self.auth_hosts or sorted(dist.auth_hosts_for(self.csaf_source))
        if not self.state_file:
            self.state_file = os.path.join(VAR_STATE_PATH, f"{self.bot_id}.csaf-state.json")
        self._state = dist.RunState(self.state_file)
        self._fetcher = dist.Fetcher(self._session, timeout=self.http_timeout_sec or DEFAULTS["http_timeout_sec"],
                                     auth_headers=auth_headers, auth_hosts=hosts,
                                     attempts=max(1, self.http_timeout_max_tries),
                                     retry_backoff=self.http_retry_backoff, logger=self.logger)
        if self.verify_signatures:
            self._verifier = dist.OpenPGPVerifier(self.gpg_binary)
            for path in self.openpgp_key_files:
                with open(path, "rb") as fh:
                    fprs = self._verifier.import_key(fh.read())
                self.logger.info("OpenPGP key file %s imported: %s.", path, ", ".join(fprs))

    def _have_auth(self) -> bool:
        headers = {k for k in (self.http_header or {}) if k.lower() != "user-agent"}
        return bool(headers or self.auth_header_token or self.ssl_client_certificate or getattr(self, "auth", None))

    def process(self):
        options = dist.CollectOptions(
            labels=tuple(self.tlp_labels), have_auth=self._have_auth(),
            require_hash=self.require_hash, verifier=self._verifier,
            use_provider_keys=self.use_provider_keys, max_age_days=self.max_age_days,
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
        if is_unset(parameters.get("csaf_source")):
            results.append(["error", "Parameter csaf_source (provider-metadata.json URL, aggregator.json "
                                     "URL or domain) is required."])
        try:
            values = settings(parameters)
        except ValueError as exc:
            return results + [["error", f"{exc}."]]
        for label in values["tlp_labels"]:
            if str(label).upper() == "UNLABELED":
                continue
            try:
                tlp.parse_csaf(label, "2.0", "parameter tlp_labels")
            except tlp.UnknownTLPError as exc:
                results.append(["error", f"Parameter tlp_labels: {exc}."])
        if values["http_retry_backoff"] < 0:
            results.append(["error", "Parameter http_retry_backoff must be a number of seconds >= 0."])
        if values["verify_signatures"]:
            import shutil
            if not shutil.which(values["gpg_binary"]):
                results.append(["error", "Parameter verify_signatures needs GnuPG: "
                                         f"{values['gpg_binary']} not found."])
        return results or None


#: The optional parameters :func:`settings` normalises.
SETTINGS = tuple(DEFAULTS) + ("openpgp_key_files", "auth_hosts", "http_header", "auth_header_token",
                              "ssl_client_certificate", "state_file")


def settings(parameters: dict) -> dict:
    """The optional parameters with their defaults for unset ones ('' or null, as IntelMQ Manager
    saves an untouched field) and their types checked; ValueError names a bad one."""
    out = {name: optional(parameters.get(name), default) for name, default in DEFAULTS.items()}
    out["tlp_labels"] = as_list(out["tlp_labels"]) or DEFAULTS["tlp_labels"]
    for name in ("openpgp_key_files", "auth_hosts"):
        out[name] = as_list(parameters.get(name))
    for name in BOOLEANS:
        if not isinstance(out[name], bool):
            raise ValueError(f"Parameter {name}: expected true or false, got {out[name]!r}")
    for name in ("max_age_days", "http_timeout_sec", "http_timeout_max_tries", "rate_limit"):
        out[name] = as_int(out[name], DEFAULTS[name], name)
    out["http_retry_backoff"] = as_float(out["http_retry_backoff"], DEFAULTS["http_retry_backoff"],
                                         "http_retry_backoff")
    header = optional(parameters.get("http_header"), {})
    if not isinstance(header, dict):
        raise ValueError(f"Parameter http_header: expected a mapping of header names to values, "
                         f"got {type(header).__name__}")
    out["http_header"] = dict(header)
    for name in ("auth_header_token", "ssl_client_certificate", "state_file"):
        out[name] = optional(parameters.get(name))
    return out


BOT = CrossBorderCSAFCollectorBot
