"""Cross-border exchange parser: events from the JSON lines of an imported bundle, provenance kept."""
import base64
import binascii

from intelmq.lib.bot import ParserBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import inputs, tlp
class CrossBorderExchangeParserBot(ParserBot):
    """
    Turn the reports of the cross-border exchange collector into events.

    Every line is one event as the sending hub had it; all its fields are kept as
    they came, including sharing.* and provenance.* (the provenance expert of the
    routing stage stamps provenance.hub_path when events leave this hub). The
    report's feed fields are not copied into the events. With fill_origin, an
    event without provenance.origin_hub gets the sending hub, and then, if
    missing, provenance.origin_country the sender's country from the trust store.
    Labels are never lowered: an event whose labels cannot be read (the TLP core's
    one reader), or that would read lower than its line did, is dumped with the
    field named. A line that is not a JSON object the hub accepts (duplicate keys,
    not UTF-8...) or has a field this hub's harmonization does not know is dumped
    with the report, the other lines go on. As every IntelMQ parser does, an event
    gets the bundle line as raw (unless it already carries one, or add_raw is
    false) and classification.type undetermined if it has none.
    """

    fill_origin: bool = True
    add_raw: bool = True

    recover_line = ParserBot.recover_line_json_stream

    def parse(self, report):
        # the raw bytes, strictly: IntelMQ's base64_decode drops bytes that are not UTF-8
        try:
            raw = base64.b64decode(report.get("raw") or "")
        except (binascii.Error, ValueError):
            raw = b""
            self.logger.warning("Report of %s: raw is not base64; nothing to parse.",
                                report.get("extra.exchange_sender") or "?")
        self._source = f"bundle {report.get('extra.exchange_bundle_id') or '?'}"
        for number, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                self._lineno = number
                self._current_line = line.decode("utf-8", "backslashreplace")
                yield line

    def parse_line(self, line, report):
        value = inputs.loads_json(line, self._source, line=self._lineno)
        if not isinstance(value, dict):
            raise ValueError(f"{self._source}:{self._lineno}: exchange line is a JSON {type(value).__name__}, "
                             "not an object")
        came = _read_labels(_flat_extra(value))
        event = self.new_event()
        for key, field_value in value.items():
            if key == "__type":
                continue
            # Values are IntelMQ's serialised form (raw is base64 already): take them as
            # they are when valid, as IntelMQ's own Message() does, else sanitise.
            if not event.add(key, field_value, sanitize=False, raise_failure=False):
                event.add(key, field_value, sanitize=True)
        if self.add_raw and "raw" not in event:
            event.add("raw", self._current_line)
        if "classification.type" not in event:
            event.add("classification.type", "undetermined")
        if self.fill_origin and "provenance.origin_hub" not in event:
            sender = report.get("extra.exchange_sender")
            if sender:
                event.add("provenance.origin_hub", sender)
                country = report.get("extra.exchange_sender_country")
                if country and "provenance.origin_country" not in event:
                    event.add("provenance.origin_country", country)
        kept = _read_labels(event.to_dict(hierarchical=False))
        if came.level is not None and (kept.level is None or kept.level < came.level):
            raise InvalidValue("sharing.tlp", kept.label, reason=f"the event would read TLP:{kept.label} here but "
                               f"came as TLP:{came.label}; labels are never lowered")
        if came.hide_source and not kept.hide_source:
            raise InvalidValue(tlp.HIDE_SOURCE_FIELD, None, reason="the event came with its source hidden and "
                                                                   "would lose that here")
        yield event


def _read_labels(flat: dict) -> tlp.EventTLP:
    try:
        return tlp.event_tlp(flat)
    except tlp.LabelError as exc:
        raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None


def _flat_extra(value: dict) -> dict:
    """A line with ``extra`` as one object read as IntelMQ's ``extra.*`` keys (both spellings
    of one field: refused, never silently one of them)."""
    extra = value.get("extra")
    if not isinstance(extra, dict):
        return value
    flat = {k: v for k, v in value.items() if k != "extra"}
    for key, item in extra.items():
        name = f"extra.{key}"
        if name in flat:
            raise ValueError(f"field {name}: given twice (in extra and as {name})")
        flat[name] = item
    return flat


BOT = CrossBorderExchangeParserBot
