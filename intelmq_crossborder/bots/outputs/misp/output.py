"""Cross-border MISP output: create or update events on a peer hub's MISP, idempotently."""
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.formats.misp import push as misp_push
from intelmq_crossborder.formats.misp.holdings import Holdings
from intelmq_crossborder.policy.agreements import tlp_ceiling
from intelmq_crossborder.core.parameters import as_float, as_int, as_list, optional
from intelmq_crossborder.bots.outputs.misp.retractions import MISPRetractions


class CrossBorderMISPOutputBot(MISPRetractions, OutputBot):
    """Create or update MISP events on a peer hub's MISP through PyMISP, idempotently (derived UUIDs), after checking each event against the recipient's sharing agreement, and apply retractions to what it wrote (withdraw: delete or tag, erase: hard delete, relabel); the API key comes from misp_api_token or the environment and never appears in logs. Details: docs/bots/misp.md."""

    misp_url: str = ""
    misp_api_token: str = ""
    misp_api_token_env: str = "MISP_API_KEY"
    misp_verify_ssl: bool = True
    http_timeout_sec: int = 60
    agreement_file: str = ""
    hmac_key_env: str = ""
    distribution: int = 0
    sharing_group: str = ""
    grouping: str = "feed_day"
    incident_field: str = "extra.incident_id"
    event_info: str = "{feed} {day}"
    extra_tags: list = []
    refuse_distributions: list = [0]
    sighting_source: str = "intelmq-crossborder"
    publish: bool = False
    retry_attempts: int = 3
    retry_backoff: float = 2.0
    cache_size: int = 256
    holdings_file: str = ""
    withdraw_mode: str = "delete"

    _holdings: Holdings = None    # what it wrote, per event (init()); None: retractions find nothing
    _withdraw_mode = "delete"
    _written = "pushed"

    def init(self):
        key = misp_push.api_key(self.misp_url, optional(self.misp_api_token),
                                optional(self.misp_api_token_env, "MISP_API_KEY"), self.logger)
        self.agreement, self._hmac_key = misp_push.agreement_and_key(self.agreement_file, optional(self.hmac_key_env))
        self.refuse_distributions = misp_push.refused_distributions(self.refuse_distributions)
        settings = misp_push.PushSettings(
            recipient=self.agreement.recipient, grouping=optional(self.grouping, "feed_day"),
            incident_field=optional(self.incident_field, "extra.incident_id"),
            event_info=optional(self.event_info, "{feed} {day}"),
            distribution=as_int(self.distribution, 0, "distribution"),
            extra_tags=as_list(self.extra_tags), uuid_key=self._hmac_key)
        call = misp_push.RetryingCaller(as_int(self.retry_attempts, 3, "retry_attempts"),
                                        as_float(self.retry_backoff, 2.0, "retry_backoff"), self.logger,
                                        url=self.misp_url)
        connect = misp_push.pymisp_connector(self.misp_url, key, bool(optional(self.misp_verify_ssl, True)),
                                             as_float(self.http_timeout_sec, 60.0, "http_timeout_sec"))
        self._pusher = misp_push.Pusher(
            connect, settings, call, sharing_group=optional(self.sharing_group, ""),
            publish=bool(optional(self.publish, False)),
            sighting_source=optional(self.sighting_source, "intelmq-crossborder"),
            cache_size=as_int(self.cache_size, 256, "cache_size"), logger=self.logger)
        self._withdraw_mode = optional(self.withdraw_mode, "delete")
        if self._withdraw_mode not in misp_push.WITHDRAW_MODES:
            raise ValueError("Parameter withdraw_mode must be delete or tag.")
        self._pusher.retraction_tag = misp_push.RETRACTED_TAG
        self._holdings = Holdings(optional(self.holdings_file) or
                                  os.path.join(VAR_STATE_PATH, f"{self.bot_id}.holdings.sqlite"))
        self._filtered = 0
        self.logger.info("Pushing to MISP at %s for recipient %s (TLP ceiling %s).", self.misp_url,
                         self.agreement.recipient, tlp_ceiling(self.agreement).label)

    def process(self):
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        if self._retraction_handled(flat):
            return
        ids = flat.get("provenance.event_uuid"), flat.get("provenance.fingerprint")
        out, field, reason = misp_push.admission(flat, self.agreement, self._hmac_key, self.refuse_distributions)
        if out is None:
            raise InvalidValue(field, flat.get(field), reason=f"{reason}; not pushed to MISP")
        try:
            planned = self._pusher.push(out, flat)
        except misp_push.PlanError as exc:
            raise InvalidValue("misp.event_uuid", exc.event_uuid, reason=f"{exc}; not pushed to MISP") from None
        except misp_push.PermanentMISPError as exc:
            raise InvalidValue("misp.event_uuid", exc.event_uuid,
                               reason=f"MISP at {self.misp_url} refused it: {exc}") from None
        if any(ids) and self._holdings is not None:
            self._holdings.record(*ids, str(planned.event.uuid), planned.attribute_uuid)
        self.acknowledge_message()

    def _retraction_target(self) -> tuple:
        return self._pusher.retract, self._withdraw_mode

    def _retraction_refused(self, retraction, exc) -> str:
        return f"MISP at {self.misp_url} refused to apply it to event {exc.event_uuid}: {exc}"

    @staticmethod
    def check(parameters: dict):
        results = []
        if not optional(parameters.get("misp_url")):
            results.append(["error", "Parameter misp_url is required."])
        results += misp_push.check_agreement_parameter(parameters)
        dist = optional(parameters.get("distribution"), 0)
        if str(dist).strip() not in ("0", "1", "2", "3", "4"):
            results.append(["error", "Parameter distribution must be 0-4 (4: sharing group)."])
        elif str(dist).strip() == "4" and not optional(parameters.get("sharing_group")):
            results.append(["error", "Parameter sharing_group (id or uuid) is required with distribution 4."])
        if optional(parameters.get("withdraw_mode"), "delete") not in misp_push.WITHDRAW_MODES:
            results.append(["error", "Parameter withdraw_mode must be delete or tag."])
        results += misp_push.check_parameters(
            parameters, flags={"publish": False, "misp_verify_ssl": True},
            numbers={"http_timeout_sec": (float, 0), "retry_attempts": (int, 0), "retry_backoff": (float, 0),
                     "cache_size": (int, 1)})
        return results or None


BOT = CrossBorderMISPOutputBot
