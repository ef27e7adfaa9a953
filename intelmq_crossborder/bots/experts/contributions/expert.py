"""Cross-border contributions expert: record contribution and quality indicators per contributor and hub."""
from datetime import datetime, timezone

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.analytics import contributions
from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.parameters import optional
from intelmq_crossborder.policy.retraction import is_confirmation, is_retraction
from intelmq_crossborder.runtime.retraction import received_retraction


class CrossBorderContributionsExpertBot(ExpertBot):
    """Record per day in a SQLite store what each contributing organisation and hub shares (TLP, type, indicator, duplicates, delay, retractions of their events) and forward the event unchanged; read it with intelmq-crossborder stats contributions and report daily (details in docs/bots/analytics.md)."""

    database: str = None          # default: <IntelMQ var/lib>/crossborder/contributions.sqlite
    local_hub: str = "local"
    warning_identifier: str = contributions.WARNING_IDENTIFIER

    def init(self):
        self._path = optional(self.database) or str(contributions.default_db_path())
        self._local_hub = optional(self.local_hub, "local")
        self._warning_identifier = optional(self.warning_identifier, contributions.WARNING_IDENTIFIER)
        self._conn = contributions.connect(self._path)
        self.logger.info("Recording contributions in %s.", self._path)

    def process(self):
        event = self.receive_message()
        if is_retraction(event):
            self._retraction(event.to_dict(hierarchical=False))
            self.send_message(event)
            self.acknowledge_message()
            return
        try:
            recorded = contributions.record_event(
                self._conn, event.to_dict(hierarchical=False), arrived_at=datetime.now(timezone.utc),
                local_hub=self._local_hub, warning_identifier=self._warning_identifier)
        except tlp.LabelError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        except contributions.FieldTypeError as exc:
            raise InvalidValue(exc.field, None, reason="a list or object where a text or number is expected") \
                from None
        if recorded.duplicate:
            self.logger.debug("Duplicate of an indicator first seen from another contributor: %s.",
                              recorded.indicator)
        self.send_message(event)
        self.acknowledge_message()

    def _retraction(self, flat: dict):
        """Count a retraction for the contributors of the events it names (an erase also takes
        their indicator values out of the store); a confirmation is only forwarded."""
        if is_confirmation(flat):
            return
        retraction = received_retraction(flat, "the retraction is not forwarded")
        recorded = contributions.record_retraction(self._conn, retraction, arrived_at=datetime.now(timezone.utc))
        self.logger.info("Retraction %s (%s) recorded for %d contributor(s); %d indicator value(s) erased.",
                         retraction.id, retraction.action, len(recorded.holders), recorded.erased_values)

    def shutdown(self):
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    @staticmethod
    def check(parameters: dict):
        hub = optional(parameters.get("local_hub"), "local")
        if not isinstance(hub, str) or not hub:
            return [["error", "Parameter local_hub must be a non-empty hub id."]]
        return None


BOT = CrossBorderContributionsExpertBot
