"""Cross-border sharing router: one named path per permitted recipient, per its agreement."""
from __future__ import annotations

import collections
import os
import time

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.core.secrets import secret_bytes
from intelmq_crossborder.policy import audit
from intelmq_crossborder.policy.agreements import AgreementError, load_agreements
from intelmq_crossborder.policy.decide import PolicySet, event_facts
from intelmq_crossborder.runtime import fanout
from intelmq_crossborder.core.parameters import as_int, is_unset, optional

DEFAULT_KEY_ENV = "CROSSBORDER_HMAC_KEY"

_NOT_RECIPIENTS = ("_default", "_on_error")


class CrossBorderSharingRouterExpertBot(ExpertBot):
    """Route each event to one named path per recipient whose sharing agreement (one YAML file per recipient in agreements_dir) admits it, as that recipient's copy with fields removed or pseudonymised, and write every decision to the audit trail before the event is acknowledged (details in docs/bots/routing.md and docs/agreements.md)."""

    _message_processed_verb = "Routed"

    agreements_dir: str = None
    hmac_password: str = None
    hmac_key_env: str = DEFAULT_KEY_ENV
    audit_log: str = None
    audit_max_bytes: int = 100 * 1024 * 1024
    audit_fsync: bool = False
    counts_interval: int = 300
    fanout_mode: str = "pipeline"

    _agreements: list = []
    _key = None
    _audit = None
    _sender = None

    def init(self):
        if is_unset(self.agreements_dir):
            raise ConfigurationError("sharing router", "parameter agreements_dir is required")
        try:
            audit_max_bytes = as_int(self.audit_max_bytes, 100 * 1024 * 1024, "audit_max_bytes")
            self._counts_interval = as_int(self.counts_interval, 300, "counts_interval")
        except ValueError as exc:
            raise ConfigurationError("sharing router", str(exc)) from None
        key_env = optional(self.hmac_key_env, DEFAULT_KEY_ENV)
        fanout_mode = optional(self.fanout_mode, "pipeline")
        try:
            agreements = load_agreements(self.agreements_dir, harmonization=self.harmonization)
        except AgreementError as exc:
            raise ConfigurationError("sharing agreements", str(exc)) from None
        self._agreements = list(agreements.values())
        paths = set(self.destination_queues) if isinstance(self.destination_queues, dict) else set()
        missing = [a.recipient for a in self._agreements if a.recipient not in paths]
        if missing:
            raise ConfigurationError("sharing router", "no named path in destination_queues for recipient(s) "
                                                       + ", ".join(missing))
        try:
            self._key = secret_bytes(self.hmac_password, key_env)
        except ValueError as exc:
            raise ConfigurationError("sharing router", f"hmac_password: {exc}") from None
        needs_key = [a.recipient for a in self._agreements if a.needs_key]
        if needs_key and not self._key:
            raise ConfigurationError("sharing router", "agreement(s) of " + ", ".join(needs_key)
                                     + " pseudonymise fields: set hmac_password or the environment variable "
                                     + key_env)
        path = optional(self.audit_log) or os.path.join(VAR_STATE_PATH, f"{self.bot_id}-audit.jsonl")
        self._audit = audit.AuditTrail(path, max_bytes=audit_max_bytes, fsync=bool(optional(self.audit_fsync, False)),
                                       bot=self.bot_id)
        self._policy = PolicySet(self._agreements, self._key)
        if fanout_mode not in fanout.MODES:
            raise ConfigurationError("sharing router", f"fanout_mode must be one of {', '.join(fanout.MODES)}")
        self._sender = fanout.BatchSender(self, fanout_mode)
        self._sent = collections.Counter()
        self._denied = collections.defaultdict(collections.Counter)
        self._denial_sets = {}       # id(Decisions.denials) -> [denials, number of events]
        self._unrouted = 0
        self._last_counts = time.monotonic()
        self.logger.info("Loaded %d sharing agreement(s) from %s: %s; audit trail %s.", len(self._agreements),
                         self.agreements_dir, ", ".join(a.recipient for a in self._agreements) or "none", path)
        if self._sender.available():
            self.logger.info("Fan-out: all copies and the acknowledgement in one Redis round trip per event "
                             "(%s).", self._sender.mode)
        else:
            self.logger.info("Fan-out: one send_message per copy (the pipeline is not a single Redis server).")

    def process(self):
        message = self.receive_message()
        event = dict(message)
        facts = event_facts(event)        # the event's labels are read once, here
        decisions = self._policy.decide(event, facts)
        uuid = event.get("provenance.event_uuid")
        # an event is identified by its UUID; the fingerprint is computed only for events without one
        self._audit.write_decisions(decisions, event_uuid=uuid, fingerprint=event.get("provenance.fingerprint")
                                    or (None if uuid else fingerprint(event)),
                                    tlp=None if facts.level is None else facts.level.label, tlp_from=facts.level_from)
        if facts.tlp_error is not None:
            raise InvalidValue(facts.tlp_error_field, facts.tlp_error_value,
                               reason=f"{facts.tlp_error}; denied for every recipient and dumped")
        sent = self._sent
        items = [(d.recipient, fanout.serialize_event(d.event_out)) for d in decisions if d.allowed]
        for recipient, _ in items:
            sent[recipient] += 1
        # the denials are counted per combination (decisions.denials is shared), expanded when logged
        counts = self._denial_sets
        entry = counts.get(id(decisions.denials))
        if entry is None:
            if len(counts) >= 4096:
                self._fold_denials()
            counts[id(decisions.denials)] = [decisions.denials, 1]
        else:
            entry[1] += 1
        if not items:
            self._unrouted += 1
            self.logger.debug("Event shared with no recipient (%d so far).", self._unrouted)
        self._sender.send_and_acknowledge(items)
        if self._counts_interval and time.monotonic() - self._last_counts >= self._counts_interval:
            self.log_counts()

    def _fold_denials(self):
        """Add the counted combinations of denials to the counts per recipient and reason code."""
        for denials, n in self._denial_sets.values():
            for recipient, codes in denials:
                denied = self._denied[recipient]
                for code in codes:
                    denied[code] += n
        self._denial_sets.clear()

    def log_counts(self):
        """Log (and reset) the counts per recipient and per denial reason."""
        self._fold_denials()
        parts = []
        for a in self._agreements:
            denied = self._denied.get(a.recipient, {})
            reasons = ", ".join(f"{code} {n}" for code, n in sorted(denied.items()))
            parts.append(f"{a.recipient} sent {self._sent.get(a.recipient, 0)} denied {sum(denied.values())}"
                         + (f" ({reasons})" if reasons else ""))
        self.logger.info("Sharing counts: %s; shared with nobody %d; events fanned out in one Redis "
                         "transaction %d, through send_message %d.", "; ".join(parts) or "no agreements",
                         self._unrouted, self._sender.batched, self._sender.fallback)
        self._sender.batched = self._sender.fallback = 0
        self._sent.clear()
        self._denied.clear()
        self._unrouted = 0
        self._last_counts = time.monotonic()

    def shutdown(self):
        if self._audit is not None:
            if self._sent or self._denied or self._denial_sets or self._unrouted:
                self.log_counts()
            self._audit.close()
            self._audit = None

    @staticmethod
    def check(parameters: dict):
        results = []
        directory = parameters.get("agreements_dir")
        if is_unset(directory):
            return [["error", "Parameter agreements_dir is required."]]
        if "${" in str(directory):
            # a template (intelmq_crossborder/pipelines/*, expanded by the runner or envsubst at deployment)
            return [["warning", f"Parameter agreements_dir {directory!r} holds an unexpanded variable: "
                                "the agreements were not checked."]]
        try:
            agreements = load_agreements(directory)
        except AgreementError as exc:
            return [["error", f"Sharing agreements: {exc}."]]
        queues = parameters.get("destination_queues", {})
        paths = set(queues) if isinstance(queues, dict) else set()
        for recipient in agreements:
            if recipient not in paths:
                results.append(["error", f"Recipient {recipient!r} ({agreements[recipient].source}) has no "
                                         "named path in destination_queues."])
        for path in sorted(paths - set(agreements) - set(_NOT_RECIPIENTS)):
            results.append(["warning", f"Named path {path!r} matches no enabled agreement: it gets nothing."])
        needs_key = [r for r, a in agreements.items() if a.needs_key]
        env = optional(parameters.get("hmac_key_env"), DEFAULT_KEY_ENV)
        try:
            key = secret_bytes(parameters.get("hmac_password"), env)
        except ValueError as exc:
            return results + [["error", f"Parameter hmac_password: {exc}."]]
        if needs_key and not key:
            results.append(["warning", f"Agreement(s) of {', '.join(needs_key)} pseudonymise fields: the bot needs "
                                       f"hmac_password or the environment variable {env} when it runs."])
        return results or None


BOT = CrossBorderSharingRouterExpertBot
