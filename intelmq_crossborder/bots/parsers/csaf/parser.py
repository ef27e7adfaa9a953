"""Cross-border CSAF parser: CSAF 2.0 advisories (reports) to vulnerability events."""
import base64
import binascii

from intelmq.lib.bot import ParserBot

from intelmq_crossborder.formats.csaf import document as csaf

from intelmq_crossborder.core import tlp
class CrossBorderCSAFParserBot(ParserBot):
    """
    Validate CSAF 2.0 advisories and turn them into vulnerability events.

    Each report holds one CSAF document in raw (as the CSAF collector sends it).
    The document is validated against the CSAF 2.0 JSON schema and the FIRST
    CVSS schemas shipped with the package; an invalid document is dumped with the
    schema error paths and its tracking id, and the bot goes on. A valid document
    gives one event per (vulnerability, product) whose product status is in
    statuses (csaf_vex documents: vex_statuses), with CVE, CWE, CVSS score and
    vector, severity, product name/vendor/version resolved through the product
    tree, product status, remediation summary, the csaf.* tracking fields and the
    TLP of document.distribution.tlp (CSAF 2.0 and 2.1 labels) in sharing.tlp and
    the stock tlp field. The report's labels (the feed's, read by the TLP core's
    one reader) are combined with the document's, the most restrictive wins; an
    event never carries a lower label than its document and feed. A label that
    cannot be read dumps the report with the field named. No label at all:
    default_tlp, logged. A document without vulnerabilities gives one informational event.
    The raw field of an event is the vulnerability object as JSON, not the whole
    document (a 700 KB advisory with 400 vulnerabilities stays small per event).
    """

    default_tlp: str = "AMBER"
    statuses: list = list(csaf.AFFECTED_STATUSES)
    vex_statuses: list = list(csaf.ALL_STATUSES)

    _default_level: tlp.Level = None

    def init(self):
        self._default_level = tlp.parse_level(self.default_tlp, "parameter default_tlp")
        self.statuses = _as_list(self.statuses)
        self.vex_statuses = _as_list(self.vex_statuses)

    def parse(self, report):
        # the raw bytes, strictly: IntelMQ's base64_decode drops bytes that are not UTF-8
        # ("tlp:r\xffed" would read as "tlp:red"); the parser refuses them instead
        try:
            raw = base64.b64decode(report.get("raw") or "")
        except (binascii.Error, ValueError):
            raw = _BadRaw("the report's raw field is not base64")
        if not raw:
            raw = _BadRaw("the report's raw field is empty, not a CSAF document")
        self._current_line = raw
        yield raw

    def recover_line(self, line=None):
        line = line if line is not None else self._current_line
        if isinstance(line, _BadRaw):
            return ""
        return line.decode("utf-8", "backslashreplace") if isinstance(line, bytes) else line

    def parse_line(self, line, report):
        source = report.get("feed.url") or report.get("feed.name") or "report"
        if isinstance(line, _BadRaw):
            raise csaf.CSAFError(line.reason, source)
        try:
            feed = tlp.event_tlp(report)
        except tlp.LabelError as exc:
            raise csaf.CSAFError(f"report field {exc.field}: {exc.reason}", source) from None
        result = csaf.parse_document(
            line, source=source, source_url=report.get("feed.url"), feed_tlp=feed.level,
            default_tlp=self._default_level, statuses=self.statuses, vex_statuses=self.vex_statuses,
            include_raw=True, hide_source=feed.hide_source)
        tid = result.events[0].get("csaf.tracking_id", "?") if result.events else "?"
        if result.tlp_source == "default":
            self.logger.info("Advisory %s (%s) has no TLP label, default %s applied.",
                             tid, source, result.tlp_level.label)
        if result.assumed_utc:
            self.logger.info("Advisory %s: timestamps without timezone read as UTC: %s.",
                             tid, ", ".join(result.assumed_utc))
        events = []
        for flat in result.events:
            event = self.new_event(report)
            for key, value in csaf.fill_event(event, flat):
                self.logger.warning("Advisory %s: value %r of field %s rejected by the harmonization, "
                                    "left out.", tid, value, key)
            events.append(event)
        self.logger.debug("Advisory %s: %d event(s).", tid, len(events))
        return events

    @staticmethod
    def check(parameters: dict):
        results = []
        try:
            tlp.parse_level(parameters.get("default_tlp", "AMBER"), "parameter default_tlp")
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter default_tlp: {exc}."])
        for name in ("statuses", "vex_statuses"):
            value = parameters.get(name)
            if value is None:
                continue
            unknown = [s for s in _as_list(value) if s not in csaf.ALL_STATUSES]
            if unknown:
                results.append(["error", f"Parameter {name}: unknown product status(es) {', '.join(unknown)}; "
                                         f"allowed: {', '.join(csaf.ALL_STATUSES)}."])
        return results or None


class _BadRaw:
    """A report whose raw field cannot be decoded: parse_line refuses it."""

    def __init__(self, reason: str):
        self.reason = reason

    def __bool__(self) -> bool:
        return True


def _as_list(value) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value or [])


BOT = CrossBorderCSAFParserBot
