"""CSAF 2.0 advisories: schema validation and the mapping to IntelMQ events.

Pure library, no Bot classes: the CSAF parser bot, the CSAF output bot and the
``intelmq-crossborder convert csaf`` command all call it.

- :func:`validate` checks a document against the CSAF 2.0 JSON schema and the
  FIRST CVSS v2.0/v3.0/v3.1 schemas it references.  The schemas ship in the
  package (``intelmq_crossborder/formats/csaf/schemas/``); their ``$ref`` URLs are
  resolved from a local ``referencing`` registry, never fetched.
- :func:`document_events` turns a valid document into flat IntelMQ event dicts:
  one per (vulnerability, product with a selected product status), see
  ``docs/csaf.md`` for the field mapping.
- :class:`ProductTree` resolves a ``product_id`` through ``branches``,
  ``full_product_names`` and ``relationships`` to name, vendor and version.

CSAF 2.1 documents (``csaf_version`` "2.1") are read with the same mapping
(they share the structure the mapping reads).  They are validated against the
2.0 schema after :func:`project_21_to_20` rewrote the 2.1-only parts we know
of (TLP labels CLEAR/AMBER+STRICT, ``cwes``); anything else that differs is a
schema error, reported as such.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Iterator, Optional

from intelmq_crossborder.core import inputs, tlp
from intelmq_crossborder.core.errors import CrossBorderError
__all__ = [
    "CSAFError", "CSAFDocumentError", "SchemaProblem", "Product", "ProductTree",
    "AFFECTED_STATUSES", "ALL_STATUSES", "load_json", "schema", "validator",
    "schema_registry", "validate", "tracking_id", "document_tlp", "document_events",
    "severity_from_score", "cvss_for_product", "normalise_datetime", "project_21_to_20",
]

#: Product status lists of a CSAF vulnerability, in the order they are read.
ALL_STATUSES = ("known_affected", "first_affected", "last_affected", "under_investigation",
                "fixed", "first_fixed", "recommended", "known_not_affected")
#: The statuses that make a product a "vulnerable system" in IntelMQ's taxonomy.
AFFECTED_STATUSES = ("known_affected", "first_affected", "last_affected", "under_investigation")

SCHEMA_PACKAGE = "intelmq_crossborder.formats.csaf"
SCHEMA_DIR = ("schemas",)
CSAF_SCHEMA = "csaf_json_schema.json"
#: $ref URL -> file shipped in schemas/first/
CVSS_SCHEMAS = {
    "https://www.first.org/cvss/cvss-v2.0.json": "cvss-v2.0.json",
    "https://www.first.org/cvss/cvss-v3.0.json": "cvss-v3.0.json",
    "https://www.first.org/cvss/cvss-v3.1.json": "cvss-v3.1.json",
}
#: Auxiliary schemas for the distribution documents (collector).
AUX_SCHEMAS = {
    "provider": "provider_json_schema.json",
    "aggregator": "aggregator_json_schema.json",
    "rolie_feed": "ROLIE_feed_json_schema.json",
}
MAX_SCHEMA_ERRORS = 10
REMEDIATION_MAX = 1000


class CSAFError(CrossBorderError, ValueError):
    """A document that cannot be read as CSAF (not JSON, not an object)."""

    def __init__(self, message: str, source: str = ""):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


@dataclass(frozen=True)
class SchemaProblem:
    """One schema violation: a JSON path like ``$.document.tracking.id`` and the message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class CSAFDocumentError(CSAFError):
    """A JSON document that fails the CSAF schema: names the source, the tracking id and the paths."""

    def __init__(self, problems: list, tracking: Optional[str], source: str = "", total: int = 0):
        self.problems = list(problems)
        self.tracking_id = tracking
        self.total = total or len(self.problems)
        shown = "; ".join(str(p) for p in self.problems)
        more = f" (and {self.total - len(self.problems)} more)" if self.total > len(self.problems) else ""
        tid = "(none)" if tracking is None else repr(tracking)
        super().__init__(f"not a valid CSAF 2.0 document (tracking id {tid}): {shown}{more}", source)


# --- schemas -------------------------------------------------------------------

def _schema_file(*parts: str):
    return resources.files(SCHEMA_PACKAGE).joinpath(*SCHEMA_DIR, *parts)


