"""Cross-border STIX parser: STIX 2.0/2.1 bundles to harmonized events, TLP-faithful."""
import base64
import binascii

from intelmq.lib.bot import ParserBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.parameters import optional
from intelmq_crossborder.formats.stix import parse as stix
from intelmq_crossborder.policy.retraction import is_retraction

#: The named path a revoked object's retractions take when it exists (as the exchange parser's).
RETRACTIONS_PATH = "retractions"

DEFAULTS = {"default_tlp": "AMBER", "default_classification": "undetermined"}


class _BadInput:
    """A report that cannot be read as STIX; parse_line raises its error."""

    def __init__(self, error, raw):
        self.error, self.raw = error, raw


class CrossBorderSTIXParserBot(ParserBot):
    """Parse STIX 2.0/2.1 bundles (or plain arrays of objects, or TAXII envelopes) into one harmonized event per indicator pattern alternative and per observable of observed-data, with the most restrictive TLP of the object's, its containers' and the feed's markings (default_tlp when none), provenance and RSIT classification; patterns without a convertible comparison are counted and logged, revoked objects become withdraw retractions (with hub_id; else counted and logged), unreadable markings and objects are dumped with the JSON path named. Details: docs/bots/stix.md."""

    default_tlp: str = DEFAULTS["default_tlp"]
    default_classification: str = DEFAULTS["default_classification"]
    type_classification: dict = {}
    hub_id: str = ""
    _retractions_path = None
    _warned = False

    def init(self):
        mapping = optional(self.type_classification, {})
        if isinstance(mapping, str):
            mapping = inputs.loads_json(mapping, "parameter type_classification")
        self._converter = stix.Converter(
            default_tlp=optional(self.default_tlp, DEFAULTS["default_tlp"]),
            default_classification=optional(self.default_classification, DEFAULTS["default_classification"]),
            type_classification=mapping, hub_id=optional(self.hub_id))
        queues = self.destination_queues if isinstance(self.destination_queues, dict) else {}
        self._retractions_path = RETRACTIONS_PATH if RETRACTIONS_PATH in queues else None
        self._warned = False
        if self._converter.hub_id is None:
            self.logger.info("No hub_id: revoked STIX objects are counted, not passed on as retractions "
                             "(docs/bots/stix.md).")

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
                  converter.stats.not_converted.copy(), converter.stats.retractions)
        for item in converter.items(bundle):
            self._current_line = item
            yield item
        revoked = converter.stats.revoked - before[0]
        if revoked and converter.hub_id is None:
            self.logger.info("%d revoked object(s) not converted; without hub_id no retraction is issued.", revoked)
        elif revoked:
            self.logger.info("%d revoked object(s): %d withdraw retraction(s) issued.", revoked,
                             converter.stats.retractions - before[3])
        if sum(converter.stats.not_converted.values()) > before[1]:
            new = converter.stats.not_converted - before[2]
            self.logger.info("%d object(s) without a convertible observable: %s.", sum(new.values()),
                             "; ".join(f"{k} ({n})" for k, n in new.most_common(5)))

    def parse_line(self, item, report):
        if isinstance(item, _BadInput):
            raise item.error
        if item.error is not None:
            raise item.error
        if item.retractions:
            return [self._retraction(fields) for fields in item.retractions]
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

    def _retraction(self, fields: dict):
        """A revoked object's retraction: its own fields only (no feed fields, no raw)."""
        event = self.new_event()
        for key, value in fields.items():
            event.add(key, value)
        return event

    def send_message(self, *messages, path: str = "_default", **kwargs):
        """Retractions take the named path ``retractions`` when it exists, else the default path.
        ``default_fields`` are not a retraction's: they are taken off it (it carries no content)."""
        if path != "_default" or not any(is_retraction(m) for m in messages):
            super().send_message(*messages, path=path, **kwargs)
            return
        for m in messages:
            if is_retraction(m):
                for key in (self.default_fields or {}):
                    if not key.startswith("retraction.") and key in m:
                        del m[key]
        if self._retractions_path is None:
            if not self._warned:
                self._warned = True
                self.logger.info("No named path %r: retractions of revoked objects go to the default path; every "
                                 "bot before the sharing router must pass them on (docs/bots/stix.md).",
                                 RETRACTIONS_PATH)
            super().send_message(*messages, path=path, **kwargs)
            return
        for m in messages:
            super().send_message(m, path=self._retractions_path if is_retraction(m) else path, **kwargs)

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
            hub = stix.check_hub_id(optional(parameters.get("hub_id")))
        except ValueError as exc:
            hub = None
            results.append(["error", f"Parameter {exc}."])
        else:
            if hub is None:
                results.append(["warning", "Parameter hub_id is not set: revoked STIX objects are counted and "
                                           "logged, not passed on as retractions (docs/bots/stix.md)."])
        queues = parameters.get("destination_queues")
        if hub is not None and isinstance(queues, dict) and RETRACTIONS_PATH not in queues:
            results.append(["warning", f"No named path {RETRACTIONS_PATH!r}: retractions of revoked objects take the "
                                       "default path; point it at the sharing router (or the early-warning expert "
                                       "before it) unless every bot on the default path passes retractions on."])
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
