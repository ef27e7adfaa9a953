"""Cross-border exchange parser: events from the JSON lines of an imported bundle, provenance kept."""
import json

from intelmq.lib import utils
from intelmq.lib.bot import ParserBot


class CrossBorderExchangeParserBot(ParserBot):
    """
    Turn the reports of the cross-border exchange collector into events.

    Every line is one event as the sending hub had it; all its fields are kept as
    they came, including sharing.* and provenance.* (the provenance expert of the
    routing stage stamps provenance.hub_path when events leave this hub). The
    report's feed fields are not copied into the events. With fill_origin, an
    event without provenance.origin_hub gets the sending hub, and then, if
    missing, provenance.origin_country the sender's country from the trust store.
    A line that is not a JSON object or has a field this hub's harmonization does
    not know is dumped with the report, the other lines go on. As every IntelMQ
    parser does, an event gets the bundle line as raw (unless it already carries
    one, or add_raw is false) and classification.type undetermined if it has none.
    """

    fill_origin: bool = True
    add_raw: bool = True

    recover_line = ParserBot.recover_line_json_stream

    def parse(self, report):
        for line in utils.base64_decode(report.get("raw")).splitlines():
            if line.strip():
                self._current_line = line
                yield line

    def parse_line(self, line, report):
        line = json.loads(line)
        if not isinstance(line, dict):
            raise ValueError(f"exchange line is a JSON {type(line).__name__}, not an object")
        event = self.new_event()
        for key, value in line.items():
            if key == "__type":
                continue
            # Values are IntelMQ's serialised form (raw is base64 already): take them as
            # they are when valid, as IntelMQ's own Message() does, else sanitise.
            if not event.add(key, value, sanitize=False, raise_failure=False):
                event.add(key, value, sanitize=True)
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
        yield event


BOT = CrossBorderExchangeParserBot
