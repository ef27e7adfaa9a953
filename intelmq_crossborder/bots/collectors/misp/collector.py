"""Cross-border MISP collector: incremental, paged event pull through PyMISP restSearch."""
import json
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import CollectorBot

from intelmq_crossborder.formats.misp import push as misp_push
from intelmq_crossborder.formats.misp.state import CollectorState, collect
from intelmq_crossborder.core.parameters import as_float, as_int, as_list, optional


class CrossBorderMISPCollectorBot(CollectorBot):
    """Pull the MISP events changed since the last successful run (tag, organisation and published filters), page by page, one report per event; the state is saved only after a complete run, so a failed run is repeated, not skipped. Meant for run_mode scheduled. Details: docs/bots/misp.md."""

    misp_url: str = ""
    misp_api_token: str = ""
    misp_api_token_env: str = "MISP_API_KEY"
    misp_verify_ssl: bool = True
    http_timeout_sec: int = 60
    search_tags: list = []
    search_org: str = ""
    published_only: bool = True
    page_size: int = 50
    state_file: str = ""
    initial_since: str = ""
    overlap_seconds: int = 0
    with_attachments: bool = False
    retry_attempts: int = 3
    retry_backoff: float = 2.0

    _api = None

    def init(self):
        key = misp_push.api_key(self.misp_url, optional(self.misp_api_token),
                                optional(self.misp_api_token_env, "MISP_API_KEY"), self.logger)
        self._page_size = as_int(self.page_size, 50, "page_size")
        if self._page_size < 1:
            raise ValueError("Parameter page_size must be at least 1.")
        path = optional(self.state_file) or os.path.join(VAR_STATE_PATH, f"{self.bot_id}.misp-state.json")
        self._state = CollectorState(path, as_int(self.overlap_seconds, 0, "overlap_seconds"))
        self.search_tags = as_list(self.search_tags)
        self._call = misp_push.RetryingCaller(as_int(self.retry_attempts, 3, "retry_attempts"),
                                              as_float(self.retry_backoff, 2.0, "retry_backoff"), self.logger,
                                              url=self.misp_url)
        self._connect = misp_push.pymisp_connector(self.misp_url, key, bool(optional(self.misp_verify_ssl, True)),
                                                   as_float(self.http_timeout_sec, 60.0, "http_timeout_sec"))

    def _misp(self):
        if self._api is None:
            self._api = self._call("connection", self._connect)
        return self._api

    def _emit(self, event: dict) -> None:
        report = self.new_report()
        report.add("raw", json.dumps({"Event": event}))
        report.add("feed.url", f"{self.misp_url.rstrip('/')}/events/view/{event['uuid']}")
        orgc = event.get("Orgc") or {}
        if isinstance(orgc, dict) and orgc.get("name"):
            report.add("provenance.originator", orgc["name"])
        self.send_message(report)

    def process(self):
        api = self._misp()
        done = collect(lambda query: self._call(f"search page {query['page']}", api.search, **query),
                       self._state, self._emit, page_size=self._page_size, tags=self.search_tags,
                       org=optional(self.search_org), published_only=bool(optional(self.published_only, True)),
                       with_attachments=bool(optional(self.with_attachments, False)),
                       initial_since=optional(self.initial_since))
        if done.malformed:
            self.logger.warning("%d search result(s) without an event uuid skipped.", done.malformed)
        self.logger.info("Collected %d MISP event(s) in %d page(s) since %s (%d already seen); state saved.",
                         done.sent, done.pages, done.since if done.since is not None else "the beginning",
                         done.skipped)

    @staticmethod
    def check(parameters: dict):
        results = []
        if not optional(parameters.get("misp_url")):
            results.append(["error", "Parameter misp_url is required."])
        results += misp_push.check_parameters(
            parameters, flags={"misp_verify_ssl": True, "published_only": True, "with_attachments": False},
            numbers={"page_size": (int, 1), "http_timeout_sec": (float, 0), "overlap_seconds": (int, 0),
                     "retry_attempts": (int, 0), "retry_backoff": (float, 0)})
        if "misp_key" in parameters or "misp_api_key" in parameters:
            results.append(["warning", "Use misp_api_token (hidden in logs) or the environment, not misp_key."])
        return results or None


BOT = CrossBorderMISPCollectorBot
