"""Writing CSAF 2.0 ``csaf_security_advisory`` documents from IntelMQ vulnerability events.

Pure library for the CSAF output bot.  :func:`build_advisory` turns the flat
event dicts of one group into a document that passes the shipped CSAF 2.0
schema; :class:`ProviderDirectory` writes it in the layout of a CSAF provider
(``<tlp>/<year>/<id>.json`` with ``.sha256``/``.sha512`` and optional ``.asc``,
``index.txt`` and ``changes.csv`` per TLP folder), every file atomically.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
from typing import Iterable, Optional

from intelmq_crossborder import __version__

from intelmq_crossborder.policy.redact import without_source

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.files import atomic_write
from intelmq_crossborder.core.errors import CrossBorderError

__all__ = ["build_advisory", "withdrawn_advisory", "ProviderDirectory", "safe_name", "group_value", "events_tlp",
           "admit", "OutputError"]

CVE_RE = re.compile(r"^CVE-[0-9]{4}-[0-9]{4,}$")
CWE_RE = re.compile(r"^CWE-[1-9]\d{0,5}$")
REMEDIATION_CATEGORIES = ("mitigation", "no_fix_planned", "none_available", "vendor_fix", "workaround")
STATUS_KEYS = ("first_affected", "first_fixed", "fixed", "known_affected", "known_not_affected",
               "last_affected", "recommended", "under_investigation")
TLP_URL = "https://www.first.org/tlp/"
#: A provider directory is published (served by a web server): its files are world-readable.
PUBLIC_MODE = 0o644


class OutputError(CrossBorderError, ValueError):
    """An event that cannot go into a CSAF advisory; names the field."""

    def __init__(self, field: str, value, reason: str):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"{field}={value!r}: {reason}")


def safe_name(text: str) -> str:
    """A CSAF file name stem: lowercase, runs of characters other than [a-z0-9+-] become '_'."""
    return re.sub(r"[^a-z0-9+\-]+", "_", text.lower()).strip("_") or "advisory"


def group_value(event: dict, group_by: Iterable[str]) -> str:
    parts = [str(event.get(f)) for f in group_by if event.get(f) not in (None, "")]
    if not parts:
        raise OutputError(",".join(group_by), None, "the grouping fields are all empty")
    return "-".join(parts)


def _labels(event: dict) -> tlp.EventTLP:
    """:func:`tlp.event_tlp` of one event; an unreadable label is an :class:`OutputError` naming its field."""
    try:
        return tlp.event_tlp(event)
    except tlp.LabelError as exc:
        raise OutputError(exc.field, exc.value, f"{exc.reason}; not written") from None


def admit(event: dict, max_level: tlp.Level) -> tlp.EventTLP:
    """The effective TLP of an event (:func:`tlp.event_tlp`) when it may go into a published
    advisory, else :class:`OutputError` naming the field.  Refused: no label, an unreadable
    label, RED (never forwarded automatically), AMBER+STRICT (never leaves the organisation;
    a provider directory is published) and anything above ``max_level``."""
    labels = _labels(event)
    level = labels.level
    if level is None:
        raise OutputError("sharing.tlp", None, "no TLP label; the event is not written into a CSAF advisory "
                                               "without one")
    if level is tlp.Level.RED:
        raise OutputError(labels.field, level.label, "TLP:RED is never published automatically; "
                                                             "not written")
    if level is tlp.Level.AMBER_STRICT:
        raise OutputError(labels.field, level.label, "TLP:AMBER+STRICT never leaves the organisation "
                                                             "and CSAF advisories are published; not written")
    if level > max_level:
        raise OutputError(labels.field, level.label, f"TLP:{level.label} is above max_tlp "
                                                             f"{max_level.label}; not written")
    return labels


def events_tlp(events: Iterable[dict]) -> tlp.Level:
    """The most restrictive effective TLP (:func:`tlp.event_tlp`) of the events; every event
    must carry a readable label."""
    levels = []
    for event in events:
        level = _labels(event).level
        if level is None:
            raise OutputError("sharing.tlp", None, "no TLP label; run the TLP expert first")
        levels.append(level)
    return max(levels)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _cvss(event: dict) -> Optional[tuple]:
    vector = event.get("vulnerability.cvss_vector")
    score = event.get("vulnerability.cvss_base_score")
    if not vector or score is None:
        return None
    score = float(score)
    if vector.startswith("CVSS:3."):
        version = vector[5:8]
        severity = ("NONE" if score == 0 else "LOW" if score < 4 else "MEDIUM" if score < 7
                    else "HIGH" if score < 9 else "CRITICAL")
        return "cvss_v3", {"version": version, "vectorString": vector, "baseScore": score,
                           "baseSeverity": severity}
    if vector.startswith(("AV:", "(AV:")):
        return "cvss_v2", {"version": "2.0", "vectorString": vector.strip("()"), "baseScore": score}
    return None


def _remediations(summary: str) -> list:
    out = []
    for part in summary.split(" | "):
        category, sep, details = part.partition(": ")
        if not sep or category not in REMEDIATION_CATEGORIES:
            category, details = "mitigation", part
        url = None
        if details.endswith(">") and " <" in details:
            details, _, url = details[:-1].rpartition(" <")
        item = {"category": category, "details": details.strip() or category}
        if url:
            item["url"] = url
        out.append(item)
    return out


def build_advisory(events: list, *, tracking_id: str, publisher: dict, title: Optional[str] = None,
                   initial_release_date: Optional[str] = None, version: int = 1,
                   history: Optional[list] = None, now: Optional[str] = None,
                   summary: Optional[str] = None) -> dict:
    """A CSAF 2.0 ``csaf_security_advisory`` from flat event dicts (IntelMQ field names).

    One vulnerability per CVE (``product.vulnerabilities``, else
    ``classification.identifier``), one product per (vendor, name, version);
    product status, CVSS, CWE, remediation and description come from the events.
    The TLP is the most restrictive effective TLP (:func:`tlp.event_tlp`) of the
    events, mapped to a CSAF 2.0 label (AMBER+STRICT becomes RED).  Nothing of
    :data:`tlp.SOURCE_FIELDS` of an event whose source is hidden goes into the
    document (title, references).  ``summary``: the revision history's text for this version
    (default: "Initial version." / "Update N: events added.").
    """
    if not events:
        raise OutputError("events", [], "no events to write")
    now = now or _now()
    labels = [_labels(e) for e in events]
    if any(found.level is None for found in labels):
        raise OutputError("sharing.tlp", None, "no TLP label; run the TLP expert first")
    level = max(found.level for found in labels)
    events = [without_source(e) if found.hide_source else e for e, found in zip(events, labels)]

    products: dict = {}          # (vendor, name, version) -> product_id
    tree: dict = {}              # vendor -> name -> {version or None: product_id}
    vulns: dict = {}             # key -> vulnerability dict
    for event in events:
        vendor = event.get("product.vendor") or "unknown vendor"
        name = event.get("product.name") or event.get("product.full_name")
        pid = None
        if name:
            key = (vendor, name, event.get("product.version"))
            pid = products.get(key)
            if pid is None:
                pid = products[key] = f"CSAFPID-{len(products) + 1:04d}"
                tree.setdefault(vendor, {}).setdefault(name, {})[key[2]] = (pid, event.get("product.full_name"))
        cves = [c.strip().upper() for c in (event.get("product.vulnerabilities") or "").split(";") if c.strip()]
        ident = cves[0] if cves else event.get("classification.identifier")
        if not ident:
            raise OutputError("product.vulnerabilities", None,
                              "a vulnerability event needs a CVE or classification.identifier")
        vuln = vulns.get(ident)
        if vuln is None:
            vuln = vulns[ident] = {"_status": {}, "_scores": {}, "_rem": {}}
            if CVE_RE.match(ident):
                vuln["cve"] = ident
            else:
                vuln["ids"] = [{"system_name": "IntelMQ classification.identifier", "text": ident}]
            cwe = event.get("vulnerability.cwe")
            if cwe and CWE_RE.match(cwe):
                vuln["cwe"] = {"id": cwe, "name": cwe}
            if event.get("event_description.text"):
                vuln["notes"] = [{"category": "description", "text": event["event_description.text"],
                                  "title": "Description"}]
        if pid is not None:
            status = event.get("vulnerability.product_status") or "known_affected"
            if status not in STATUS_KEYS:
                raise OutputError("vulnerability.product_status", status, "not a CSAF product status")
            vuln["_status"].setdefault(status, [])
            if pid not in vuln["_status"][status]:
                vuln["_status"][status].append(pid)
            cvss = _cvss(event)
            if cvss:
                vuln["_scores"].setdefault((cvss[0], json.dumps(cvss[1], sort_keys=True)), []).append(pid)
            if event.get("vulnerability.remediation"):
                for rem in _remediations(event["vulnerability.remediation"]):
                    vuln["_rem"].setdefault(json.dumps(rem, sort_keys=True), []).append(pid)

    branches = []
    for vendor in sorted(tree):
        vendor_branches = []
        for name in sorted(tree[vendor]):
            versions = tree[vendor][name]
            version_branches = []
            for ver in sorted(versions, key=lambda v: (v is None, v or "")):
                pid, full = versions[ver]
                label = full or " ".join(x for x in (vendor, name, ver) if x)
                product = {"name": label, "product_id": pid}
                version_branches.append({"category": "product_version", "name": ver or "unspecified",
                                         "product": product})
            vendor_branches.append({"category": "product_name", "name": name, "branches": version_branches})
        branches.append({"category": "vendor", "name": vendor, "branches": vendor_branches})

    vulnerabilities = []
    for ident in sorted(vulns):
        vuln = vulns[ident]
        out = {k: v for k, v in vuln.items() if not k.startswith("_")}
        if vuln["_status"]:
            out["product_status"] = {k: sorted(v) for k, v in sorted(vuln["_status"].items())}
        scores = []
        for (kind, payload), pids in sorted(vuln["_scores"].items()):
            scores.append({kind: json.loads(payload), "products": sorted(set(pids))})
        if scores:
            out["scores"] = scores
        rems = [dict(json.loads(r), product_ids=sorted(set(p))) for r, p in sorted(vuln["_rem"].items())]
        if rems:
            out["remediations"] = rems
        vulnerabilities.append(out)

    first = events[0]
    title = title or first.get("csaf.tracking_id") or tracking_id
    history = list(history or [])
    history.append({"date": now, "number": str(version), "summary": summary or (
        "Initial version." if version == 1 else f"Update {version}: events added.")})
    document = {
        "document": {
            "category": "csaf_security_advisory",
            "csaf_version": "2.0",
            "distribution": {"tlp": {"label": tlp.to_csaf_label(level, "2.0"), "url": TLP_URL}},
            "lang": "en",
            "notes": [{"category": "summary", "title": "Summary",
                       "text": f"{len(vulnerabilities)} vulnerabilit{'y' if len(vulnerabilities) == 1 else 'ies'} "
                               f"shared by the cross-border hub from {len(events)} IntelMQ event(s)."}],
            "publisher": publisher,
            "title": title,
            "tracking": {
                "current_release_date": now,
                "generator": {"engine": {"name": "intelmq-crossborder", "version": __version__}},
                "id": tracking_id,
                "initial_release_date": initial_release_date or now,
                "revision_history": history,
                "status": "final",
                "version": str(version),
            },
        },
        "vulnerabilities": vulnerabilities,
    }
    references = sorted({e["csaf.document_url"] for e in events if e.get("csaf.document_url")})
    if references:
        document["document"]["references"] = [{"category": "external", "summary": "Source advisory", "url": u}
                                              for u in references]
    if branches:
        document["product_tree"] = {"branches": branches}
    return document


def withdrawn_advisory(*, tracking_id: str, publisher: dict, level: tlp.Level, version: int,
                       initial_release_date: Optional[str], history: Optional[list], reason: str,
                       now: Optional[str] = None) -> dict:
    """The last revision of an advisory whose every event was retracted: CSAF 2.0 has no
    withdrawn status, so this is a ``csaf_base`` document (the profile that asks for no
    product tree and no vulnerabilities) under the same tracking id, next version, ``final``,
    with a note "Reasoning for Withdrawal" (the shape CSAF 2.1 gives its ``csaf_withdrawn``
    profile) and the revision history continued.  It replaces the advisory's file: nothing of
    the withdrawn content stays in the provider directory.  ``level`` is the advisory's TLP
    (it stays in its folder)."""
    now = now or _now()
    history = list(history or [])
    history.append({"date": now, "number": str(version), "summary": f"Update {version}: advisory withdrawn."})
    return {
        "document": {
            "category": "csaf_base",
            "csaf_version": "2.0",
            "distribution": {"tlp": {"label": tlp.to_csaf_label(level, "2.0"), "url": TLP_URL}},
            "lang": "en",
            "notes": [{"category": "description", "title": "Reasoning for Withdrawal", "text": reason}],
            "publisher": publisher,
            "title": f"Withdrawn: {tracking_id}",
            "tracking": {
                "current_release_date": now,
                "generator": {"engine": {"name": "intelmq-crossborder", "version": __version__}},
                "id": tracking_id,
                "initial_release_date": initial_release_date or now,
                "revision_history": history,
                "status": "final",
                "version": str(version),
            },
        },
    }


class ProviderDirectory:
    """The files of a CSAF provider's directory distribution under ``root``."""

    def __init__(self, root: str, signer=None, signing_key: Optional[str] = None,
                 signing_passphrase: Optional[str] = None):
        self.root = root
        self.signer = signer
        self.signing_key = signing_key
        self.signing_passphrase = signing_passphrase

    @staticmethod
    def folder(label: str) -> str:
        return label.lower()

    def relative_path(self, document: dict) -> str:
        tracking = document["document"]["tracking"]
        year = tracking["initial_release_date"][:4]
        return f"{year}/{safe_name(tracking['id'])}.json"

    def write(self, document: dict) -> str:
        """Write the advisory with hashes (and signature), then index.txt and changes.csv; returns its path.
        A document labelled RED (TLP:RED or AMBER+STRICT in CSAF 2.0) is never published: OutputError."""
        label = document["document"]["distribution"]["tlp"]["label"]  # not an event label: the CSAF document's
        if label == "RED":
            raise OutputError("csaf.distribution.tlp.label", label, "a TLP:RED advisory (TLP:RED or "
                              "AMBER+STRICT) is never published; not written")
        folder = os.path.join(self.root, self.folder(label))
        rel = self.relative_path(document)
        path = os.path.join(folder, rel)
        body = (json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
        name = os.path.basename(path)
        for algo in ("sha256", "sha512"):
            digest = hashlib.new(algo, body).hexdigest()
            atomic_write(f"{path}.{algo}", f"{digest}  {name}\n".encode("ascii"), mode=PUBLIC_MODE)
        if self.signer is not None:
            atomic_write(path + ".asc", self.signer.sign(body, self.signing_key, self.signing_passphrase),
                         mode=PUBLIC_MODE)
        atomic_write(path, body, mode=PUBLIC_MODE)
        self._remove_other_tlp_copies(label, rel)
        self._update_listing(folder, rel, document["document"]["tracking"]["current_release_date"])
        return path

    def _remove_other_tlp_copies(self, label: str, rel: str) -> None:
        """A group whose TLP became more restrictive must not stay in the less restrictive folder."""
        for other in ("white", "green", "amber", "red"):
            if other == self.folder(label):
                continue
            folder = os.path.join(self.root, other)
            old = os.path.join(folder, rel)
            if os.path.exists(old):
                for suffix in ("", ".sha256", ".sha512", ".asc"):
                    if os.path.exists(old + suffix):
                        os.unlink(old + suffix)
                self._update_listing(folder, rel, None)

    def _update_listing(self, folder: str, rel: str, timestamp: Optional[str]) -> None:
        changes_path = os.path.join(folder, "changes.csv")
        rows = {}
        if os.path.exists(changes_path):
            with open(changes_path, encoding="utf-8", newline="") as fh:
                for record in csv.reader(fh):
                    if len(record) >= 2:
                        rows[record[0]] = record[1]
        if timestamp is None:
            rows.pop(rel, None)
        else:
            rows[rel] = timestamp
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for path, ts in sorted(rows.items(), key=lambda r: (r[1], r[0]), reverse=True):
            writer.writerow([path, ts])
        atomic_write(changes_path, out.getvalue().encode("utf-8"), mode=PUBLIC_MODE)
        atomic_write(os.path.join(folder, "index.txt"),
                     "".join(f"{p}\n" for p in sorted(rows)).encode("utf-8"), mode=PUBLIC_MODE)
