"""Cross-border MISP parser: MISP event JSON to harmonized events, TLP- and distribution-faithful."""
import base64
import binascii
import json

from intelmq.lib.bot import ParserBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import inputs, tlp

from intelmq_crossborder.formats.misp import convert as misp
class _BadInput:
    """A report (or event) that cannot be read; parse_line raises its error."""

    def __init__(self, error, raw):
        self.error, self.raw = error, raw


class CrossBorderMISPParserBot(ParserBot):
    """
    Parse MISP event JSON into one harmonized event per attribute, keeping TLP, distribution and provenance.

    Reads both wrappers seen in the wild, {"Event": {...}} and {"response": [{"Event": {...}}]},
    and the attributes of objects as well as the event's own. Attribute types with an IntelMQ
    field (ip-src/ip-dst incl. ip|port, domain, hostname, url, md5/sha1/sha256, filename|hash,
    email-src, AS, vulnerability) become events; others are counted and logged, never silently
    lost. sharing.tlp is the most restrictive of the event's and the attribute's tlp: tags, any
    other label the attribute carries and the report's (feed's) labels (none: left unset for the
    TLP expert's default); tlp:ex:chr sets sharing.do_not_disclose_source.
    misp.distribution is the attribute's effective distribution, misp.sharing_group_uuid its
    sharing group. classification.type comes from rsit/ecsirt tags, else type_classification,
    else default_classification. A TLP tag that cannot be read (unknown, a look-alike spelling, a
    tag that is not MISP's {"name": ...}) or a bad value dumps that attribute (or the event) with
    the field named; a report that is not MISP JSON the hub accepts (duplicate keys, not UTF-8...)
    is dumped; the bot goes on with the next.
    """

    keep_non_ids: bool = True
    type_classification: dict = {}
    default_classification: str = "undetermined"
    include_tags: bool = True

    def init(self):
        if isinstance(self.type_classification, str):
            self.type_classification = inputs.loads_json(self.type_classification or "{}",
                                                         "parameter type_classification")
        self._converter = misp.Converter(
            keep_non_ids=self.keep_non_ids, type_classification=self.type_classification,
            default_classification=self.default_classification, include_tags=self.include_tags)

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
        mapping = parameters.get("type_classification", {})
        if isinstance(mapping, str):
            try:
                mapping = inputs.loads_json(mapping or "{}", "parameter type_classification")
            except ValueError:
                return [["error", "Parameter type_classification is not a JSON object."]]
        if not isinstance(mapping, dict):
            return [["error", "Parameter type_classification must be a mapping of MISP type to classification.type."]]
        from intelmq.lib.harmonization import ClassificationType
        values = list(mapping.values()) + [parameters.get("default_classification", "undetermined")]
        for value in values:
            if value not in ClassificationType.allowed_values:
                results.append(["error", f"{value!r} is not an IntelMQ classification.type."])
        return results or None


BOT = CrossBorderMISPParserBot
