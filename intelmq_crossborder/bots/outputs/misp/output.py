"""Cross-border MISP output: create or update events on a peer hub's MISP, idempotently."""
from collections import OrderedDict

from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.formats.misp import push as misp_push

from intelmq_crossborder.policy.agreements import tlp_ceiling
try:
    from pymisp import PyMISP
except ImportError:  # pragma: no cover
    PyMISP = None


class CrossBorderMISPOutputBot(OutputBot):
    """
    Create or update MISP events on a peer hub's MISP through PyMISP, idempotent by UUID.

    Attributes are grouped into one MISP event per key (feed and day, or incident id); the UUIDs
    of events and attributes are derived from the recipient, the key, the type and the value, so
    re-running the same exchange creates nothing and updates only what changed. Each attribute
    carries the TLP tag and the RSIT tag, the event the most restrictive TLP tag and the
    distribution and sharing group configured for this recipient. An indicator already in the
    event with a later observation time gets a sighting. Every event is first checked against
    the recipient's sharing agreement (defence in depth after the router): what it forbids is
    dumped with the reasons, never pushed. HTTP 5xx and connection errors are retried with
    exponential backoff; a 4xx answer dumps the message with the server's error text. With
    publish, an event is published after a write that changed it (and when the server shows it
    unpublished), never on a re-run that changed nothing. The API
    key comes from misp_api_token or the environment variable misp_api_token_env and never
    appears in logs.
    """

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

    _api = None

    def init(self):
        self._key = misp_push.api_key(self.misp_url, self.misp_api_token, self.misp_api_token_env, self.logger)
        self.agreement, self._hmac_key = misp_push.agreement_and_key(self.agreement_file, self.hmac_key_env)
        self._call = misp_push.RetryingCaller(int(self.retry_attempts), float(self.retry_backoff), self.logger,
                                                url=self.misp_url)
        self._cache = OrderedDict()
        self._settings = misp_push.PushSettings(
            recipient=self.agreement.recipient, grouping=self.grouping, incident_field=self.incident_field,
            event_info=self.event_info, distribution=int(self.distribution),
            extra_tags=list(self.extra_tags or []), uuid_key=self._hmac_key)
        self._sharing_group_resolved = False
        self.logger.info("Pushing to MISP at %s for recipient %s (TLP ceiling %s).", self.misp_url,
                         self.agreement.recipient, tlp_ceiling(self.agreement).label)

    def _misp(self):
        if self._api is None:
            self._api = self._call("connection", PyMISP, self.misp_url, self._key,
                                   ssl=self.misp_verify_ssl, timeout=self.http_timeout_sec,
                                   tool="intelmq-crossborder")
        if not self._sharing_group_resolved:
            if int(self.distribution) == 4:
                self._settings.sharing_group_id = self._resolve_sharing_group()
            self._sharing_group_resolved = True
        return self._api

    def _resolve_sharing_group(self) -> int:
        value = str(self.sharing_group or "").strip()
        if value.isdigit():
            return int(value)
        found = self._call("sharing group lookup", self._api.get_sharing_group, value)
        return int(found["SharingGroup"]["id"])

    def _current(self, event_uuid):
        if event_uuid in self._cache:
            self._cache.move_to_end(event_uuid)
            return self._cache[event_uuid]
        found = self._call("event lookup", self._misp().get_event, event_uuid, pythonify=True, allow=(404,))
        return found

    def _remember(self, event):
        self._cache[str(event.uuid)] = event
        self._cache.move_to_end(str(event.uuid))
        while len(self._cache) > max(1, int(self.cache_size)):
            self._cache.popitem(last=False)

    def process(self):
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        out, field, reason = misp_push.admission(flat, self.agreement, self._hmac_key, self.refuse_distributions)
        if out is None:
            raise InvalidValue(field, flat.get(field), reason=f"{reason}; not pushed to MISP")
        event_uuid = misp_push.target_event_uuid(flat, self._settings, shown_event=out)
        try:
            try:
                self._apply(event_uuid, out, flat)
            except misp_push.PermanentMISPError as exc:
                # A write that timed out or failed with 5xx may have been done all the same, and its
                # retry is then refused ("already exists"). Read the server's state again and
                # re-plan once: if nothing is left to do, the message is done.
                self._cache.pop(event_uuid, None)
                self.logger.info("MISP refused a write for event %s (%s); re-reading it and planning again.",
                                 event_uuid, exc.status)
                self._apply(event_uuid, out, flat)
        except misp_push.PermanentMISPError as exc:
            self._cache.pop(event_uuid, None)
            raise InvalidValue("misp.event_uuid", event_uuid,
                               reason=f"MISP at {self.misp_url} refused it: {exc}") from None
        except misp_push.TransientMISPError:
            self._cache.pop(event_uuid, None)
            raise
        self.acknowledge_message()

    def _apply(self, event_uuid, out, flat):
        """Bring the MISP event to the state that holds ``out``; write only what changed."""
        current = self._current(event_uuid)
        try:
            planned = misp_push.merge(current, out, self._settings, key_event=flat)
        except ValueError as exc:
            raise InvalidValue("misp.event_uuid", event_uuid, reason=f"{exc}; not pushed to MISP") from None
        api = self._misp()
        if planned.is_new:
            self._call("event creation", api.add_event, planned.event, pythonify=True)
            self.logger.debug("MISP event %s created.", event_uuid)
        else:
            if planned.new_attribute is not None:
                self._call("attribute creation", api.add_attribute, event_uuid, planned.new_attribute)
            if planned.changed_attribute is not None:
                self._call("attribute update", api.update_attribute, planned.changed_attribute,
                           planned.attribute_uuid)
            if planned.meta_changed:
                self._call("event update", api.update_event, planned.metadata_event(),
                           event_id=event_uuid, metadata=True)
            if planned.changed:
                self.logger.debug("MISP event %s updated.", event_uuid)
        if self.publish and (planned.changed or getattr(current, "published", None) is False):
            # MISP unpublishes an event on every edit; publish once after what this message changed.
            # A server copy that is still unpublished (an earlier publish failed) is published too.
            self._call("event publication", api.publish, event_uuid)
            planned.event.published = True
            self.logger.debug("MISP event %s published.", event_uuid)
        self._remember(planned.event)
        if planned.sighting:
            self._call("sighting", api.add_sighting,
                       misp_push.sighting_for(planned.attribute_uuid, planned.sighting, self.sighting_source),
                       planned.attribute_uuid)
            self._cache.pop(event_uuid, None)

    @staticmethod
    def check(parameters: dict):
        results = []
        if not parameters.get("misp_url"):
            results.append(["error", "Parameter misp_url is required."])
        results += misp_push.check_agreement_parameter(parameters)
        dist = parameters.get("distribution", 0)
        if str(dist) not in ("0", "1", "2", "3", "4"):
            results.append(["error", "Parameter distribution must be 0-4 (4: sharing group)."])
        elif str(dist) == "4" and not str(parameters.get("sharing_group", "")).strip():
            results.append(["error", "Parameter sharing_group (id or uuid) is required with distribution 4."])
        if not isinstance(parameters.get("publish", False), bool):
            results.append(["error", "Parameter publish must be true or false."])
        if parameters.get("grouping", "feed_day") not in ("feed_day", "incident"):
            results.append(["error", "Parameter grouping must be feed_day or incident."])
        return results or None


BOT = CrossBorderMISPOutputBot
