"""Cross-border CSAF output: vulnerability events to CSAF 2.0 advisories in a provider directory."""
import json
import os

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.formats.csaf import document as csaf, provider as csaf_output

from intelmq_crossborder.core import inputs, tlp

from intelmq_crossborder.policy.redact import without_source
from intelmq_crossborder.formats.csaf.distribution import atomic_write


class CrossBorderCSAFOutputBot(OutputBot):
    """
    Write vulnerability events as CSAF 2.0 csaf_security_advisory documents.

    Events are grouped by group_by (default: the source advisory,
    csaf.tracking_id; events without it by fallback_group_by, default the
    CVE); each group is one document with the id
    <tracking_prefix>-<group value>, written in the layout of a CSAF provider
    under output_dir: <tlp>/<year>/<id>.json with .sha256/.sha512 (and an OpenPGP
    .asc when signing_key is set), index.txt and changes.csv per TLP folder,
    every file written atomically. The TLP label is the most restrictive
    effective TLP (tlp.event_tlp) of the group's events, mapped to CSAF 2.0.
    Every event is kept in a spool file first (state_dir), so a document is
    rebuilt from all its events and nothing is lost between writes. Each written
    document is validated against the shipped CSAF 2.0 schema. An event above
    max_tlp, AMBER+STRICT or RED, without a (readable) label, or without a
    CVE/identifier is dumped; a hidden source's fields (tlp.SOURCE_FIELDS) are
    dropped before grouping.
    """

    output_dir: str = None
    state_dir: str = None
    group_by: list = ["csaf.tracking_id"]
    fallback_group_by: list = ["product.vulnerabilities"]
    tracking_prefix: str = "HUB"
    publisher_name: str = None
    publisher_namespace: str = None
    publisher_category: str = "coordinator"
    max_tlp: str = "AMBER"
    write_every: int = 1
    signing_key: str = None
    signing_key_password: str = None
    gpg_binary: str = "gpg"
    gpg_home: str = None

    def init(self):
        if not self.output_dir or not self.publisher_name or not self.publisher_namespace:
            raise ValueError("Parameters output_dir, publisher_name and publisher_namespace are required.")
        self._max = tlp.parse_level(self.max_tlp, "parameter max_tlp")
        if isinstance(self.group_by, str):
            self.group_by = [f.strip() for f in self.group_by.split(",") if f.strip()]
        if isinstance(self.fallback_group_by, str):
            self.fallback_group_by = [f.strip() for f in self.fallback_group_by.split(",") if f.strip()]
        self.state_dir = self.state_dir or os.path.join(VAR_STATE_PATH, f"{self.bot_id}.csaf-spool")
        os.makedirs(self.state_dir, exist_ok=True)
        signer = None
        if self.signing_key:
            from intelmq_crossborder.formats.csaf.distribution import OpenPGPVerifier
            signer = OpenPGPVerifier(self.gpg_binary, self.gpg_home)
        self._dir = csaf_output.ProviderDirectory(self.output_dir, signer, self.signing_key,
                                                  self.signing_key_password)
        self._publisher = {"category": self.publisher_category, "name": self.publisher_name,
                           "namespace": self.publisher_namespace}
        self._pending = {}

    def process(self):
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        try:
            if csaf_output.admit(flat, self._max).hide_source:
                # before grouping: the source's tracking id must not become the advisory's id
                flat = without_source(flat)
            try:
                group = csaf_output.group_value(flat, self.group_by)
            except csaf_output.OutputError:
                if not self.fallback_group_by:
                    raise
                group = csaf_output.group_value(flat, self.fallback_group_by)
            if not (flat.get("product.vulnerabilities") or flat.get("classification.identifier")):
                raise csaf_output.OutputError("product.vulnerabilities", None,
                                              "not a vulnerability event (no CVE, no classification.identifier)")
        except csaf_output.OutputError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        tracking_id = f"{self.tracking_prefix}-{group}"
        flat.pop("raw", None)
        # An event that cannot be written as CSAF is dumped now, before it enters the spool
        # where it would break every later rebuild of its group.
        try:
            alone = csaf_output.build_advisory([flat], tracking_id=tracking_id, publisher=self._publisher)
        except csaf_output.OutputError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        problems, _ = csaf.validate(alone)
        if problems:
            raise InvalidValue("csaf", tracking_id, reason="the event gives no valid CSAF 2.0 document: "
                                                           + "; ".join(map(str, problems)))
        spool = os.path.join(self.state_dir, csaf_output.safe_name(tracking_id) + ".jsonl")
        with open(spool, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(flat, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._pending[tracking_id] = self._pending.get(tracking_id, 0) + 1
        if self._pending[tracking_id] >= max(1, int(self.write_every)):
            self._write(tracking_id, spool)
        self.acknowledge_message()

    def _write(self, tracking_id, spool):
        with open(spool, encoding="utf-8") as fh:
            events = [inputs.loads_json(line, spool, line=n) for n, line in enumerate(fh, 1) if line.strip()]
        meta_path = spool[:-6] + ".meta.json"
        meta = inputs.read_json(meta_path) if os.path.exists(meta_path) else {}
        version = meta.get("version", 0) + 1
        try:
            document = csaf_output.build_advisory(
                events, tracking_id=tracking_id, publisher=self._publisher, version=version,
                initial_release_date=meta.get("initial_release_date"), history=meta.get("history"))
            problems, total = csaf.validate(document)
            if problems:
                raise InvalidValue("csaf", tracking_id, reason="generated document fails the CSAF 2.0 schema: "
                                                               + "; ".join(map(str, problems)))
            path = self._dir.write(document)
        except csaf_output.OutputError as exc:
            raise InvalidValue(exc.field, exc.value, reason=exc.reason) from None
        tracking = document["document"]["tracking"]
        atomic_write(meta_path, json.dumps({"version": version,
                                            "initial_release_date": tracking["initial_release_date"],
                                            "history": tracking["revision_history"]}).encode())
        self._pending[tracking_id] = 0
        self.logger.debug("Advisory %s version %d written to %s (%d events).", tracking_id, version, path,
                          len(events))

    def shutdown(self):
        for tracking_id, count in list(getattr(self, "_pending", {}).items()):
            if count:
                self._write(tracking_id, os.path.join(self.state_dir,
                                                      csaf_output.safe_name(tracking_id) + ".jsonl"))

    @staticmethod
    def check(parameters: dict):
        results = []
        for name in ("output_dir", "publisher_name", "publisher_namespace"):
            if not parameters.get(name):
                results.append(["error", f"Parameter {name} is required."])
        try:
            level = tlp.parse_level(parameters.get("max_tlp", "AMBER"), "parameter max_tlp")
            if level >= tlp.Level.AMBER_STRICT:
                results.append(["error", f"Parameter max_tlp: TLP:{level.label} is never published as a CSAF "
                                         "advisory; use AMBER or lower."])
        except tlp.UnknownTLPError as exc:
            results.append(["error", f"Parameter max_tlp: {exc}."])
        if parameters.get("publisher_category", "coordinator") not in (
                "coordinator", "discoverer", "other", "translator", "user", "vendor"):
            results.append(["error", "Parameter publisher_category is not a CSAF publisher category."])
        return results or None


BOT = CrossBorderCSAFOutputBot
