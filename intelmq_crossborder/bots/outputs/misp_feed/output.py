"""Cross-border MISP feed output: a standard MISP feed directory that peers add as a feed."""
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.formats.misp import push as misp_push
class CrossBorderMISPFeedOutputBot(OutputBot):
    """
    Write a standard MISP feed directory: manifest.json, one <uuid>.json per event and hashes.csv.

    Peers add the directory (served over HTTPS, or synced) in MISP as a feed of type "MISP Feed",
    with no API access to the hub. The feed is incremental: attributes are grouped into one MISP
    event per key (feed and day, or incident id) with derived UUIDs, an event file is rewritten
    only when its content changes, and manifest.json and hashes.csv are updated with it; files are
    replaced atomically. What may go in follows the same rules as the MISP output: every event is
    checked against the recipient's sharing agreement and dumped with the reasons when it forbids
    it; each attribute carries its TLP and RSIT tags, each event the most restrictive TLP tag.
    """

    feed_directory: str = ""
    agreement_file: str = ""
    hmac_key_env: str = ""
    org_name: str = "intelmq-crossborder hub"
    org_uuid: str = ""
    grouping: str = "feed_day"
    incident_field: str = "extra.incident_id"
    event_info: str = "{feed} {day}"
    extra_tags: list = []
    refuse_distributions: list = [0]

    def init(self):
        if not self.feed_directory:
            raise ValueError("Parameter feed_directory is required.")
        self.agreement, self._hmac_key = misp_push.agreement_and_key(self.agreement_file, self.hmac_key_env)
        self._feed = misp_push.FeedWriter(self.feed_directory, self.org_name, self.org_uuid)
        self._settings = misp_push.PushSettings(
            recipient=self.agreement.recipient, grouping=self.grouping, incident_field=self.incident_field,
            event_info=self.event_info, org_name=self.org_name, org_uuid=self.org_uuid,
            extra_tags=list(self.extra_tags or []), uuid_key=self._hmac_key)
        self._written = 0

    def process(self):
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        out, field, reason = misp_push.admission(flat, self.agreement, self._hmac_key, self.refuse_distributions)
        if out is None:
            raise InvalidValue(field, flat.get(field), reason=f"{reason}; not written to the MISP feed")
        event_uuid = misp_push.target_event_uuid(flat, self._settings, shown_event=out)
        current = self._feed.load(event_uuid)
        try:
            planned = misp_push.merge(current, out, self._settings, key_event=flat)
        except ValueError as exc:
            raise InvalidValue("misp.event_uuid", event_uuid,
                               reason=f"{exc}; not written to the MISP feed") from None
        if planned.changed:
            self._feed.write(planned.event)
            self._written += 1
            self.logger.debug("Feed event %s %s.", event_uuid, "created" if planned.is_new else "updated")
        self.acknowledge_message()

    @staticmethod
    def check(parameters: dict):
        results = []
        if not parameters.get("feed_directory"):
            results.append(["error", "Parameter feed_directory is required."])
        results += misp_push.check_agreement_parameter(parameters)
        if parameters.get("grouping", "feed_day") not in ("feed_day", "incident"):
            results.append(["error", "Parameter grouping must be feed_day or incident."])
        return results or None


BOT = CrossBorderMISPFeedOutputBot
