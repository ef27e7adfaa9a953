"""Cross-border analytics expert: detect cross-border surges and campaigns, tag campaign events and send the candidates to the early warning."""
import gc
import time
from datetime import datetime, timezone
from pathlib import Path

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.analytics import campaign as campaign_detector
from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.analytics import stage as analytics_stage
from intelmq_crossborder.analytics.alerts import EventError, StateError
from intelmq_crossborder.analytics.contributions import default_db_path
from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.parameters import as_int, optional
from intelmq_crossborder.policy.retraction import is_retraction
from intelmq_crossborder.runtime import fanout

_SURGE = analytics_stage.surge_defaults()          # the detectors' own defaults: one place for each
_CAMPAIGN = campaign_detector.CampaignSettings()
_GC_THRESHOLDS = (20000, 20, 20)
_KEYS = (("detectors", "max_tlp", "default_tlp", "max_ahead")
         + tuple(f"surge_{p}" for p in analytics_stage.SURGE_PARAMETERS)
         + tuple(f"campaign_{p}" for p in analytics_stage.CAMPAIGN_PARAMETERS))


class CrossBorderAnalyticsExpertBot(ExpertBot):
    """Run the surge and campaign detectors on the pooled events, add extra.campaign_id to the events of a campaign and send each cross-border incident candidate (evidence only, TLP-capped, hubs never named) on the path warning_path; every event goes on (details in docs/bots/analytics.md)."""

    detectors: list = list(analytics_stage.DETECTORS)
    warning_path: str = "early-warning"
    max_tlp: str = _CAMPAIGN.max_level.label
    default_tlp: str = _CAMPAIGN.default_level.label
    max_ahead: int = _CAMPAIGN.max_ahead
    surge_model: str = None          # the best model of the comparison (docs/analytics.md)
    surge_bucket: int = _SURGE.bucket
    surge_warmup: int = _SURGE.warmup
    surge_sensitivity: float = None  # the model's default
    surge_min_countries: int = _SURGE.min_countries
    surge_window: int = _SURGE.window
    surge_min_count: int = _SURGE.min_count
    surge_count: str = _SURGE.count
    surge_max_keys: int = _SURGE.max_keys
    campaign_window: int = _CAMPAIGN.window
    campaign_min_countries: int = _CAMPAIGN.min_countries
    campaign_min_hubs: int = _CAMPAIGN.min_hubs
    campaign_link_keys: list = list(_CAMPAIGN.link_keys)
    campaign_max_keys: int = _CAMPAIGN.max_keys
    campaign_warmup: int = _CAMPAIGN.warmup
    campaign_common_after: int = _CAMPAIGN.common_after
    campaign_field: str = "extra.campaign_id"
    state_file: str = None          # default: <IntelMQ var/lib/bots>/<bot id>.analytics-state.json
    state_interval: int = 300
    alerts_file: str = None         # default: beside the contributions store, analytics-alerts.jsonl
    hub_id: str = None
    country: str = None

    _stage: analytics_stage.AnalyticsStage = None
    _sender: fanout.BatchSender = None
    _reader: fanout.EventReader = None

    def init(self):
        params = {name: getattr(self, name) for name in _KEYS}
        errors = [text for level, text in self.check(params) or () if level == "error"]
        if errors:
            raise ConfigurationError("analytics", errors[0])
        self._stage = analytics_stage.AnalyticsStage.from_parameters(params)
        self._max_level = tlp.parse_level(optional(self.max_tlp, "AMBER"))
        self._warning_path = optional(self.warning_path, "early-warning")
        if self._warning_path not in (self.destination_queues or {}):
            raise ConfigurationError("analytics", f"destination_queues has no path {self._warning_path!r} "
                                                  "(warning_path); incident candidates would be lost")
        self._campaign_field = optional(self.campaign_field, "extra.campaign_id")
        self._interval = as_int(self.state_interval, 300, "state_interval")
        self._state_path = Path(optional(self.state_file) or self._default_state_file())
        self._journal = analytics_stage.AlertJournal(
            Path(optional(self.alerts_file) or default_db_path().parent / "analytics-alerts.jsonl"))
        try:
            for note in analytics_stage.load_state(self._stage, self._state_path):
                self.logger.info("%s.", note[0].upper() + note[1:])
        except analytics_stage.StateUnreadable as exc:
            raise ConfigurationError("analytics", f"state_file {exc.reason}") from None
        except StateError as exc:
            aside = self._state_path.with_name(
                f"{self._state_path.name}.bad-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}")
            try:
                self._state_path.replace(aside)
                kept = f"kept as {aside}"
            except OSError as move:
                kept = f"could not be moved aside ({move.strerror or move})"
            self.logger.error("Analytics state %s not usable (%s); the detectors start afresh with their warm-up; "
                              "the file %s.", self._state_path, str(exc).rstrip("."), kept)
        # the detectors hold many small long-lived objects (keys, clusters, baselines): the restored
        # state goes to the permanent generation and collections run less often (this process runs
        # this bot only); about 10 us per event less (docs/bots/analytics.md)
        if not getattr(self, "testing", False):      # not in a test process shared with other tests
            gc.collect()
            gc.freeze()
            gc.set_threshold(*_GC_THRESHOLDS)
        self._saved_at = time.monotonic()
        # the event, its candidates and the acknowledgement in one Redis round trip, and the next
        # event read with it; known values are not validated again (runtime/fanout.py)
        self._sender = fanout.BatchSender(self, "pipeline")
        self._reader = fanout.EventReader(self, sender=self._sender)
        self._sent_alerts: list = []
        self.logger.info("Analytics detectors %s; state in %s, alerts in %s.", ", ".join(self._stage.detectors),
                         self._state_path, self._journal.path)

    def _default_state_file(self) -> str:
        from intelmq import VAR_STATE_PATH
        return str(Path(VAR_STATE_PATH) / f"{self.bot_id}.analytics-state.json")

    def process(self):
        received = self._reader.receive()
        if is_retraction(received):         # routed by the holdings downstream, never observed
            self._sender.send_and_acknowledge([("_default", fanout.serialize_event(dict(received)))])
            return
        try:
            alerts, campaign_id = self._stage.observe(received, time.time())
        except tlp.LabelError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        except EventError as exc:
            raise InvalidValue(exc.field, received.get(exc.field), reason=exc.reason) from None
        items = [(self._warning_path, fanout.serialize_event(w)) for w in map(self._warning, alerts) if w]
        event = dict(received)
        if campaign_id is not None:
            event[self._campaign_field] = campaign_id
            self._reader.harmonize(event, received)      # what event.add(..., overwrite=True) would store
        items.append(("_default", fanout.serialize_event(event)))
        self._sender.send_and_acknowledge(items)
        for alert in alerts:
            self._journal_append(alert, sent=alert in self._sent_alerts)
        self._sent_alerts.clear()
        if self._interval == 0 or time.monotonic() - self._saved_at >= self._interval:
            self._save()

    def _warning(self, alert):
        """The early-warning event of ``alert`` (flat fields, as Event.add would store them), or None
        when the early warning's rules refuse it (logged; journaled as not sent)."""
        try:
            fields = ew.build_detection_warning(alert, optional(self.hub_id), optional(self.country),
                                                self._max_level)
        except ValueError as exc:
            self.logger.warning("Alert of detector %s not sent to the early warning: %s.", alert.detector, exc)
            return None
        fields["time.observation"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        self._reader.harmonize(fields)
        self._sent_alerts.append(alert)
        return fields
        self.logger.info("Raised %s candidate (TLP:%s, delay %d s): %s", alert.kind, alert.tlp,
                         fields["extra.detection_delay_seconds"], fields["comment"])

    def _journal_append(self, alert, sent: bool = True):
        """The journal is for the report: a full disk must not make the bot dump the event."""
        try:
            self._journal.append(alert, self._stage.series_of(alert), sent=sent)
        except (OSError, ValueError) as exc:
            self.logger.error("Could not write the alert to the journal %s: %s.", self._journal.path, exc)

    def _save(self):
        try:
            self._stage.save(self._state_path)
        except (OSError, ValueError) as exc:
            self.logger.error("Could not save the analytics state to %s: %s.", self._state_path, exc)
        self._saved_at = time.monotonic()

    def shutdown(self):
        if self._stage is not None:
            self._save()

    @staticmethod
    def check(parameters: dict):
        results = analytics_stage.parameter_problems(parameters)
        interval = parameters.get("state_interval")
        try:
            if as_int(interval, 300, "state_interval") < 0:
                raise ValueError
        except ValueError:
            results.append(["error", "Parameter state_interval must be a number of seconds >= 0."])
        field = optional(parameters.get("campaign_field"), "extra.campaign_id")
        if not isinstance(field, str) or not field.startswith("extra.") or field != field.strip().lower():
            results.append(["error", "Parameter campaign_field must be an extra.* field (lower case)."])
        return results or None


BOT = CrossBorderAnalyticsExpertBot
