"""Cross-border exchange parser: events from the JSON lines of an imported bundle, provenance kept."""
import base64
import binascii

from intelmq.lib.bot import ParserBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.parameters import optional
from intelmq_crossborder.exchange.retractions import check_received
from intelmq_crossborder.policy.retraction import RetractionError, is_retraction

#: The named path retractions and confirmations take to the sharing router (docs/retraction.md).
RETRACTIONS_PATH = "retractions"


class CrossBorderExchangeParserBot(ParserBot):
    """Turns the reports of the cross-border exchange collector into events, every field kept as the sending hub had it; with fill_origin, provenance.origin_hub and origin_country come from the sender. An event whose labels cannot be read, or would read lower than its line did, is dumped with the field named. Details: docs/bots/exchange.md."""

    fill_origin: bool = True
    _retractions_path = None
    _warned = False
    add_raw: bool = True

    def init(self):
        # IntelMQ Manager saves an untouched parameter as '': the default, not false.
        self.fill_origin = optional(self.fill_origin, True)
        self.add_raw = optional(self.add_raw, True)
        queues = self.destination_queues if isinstance(self.destination_queues, dict) else {}
        self._retractions_path = RETRACTIONS_PATH if RETRACTIONS_PATH in queues else None
        self._warned = False

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
        if is_retraction(value):
            yield self._retraction(value, report)
            return
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

    def _retraction(self, value: dict, report):
        """A retraction or confirmation of the sending hub: only its own fields, never label-read."""
        try:
            msg = check_received({k: v for k, v in value.items() if k not in ("__type", "sharing.agreement")},
                                 report.get("extra.exchange_sender"))
        except RetractionError as exc:
            raise InvalidValue(exc.field or "retraction.id", str(value.get(exc.field or "retraction.id"))[:100],
                               reason=exc.reason) from None
        event = self.new_event()
        for key, field_value in msg.to_event().items():
            event.add(key, field_value)
        return event

    def send_message(self, *messages, path: str = "_default", **kwargs):
        """Retractions and confirmations take the named path ``retractions`` when it exists."""
        if path == "_default" and any(is_retraction(m) for m in messages):
            if self._retractions_path is None:
                if not self._warned:
                    self._warned = True
                    self.logger.warning("No named path %r: retractions from peers go to the default path, through "
                                        "bots that may not pass them; point %r at the sharing router "
                                        "(docs/retraction.md).", RETRACTIONS_PATH, RETRACTIONS_PATH)
                super().send_message(*messages, path=path, **kwargs)
                return
            for m in messages:
                super().send_message(m, path=self._retractions_path if is_retraction(m) else path, **kwargs)
            return
        super().send_message(*messages, path=path, **kwargs)


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
