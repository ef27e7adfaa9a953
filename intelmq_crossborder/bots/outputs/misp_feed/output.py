"""Cross-border MISP feed output: a standard MISP feed directory that peers add as a feed."""
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.formats.misp import push as misp_push
from intelmq_crossborder.formats.misp.holdings import Holdings
from intelmq_crossborder.core.parameters import as_list, optional
from intelmq_crossborder.bots.outputs.misp.retractions import MISPRetractions


class CrossBorderMISPFeedOutputBot(MISPRetractions, OutputBot):
    """Write a standard MISP feed directory (manifest.json, one <uuid>.json per event, hashes.csv) that peers add in MISP as a feed, incrementally and atomically, after checking each event against the recipient's sharing agreement; a retraction removes (or relabels) the attributes it wrote and rewrites the manifest. Details: docs/bots/misp.md."""

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
    holdings_file: str = ""

    _holdings: Holdings = None    # what it wrote, per event (init()); None: retractions find nothing

    def init(self):
        if not optional(self.feed_directory):
            raise ValueError("Parameter feed_directory is required.")
        self.agreement, self._hmac_key = misp_push.agreement_and_key(self.agreement_file, optional(self.hmac_key_env))
        self.refuse_distributions = misp_push.refused_distributions(self.refuse_distributions)
        org_name = optional(self.org_name, "intelmq-crossborder hub")
        self._feed = misp_push.FeedWriter(self.feed_directory, org_name, optional(self.org_uuid, ""))
        self._settings = misp_push.PushSettings(
            recipient=self.agreement.recipient, grouping=optional(self.grouping, "feed_day"),
            incident_field=optional(self.incident_field, "extra.incident_id"),
            event_info=optional(self.event_info, "{feed} {day}"), org_name=org_name,
            org_uuid=self._feed.org["uuid"], extra_tags=as_list(self.extra_tags), uuid_key=self._hmac_key)
        # in IntelMQ's state folder, never in the feed directory (which is served to the peers)
        self._holdings = Holdings(optional(self.holdings_file) or
                                  os.path.join(VAR_STATE_PATH, f"{self.bot_id}.holdings.sqlite"))
        self._filtered = 0

    def process(self):
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        if self._retraction_handled(flat):
            return
        ids = flat.get("provenance.event_uuid"), flat.get("provenance.fingerprint")
        out, field, reason = misp_push.admission(flat, self.agreement, self._hmac_key, self.refuse_distributions)
        if out is None:
            raise InvalidValue(field, flat.get(field), reason=f"{reason}; not written to the MISP feed")
        try:
            planned = self._feed.push(out, flat, self._settings)
        except misp_push.PlanError as exc:
            raise InvalidValue("misp.event_uuid", exc.event_uuid,
                               reason=f"{exc}; not written to the MISP feed") from None
        if planned.changed:
            self.logger.debug("Feed event %s %s.", planned.event.uuid, "created" if planned.is_new else "updated")
        if any(ids) and self._holdings is not None:
            self._holdings.record(*ids, str(planned.event.uuid), planned.attribute_uuid)
        self.acknowledge_message()

    def _retraction_target(self) -> tuple:
        return self._feed.retract, misp_push.ERASE       # a feed keeps no soft-deleted attributes

    @staticmethod
    def check(parameters: dict):
        results = []
        if not optional(parameters.get("feed_directory")):
            results.append(["error", "Parameter feed_directory is required."])
        results += misp_push.check_agreement_parameter(parameters)
        results += misp_push.check_parameters(parameters)
        return results or None


BOT = CrossBorderMISPFeedOutputBot