@lru_cache(maxsize=None)
def _load_schema_file(*parts: str) -> dict:
    return json.loads(_schema_file(*parts).read_text(encoding="utf-8"))


def schema(name: str = "csaf") -> dict:
    """The shipped schema ``csaf`` (CSAF 2.0 document), ``provider``, ``aggregator`` or ``rolie_feed``."""
    return _load_schema_file(CSAF_SCHEMA if name == "csaf" else AUX_SCHEMAS[name])


@lru_cache(maxsize=None)
def schema_registry():
    """A ``referencing`` registry holding every shipped schema under the URLs that reference it."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4, DRAFT7, DRAFT202012

    resources_ = []
    for url, filename in CVSS_SCHEMAS.items():
        contents = _load_schema_file("first", filename)
        spec = DRAFT7 if "draft-07" in contents.get("$schema", "") else DRAFT4
        res = Resource.from_contents(contents, default_specification=spec)
        resources_.append((url, res))
        own_id = contents.get("$id") or contents.get("id")
        if own_id and own_id != url:
            resources_.append((own_id, res))
    for filename in (CSAF_SCHEMA, *AUX_SCHEMAS.values()):
        contents = _load_schema_file(filename)
        resources_.append((contents["$id"], Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources_)


@lru_cache(maxsize=None)
def validator(name: str = "csaf"):
    """A cached jsonschema validator (draft 2020-12) for a shipped schema, $refs resolved locally.

    Formats (``date-time``, ``uri``) are annotations as in plain draft 2020-12
    validation; the parser checks the dates it uses itself.
    """
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema(name), registry=schema_registry())


def _json_path(parts) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(document, name: str = "csaf", limit: int = MAX_SCHEMA_ERRORS) -> tuple[list, int]:
    """Schema problems of ``document`` (at most ``limit``, sorted by path) and their total count."""
    problems = []
    total = 0
    for error in validator(name).iter_errors(document):
        total += 1
        problems.append(SchemaProblem(_json_path(error.absolute_path), _short_message(error)))
    problems.sort(key=lambda p: p.path)
    return problems[:limit], total


def _short_message(error) -> str:
    message = error.message
    if len(message) > 160:
        message = message[:157] + "..."
    return message


def load_json(data, source: str = "") -> Any:
    """Parse bytes/str as JSON with the hostile-input reader (:func:`inputs.loads_json`:
    duplicate keys, numbers of more than 64 characters, nesting deeper than 128, lone
    surrogates and text that is not UTF-8 are refused), raising :class:`CSAFError`
    naming the source, the line and the field."""
    if isinstance(data, (dict, list)):
        return data
    if isinstance(data, str) and data.startswith("\ufeff"):
        data = data[1:]
    try:
        return inputs.loads_json(data, source or "<input>")
    except inputs.InputError as exc:
        raise input_error(exc, source) from None


def input_error(exc: "inputs.InputError", source: str = "") -> CSAFError:
    """A :class:`CSAFError` with the message of an :class:`inputs.InputError` (file:line: field: reason)."""
    where = f"{source}:{exc.line}" if source and exc.line is not None else source
    text = (f"line {exc.line}: " if exc.line is not None and not source else "") + \
        (f"field {exc.field}: " if exc.field else "") + exc.reason
    return CSAFError(text, where)


def tracking_id(document) -> Optional[str]:
    """``document.tracking.id`` if the document has one that is a string, else None."""
    try:
        value = document["document"]["tracking"]["id"]
    except (KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def csaf_version(document) -> str:
    try:
        return str(document["document"]["csaf_version"])
    except (KeyError, TypeError):
        return ""


def project_21_to_20(document: dict) -> dict:
    """A copy of a CSAF 2.1 document with the 2.1-only parts the 2.0 schema rejects rewritten.

    TLP CLEAR -> WHITE, AMBER+STRICT -> RED (at least as restrictive), ``cwes``
    (list) -> ``cwe`` (first entry), ``csaf_version`` -> "2.0", the 2.1
    ``$schema`` key removed.  Used only for validation.
    """
    doc = copy.deepcopy(document)
    doc.pop("$schema", None)
    d = doc.get("document")
    if isinstance(d, dict):
        d["csaf_version"] = "2.0"
        dist = d.get("distribution")
        tlp_obj = dist.get("tlp") if isinstance(dist, dict) else None  # not an event label: CSAF document
        label = tlp_obj.get("label") if isinstance(tlp_obj, dict) else None
        if isinstance(label, str):
            try:
                level = tlp.parse_csaf(label, "2.1").level
                tlp_obj["label"] = tlp.to_csaf_label(level, "2.0")
            except tlp.UnknownTLPError:
                pass
    for vuln in doc.get("vulnerabilities", []) or []:
        if isinstance(vuln, dict) and isinstance(vuln.get("cwes"), list):
            cwes = vuln.pop("cwes")
            if cwes and isinstance(cwes[0], dict):
                vuln["cwe"] = {k: cwes[0][k] for k in ("id", "name") if k in cwes[0]}
    return doc


def check_document(document, source: str = "") -> dict:
    """Validate a parsed document; raise :class:`CSAFDocumentError` if invalid, return it otherwise."""
    if not isinstance(document, dict):
        raise CSAFError(f"a CSAF document is a JSON object, not {type(document).__name__}", source)
    target = project_21_to_20(document) if csaf_version(document).startswith("2.1") else document
    try:
        problems, total = validate(target)
    except RecursionError:
        raise CSAFError("nested too deeply for the schema validation", source) from None
    if problems:
        raise CSAFDocumentError(problems, tracking_id(document), source, total)
    return document


# --- product tree ------------------------------------------------------------

@dataclass
class Product:
    """A product as the events need it."""

    product_id: str
    full_name: str
    name: Optional[str] = None
    vendor: Optional[str] = None
    version: Optional[str] = None
    family: Optional[str] = None
    platform: Optional[str] = None
    cpe: Optional[str] = None
    purl: Optional[str] = None


def _cpe_parts(cpe: Optional[str]) -> dict:
    """vendor, product and version of a CPE 2.3 (or 2.2 URI) name, '*'/'-' left out."""
    if not cpe:
        return {}
    if cpe.startswith("cpe:2.3:"):
        parts = cpe.split(":")
        keys = {3: "vendor", 4: "name", 5: "version"}
    elif cpe.startswith("cpe:/"):
        parts = cpe[5:].split(":")
        parts = ["", "", ""] + parts[0:]  # align: part, vendor, product, version at 3,4,5
        keys = {4: "vendor", 5: "name", 6: "version"}
    else:
        return {}
    out = {}
    for idx, key in keys.items():
        if idx < len(parts) and parts[idx] not in ("", "*", "-"):
            out[key] = parts[idx].replace("\\", "")
    return out


_BRANCH_FIELDS = {
    "vendor": "vendor",
    "product_name": "name",
    "product_family": "family",
    "product_version": "version",
    "product_version_range": "version",
}


class ProductTree:
    """Resolves ``product_id`` and ``group_id`` of a CSAF ``product_tree``."""

    def __init__(self, tree: Optional[dict]):
        self.products: dict[str, Product] = {}
        self.groups: dict[str, list] = {}
        tree = tree or {}
        for branch in tree.get("branches", []) or []:
            self._walk(branch, {})
        for fpn in tree.get("full_product_names", []) or []:
            self._add(fpn, {})
        for rel in tree.get("relationships", []) or []:
            self._add_relationship(rel)
        for group in tree.get("product_groups", []) or []:
            self.groups[group.get("group_id")] = list(group.get("product_ids", []) or [])

    def _walk(self, branch: dict, context: dict) -> None:
        context = dict(context)
        key = _BRANCH_FIELDS.get(branch.get("category"))
        if key and branch.get("name"):
            context[key] = branch["name"]
        if isinstance(branch.get("product"), dict):
            self._add(branch["product"], context)
        for child in branch.get("branches", []) or []:
            self._walk(child, context)

    def _add(self, fpn: dict, context: dict) -> None:
        pid = fpn.get("product_id")
        if not pid:
            return
        helper = fpn.get("product_identification_helper") or {}
        cpe = helper.get("cpe")
        purl = helper.get("purl")
        from_cpe = _cpe_parts(cpe)
        name = context.get("name") or from_cpe.get("name") or context.get("family") or fpn.get("name")
        self.products[pid] = Product(
            product_id=pid, full_name=fpn.get("name") or pid, name=name,
            vendor=context.get("vendor") or from_cpe.get("vendor"),
            version=context.get("version") or from_cpe.get("version"),
            family=context.get("family"), cpe=cpe, purl=purl)

    def _add_relationship(self, rel: dict) -> None:
        fpn = rel.get("full_product_name") or {}
        pid = fpn.get("product_id")
        if not pid:
            return
        component = self.products.get(rel.get("product_reference"))
        platform = self.products.get(rel.get("relates_to_product_reference"))
        helper = fpn.get("product_identification_helper") or {}
        base = component or platform
        self.products[pid] = Product(
            product_id=pid, full_name=fpn.get("name") or pid,
            name=(component.name if component else None) or fpn.get("name"),
            vendor=(component.vendor if component else None) or (platform.vendor if platform else None),
            version=component.version if component else None,
            family=base.family if base else None,
            platform=platform.full_name if platform else rel.get("relates_to_product_reference"),
            cpe=helper.get("cpe") or (component.cpe if component else None),
            purl=helper.get("purl") or (component.purl if component else None))

    def resolve(self, product_id: str) -> Product:
        """The product of an id; an id the tree lacks gives a product with just the id as name."""
        product = self.products.get(product_id)
        if product is None:
            return Product(product_id=product_id, full_name=product_id, name=product_id)
        return product

    def expand(self, product_ids: Iterable[str] = (), group_ids: Iterable[str] = ()) -> set:
        """Product ids plus the members of the groups."""
        out = set(product_ids or ())
        for gid in group_ids or ():
            out.update(self.groups.get(gid, ()))
        return out


# --- scores, dates ------------------------------------------------------------

def severity_from_score(score: float, cvss_version: str = "3.1") -> str:
    """IntelMQ ``severity`` from a CVSS base score: v3 qualitative ratings, v2 NVD ranges.

    v3: 0.0 none (-> info), 0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0-10.0 critical.
    v2: 0.0-3.9 low, 4.0-6.9 medium, 7.0-10.0 high.
    """
    score = float(score)
    if str(cvss_version).startswith("2"):
        return "low" if score < 4.0 else "medium" if score < 7.0 else "high"
    if score == 0.0:
        return "info"
    return "low" if score < 4.0 else "medium" if score < 7.0 else "high" if score < 9.0 else "critical"


def cvss_for_product(vulnerability: dict, product_id: Optional[str]) -> Optional[dict]:
    """The best CVSS of a vulnerability for a product: v3.x first (3.1 over 3.0), v2 if that is all.

    ``product_id`` None: the best score over all products (the highest base score).
    Returns ``{"score", "vector", "version", "severity"}`` or None.
    """
    best = None
    for entry in vulnerability.get("scores", []) or []:
        if product_id is not None and product_id not in (entry.get("products") or ()):
            continue
        for key, rank in (("cvss_v3", 1), ("cvss_v2", 0)):
            cvss = entry.get(key)
            if not isinstance(cvss, dict) or "baseScore" not in cvss:
                continue
            version = str(cvss.get("version", "3.1" if key == "cvss_v3" else "2.0"))
            candidate = (rank, version, float(cvss["baseScore"]))
            if best is None or candidate > best[0]:
                severity = cvss.get("baseSeverity")
                severity = (severity.lower() if isinstance(severity, str) and rank else
                            severity_from_score(cvss["baseScore"], version))
                if severity == "none":
                    severity = "info"
                best = (candidate, {"score": float(cvss["baseScore"]), "vector": cvss.get("vectorString"),
                                    "version": version, "severity": severity})
    return best[1] if best else None


def normalise_datetime(value) -> tuple[Optional[str], bool]:
    """An ISO 8601 timestamp with timezone as IntelMQ wants it, and whether UTC had to be assumed.

    Returns (None, False) for a value that is not a timestamp.
    """
    if not isinstance(value, str) or not value:
        return None, False
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        # fromisoformat before 3.11 wants exactly 3 or 6 fraction digits
        try:
            head, _, rest = text.partition(".")
            digits = "".join(ch for ch in rest if ch.isdigit())
            tz = rest[len(digits):]
            parsed = _dt.datetime.fromisoformat(f"{head}.{(digits + '000000')[:6]}{tz}") if rest else None
        except ValueError:
            parsed = None
        if parsed is None:
            return None, False
    assumed = parsed.tzinfo is None
    if assumed:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed.astimezone(_dt.timezone.utc).isoformat(), assumed


# --- TLP ---------------------------------------------------------------------

def document_tlp(document: dict, source: str = "") -> Optional[tlp.ParsedTLP]:
    """The TLP of ``document.distribution.tlp.label`` (2.0 and 2.1 labels), None when absent.

    Raises :class:`intelmq_crossborder.core.tlp.UnknownTLPError` for a label that is not one.
    """
    dist = document.get("document", {}).get("distribution")
    tlp_obj = dist.get("tlp") if isinstance(dist, dict) else None  # not an event label: CSAF document
    label = tlp_obj.get("label") if isinstance(tlp_obj, dict) else None
    if label is None:
        return None
    where = f"{source} document.distribution.tlp.label" if source else "document.distribution.tlp.label"
    return tlp.parse_csaf(label, csaf_version(document) or "2.0", where)


# --- events ----------------------------------------------------------------------

@dataclass
class MappingResult:
    """What :func:`document_events` produced: the flat event dicts and notes for the log."""

    events: list = field(default_factory=list)
    tlp_level: Optional[tlp.Level] = None
    tlp_source: str = ""          # "document", "feed", "document+feed", "default"
    assumed_utc: list = field(default_factory=list)


def _self_url(document: dict) -> Optional[str]:
    for ref in document.get("document", {}).get("references", []) or []:
        if ref.get("category") == "self" and ref.get("url"):
            return ref["url"]
    return None


def _remediation_summary(vulnerability: dict, tree: ProductTree, product_id: Optional[str]) -> Optional[str]:
    parts = []
    for rem in vulnerability.get("remediations", []) or []:
        ids = tree.expand(rem.get("product_ids"), rem.get("group_ids"))
        if product_id is not None and product_id not in ids:
            continue
        details = " ".join(str(rem.get("details", "")).split())
        if len(details) > 200:
            details = details[:197] + "..."
        text = f"{rem.get('category', 'remediation')}: {details}" if details else str(rem.get("category"))
        if rem.get("url"):
            text += f" <{rem['url']}>"
        if text not in parts:
            parts.append(text)
    if not parts:
        return None
    summary = " | ".join(parts)
    return summary if len(summary) <= REMEDIATION_MAX else summary[:REMEDIATION_MAX - 3] + "..."


def _vuln_title(vulnerability: dict) -> Optional[str]:
    if vulnerability.get("title"):
        return vulnerability["title"]
    for note in vulnerability.get("notes", []) or []:
        if note.get("category") in ("summary", "description") and note.get("text"):
            text = " ".join(note["text"].split())
            return text if len(text) <= 500 else text[:497] + "..."
    return None


def _identifier(vulnerability: dict) -> Optional[str]:
    if vulnerability.get("cve"):
        return vulnerability["cve"]
    for ident in vulnerability.get("ids", []) or []:
        if ident.get("text"):
            return f"{ident.get('system_name', 'id')}:{ident['text']}"
    return None


def _cwe(vulnerability: dict) -> Optional[str]:
    cwe = vulnerability.get("cwe")
    if isinstance(cwe, dict) and cwe.get("id"):
        return cwe["id"]
    cwes = vulnerability.get("cwes")  # CSAF 2.1
    if isinstance(cwes, list) and cwes and isinstance(cwes[0], dict):
        return cwes[0].get("id")
    return None


_TEXT_SEVERITY = {"critical": "critical", "important": "high", "high": "high", "moderate": "medium",
                  "medium": "medium", "low": "low", "none": "info", "informational": "info"}


def _text_severity(vulnerability: dict, document: dict, product_id: Optional[str]) -> Optional[str]:
    """Severity from a textual rating when there is no CVSS: a ``threats`` entry of category
    ``impact`` for the product (Red Hat writes "Important"), else ``document.aggregate_severity``."""
    for threat in vulnerability.get("threats", []) or []:
        if threat.get("category") != "impact":
            continue
        ids = set(threat.get("product_ids") or ())
        if product_id is not None and ids and product_id not in ids:
            continue
        value = _TEXT_SEVERITY.get(str(threat.get("details", "")).strip().lower())
        if value:
            return value
    text = (document.get("document", {}).get("aggregate_severity") or {}).get("text")
    return _TEXT_SEVERITY.get(str(text).strip().lower()) if text else None


def _put(event: dict, key: str, value) -> None:
    if value is None or value == "":
        return
    event[key] = value


def document_events(document: dict, *, source_url: Optional[str] = None,
                    feed_tlp: Optional[tlp.Level] = None, default_tlp: tlp.Level = tlp.Level.AMBER,
                    statuses: Iterable[str] = AFFECTED_STATUSES, vex_statuses: Iterable[str] = ALL_STATUSES,
                    include_raw: bool = True, source: str = "", hide_source: bool = False) -> MappingResult:
    """Map a CSAF document (already validated) to flat IntelMQ event dicts.

    - one event per (vulnerability, product) whose product status is in
      ``statuses`` (``vex_statuses`` for ``csaf_vex`` documents);
    - a vulnerability without such a product gives one event without product;
    - a document without vulnerabilities (e.g. ``csaf_informational_advisory``)
      gives one informational event.

    TLP: the document's label; if there is a ``feed_tlp`` (the label of the
    feed the document came from) too, the more restrictive of the two; if the
    document has none, ``feed_tlp``; else ``default_tlp`` (``tlp_source``
    "default" so the caller can log it).  An event never reads lower than a label
    it carries: each event is read with :func:`tlp.event_tlp`, and a label that
    ends up in another field (a title that is ``TLP:RED``) raises its level; a
    label-like value that cannot be read refuses the document (:class:`CSAFError`
    naming the field).  ``hide_source`` (the feed says the source must not be
    disclosed) sets ``sharing.do_not_disclose_source`` on every event.
    """
    result = MappingResult()
    doc = document.get("document", {})
    tracking = doc.get("tracking", {})
    category = doc.get("category")
    parsed = document_tlp(document, source)
    levels = []
    if parsed is not None:
        levels.append(parsed.level)
        result.tlp_source = "document"
    if feed_tlp is not None:
        levels.append(feed_tlp)
        result.tlp_source = "document+feed" if parsed is not None else "feed"
    if not levels:
        levels.append(default_tlp)
        result.tlp_source = "default"
    level = max(levels)
    result.tlp_level = level

    common: dict = {}
    _put(common, "csaf.tracking_id", tracking.get("id"))
    _put(common, "csaf.tracking_version", tracking.get("version"))
    _put(common, "csaf.category", category)
    _put(common, "csaf.publisher", doc.get("publisher", {}).get("name"))
    url = source_url or _self_url(document)
    _put(common, "csaf.document_url", url)
    for key, field_name in (("initial_release_date", "csaf.initial_release_date"),
                            ("current_release_date", "csaf.current_release_date")):
        value, assumed = normalise_datetime(tracking.get(key))
        _put(common, field_name, value)
        if assumed:
            result.assumed_utc.append(f"document.tracking.{key}")
    if "csaf.current_release_date" in common:
        common["time.source"] = common["csaf.current_release_date"]
    common["sharing.tlp"] = level.label
    common["tlp"] = tlp.to_intelmq_stock(level)
    if hide_source:
        common["sharing.do_not_disclose_source"] = True
    if url:
        common["event_description.url"] = url

    tree = ProductTree(document.get("product_tree"))
    vulnerabilities = document.get("vulnerabilities") or []
    wanted = tuple(vex_statuses if category == "csaf_vex" else statuses)

    if not vulnerabilities:
        event = dict(common)
        event["classification.taxonomy"] = "other"
        event["classification.type"] = "other"
        event["classification.identifier"] = tracking.get("id") or "csaf"
        event["severity"] = "info"
        _put(event, "event_description.text", doc.get("title"))
        if include_raw:
            event["raw"] = json.dumps({"document": {"title": doc.get("title"), "tracking": tracking}},
                                      separators=(",", ":"), sort_keys=True)
        result.events.append(event)
        return _no_lower_label(result, source)

    for vuln in vulnerabilities:
        base = dict(common)
        ident = _identifier(vuln)
        if vuln.get("cve"):
            base["product.vulnerabilities"] = vuln["cve"].lower()
        _put(base, "classification.identifier", ident or tracking.get("id"))
        _put(base, "vulnerability.cwe", _cwe(vuln))
        _put(base, "event_description.text", _vuln_title(vuln) or doc.get("title"))
        raw = json.dumps(vuln, separators=(",", ":"), sort_keys=True) if include_raw else None
        seen = set()
        pairs = []
        status_lists = vuln.get("product_status") or {}
        for status in ALL_STATUSES:
            if status not in wanted:
                continue
            for pid in status_lists.get(status, []) or []:
                if pid in seen:
                    continue
                seen.add(pid)
                pairs.append((pid, status))
        if not pairs:
            pairs = [(None, None)]
        for pid, status in pairs:
            event = dict(base)
            vulnerable = status is None or status in AFFECTED_STATUSES
            event["classification.taxonomy"] = "vulnerable" if vulnerable else "other"
            event["classification.type"] = "vulnerable-system" if vulnerable else "other"
            if pid is not None:
                product = tree.resolve(pid)
                _put(event, "product.full_name", product.full_name)
                _put(event, "product.name", product.name)
                _put(event, "product.vendor", product.vendor)
                _put(event, "product.version", product.version)
                event["vulnerability.product_status"] = status
                extra = {"csaf_product_id": pid}
                for key in ("cpe", "purl", "platform", "family"):
                    if getattr(product, key):
                        extra[f"product_{key}"] = getattr(product, key)
                for key, value in extra.items():
                    event[f"extra.{key}"] = value
            cvss = cvss_for_product(vuln, pid)
            if cvss is None and pid is None:
                cvss = cvss_for_product(vuln, None)
            if cvss is not None:
                event["vulnerability.cvss_base_score"] = cvss["score"]
                _put(event, "vulnerability.cvss_vector", cvss["vector"])
                event["severity"] = cvss["severity"]
                event["extra.cvss_version"] = cvss["version"]
            elif status is not None and status not in AFFECTED_STATUSES:
                event["severity"] = "info"
            else:
                event["severity"] = _text_severity(vuln, document, pid) or "undefined"
            _put(event, "vulnerability.remediation", _remediation_summary(vuln, tree, pid))
            if raw is not None:
                event["raw"] = raw
            result.events.append(event)
    return _no_lower_label(result, source)


def _no_lower_label(result: MappingResult, source: str) -> MappingResult:
    """Every event at the most restrictive label it carries (read by :func:`tlp.event_tlp`),
    or :class:`CSAFError` naming the field of a label that cannot be read."""
    for event in result.events:
        try:
            read = tlp.event_tlp(event)
        except tlp.LabelError as exc:
            raise CSAFError(f"a TLP label that cannot be read in what becomes event field {exc.field}: "
                            f"{exc.reason}", source) from None
        if read.level is not None and read.level > result.tlp_level:
            event["sharing.tlp"] = read.level.label
            event["tlp"] = tlp.to_intelmq_stock(read.level)
        if read.hide_source:
            event["sharing.do_not_disclose_source"] = True
    return result


def parse_document(data, *, source: str = "", **kwargs) -> MappingResult:
    """Load, validate and map in one call (what the parser bot and the CLI do).

    Raises :class:`CSAFError` / :class:`CSAFDocumentError` for a bad document and
    :class:`intelmq_crossborder.core.tlp.UnknownTLPError` for a TLP label that is none.
    """
    document = check_document(load_json(data, source), source)
    return document_events(document, source=source, **kwargs)


def iter_documents(paths: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """``(path, text or error)`` of each file: a directory yields its ``*.json`` files, sorted.
    A file that cannot be read yields an :class:`inputs.InputError` (missing, unreadable,
    not UTF-8, too large) instead of its text; the iteration goes on."""
    from pathlib import Path

    for path in paths:
        p = Path(path)
        if p.is_dir():
            try:
                children = sorted(p.rglob("*.json"))
            except OSError as exc:
                yield str(p), inputs.InputError(p, f"cannot read the directory: {exc.strerror or exc}")
                continue
            for child in children:
                yield str(child), _read(child)
        else:
            yield str(p), _read(p)


def _read(path) -> Any:
    try:
        return inputs.read_text(path, what="CSAF document")
    except inputs.InputError as exc:
        return exc


# --- IntelMQ events -------------------------------------------------

def fill_event(event, flat: dict) -> list:
    """Add the flat fields to an IntelMQ event; returns ``[(key, value)]`` the harmonization rejected.

    A rejected optional field is left out (the caller logs it); nothing else is dropped.
    """
    rejected = []
    for key, value in flat.items():
        if event.add(key, value, overwrite=True, raise_failure=False) is False:
            rejected.append((key, value))
    return rejected
