"""Cross-border contributions expert: record contribution and quality indicators per contributor and hub."""
from datetime import datetime, timezone

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.analytics import contributions

from intelmq_crossborder.core import tlp
class CrossBorderContributionsExpertBot(ExpertBot):
    """
    Record what each contributing organisation and hub shares, per day, in a SQLite store.

    For every event: contributor (provenance.originator, else feed.provider, else
    feed.name), hub (provenance.origin_hub, else local_hub), the effective TLP (the
    most restrictive label the event carries), classification.type, the indicator (first of hash, URL, FQDN, IP, CVE), whether
    the indicator was first seen from another contributor (a duplicate), and the
    delay from time.source to arrival here. Early warnings (classification.identifier
    crossborder-early-warning) are recorded as warnings, not as contributions. The
    event is forwarded unchanged; one whose labels cannot be read is dumped with the
    field named (stats import-dumps counts it as invalid). Read the store with
    `intelmq-crossborder stats contributions` and `intelmq-crossborder report daily`;
    events dropped as invalid are imported from IntelMQ's dump files with
    `intelmq-crossborder stats import-dumps`.
    """

    database: str = None          # default: <IntelMQ var/lib>/crossborder/contributions.sqlite
    local_hub: str = "local"
    warning_identifier: str = contributions.WARNING_IDENTIFIER

    def init(self):
        self._path = self.database or str(contributions.default_db_path())
        self._conn = contributions.connect(self._path)
        self.logger.info("Recording contributions in %s.", self._path)

    def process(self):
        event = self.receive_message()
        try:
            recorded = contributions.record_event(
                self._conn, event.to_dict(hierarchical=False), arrived_at=datetime.now(timezone.utc),
                local_hub=self.local_hub, warning_identifier=self.warning_identifier)
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

    def shutdown(self):
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    @staticmethod
    def check(parameters: dict):
        hub = parameters.get("local_hub", "local")
        if not isinstance(hub, str) or not hub:
            return [["error", "Parameter local_hub must be a non-empty hub id."]]
        return None


BOT = CrossBorderContributionsExpertBot
