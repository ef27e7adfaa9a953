"""Cross-border TLP expert: write an event's effective TLP as the canonical TLP 2.0 label."""
from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.runtime import fanout

from intelmq_crossborder.core import tlp
class CrossBorderTLPExpertBot(ExpertBot):
    """
    Write the event's effective TLP (CLEAR, GREEN, AMBER, AMBER+STRICT, RED) into sharing.tlp.

    The effective TLP is the most restrictive label the event carries in any field or
    spelling, sharing.tlp included (intelmq_crossborder.core.tlp.event_tlp, docs/tlp.md).
    No label: default_tlp. Anything label-like that cannot be read: the event is
    dumped with the field named, never forwarded with a guess. A hidden source (the
    MISP tag tlp:ex:chr) sets sharing.do_not_disclose_source. With set_stock_tlp the
    stock tlp field gets the value that is at least as restrictive (CLEAR as WHITE,
    AMBER+STRICT as RED), so stock bots stay safe.
    """

    default_tlp: str = "AMBER"
    set_stock_tlp: bool = True

    _default_level: tlp.Level = None
    _sender: fanout.BatchSender = None

    def init(self):
        self._default_level = tlp.parse_level(self.default_tlp, "parameter default_tlp")
        if getattr(self, "label_fields", None) is not None:
            self.logger.warning("Parameter label_fields is ignored: every label field is read (docs/tlp.md).")
        self._defaulted = 0
        self._sender = fanout.BatchSender(self, "pipeline")   # send + acknowledge in one round trip

    def process(self):
        event = self.receive_message()
        try:
            labels = tlp.event_tlp(event)
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
        event.add("sharing.tlp", level.label, overwrite=True)
        if self.set_stock_tlp:
            event.add("tlp", tlp.to_intelmq_stock(level), overwrite=True)
        if labels.hide_source:
            event.add(tlp.HIDE_SOURCE_FIELD, True, overwrite=True)
        self._sender.send_one_and_acknowledge(event)

    @staticmethod
    def check(parameters: dict):
        results = []
        default = parameters.get("default_tlp", "AMBER")
        try:
            tlp.parse_level(default, "parameter default_tlp")
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter default_tlp: {exc}."])
        if "label_fields" in parameters:
            results.append(["warning", "Parameter label_fields is ignored: every label field is read "
                                       "(docs/tlp.md); remove it."])
        return results or None


BOT = CrossBorderTLPExpertBot
