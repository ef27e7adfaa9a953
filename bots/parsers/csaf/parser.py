"""Cross-border CSAF parser: CSAF 2.0 advisories (reports) to vulnerability events."""
from intelmq.lib.bot import ParserBot
from intelmq.lib.utils import base64_decode

from intelmq_crossborder import csaf, tlp


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
    the stock tlp field. A report sharing.tlp (the feed's label) is combined with
    the document's, the more restrictive wins. No label at all: default_tlp,
    logged. A document without vulnerabilities gives one informational event.
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
        raw = base64_decode(report.get("raw"))
        self._current_line = raw
        yield raw

    def recover_line(self, line=None):
        return line if line is not None else self._current_line

    def parse_line(self, line, report):
        source = report.get("feed.url") or report.get("feed.name") or "report"
        feed_level = None
        if report.get("sharing.tlp"):
            feed_level = tlp.parse_level(report["sharing.tlp"], f"{source} report field sharing.tlp")
        result = csaf.parse_document(
            line, source=source, source_url=report.get("feed.url"), feed_tlp=feed_level,
            default_tlp=self._default_level, statuses=self.statuses, vex_statuses=self.vex_statuses,
            include_raw=True)
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


def _as_list(value) -> list:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value or [])


BOT = CrossBorderCSAFParserBot
