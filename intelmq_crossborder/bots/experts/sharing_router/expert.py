"""Cross-border sharing router: one named path per permitted recipient, per its agreement."""
from __future__ import annotations

import collections
import os
import re
import time

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.core.fingerprint import fingerprint
from intelmq_crossborder.core.secrets import secret_bytes
from intelmq_crossborder.policy import audit
from intelmq_crossborder.policy.holdings import Holdings, HoldingsError
from intelmq_crossborder.policy.provenance import hub_path
from intelmq_crossborder.policy.retraction import Retraction, RetractionError, is_retraction
from intelmq_crossborder.policy.retraction_router import RetractionRouter, peer_of
from intelmq_crossborder.policy.agreements import AgreementError, load_agreements
from intelmq_crossborder.policy.decide import PolicySet, event_facts
from intelmq_crossborder.runtime import fanout
from intelmq_crossborder.core.parameters import as_int, is_unset, optional

DEFAULT_KEY_ENV = "CROSSBORDER_HMAC_KEY"
HUB_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: The holdings index follows the audit trail every this many events or seconds (and before a retraction).
CATCH_UP_EVENTS = 1000
CATCH_UP_SECONDS = 2.0

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
    hub_id: str = None
    holdings_db: str = None
    holdings_max_rows: int = 20_000_000

    _agreements: list = []
    _since_catch_up = 0
    _last_catch_up = 0.0
    _key = None
    _audit = None
    _sender = None
    _reader = None

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
        self._hub_id = optional(self.hub_id)
        if self._hub_id is not None and not HUB_ID.fullmatch(str(self._hub_id)):
            raise ConfigurationError("sharing router", f"hub_id {self._hub_id!r} is not a hub id like 'at-hub'")
        holdings_path = optional(self.holdings_db) or os.path.join(os.path.dirname(path) or ".",
                                                                   f"{self.bot_id}-holdings.sqlite")
        try:
            self._holdings = Holdings(holdings_path, max_rows=as_int(self.holdings_max_rows, 20_000_000,
                                                                     "holdings_max_rows"))
        except (HoldingsError, ValueError) as exc:
            raise ConfigurationError("sharing router", f"holdings_db: {exc}") from None
        self._retract = RetractionRouter(self._holdings, self._agreements, self._hub_id, paths)
        self._retractions = collections.Counter()
        self._audit_path = path
        try:
            self._catch_up()
        except HoldingsError as exc:
            raise ConfigurationError("sharing router", str(exc)) from None
        if fanout_mode not in fanout.MODES:
            raise ConfigurationError("sharing router", f"fanout_mode must be one of {', '.join(fanout.MODES)}")
        self._sender = fanout.BatchSender(self, fanout_mode)
        # receive as IntelMQ does, known (field, value) pairs not validated again; the next message
        # comes back with the send's round trip
        self._reader = fanout.EventReader(self, sender=self._sender)
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
        event = dict(self._reader.receive())
        if is_retraction(event):          # never label-read, never decided: routed to the holders
            return self._process_retraction(event)
        facts = event_facts(event)        # the event's labels are read once, here
        decisions = self._policy.decide(event, facts)
        uuid = event.get("provenance.event_uuid")
        # an event is identified by its UUID; the fingerprint is computed only for events without one
        event_fp = event.get("provenance.fingerprint") or (None if uuid else fingerprint(event))
        peer = peer_of(hub_path(event), self._hub_id)
        if peer is None and self._hub_id:             # no hub path: the hub it entered the exchange at
            origin = event.get("provenance.origin_hub")
            peer = origin if origin and origin != self._hub_id else None
        copies = self._retract.copies(decisions, facts.level, facts.chatham_house)
        pap = facts.pap
        self._audit.write_decisions(decisions, event_uuid=uuid, fingerprint=event_fp,
                                    tlp=None if facts.level is None else facts.level.label, tlp_from=facts.level_from,
                                    extra=self._retract.audit_extra(uuid, event_fp, copies, peer, pap)
                                    if (copies or peer) else "")
        self._since_catch_up += 1
        if self._since_catch_up >= CATCH_UP_EVENTS or time.monotonic() - self._last_catch_up >= CATCH_UP_SECONDS:
            try:
                self._catch_up()
            except HoldingsError as exc:       # the audit trail has the decisions: the next call catches up
                self.logger.error("%s; retried with the next event.", exc)
                self._last_catch_up = time.monotonic()
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

    def _process_retraction(self, event: dict):
        """A retraction goes to exactly the recipients holding its target (docs/retraction.md);
        a confirmation from a peer is recorded.  The audit trail has it before anything is sent."""
        try:
            msg = Retraction.from_event(event)
        except RetractionError as exc:
            raise InvalidValue(exc.field or "retraction.id", str(event.get(exc.field or "retraction.id"))[:100],
                               reason=f"{exc.reason}; the retraction is dumped") from None
        self._catch_up()                  # the index knows every event routed before this retraction
        plan = self._retract.plan(msg)
        self._audit.write_retraction(plan.audit_entry())
        self._retract.commit(plan)
        items = [(recipient, fanout.serialize_event(out)) for recipient, out in plan.items]
        conf = self._retract.confirmation_event(plan)
        if conf is not None:
            items.append((conf[0], fanout.serialize_event(conf[1])))
        elif plan.from_peer is not None and plan.outcome not in ("confirmation", "loop") and not msg.is_confirmation:
            self.logger.warning("Retraction %s from peer hub %r: no named path to that hub (an agreement with "
                                "hub_id %r), so it gets no confirmation.", msg.id, plan.from_peer, plan.from_peer)
        self._retractions[plan.outcome.split(":")[0].split(" ")[0]] += 1
        what = "Confirmation of retraction" if msg.is_confirmation else f"Retraction {msg.action}"
        if plan.refused or plan.outcome == "loop":
            self.logger.warning("%s %s of %s %s: %s.", what, msg.id, msg.target, plan.outcome, plan.log)
        else:
            self.logger.info("%s %s of %s: %s.", what, msg.id, msg.target, plan.log)
        self._sender.send_and_acknowledge(items)

    def _catch_up(self) -> None:
        """Bring the holdings index up to the audit trail (batched: the audit trail is written per
        event, the index follows every CATCH_UP_EVENTS events or CATCH_UP_SECONDS)."""
        self._holdings.catch_up(self._audit_path)
        self._since_catch_up = 0
        self._last_catch_up = time.monotonic()

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
        retractions = ", ".join(f"{k} {v}" for k, v in sorted(self._retractions.items())) or "none"
        self.logger.info("Sharing counts: %s; shared with nobody %d; retractions %s; events fanned out in one "
                         "Redis transaction %d, through send_message %d.", "; ".join(parts) or "no agreements",
                         self._unrouted, retractions, self._sender.batched, self._sender.fallback)
        self._retractions.clear()
        self._sender.batched = self._sender.fallback = 0
        self._sent.clear()
        self._denied.clear()
        self._unrouted = 0
        self._last_counts = time.monotonic()

    def shutdown(self):
        if self._audit is not None:
            if self._sent or self._denied or self._denial_sets or self._unrouted or self._retractions:
                self.log_counts()
            self._audit.close()
            self._audit = None
        if getattr(self, "_holdings", None) is not None:
            try:
                self._catch_up()
            except Exception:  # noqa: BLE001 - the next start catches up from the audit trail
                self.logger.exception("The holdings index could not catch up with the audit trail; the next start "
                                      "does.")
            self._holdings.close()
            self._holdings = None

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
        hub = parameters.get("hub_id")
        if not is_unset(hub) and "${" not in str(hub) and not HUB_ID.fullmatch(str(hub)):
            results.append(["error", f"Parameter hub_id {hub!r} is not a hub id like 'at-hub'."])
        if is_unset(hub) and any(a.hub_id for a in agreements.values()):
            results.append(["warning", "Parameter hub_id is not set: retractions from peer hubs are refused and "
                                       "imported events are not recorded with the peer they came from."])
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
