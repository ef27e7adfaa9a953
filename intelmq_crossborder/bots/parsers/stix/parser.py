"""Cross-border STIX parser: STIX 2.0/2.1 bundles to harmonized events, TLP-faithful."""
import base64
import binascii

from intelmq.lib.bot import ParserBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.parameters import optional
from intelmq_crossborder.formats.stix import parse as stix

DEFAULTS = {"default_tlp": "AMBER", "default_classification": "undetermined"}


class _BadInput:
    """A report that cannot be read as STIX; parse_line raises its error."""

    def __init__(self, error, raw):
        self.error, self.raw = error, raw


class CrossBorderSTIXParserBot(ParserBot):
    """Parse STIX 2.0/2.1 bundles (or plain arrays of objects, or TAXII envelopes) into one harmonized event per indicator pattern alternative and per observable of observed-data, with the most restrictive TLP of the object's, its containers' and the feed's markings (default_tlp when none), provenance and RSIT classification; patterns without a convertible comparison and revoked objects are counted and logged, unreadable markings and objects are dumped with the JSON path named. Details: docs/bots/stix.md."""

    default_tlp: str = DEFAULTS["default_tlp"]
    default_classification: str = DEFAULTS["default_classification"]
    type_classification: dict = {}

    def init(self):
        mapping = optional(self.type_classification, {})
        if isinstance(mapping, str):
            mapping = inputs.loads_json(mapping, "parameter type_classification")
        self._converter = stix.Converter(
            default_tlp=optional(self.default_tlp, DEFAULTS["default_tlp"]),
            default_classification=optional(self.default_classification, DEFAULTS["default_classification"]),
            type_classification=mapping)

    def parse(self, report):
        where = f"report of feed {report.get('feed.name') or '?'}"
        converter = self._converter
        converter.where = where
        # the raw bytes, strictly: IntelMQ's base64_decode drops bytes that are not UTF-8
        try:
            raw = base64.b64decode(report.get("raw") or "")
        except (binascii.Error, ValueError):
            raw = b""
        text = raw.decode("utf-8", "backslashreplace")
        try:
            try:
                converter.feed = tlp.event_tlp(report)          # the feed's labels count too
            except tlp.LabelError as exc:
                raise stix.STIXFormatError(f"report field {exc.field}: {exc.reason}", where) from None
            if not raw.strip():
                raise stix.STIXFormatError("the report's raw field is empty, not STIX", where)
            bundle = stix.loads(raw, where)
        except stix.STIXFormatError as exc:
            self._current_line = text
            yield _BadInput(exc, text)
            return
        before = (converter.stats.revoked, sum(converter.stats.not_converted.values()),
                  converter.stats.not_converted.copy())
        for item in converter.items(bundle):
            self._current_line = item
            yield item
        revoked = converter.stats.revoked - before[0]
        if revoked:
            self.logger.info("%d revoked object(s) not converted (retraction is not wired yet).", revoked)
        if sum(converter.stats.not_converted.values()) > before[1]:
            new = converter.stats.not_converted - before[2]
            self.logger.info("%d object(s) without a convertible observable: %s.", sum(new.values()),
                             "; ".join(f"{k} ({n})" for k, n in new.most_common(5)))

    def parse_line(self, item, report):
        if isinstance(item, _BadInput):
            raise item.error
        if item.error is not None:
            raise item.error
        if not item.events:
            return None
        raw = item.raw()
        events = []
        for fields in item.events:
            event = self.new_event(report)
            for key, value in fields.items():
                try:
                    event.add(key, value, overwrite=True)
                except InvalidValue:
                    raise stix.STIXFormatError(f"value {value!r} is not a valid {key}", self._converter.where,
                                               item.path) from None
            event.add("raw", raw, overwrite=True)
            events.append(event)
        return events

    def recover_line(self, line=None):
        line = line if line is not None else self._current_line
        if isinstance(line, stix.Item):
            return line.raw()
        if isinstance(line, _BadInput):
            return line.raw
        return line

    @staticmethod
    def check(parameters: dict):
        results = []
        try:
            tlp.parse_level(optional(parameters.get("default_tlp"), DEFAULTS["default_tlp"]), "parameter default_tlp")
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter default_tlp: {exc}."])
        mapping = optional(parameters.get("type_classification"), {})
        if isinstance(mapping, str):
            try:
                mapping = inputs.loads_json(mapping, "parameter type_classification")
            except ValueError:
                return results + [["error", "Parameter type_classification is not a JSON object."]]
        if not isinstance(mapping, dict):
            return results + [["error", "Parameter type_classification must be a mapping of indicator type to "
                                        "classification.type."]]
        from intelmq.lib.harmonization import ClassificationType
        values = list(mapping.values()) + [optional(parameters.get("default_classification"),
                                                    DEFAULTS["default_classification"])]
        for value in values:
            if value not in ClassificationType.allowed_values:
                results.append(["error", f"{value!r} is not an IntelMQ classification.type."])
        return results or None


BOT = CrossBorderSTIXParserBot
