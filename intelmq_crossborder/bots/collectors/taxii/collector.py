"""Cross-border TAXII 2.1 collector: the objects added to a collection since the last run, as STIX bundles."""
from __future__ import annotations

import json
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import CollectorBot
from intelmq.lib.exceptions import ConfigurationError

from intelmq_crossborder.core import secrets, tlp
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.formats.stix import taxii
from intelmq_crossborder.formats.stix.export import make_bundle

__all__ = ["CrossBorderTAXIICollectorBot", "BOT", "PARAMETERS"]


class CrossBorderTAXIICollectorBot(CollectorBot):
    """Read the STIX objects added to a TAXII 2.1 collection (found by id or title through discovery and its API root) since the last run, page by page, one report per page with a STIX 2.1 bundle as raw; the position is saved after each page, so an interrupted run resumes without loss or duplicates. Details: docs/bots/stix.md."""

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
    page_size: int = 100
    state_file: str = ""
    initial_added_after: str = ""
    default_tlp: str = ""
    retry_attempts: int = 5
    retry_backoff: float = 1.0
    retry_max_backoff: float = 60.0

    def init(self):
        values, problems = _read({name: getattr(self, name) for name in PARAMETERS})
        if problems:
            raise ConfigurationError("taxii collector", " ".join(problems))
        for name, value in values.items():
            setattr(self, name, value)
        password = secrets.secret(self.password or None, self.password_env or None)
        token = secrets.secret(self.api_token or None, self.api_token_env or None)
        for value in (password, token):
            secrets.redact_in_logs(value, self.logger)
        if self.username and not password:
            raise ConfigurationError("taxii collector", "username is set but no password: set the environment "
                                                        f"variable {self.password_env or '(password_env)'}")
        self._connection = taxii.Connection(
            self.taxii_url, user=self.username or None, password=password, api_key=token,
            api_key_header=self.api_key_header, api_key_prefix=self.api_key_prefix, verify=self.verify_ssl,
            timeout=self.http_timeout_sec, attempts=self.retry_attempts,
            backoff=Backoff(self.retry_backoff, self.retry_max_backoff), logger=self.logger)
        self._state_path = self.state_file or os.path.join(VAR_STATE_PATH, f"{self.bot_id}.taxii-state.json")
        self._collection = None

    def _target(self):
        if self._collection is None:
            self._collection = self._connection.collection(self.collection, self.api_root or None)
            if self._collection.can_read is False:
                raise ConfigurationError("taxii collector", f"collection {self.collection!r} is not readable for "
                                                            "these credentials")
        return self._collection

    def _emit(self, objects: list) -> None:
        if self.default_tlp:
            objects, added = taxii.with_default_tlp(objects, tlp.parse_level(self.default_tlp))
            if added:
                self.logger.debug("%d object(s) without a TLP marking got the collection's TLP:%s.", added,
                                  tlp.parse_level(self.default_tlp).label)
        report = self.new_report()
        report.add("raw", json.dumps(make_bundle(objects, "taxii-collector"), ensure_ascii=False))
        report.add("feed.url", self._collection.objects_url, overwrite=True)
        self.send_message(report)

    def process(self):
        collection = self._target()
        state = taxii.CollectorState.load(self._state_path, collection.id)
        if state.added_after is None and self.initial_added_after:
            state.added_after = self.initial_added_after
        since = state.added_after
        stats = taxii.collect(self._connection, collection, state, self._emit, limit=self.page_size,
                              logger=self.logger)
        self.logger.info("Collected %d STIX object(s) in %d page(s) from %r since %s (%d already emitted); "
                         "state saved.", stats.emitted, stats.pages, collection.title,
                         since or "the beginning", stats.skipped)

    @staticmethod
    def check(parameters: dict):
        _, problems = _read(parameters)
        return [["error", problem] for problem in problems] or None


def _read(parameters: dict) -> tuple:
    defaults = {name: getattr(CrossBorderTAXIICollectorBot, name) for name in PARAMETERS}
    values, problems = taxii.read_parameters(parameters, defaults, _MINIMUM, ("taxii_url", "collection"))
    return values, problems + _tlp_problems(values)


def _tlp_problems(values: dict) -> list:
    problems = []
    if values.get("default_tlp"):
        try:
            tlp.parse_level(values["default_tlp"], "parameter default_tlp")
        except tlp.UnknownTLPError as exc:
            problems.append(f"Parameter default_tlp: {exc}.")
    after = values.get("initial_added_after")
    if after:
        try:
            taxii.just_before(after)
        except ValueError:
            problems.append(f"Parameter initial_added_after {after!r} is not a timestamp "
                            "(2024-01-31T00:00:00Z).")
    return problems


BOT = CrossBorderTAXIICollectorBot

PARAMETERS = ("taxii_url", "api_root", "collection", "username", "password", "password_env", "api_token",
              "api_token_env", "api_key_header", "api_key_prefix", "verify_ssl", "http_timeout_sec", "page_size",
              "state_file", "initial_added_after", "default_tlp", "retry_attempts", "retry_backoff",
              "retry_max_backoff")
_MINIMUM = {"page_size": 1, "retry_attempts": 0, "retry_backoff": 0, "http_timeout_sec": 0}
