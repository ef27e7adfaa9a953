"""Cross-border early-warning expert: raise early warnings for EU-CyCLONe and the CSIRTs Network."""
from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.parameters import optional
from intelmq_crossborder.policy.retraction import is_retraction
from intelmq_crossborder.runtime.state_store import redis_client
from intelmq_crossborder.runtime.retraction import received_retraction

_SETTINGS = ("min_hubs", "min_countries", "window", "key_fields", "flag_fields", "severity_field", "severity_values",
             "max_tlp", "default_tlp", "include_indicator", "hub_id", "country")


class CrossBorderEarlyWarningExpertBot(ExpertBot):
    """Raise an early-warning event on the path warning_path when the same indicator is reported by min_hubs hubs or min_countries countries within window seconds, or when an event is flagged large-scale or severe; inputs above max_tlp neither count nor appear, hidden sources are not named, a warning raised on data later retracted is followed by a correction on the same path, and every input goes on unchanged (details in docs/bots/analytics.md)."""

    warning_path: str = "early-warning"
    min_hubs: int = 3
    min_countries: int = 3
    window: int = 86400
    key_fields: list = list(ew.DEFAULT_KEY_FIELDS)
    flag_fields: list = list(ew.DEFAULT_FLAG_FIELDS)
    severity_field: str = "extra.severity"
    severity_values: list = ["critical"]
    max_tlp: str = "AMBER"
    default_tlp: str = "RED"
    include_indicator: bool = True
    hub_id: str = None
    country: str = None
    redis_cache_host: str = "127.0.0.1"
    redis_cache_port: int = 6379
    redis_cache_db: int = 6
    redis_cache_password: str = None
    redis_key_prefix: str = "crossborder:ew:"

    _evaluator: ew.Evaluator = None

    def init(self):
        try:
            settings = ew.Settings.from_parameters({name: getattr(self, name) for name in _SETTINGS})
            client = redis_client(self.redis_cache_host, self.redis_cache_port, optional(self.redis_cache_db, 6),
                                  self.redis_cache_password, socket_timeout=10)
        except (ValueError, tlp.UnknownTLPError) as exc:
            raise ConfigurationError("early warning", str(exc)) from None
        self._warning_path = optional(self.warning_path, "early-warning")
        if self._warning_path not in (self.destination_queues or {}):
            raise ConfigurationError("early warning", f"destination_queues has no path {self._warning_path!r} "
                                                      "(warning_path); warnings would be lost")
        tracker = ew.Tracker(client, settings.window, optional(self.redis_key_prefix, "crossborder:ew:"))
        self._evaluator = ew.Evaluator(settings, tracker)

    def process(self):
        event = self.receive_message()
        if is_retraction(event):
            self._correct(event.to_dict(hierarchical=False))
            self.send_message(event)
            self.acknowledge_message()
            return
        withheld = self._evaluator.withheld
        try:
            warnings = self._evaluator.evaluate(event)
        except tlp.LabelError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        if self._evaluator.withheld > withheld:
            self.logger.debug("Event above max_tlp %s: not counted for early warnings (%d so far).",
                              self._evaluator.settings.max_level.label, self._evaluator.withheld)
        for warning in warnings:
            out = self.new_event()
            for name, value in warning.fields.items():
                out.add(name, value)
            self.send_message(out, path=self._warning_path)
            self.logger.info("Raised early warning (%s, TLP:%s): %s", warning.trigger, warning.level.label,
                             warning.fields["comment"])
        self.send_message(event)
        self.acknowledge_message()

    def _correct(self, flat: dict):
        """Send a correction for every warning raised on data the retraction names."""
        retraction = received_retraction(flat, "the retraction is not forwarded")
        for correction in self._evaluator.correct(retraction):
            out = self.new_event()
            for name, value in correction.fields.items():
                out.add(name, value)
            self.send_message(out, path=self._warning_path)
            self.logger.info("Sent a correction of early warning %s after retraction %s (%s).",
                             correction.fields["extra.corrects_early_warning"], retraction.id, retraction.action)

    @staticmethod
    def check(parameters: dict):
        return ew.parameter_problems(parameters) or None


BOT = CrossBorderEarlyWarningExpertBot
