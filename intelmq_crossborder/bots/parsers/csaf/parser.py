"""Cross-border CSAF parser: CSAF 2.0 advisories (reports) to vulnerability events."""
import base64
import binascii

from intelmq.lib.bot import ParserBot

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.core.parameters import as_list, optional

#: The defaults of the optional parameters, also for '' (IntelMQ Manager's untouched field) and null.
DEFAULTS = {"default_tlp": "AMBER", "statuses": list(csaf.AFFECTED_STATUSES), "vex_statuses": list(csaf.ALL_STATUSES)}


class CrossBorderCSAFParserBot(ParserBot):
    """Validate each CSAF 2.0 (or 2.1) advisory against the shipped schemas and turn it into one vulnerability event per (vulnerability, product) in a selected product status (statuses, vex_statuses for csaf_vex documents), labelled with the most restrictive TLP of the document and the feed (default_tlp when neither has one); an invalid document or an unreadable label dumps the report with the reason. Details: docs/bots/csaf.md."""

    default_tlp: str = DEFAULTS["default_tlp"]
    statuses: list = DEFAULTS["statuses"]
    vex_statuses: list = DEFAULTS["vex_statuses"]

    _default_level: tlp.Level = None

    def init(self):
        self._default_level = tlp.parse_level(optional(self.default_tlp, DEFAULTS["default_tlp"]),
                                              "parameter default_tlp")
        self.statuses = _statuses(self.statuses, "statuses")
        self.vex_statuses = _statuses(self.vex_statuses, "vex_statuses")

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
            tlp.parse_level(optional(parameters.get("default_tlp"), DEFAULTS["default_tlp"]), "parameter default_tlp")
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter default_tlp: {exc}."])
        for name in ("statuses", "vex_statuses"):
            try:
                unknown = [s for s in _statuses(parameters.get(name), name) if s not in csaf.ALL_STATUSES]
            except ValueError as exc:
                results.append(["error", f"Parameter {name}: {exc}."])
                continue
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


def _statuses(value, name: str) -> list:
    """statuses / vex_statuses: unset ('' or null) gives the default."""
    return as_list(value) or list(DEFAULTS[name])


BOT = CrossBorderCSAFParserBot
