"""Cross-border MISP collector: incremental, paged event pull through PyMISP restSearch."""
import json
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import CollectorBot

from intelmq_crossborder.formats.misp import push as misp_push
from intelmq_crossborder.formats.misp.state import CollectorState

try:
    from pymisp import PyMISP
except ImportError:  # pragma: no cover
    PyMISP = None


class CrossBorderMISPCollectorBot(CollectorBot):
    """
    Pull MISP events changed since the last successful run, one report per event, page by page.

    Searches /events/restSearch through PyMISP with the configured filters: tags (e.g. a "share
    with hub" tag), creator organisation, published only, and the event timestamp since the last
    successful run. The newest timestamp seen is kept in state_file across runs and restarts and
    only written after a run completed, so a failed run is repeated, not skipped. Results are
    fetched page_size events at a time and sent on at once, never all held in memory. Meant for
    run_mode scheduled (nightly). The API key comes from misp_api_token or the environment
    variable misp_api_token_env and never appears in logs.
    """

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
        self._key = misp_push.api_key(self.misp_url, self.misp_api_token, self.misp_api_token_env, self.logger)
        if int(self.page_size) < 1:
            raise ValueError("Parameter page_size must be at least 1.")
        path = self.state_file or os.path.join(VAR_STATE_PATH, f"{self.bot_id}.misp-state.json")
        self._state = CollectorState(path, int(self.overlap_seconds))
        if isinstance(self.search_tags, str):
            self.search_tags = [t.strip() for t in self.search_tags.split(",") if t.strip()]
        self._call = misp_push.RetryingCaller(int(self.retry_attempts), float(self.retry_backoff), self.logger,
                                                url=self.misp_url)

    def _misp(self):
        if self._api is None:
            self._api = self._call("connection", PyMISP, self.misp_url, self._key, ssl=self.misp_verify_ssl,
                                   timeout=self.http_timeout_sec, tool="intelmq-crossborder")
        return self._api

    def process(self):
        state = self._state.load()
        since = state.since(self.initial_since or None)
        api = self._misp()
        page, sent, skipped = 1, 0, 0
        run = state.start_run()
        while True:
            query = {"controller": "events", "limit": int(self.page_size), "page": page,
                     "tags": list(self.search_tags) or None, "org": self.search_org or None,
                     "published": True if self.published_only else None,
                     # the spec types the filter as a string (epoch or time span such as "7d")
                     "timestamp": None if since is None else str(since),
                     "with_attachments": bool(self.with_attachments)}
            result = self._call(f"search page {page}", api.search, **query)
            if isinstance(result, dict):   # an error document instead of a list
                raise misp_push.PermanentMISPError("?", json.dumps(result)[:500])
            for item in result:
                event = item.get("Event", item) if isinstance(item, dict) else None
                if not isinstance(event, dict) or "uuid" not in event:
                    self.logger.warning("Search result without an event uuid skipped.")
                    continue
                if not run.is_new(event):
                    skipped += 1
                    continue
                report = self.new_report()
                report.add("raw", json.dumps({"Event": event}))
                report.add("feed.url", f"{self.misp_url.rstrip('/')}/events/view/{event['uuid']}")
                orgc = event.get("Orgc") or {}
                if orgc.get("name"):
                    report.add("provenance.originator", orgc["name"])
                self.send_message(report)
                run.seen(event)
                sent += 1
            if len(result) < int(self.page_size):
                break
            page += 1
        self._state.save(run)
        self.logger.info("Collected %d MISP event(s) in %d page(s) since %s (%d already seen); state saved.",
                         sent, page, since if since is not None else "the beginning", skipped)

    @staticmethod
    def check(parameters: dict):
        results = []
        if not parameters.get("misp_url"):
            results.append(["error", "Parameter misp_url is required."])
        try:
            if int(parameters.get("page_size", 50)) < 1:
                raise ValueError
        except (TypeError, ValueError):
            results.append(["error", "Parameter page_size must be a positive integer."])
        if "misp_key" in parameters or "misp_api_key" in parameters:
            results.append(["warning", "Use misp_api_token (hidden in logs) or the environment, not misp_key."])
        return results or None


BOT = CrossBorderMISPCollectorBot
