"""Cross-border early-warning expert: raise early warnings for EU-CyCLONe and the CSIRTs Network."""
from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.core import tlp
class CrossBorderEarlyWarningExpertBot(ExpertBot):
    """
    Raise an early-warning event on the path warning_path when an indicator spreads or an event is flagged.

    Spread: the same indicator or incident (the first of key_fields the event has)
    reported by at least min_hubs hubs (provenance.origin_hub) or min_countries
    countries (provenance.origin_country) within window seconds; state in Redis.
    Flag: one of flag_fields is true, or severity_field has one of severity_values.
    One warning per key and trigger per window. The warning carries a short summary
    (comment), the contributing hubs and countries, and the most restrictive TLP of
    its inputs (each read with the TLP core's one label reader: every label counts).
    Inputs above max_tlp (what the warning recipients may see) neither count nor
    appear; hidden sources count but are not named; no input details are copied
    except, with include_indicator, the indicator field itself (not when it names
    a hidden source). Every input event goes on unchanged on _default; one whose
    labels cannot be read is dumped with the field named.
    """

    warning_path: str = "early-warning"
    min_hubs: int = 3
    min_countries: int = 3
    window: int = 86400
    key_fields: list = list(ew.DEFAULT_KEY_FIELDS)
    flag_fields: list = ["extra.large_scale", "extra.crossborder_large_scale"]
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

    _tracker: ew.Tracker = None

    def init(self):
        problems = self.check({name: getattr(self, name) for name in (
            "min_hubs", "min_countries", "window", "max_tlp", "default_tlp", "key_fields")})
        if problems:
            raise ConfigurationError("early warning", "; ".join(p[1] for p in problems))
        if self.warning_path not in (self.destination_queues or {}):
            raise ConfigurationError("early warning", f"destination_queues has no path {self.warning_path!r} "
                                                      "(warning_path); warnings would be lost")
        import redis

        self._max_level = tlp.parse_level(self.max_tlp, "parameter max_tlp")
        self._default_level = tlp.parse_level(self.default_tlp, "parameter default_tlp")
        for name in ("key_fields", "flag_fields", "severity_values"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, [v.strip() for v in value.split(",") if v.strip()])
        client = redis.Redis(host=self.redis_cache_host, port=int(self.redis_cache_port),
                             db=int(self.redis_cache_db), password=self.redis_cache_password,
                             socket_timeout=10)
        self._tracker = ew.Tracker(client, self.window, self.redis_key_prefix)
        self._withheld = 0

    def process(self):
        event = self.receive_message()
        self._evaluate(event)
        self.send_message(event)
        self.acknowledge_message()

    def _evaluate(self, event) -> None:
        try:
            level, hidden = ew.read_level(event, self._default_level)
        except tlp.LabelError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        if level > self._max_level:
            self._withheld += 1
            self.logger.debug("Event with TLP:%s is above max_tlp %s: not counted for early warnings "
                              "(%d so far).", level.label, self._max_level.label, self._withheld)
            return
        key = ew.indicator_key(event, self.key_fields)
        flag = ew.is_flagged(event, self.flag_fields, self.severity_field, self.severity_values)
        if key is None and flag is None:
            return
        hub_path = (event.get("provenance.hub_path") or "").split(",")
        hub = event.get("provenance.origin_hub") or hub_path[0] or self.hub_id or "unknown"
        country = event.get("provenance.origin_country") or (self.country if hub == self.hub_id else None)
        contribution = ew.Contribution(hub, country, level, hidden, event.get("sharing.pap"))
        classification = event.get("classification.type")
        if flag is not None:
            claim_key = key or ("provenance.event_uuid", event.get("provenance.event_uuid") or "")
            if not key and not event.get("provenance.event_uuid"):
                claim_key = None
            if claim_key is None or self._tracker.claim(claim_key, "flag"):
                self._raise("flag", key, ew.Spread([contribution]), classification, flag)
        if key is not None:
            spread = self._tracker.record(key, contribution)
            spread_hit = (self.min_hubs and len(spread.hubs) >= self.min_hubs) or \
                         (self.min_countries and len(spread.countries) >= self.min_countries)
            if spread_hit and self._tracker.claim(key, "spread"):
                self._raise("spread", key, spread, classification)

    def _raise(self, trigger, key, spread, classification, flag=None) -> None:
        fields = ew.build_warning(trigger, key, spread, classification, self.window, self.hub_id, self.country,
                                  self.include_indicator, flag)
        warning = self.new_event()
        for name, value in fields.items():
            warning.add(name, value)
        warning.add("time.observation", warning.get("time.observation") or _now())
        self.send_message(warning, path=self.warning_path)
        level = tlp.most_restrictive(c.level for c in spread.contributions)
        self.logger.info("Raised early warning (%s, TLP:%s): %s", trigger, level.label, fields["comment"])

    @staticmethod
    def check(parameters: dict):
        results = []
        for name in ("min_hubs", "min_countries"):
            value = parameters.get(name, 1)
            if not isinstance(value, int) or value < 0:
                results.append(["error", f"Parameter {name} must be an integer >= 0 (0 disables it)."])
        if not parameters.get("min_hubs") and not parameters.get("min_countries") and \
                "min_hubs" in parameters and "min_countries" in parameters:
            results.append(["warning", "Both min_hubs and min_countries are 0: only flagged events raise warnings."])
        window = parameters.get("window", 86400)
        if not isinstance(window, int) or window < 1:
            results.append(["error", "Parameter window must be a positive number of seconds."])
        for name, default in (("max_tlp", "AMBER"), ("default_tlp", "RED")):
            try:
                level = tlp.parse_level(parameters.get(name, default), f"parameter {name}")
                if name == "max_tlp" and level >= tlp.Level.AMBER_STRICT:
                    results.append(["error", f"Parameter max_tlp: TLP:{level.label} cannot go to EU-CyCLONe or the "
                                             "CSIRTs Network automatically; use AMBER or lower."])
            except tlp.UnknownTLPError as exc:
                results.append(["error", f"Parameter {name}: {exc}."])
        fields = parameters.get("key_fields", ["source.ip"])
        if not isinstance(fields, (list, str)) or not fields:
            results.append(["error", "Parameter key_fields must be a non-empty list of field names."])
        return results or None


def _now() -> str:
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


BOT = CrossBorderEarlyWarningExpertBot
