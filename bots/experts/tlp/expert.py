"""Cross-border TLP expert: normalise whatever TLP label an event carries to TLP 2.0."""
from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder import fanout, tlp


class CrossBorderTLPExpertBot(ExpertBot):
    """
    Write the canonical TLP 2.0 label (CLEAR, GREEN, AMBER, AMBER+STRICT, RED) into sharing.tlp.

    Reads every label the event carries in label_fields: the stock tlp field, a
    label a parser left in extra.*, MISP tag lists (tlp:amber, tlp:ex:chr) and CSAF
    labels. Several labels: the most restrictive wins. No label: default_tlp is
    set. A label that cannot be read: the event is dumped, never forwarded with a
    guess. The MISP tag tlp:ex:chr sets sharing.do_not_disclose_source. With
    set_stock_tlp the stock tlp field gets the TLP 1.0 value that is at least as
    restrictive (CLEAR as WHITE, AMBER+STRICT as RED), so stock bots stay safe.
    """

    default_tlp: str = "AMBER"
    label_fields: list = ["sharing.tlp", "tlp", "extra.tlp", "extra.tlp_label",
                          "extra.csaf_tlp", "extra.misp_tags", "extra.tags"]
    set_stock_tlp: bool = True

    _default_level: tlp.Level = None
    _sender: fanout.BatchSender = None

    def init(self):
        self._default_level = tlp.parse_level(self.default_tlp, "parameter default_tlp")
        if isinstance(self.label_fields, str):
            self.label_fields = [f.strip() for f in self.label_fields.split(",") if f.strip()]
        self._defaulted = 0
        self._sender = fanout.BatchSender(self, "pipeline")   # send + acknowledge in one round trip

    def process(self):
        event = self.receive_message()
        try:
            labels = tlp.read_event_labels(event, self.label_fields)
        except tlp.UnknownTLPError as exc:
            raise InvalidValue("sharing.tlp", exc.value,
                               reason=f"{exc}; the event is dumped, not forwarded with a guess") from None
        level = labels.level
        if level is None:
            level = self._default_level
            self._defaulted += 1
            self.logger.debug("Event without TLP label, default %s applied (%d so far).",
                              level.label, self._defaulted)
        event.add("sharing.tlp", level.label, overwrite=True)
        if self.set_stock_tlp:
            event.add("tlp", tlp.to_intelmq_stock(level), overwrite=True)
        if labels.chatham_house:
            event.add("sharing.do_not_disclose_source", True, overwrite=True)
        self._sender.send_one_and_acknowledge(event)

    @staticmethod
    def check(parameters: dict):
        results = []
        default = parameters.get("default_tlp", "AMBER")
        try:
            tlp.parse_level(default, "parameter default_tlp")
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter default_tlp: {exc}."])
        fields = parameters.get("label_fields", [])
        if not isinstance(fields, (list, str)):
            results.append(["error", "Parameter label_fields must be a list of field names."])
        return results or None


BOT = CrossBorderTLPExpertBot
