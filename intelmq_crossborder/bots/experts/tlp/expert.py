"""Cross-border TLP expert: write an event's effective TLP as the canonical TLP 2.0 label."""
from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import tlp
from intelmq_crossborder.runtime import fanout
from intelmq_crossborder.core.parameters import optional
from intelmq_crossborder.policy.retraction import is_retraction


class CrossBorderTLPExpertBot(ExpertBot):
    """Write the event's effective TLP 2.0 label (the most restrictive it carries in any field or spelling, default_tlp when it has none) into sharing.tlp, and with set_stock_tlp a value at least as restrictive into the stock tlp field; an unreadable label is dumped with the field named (details in docs/bots/tlp.md)."""

    default_tlp: str = "AMBER"
    set_stock_tlp: bool = True

    _default_level: tlp.Level = None
    _sender: fanout.BatchSender = None
    _reader: fanout.EventReader = None

    def init(self):
        self._default_level = tlp.parse_level(optional(self.default_tlp, "AMBER"), "parameter default_tlp")
        self.set_stock_tlp = bool(optional(self.set_stock_tlp, True))
        if getattr(self, "label_fields", None) is not None:
            self.logger.warning("Parameter label_fields is ignored: every label field is read (docs/tlp.md).")
        self._defaulted = 0
        self._sender = fanout.BatchSender(self, "pipeline")   # send + acknowledge in one round trip
        self._reader = fanout.EventReader(self, sender=self._sender)                # receive without validating known values again

    def process(self):
        received = self._reader.receive()
        if is_retraction(received):          # no label of its own to write: passed on as it is
            self._sender.send_and_acknowledge([("_default", fanout.serialize_event(dict(received)))])
            return
        try:
            labels = tlp.event_tlp(received)
        except tlp.LabelError as exc:
            value = exc.value if exc.value is None or isinstance(exc.value, str) else repr(exc.value)
            raise InvalidValue(exc.field, value[:200] if isinstance(value, str) else value,
                               reason=f"{exc.reason[:300]}; the event is dumped, not forwarded with a guess") from None
        level = labels.level
        if level is None:
            level = self._default_level
            self._defaulted += 1
            self.logger.debug("Event without TLP label, default %s applied (%d so far).",
                              level.label, self._defaulted)
        event = dict(received)
        event["sharing.tlp"] = level.label
        if self.set_stock_tlp:
            event["tlp"] = tlp.to_intelmq_stock(level)
        if labels.hide_source:
            event[tlp.HIDE_SOURCE_FIELD] = True
        self._reader.harmonize(event, received)       # what event.add(..., overwrite=True) would store
        self._sender.send_and_acknowledge([("_default", fanout.serialize_event(event))])

    @staticmethod
    def check(parameters: dict):
        results = []
        default = optional(parameters.get("default_tlp"), "AMBER")
        try:
            tlp.parse_level(default, "parameter default_tlp")
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter default_tlp: {exc}."])
        if "label_fields" in parameters:
            results.append(["warning", "Parameter label_fields is ignored: every label field is read "
                                       "(docs/tlp.md); remove it."])
        return results or None


BOT = CrossBorderTLPExpertBot
