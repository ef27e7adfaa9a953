"""Cross-border MISP parser: MISP event JSON to harmonized events, TLP- and distribution-faithful."""
import base64
import binascii
import json

from intelmq.lib.bot import ParserBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import inputs, tlp

from intelmq_crossborder.formats.misp import convert as misp
from intelmq_crossborder.core.parameters import optional


class _BadInput:
    """A report (or event) that cannot be read; parse_line raises its error."""

    def __init__(self, error, raw):
        self.error, self.raw = error, raw


class CrossBorderMISPParserBot(ParserBot):
    """Parse MISP event JSON ({"Event": ...} or {"response": [...]}) into one harmonized event per attribute of the event and its objects, keeping TLP, distribution and provenance; attributes without an IntelMQ field are counted and logged, unreadable TLP tags and values are dumped with the field named. Details: docs/bots/misp.md."""

    keep_non_ids: bool = True
    type_classification: dict = {}
    default_classification: str = "undetermined"
    include_tags: bool = True

    def init(self):
        mapping = optional(self.type_classification, {})
        if isinstance(mapping, str):
            mapping = inputs.loads_json(mapping, "parameter type_classification")
        self.type_classification = mapping
        self._converter = misp.Converter(
            keep_non_ids=bool(optional(self.keep_non_ids, True)), type_classification=mapping,
            default_classification=optional(self.default_classification, "undetermined"),
            include_tags=bool(optional(self.include_tags, True)))

    def parse(self, report):
        where = f"report of feed {report.get('feed.name') or '?'}"
        self._converter.where = where
        # the raw bytes, strictly: IntelMQ's base64_decode drops bytes that are not UTF-8
        # ("tlp:r\xffed" would read as "tlp:red"); misp.loads refuses them instead
        try:
            raw = base64.b64decode(report.get("raw") or "")
        except (binascii.Error, ValueError):
            raw = b""
        text = raw.decode("utf-8", "backslashreplace")
        try:
            try:
                self._converter.feed = tlp.event_tlp(report)      # the feed's labels count too
            except tlp.LabelError as exc:
                raise misp.MISPFormatError(f"report field {exc.field}: {exc.reason}", where) from None
            events = misp.loads(raw, where)
        except misp.MISPFormatError as exc:
            self._current_line = text
            yield _BadInput(exc, text)
            return
        before = self._converter.stats.unmapped.copy(), self._converter.stats.filtered
        for event in events:
            try:
                rows = list(self._converter.rows(event))
            except misp.MISPFormatError as exc:
                self._current_line = json.dumps({"Event": event})
                yield _BadInput(exc, self._current_line)
                continue
            for row in rows:
                self._current_line = row
                yield row
        unmapped = self._converter.stats.unmapped - before[0]
        if unmapped:
            self.logger.info("%d attribute(s) without an IntelMQ field not converted: %s.",
                             sum(unmapped.values()),
                             ", ".join(f"{t}={n}" for t, n in unmapped.most_common()))
        filtered = self._converter.stats.filtered - before[1]
        if filtered:
            self.logger.debug("%d attribute(s) filtered (to_ids false or deleted).", filtered)

    def parse_line(self, row, report):
        if isinstance(row, _BadInput):
            raise row.error
        fields = self._converter.convert(row)
        if fields is None:
            return None
        event = self.new_event(report)
        for key, value in fields.items():
            try:
                event.add(key, value, overwrite=True)
            except InvalidValue:
                raise misp.MISPFormatError(f"value {value!r} ({row.attribute.get('type')}) is not a valid {key}",
                                           self._converter.where, f"{row.path}.value") from None
        event.add("raw", row.raw(), overwrite=True)
        return event

    def recover_line(self, line=None):
        line = line if line is not None else self._current_line
        if isinstance(line, misp.Row):
            return line.raw()
        if isinstance(line, _BadInput):
            return line.raw
        return line

    @staticmethod
    def check(parameters: dict):
        results = []
        mapping = optional(parameters.get("type_classification"), {})
        if isinstance(mapping, str):
            try:
                mapping = inputs.loads_json(mapping, "parameter type_classification")
            except ValueError:
                return [["error", "Parameter type_classification is not a JSON object."]]
        if not isinstance(mapping, dict):
            return [["error", "Parameter type_classification must be a mapping of MISP type to classification.type."]]
        from intelmq.lib.harmonization import ClassificationType
        values = list(mapping.values()) + [optional(parameters.get("default_classification"), "undetermined")]
        for value in values:
            if value not in ClassificationType.allowed_values:
                results.append(["error", f"{value!r} is not an IntelMQ classification.type."])
        for name in ("keep_non_ids", "include_tags"):
            if not isinstance(optional(parameters.get(name), True), bool):
                results.append(["error", f"Parameter {name} must be true or false."])
        return results or None


BOT = CrossBorderMISPParserBot
