"""The demo consortium's keys: a hybrid post-quantum link between two hubs, Ed25519 to the rest.

:func:`setup_keys` replaces the key and trust store part of ``Consortium.setup``: every member
that sends bundles gets throwaway keys under ``etc/exchange/`` (never in the repository), every
member a trust store, and the exchange bots of its runtime are pointed at them:

- the members of ``hybrid`` (default de-hub and fi-hub) sign with Ed25519 + ML-DSA-65 and have
  an HPKE (MLKEM768-X25519) decryption key; between two of them the trust stores list all
  keys and require both signature algorithms, and the data is encrypted to the recipient
  (format 2.0);
- every other link is today's: Ed25519 only, data in clear (format 1.0) -- a peer that has not
  moved to hybrid yet keeps working, as in the migration of docs/exchange-format.md.

:func:`open_imported` opens an archived bundle with the member's decryption key, and
:func:`link_report` says per link what protected it, from the bundles the recipients imported.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import yaml

from intelmq_crossborder.formats import bundle
from intelmq_crossborder.formats import bundle_crypto as bc

__all__ = ["HYBRID", "setup_keys", "decryption_keys", "open_imported", "link_report", "link_lines",
           "setup_consortium", "consortium_links"]

#: The two hubs of the demo's hybrid link.
HYBRID = ("de-hub", "fi-hub")
OUTPUT_MODULE = "intelmq.bots.outputs.crossborder.exchange.output"
COLLECTOR_MODULE = "intelmq.bots.collectors.crossborder.exchange.collector"
COMMENT = "demo key, thrown away after the run"


def _write_key(path: Path, keys: Sequence) -> None:
    path.write_bytes(b"".join(bc.private_pem(k) for k in keys))
    path.chmod(0o600)


def setup_keys(workdir: Path, members: Iterable, runtimes: Dict[str, dict],
               hybrid: Sequence[str] = HYBRID) -> Dict[str, str]:
    """Write the members' keys and trust stores and point their exchange bots at them.

    ``members``: the consortium's members (``name``, ``country``, ``peers``, ``constituents``);
    ``runtimes``: member name -> its runtime dict (changed in place, before the instance writes
    it).  Returns ``{"sender -> recipient": "hybrid+encrypted" | "ed25519"}`` for each link."""
    workdir = Path(workdir)
    members = list(members)
    countries = {m.name: m.country for m in members}
    links = [(m.name, r) for m in members for r in tuple(m.peers) + tuple(m.constituents)]
    is_hybrid = {(s, r): s in hybrid and r in hybrid for s, r in links}
    ed25519, ml_dsa, hpke = {}, {}, {}
    for m in members:
        exchange = workdir / m.name / "etc" / "exchange"
        exchange.mkdir(parents=True, exist_ok=True)
        if m.peers or m.constituents:          # it signs bundles
            ed25519[m.name] = bc.generate(bc.ED25519)
            _write_key(exchange / "signing-key-ed25519.pem", [ed25519[m.name]])
        if m.name in hybrid:
            ml_dsa[m.name] = bc.generate(bc.ML_DSA_65)
            hpke[m.name] = bc.generate(bc.HPKE_KEM)
            if m.name in ed25519:
                _write_key(exchange / "signing-key-hybrid.pem", [ed25519[m.name], ml_dsa[m.name]])
            _write_key(exchange / "decryption-key.pem", [hpke[m.name]])
    for m in members:
        root = workdir / m.name
        peers: dict = {}
        # the peers that send to m: their signing keys (ML-DSA-65 too, and required, on a hybrid link)
        for sender, recipient in links:
            if recipient != m.name or sender not in ed25519:
                continue
            keys = [ed25519[sender]] + ([ml_dsa[sender]] if is_hybrid[(sender, recipient)] else [])
            peers.setdefault(sender, []).extend(keys)
        # the peers m sends to on a hybrid link: their encryption keys
        for sender, recipient in links:
            if sender == m.name and is_hybrid[(sender, recipient)]:
                peers.setdefault(recipient, []).append(hpke[recipient])
        document = {"version": 1, "peers": {}}
        for hub, keys in peers.items():
            entry = _entry(countries.get(hub), keys)
            document["peers"][hub] = entry
        if document["peers"]:
            bundle.TrustStore.from_dict(document, f"{m.name} trust store")       # valid, or fail here
        (root / "etc" / "exchange" / "trust.yaml").write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
        # its exchange bots
        trust_file = str(root / "etc" / "exchange" / "trust.yaml")
        for conf in runtimes.get(m.name, {}).values():
            if not isinstance(conf, dict):
                continue
            params = conf.setdefault("parameters", {})
            if conf.get("module") == OUTPUT_MODULE:
                hybrid_link = is_hybrid.get((m.name, params.get("recipient")), False)
                name = "signing-key-hybrid.pem" if hybrid_link else "signing-key-ed25519.pem"
                params["signing_key_file"] = str(root / "etc" / "exchange" / name)
                params["trust_store"] = trust_file
                params["require_encryption"] = hybrid_link
            elif conf.get("module") == COLLECTOR_MODULE:
                # a member without a decryption key reads bundles in clear only (a template's path
                # to a key file it does not have would stop its collector)
                params["decryption_key_file"] = (str(root / "etc" / "exchange" / "decryption-key.pem")
                                                 if m.name in hpke else "")
    return {f"{s} -> {r}": ("hybrid+encrypted" if is_hybrid[(s, r)] else "ed25519") for s, r in links}


def _entry(country: Optional[str], keys: List) -> dict:
    unique = list({bc.key_id(k): k for k in keys}.values())
    entry: dict = {"country": country} if country else {}
    signing = [bc.algorithm_of(k) for k in unique if bc.algorithm_of(k) in bc.SIGNATURE_ALGORITHMS]
    if signing and signing != [bc.ED25519]:
        entry["signature_algorithms"] = signing
    entry["keys"] = [{"algorithm": bc.algorithm_of(k), "public_key": bc.public_b64(k), "comment": COMMENT}
                     for k in unique]
    return entry


def decryption_keys(root: Path) -> Optional[bundle.DecryptionKeys]:
    """A member's decryption keys (``etc/exchange/decryption-key.pem``), or None if it has none."""
    path = Path(root) / "etc" / "exchange" / "decryption-key.pem"
    return bundle.load_decryption_keys(path) if path.exists() else None


