"""Cross-border CSAF output: vulnerability events to CSAF 2.0 advisories in a provider directory."""
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.core import tlp
from intelmq_crossborder.formats.csaf.provider import OutputError, ProviderDirectory
from intelmq_crossborder.formats.csaf.spool import AdvisorySpool
from intelmq_crossborder.core.parameters import as_int, as_list, is_unset, optional
from intelmq_crossborder.policy.retraction import is_retraction
from intelmq_crossborder.runtime.retraction import received_retraction

PUBLISHER_CATEGORIES = ("coordinator", "discoverer", "other", "translator", "user", "vendor")
DEFAULTS = {"group_by": ["csaf.tracking_id"], "fallback_group_by": ["product.vulnerabilities"],
            "tracking_prefix": "HUB", "publisher_category": "coordinator", "max_tlp": "AMBER", "write_every": 1,
            "gpg_binary": "gpg"}


class CrossBorderCSAFOutputBot(OutputBot):
    """Write the vulnerability events the hub shares onwards as CSAF 2.0 security advisories in the directory layout of a CSAF provider (output_dir), one advisory per group of events (by default the source advisory, else the CVE), rebuilt from all its spooled events, validated against the CSAF 2.0 schema and labelled with the most restrictive TLP of its events; an event above max_tlp, AMBER+STRICT, RED, without a readable TLP label or without a CVE is dumped; a retraction takes its event out of the advisory (a new revision) or withdraws an advisory left empty. Details: docs/bots/csaf.md."""

    output_dir: str = None
    state_dir: str = None
    group_by: list = DEFAULTS["group_by"]
    fallback_group_by: list = DEFAULTS["fallback_group_by"]
    tracking_prefix: str = DEFAULTS["tracking_prefix"]
    publisher_name: str = None
    publisher_namespace: str = None
    publisher_category: str = DEFAULTS["publisher_category"]
    max_tlp: str = DEFAULTS["max_tlp"]
    write_every: int = DEFAULTS["write_every"]
    signing_key: str = None
    signing_key_password: str = None
    gpg_binary: str = DEFAULTS["gpg_binary"]
    gpg_home: str = None

    _spool: AdvisorySpool = None

    def init(self):
        if not self.output_dir or not self.publisher_name or not self.publisher_namespace:
            raise ValueError("Parameters output_dir, publisher_name and publisher_namespace are required.")
        # '' (IntelMQ Manager's untouched field) and null mean the default
        state_dir = optional(self.state_dir, os.path.join(VAR_STATE_PATH, f"{self.bot_id}.csaf-spool"))
        signer = signing_key = None
        if not is_unset(self.signing_key):
            from intelmq_crossborder.formats.csaf.distribution import OpenPGPVerifier
            signer = OpenPGPVerifier(optional(self.gpg_binary, DEFAULTS["gpg_binary"]), optional(self.gpg_home))
            signing_key = self.signing_key
        directory = ProviderDirectory(self.output_dir, signer, signing_key, optional(self.signing_key_password))
        publisher = {"category": optional(self.publisher_category, DEFAULTS["publisher_category"]),
                     "name": self.publisher_name, "namespace": self.publisher_namespace}
        self._spool = AdvisorySpool(
            state_dir, directory, publisher,
            max_level=tlp.parse_level(optional(self.max_tlp, DEFAULTS["max_tlp"]), "parameter max_tlp"),
            group_by=as_list(self.group_by) or DEFAULTS["group_by"],
            fallback_group_by=_fallback(self.fallback_group_by),
            tracking_prefix=optional(self.tracking_prefix, DEFAULTS["tracking_prefix"]),
            write_every=as_int(self.write_every, DEFAULTS["write_every"], "write_every"))

    def process(self):
        event = self.receive_message()
        if is_retraction(event):
            self._retract(event.to_dict(hierarchical=False))
            self.acknowledge_message()
            return
        try:
            written = self._spool.add(event.to_dict(hierarchical=False))
        except OutputError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        if written is not None:
            self._log_written(written)
        self.acknowledge_message()

    def _retract(self, flat: dict):
        retraction = received_retraction(flat, "the retraction is not applied")
        try:
            done = self._spool.retract(retraction)
        except OutputError as exc:
            raise InvalidValue(exc.field, exc.value, reason=f"{exc.reason}; the retraction is not applied") from None
        for one in done:
            self.logger.info("Retraction %s (%s): advisory %s %s as version %d (%d event(s) removed, %d relabelled).",
                             retraction.id, retraction.action, one.tracking_id,
                             "withdrawn" if one.withdrawn else "revised", one.version, one.removed, one.relabelled)
        if not done:
            self.logger.info("Retraction %s (%s): no advisory holds its target.", retraction.id, retraction.action)

    def _log_written(self, written):
        self.logger.debug("Advisory %s version %d written to %s (%d events).", written.tracking_id,
                          written.version, written.path, written.events)

    def shutdown(self):
        if self._spool is not None:
            for written in self._spool.flush():
                self._log_written(written)

    @staticmethod
    def check(parameters: dict):
        results = []
        for name in ("output_dir", "publisher_name", "publisher_namespace"):
            if is_unset(parameters.get(name)):
                results.append(["error", f"Parameter {name} is required."])
        try:
            level = tlp.parse_level(optional(parameters.get("max_tlp"), DEFAULTS["max_tlp"]), "parameter max_tlp")
            if level >= tlp.Level.AMBER_STRICT:
                results.append(["error", f"Parameter max_tlp: TLP:{level.label} is never published as a CSAF "
                                         "advisory; use AMBER or lower."])
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter max_tlp: {exc}."])
        if optional(parameters.get("publisher_category"), DEFAULTS["publisher_category"]) not in PUBLISHER_CATEGORIES:
            results.append(["error", "Parameter publisher_category is not a CSAF publisher category."])
        for name in ("group_by", "fallback_group_by"):
            try:
                as_list(parameters.get(name))
            except ValueError as exc:
                results.append(["error", f"Parameter {name}: {exc}."])
        try:
            as_int(parameters.get("write_every"), DEFAULTS["write_every"], "write_every")
        except ValueError as exc:
            results.append(["error", f"{exc}."])
        return results or None


def _fallback(value) -> list:
    """fallback_group_by: unset gives the default; an explicit empty list switches the fallback off."""
    if isinstance(value, (list, tuple)):
        return as_list(value)
    return as_list(value) or DEFAULTS["fallback_group_by"]


BOT = CrossBorderCSAFOutputBot