def open_imported(path: Path, root: Path, recipient: str) -> bundle.VerifiedBundle:
    """Open a bundle a member imported, against its own trust store and with its own keys."""
    trust = bundle.TrustStore.from_file(Path(root) / "etc" / "exchange" / "trust.yaml")
    return bundle.open_bundle(path, trust, recipient=recipient, decryption_keys=decryption_keys(root))


def link_report(roots: Dict[str, Path], archive: str = "var/lib/exchange/import/archive") -> Dict[tuple, dict]:
    """Per (sender, recipient): bundles, events, format versions, the signature algorithms that
    verified and whether the data was encrypted, from every bundle the recipients imported
    (verified again here, decrypted with the recipient's key)."""
    report: Dict[tuple, dict] = collections.defaultdict(
        lambda: {"bundles": 0, "events": 0, "formats": set(), "verified": set(), "encrypted": set()})
    for member, root in roots.items():
        folder = Path(root) / archive
        for path in sorted(folder.rglob("*" + bundle.BUNDLE_SUFFIX)) if folder.exists() else []:
            with open_imported(path, root, member) as opened:
                opened.verify_data()
                row = report[(opened.manifest.sender, member)]
                row["bundles"] += 1
                row["events"] += opened.manifest.event_count
                row["formats"].add(opened.manifest.format_version)
                row["verified"].add(" + ".join(opened.verified_algorithms))
                row["encrypted"].add(opened.decrypted)
    return dict(report)


def link_lines(roots: Dict[str, Path]) -> List[str]:
    """:func:`link_report` as report lines, e.g. ``de-hub -> fi-hub: 1 bundle(s), 12 events, format 2.0,
    signed ed25519 + ml-dsa-65 (hybrid, post-quantum), data encrypted (HPKE MLKEM768-X25519)``."""
    lines = []
    for (sender, recipient), row in sorted(link_report(roots).items()):
        signed = ", ".join(sorted(row["verified"]))
        hybrid = all(bc.ML_DSA_65 in v for v in row["verified"])
        data = ("data encrypted (HPKE MLKEM768-X25519, AES-256-GCM)" if row["encrypted"] == {True}
                else "data in clear" if row["encrypted"] == {False} else "data partly encrypted")
        lines.append(f"{sender} -> {recipient}: {row['bundles']} bundle(s), {row['events']} events, format "
                     f"{', '.join(sorted(row['formats']))}, signed {signed} "
                     f"({'hybrid, post-quantum' if hybrid else 'Ed25519 only'}), {data}")
    return lines


def setup_consortium(cons) -> Dict[str, str]:
    """The hook of ``Consortium.setup``: :func:`setup_keys` on its workdir, members and the
    runtimes of its instances (call it after the instances are made, before ``inst.setup()``)."""
    return setup_keys(cons.workdir, cons.members, {name: inst.runtime for name, inst in cons.instances.items()})


def consortium_links(cons) -> List[str]:
    """The report lines of :func:`link_lines` for a consortium that has run."""
    return link_lines({m.name: cons.instances[m.name].root for m in cons.members})
