"""``intelmq-crossborder bundle ...``: verify exchange bundles, create signing keys, edit trust stores."""
from __future__ import annotations

import base64
import binascii
import os
import sys
from pathlib import Path
from typing import Optional

import yaml

from intelmq_crossborder.cli.common import fail, printable, unusable
from intelmq_crossborder.core import inputs, secrets, tlp
from intelmq_crossborder.core.files import atomic_write, atomic_write_text
from intelmq_crossborder.exchange import outgoing
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.formats import bundle_crypto as bc
from intelmq_crossborder.formats import trust_skeleton

#: A new trust store file is public data.
TRUST_STORE_MODE = 0o644


def _error(message: str, status: int = 2) -> int:
    return fail(printable(message), status)
def _verify(args) -> int:
    if args.recipient is not None and not b.valid_hub_id(args.recipient):
        return _error(f"--recipient {args.recipient!r} is not a hub id matching {b.HUB_ID_RE.pattern}")
    try:
        trust = b.TrustStore.from_file(args.trust)
    except b.BundleError as exc:
        return _error(str(exc))
    path = Path(args.bundle)
    problem = unusable(path, what="bundle")
    if problem:
        return _error(problem)
    keys = None
    if args.decryption_key is not None:
        passphrase, problem = _passphrase(args.passphrase_env)
        if problem:
            return _error(problem)
        try:
            keys = b.load_decryption_keys(args.decryption_key, passphrase)
        except b.BundleError as exc:
            return _error(str(exc))
    elif args.passphrase_env is not None:
        return _error("--passphrase-env goes with --decryption-key")
    try:
        with b.open_bundle(path, trust, args.recipient, keys) as opened:
            if opened.encrypted and keys is None:
                opened.verify_hash()        # signed ciphertext checked; nothing to decrypt with
            else:
                opened.verify_data()
            manifest = opened.manifest
            signed = ", ".join(f"{k.algorithm} ({k.key_id})" for k in opened.keys)
            unverified = opened.unverified_algorithms
            decrypted, encrypted = opened.decrypted, opened.encrypted
    except b.BundleError as exc:
        message = str(exc)
        if message.startswith(path.name + ": "):
            message = message[len(path.name) + 2:]
        print(printable(f"BAD {path}: {exc.reason}: {message}"), file=sys.stderr)
        return 1
    note = f"; not checked: {', '.join(unverified)}" if unverified else ""
    if not encrypted:
        data = "data in clear"
    elif decrypted:
        data = f"data encrypted to {manifest.encryption.recipient_key_id}, decrypted, events counted"
    else:
        data = (f"data encrypted to {manifest.encryption.recipient_key_id}, NOT decrypted (no --decryption-key): "
                "ciphertext hash checked, events not counted")
    print(printable(f"OK {path}: {manifest.summary()}, format {manifest.format_version}, verified: {signed}"
                    f"{note}; {data}"))
    return 0


def _passphrase(variable: Optional[str]):
    """(passphrase bytes or None, error message or None) from the environment variable."""
    if variable is None:
        return None, None
    if os.environ.get(variable) is None:
        return None, f"environment variable {variable} is not set"
    value = secrets.secret(None, variable)
    if value is None:
        return None, f"environment variable {variable} is empty (no passphrase)"
    return value.encode("utf-8", "surrogateescape"), None      # the variable's bytes, UTF-8 or not


def _new_file_problem(target: Path, force: bool, what: str) -> Optional[str]:
    if target.is_dir():
        return f"{target}: is a directory, not a {what}"
    if not target.parent.is_dir():
        return f"{target}: cannot write the {what}: no such folder {target.parent}"
    if (target.exists() or target.is_symlink()) and not force:
        return f"{target} exists (use --force to overwrite)"
    return None


def _print_entry(hub: Optional[str], country: Optional[str], keys: list) -> None:
    """The trust store entry peers add (YAML, ready to paste under ``peers:``), key ids as comments."""
    entry = trust_skeleton.peer_entry(country, keys)
    text = yaml.safe_dump({hub or "<your-hub-id>": entry}, sort_keys=False, allow_unicode=False, width=100000)
    print(text, end="")
    for key in keys:
        print(f"# key_id {b.key_id_of(key)}")


def _keygen(args) -> int:
    if args.hub is not None and not b.valid_hub_id(args.hub):
        return _error(f"--hub {args.hub!r} is not a hub id matching {b.HUB_ID_RE.pattern}")
    if args.country is not None and not b.valid_country(args.country):
        return _error(f"--country {args.country!r} is not an ISO 3166-1 alpha-2 code such as FR")
    if args.trust_store is not None and args.hub is None:
        return _error("--trust-store needs --hub: the trust store lists this key under this hub's id")
    if args.rotate is not None:
        return _rotate(args)
    if args.source is not None:
        return _error("--from goes with --rotate")
    if args.hybrid and args.decryption_key is None:
        return _error("--hybrid makes the whole set: give --decryption-key FILE for the encryption (HPKE) key")
    target = Path(args.private_key)
    store = Path(args.trust_store) if args.trust_store is not None else None
    decryption = Path(args.decryption_key) if args.decryption_key is not None else None
    for path, what in ((target, "key file"), (decryption, "decryption key file"), (store, "trust store file")):
        problem = path is not None and _new_file_problem(path, args.force, what)
        if problem:
            return _error(problem)
    named = [p.absolute() for p in (target, decryption, store) if p is not None]
    if len(set(named)) != len(named):
        return _error("--private-key, --decryption-key and --trust-store must name different files")
    passphrase, problem = _passphrase(args.passphrase_env)
    if problem:
        return _error(problem)
    signing = [bc.generate(bc.ED25519)] + ([bc.generate(bc.ML_DSA_65)] if args.hybrid else [])
    hpke_key = bc.generate(bc.HPKE_KEM) if decryption is not None else None
    public = signing + ([hpke_key] if hpke_key is not None else [])
    trust_text = None
    if store is not None:
        trust_text = trust_skeleton.dumps(
            trust_skeleton.skeleton(args.hub, args.country, public, f"{args.hub} key"),
            f"Trust store entry of {args.hub} (docs/exchange-format.md): a peer adds it to its own trust store "
            f"with\n  intelmq-crossborder bundle trust-add --trust TRUST_STORE --from {store.name}")
    try:
        atomic_write(target, b"".join(bc.private_pem(k, passphrase) for k in signing), mode=0o600)
    except OSError as exc:
        return _error(f"{target}: cannot write the private key: {exc.strerror or exc}")
    if decryption is not None:
        try:
            atomic_write(decryption, bc.private_pem(hpke_key, passphrase), mode=0o600)
        except OSError as exc:
            return _error(f"{decryption}: cannot write the decryption key: {exc.strerror or exc}")
    if store is not None:
        try:
            atomic_write_text(store, trust_text, mode=TRUST_STORE_MODE)
        except OSError as exc:
            return _error(f"{store}: cannot write the trust store: {exc.strerror or exc}")
        print(printable(f"# trust store with this key written to {store}"))
    algorithms = " + ".join(bc.algorithm_of(k) for k in signing)
    print(printable(f"# private key ({algorithms}) written to {target} (mode 0600)"
                    + (f"; decryption key ({bc.HPKE_KEM}) written to {decryption} (mode 0600)" if decryption else "")
                    + "; give peers this trust store entry:"))
    _print_entry(args.hub, args.country, public)
    return 0


def _rotate(args) -> int:
    """A new key of one type: the other keys of --from kept (signing), or all of them kept
    (decryption: bundles already encrypted to the old key can still be read)."""
    algorithm = args.rotate
    if args.source is None and algorithm != bc.HPKE_KEM:
        return _error("--rotate needs --from OLD_KEY_FILE (the signing key file in use)")
    if args.hybrid or args.decryption_key is not None or args.trust_store is not None:
        return _error("--rotate makes one key: --hybrid, --decryption-key and --trust-store do not apply")
    source, target = (Path(args.source) if args.source else None), Path(args.private_key)
    problem = (source and unusable(source, what="key file")) or _new_file_problem(target, args.force, "key file")
    if problem:
        return _error(problem)
    if source is not None and source.absolute() == target.absolute():
        return _error("--private-key must be a new file: the key in use stays until the peers list the new one")
    passphrase, problem = _passphrase(args.passphrase_env)
    if problem:
        return _error(problem)
    try:
        old = bc.read_key_file(source, passphrase, "key file") if source else []   # a first decryption key
    except bc.KeyFileError as exc:
        return _error(str(exc))
    new = bc.generate(algorithm)
    replaced = [k for k in old if bc.algorithm_of(k) == algorithm]
    if algorithm in bc.SIGNATURE_ALGORITHMS:
        if any(bc.algorithm_of(k) not in bc.SIGNATURE_ALGORITHMS for k in old):
            return _error(f"{source}: not a signing key file (it holds an encryption key)")
        keys = [new if bc.algorithm_of(k) == algorithm else k for k in old] + ([] if replaced else [new])
        keys = sorted(keys, key=lambda k: bc.SIGNATURE_ALGORITHMS.index(bc.algorithm_of(k)))
    else:
        if any(bc.algorithm_of(k) != bc.HPKE_KEM for k in old):
            return _error(f"{source}: not a decryption key file (it holds a signing key)")
        keys = old + [new]
    try:
        atomic_write(target, b"".join(bc.private_pem(k, passphrase) for k in keys), mode=0o600)
    except OSError as exc:
        return _error(f"{target}: cannot write the private key: {exc.strerror or exc}")
    print(printable(f"# {target} (mode 0600): {', '.join(b.key_id_of(k) for k in keys)}"))
    print(printable("# 1. peers add this key to the keys of " + (args.hub or "<your-hub-id>") +
                    " in their trust stores:"))
    entry = yaml.safe_dump([{"algorithm": algorithm, "public_key": b.public_key_b64(new)}], sort_keys=False,
                           width=100000)
    print(entry, end="")
    print(f"# key_id {b.key_id_of(new)}")
    if algorithm in bc.SIGNATURE_ALGORITHMS:
        print(printable(f"# 2. then point signing_key_file at {target};"))
        for k in replaced:
            print(printable(f"# 3. then peers mark {b.key_id_of(k)} revoked: true"))
    else:
        print(printable(f"# 2. point decryption_key_file at {target} now (it still reads bundles encrypted to the "
                        "old key); senders switch when they list the new key"))
        for k in old:
            print(printable(f"# 3. once no bundle for {b.key_id_of(k)} is in flight, peers mark it revoked: true "
                            "and it is removed from the file"))
    return 0


def _seal(args) -> int:
    """Events (JSON lines) -> one bundle, with the exchange output's code: the same bundled copy
    of each event (TLP rules) and the same choice of encryption."""
    for name in ("sender", "recipient"):
        if not b.valid_hub_id(getattr(args, name)):
            return _error(f"--{name} {getattr(args, name)!r} is not a hub id matching {b.HUB_ID_RE.pattern}")
    if args.sender == args.recipient:
        return _error("--sender and --recipient are the same hub: a hub does not send bundles to itself")
    if args.sequence < 1 or args.sequence > b.MAX_SEQUENCE:
        return _error(f"--sequence must be from 1 to {b.MAX_SEQUENCE}")
    try:
        max_level = tlp.parse_level(args.max_tlp, "--max-tlp")
    except tlp.UnknownTLPError as exc:
        return _error(str(exc))
    if max_level >= tlp.Level.AMBER_STRICT:
        return _error(f"--max-tlp TLP:{max_level.label} never leaves the organisation; use AMBER or lower")
    outbox = Path(args.outbox)
    if not outbox.is_dir():
        return _error(f"{outbox}: no such folder (--outbox)")
    source = Path(args.events)
    problem = unusable(source, what="JSON lines file")
    if problem:
        return _error(problem)
    passphrase, problem = _passphrase(args.passphrase_env)
    if problem:
        return _error(problem)
    try:
        keys = b.load_signing_keys(args.key, passphrase)
        trust = b.TrustStore.from_file(args.trust)
        encrypt_to = outgoing.encryption_key_for(trust, args.recipient, args.require_encryption)
    except b.BundleError as exc:
        return _error(str(exc))
    skipped = []
    try:
        with b.BundleWriter(outbox, args.sender, args.recipient, args.sequence, keys,
                            encrypt_to=encrypt_to) as writer:
            with open(source, "rb") as lines:
                events = inputs.iter_json_lines(lines, str(source))
                for number, event in events:
                    if isinstance(event, inputs.InputError):
                        raise event
                    if not isinstance(event, dict):
                        raise inputs.InputError(str(source), f"not a JSON object but {inputs.kind_of(event)}",
                                                line=number)
                    try:
                        writer.write_line(outgoing.bundled_line(event, max_level, args.recipient))
                    except outgoing.NotBundled as exc:
                        skipped.append(f"line {number}: {exc.field}: {exc.reason}")
    except inputs.InputError as exc:
        return _error(str(exc), 1)
    except OSError as exc:
        return _error(f"{outbox}: cannot write the bundle: {exc.strerror or exc}")
    for line in skipped:
        print(printable(f"not bundled: {source}: {line}"), file=sys.stderr)
    m = writer.manifest
    data = (f"encrypted to {m.encryption.recipient_key_id}" if m.encryption else
            f"in clear ({args.recipient} announces no encryption key in {args.trust})")
    print(printable(f"sealed {writer.path}: {m.summary()}, format {m.format_version}, signed "
                    f"{' + '.join(keys.algorithms)}, {data}; {len(skipped)} event(s) not bundled"))
    return 0


def _new_peers(args):
    """(peers to add, error message or None) from --from or --hub/--public-key/--country/--comment."""
    if (args.source is None) == (args.hub is None):
        return None, "give either --from FILE or --hub HUB with --public-key KEY"
    if args.source is not None:
        if args.public_key is not None or args.country is not None or args.comment is not None:
            return None, "--public-key, --country and --comment go with --hub, not with --from"
        source = Path(args.source)
        problem = unusable(source, what="trust store")
        if problem:
            return None, problem
        try:
            peers = inputs.read_yaml(source, max_bytes=b.MAX_TRUST_STORE_BYTES, what="trust store")
            b.TrustStore.from_dict(peers, str(source))
        except inputs.InputError as exc:
            return None, f"trust store {exc}"
        except (ValueError, TypeError, OverflowError) as exc:   # a YAML constructor refused a value
            return None, f"trust store {source}: not valid YAML: {exc}"
        except b.BundleError as exc:
            return None, str(exc)
        return peers["peers"], None
    if not b.valid_hub_id(args.hub):
        return None, f"--hub {args.hub!r} is not a hub id matching {b.HUB_ID_RE.pattern}"
    if args.country is not None and not b.valid_country(args.country):
        return None, f"--country {args.country!r} is not an ISO 3166-1 alpha-2 code such as FR"
    if args.public_key is None:
        return None, "--hub needs --public-key (the base64 public key the peer's bundle keygen printed)"
    try:
        key = bc.public_from_raw(args.algorithm, base64.b64decode(args.public_key, validate=True))
    except (ValueError, binascii.Error):
        return None, f"--public-key is not the base64 of a raw {args.algorithm} public key"
    document = trust_skeleton.skeleton(args.hub, args.country, key, args.comment or "")
    return document["peers"], None


def _trust_add(args) -> int:
    peers, problem = _new_peers(args)
    if problem:
        return _error(problem)
    target = Path(args.trust)
    text, mode = None, TRUST_STORE_MODE
    if target.exists() or target.is_symlink():
        problem = unusable(target, what="trust store")
        if problem:
            return _error(problem)
        try:
            text = inputs.read_text(target, max_bytes=b.MAX_TRUST_STORE_BYTES, what="trust store")
            mode = target.stat().st_mode & 0o777
        except inputs.InputError as exc:
            return _error(f"trust store {exc}")
        except OSError as exc:
            return _error(f"{target}: cannot read the trust store: {exc.strerror or exc}")
    try:
        new_text, kept = b.trust_store_with_peers(text, peers, str(target))
    except b.BundleError as exc:
        # a peer or key listed already: the input was checked and refused (1); an unusable store: 2
        listed = "already listed" in str(exc)
        return _error(str(exc), 1 if listed else 2)
    try:
        atomic_write_text(target, new_text, mode=mode)
    except OSError as exc:
        return _error(f"{target}: cannot write the trust store: {exc.strerror or exc}")
    store = b.TrustStore.from_dict({"version": 1, "peers": peers})
    for hub, peer in store.peers.items():
        print(printable(f"added peer {hub} (key {', '.join(peer['keys'])}) to {target}"))
    if not kept:
        print(printable(f"note: {target} was written anew (its layout did not allow appending): "
                    "comments in it were not kept"), file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("bundle", help="hub-to-hub exchange bundles",
                       description="Verify, seal and sign exchange bundles, create keys and add peers to trust stores "
                                   "(format: docs/exchange-format.md).")
    bsub = p.add_subparsers(dest="bundle_command", required=True, metavar="COMMAND")
    v = bsub.add_parser(
        "verify", help="check a bundle's signatures, trust, hash, decryption and event count",
        description="Verify an exchange bundle: container and manifest, sender and keys in the trust store, keys not "
                    "revoked, every signature the trust store requires of the sender (Ed25519, ML-DSA-65), SHA-256 "
                    "and size of the data, and, with --decryption-key, decryption and the event count (the recipient "
                    "too with --recipient). Prints one 'OK' line naming the algorithms that verified and whether the "
                    "data was decrypted, exit 0; prints 'BAD <file>: <reason code>: <reason>' on stderr and exits 1 "
                    "for a bad one; exits 2 if the trust store, the key or the file cannot be read. Sequence numbers "
                    "are checked by the importing collector, which holds the state.")
    v.add_argument("--trust", required=True, metavar="FILE", help="trust store (YAML) with the peers' public keys")
    v.add_argument("--recipient", metavar="HUB", help="also require this recipient hub id")
    v.add_argument("--decryption-key", metavar="FILE", help="this hub's decryption key file, to decrypt and count "
                                                            "the events of an encrypted bundle")
    v.add_argument("--passphrase-env", metavar="VAR", help="the decryption key's passphrase is in this variable")
    v.add_argument("bundle", metavar="BUNDLE")
    v.set_defaults(func=_verify)
    k = bsub.add_parser(
        "keygen", help="create this hub's keys and print its trust store entry",
        description="Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and print the trust store entry "
                    "(public keys) that peer hubs add. --hybrid: the signing key file holds Ed25519 and ML-DSA-65 "
                    "(FIPS 204) keys, and --decryption-key FILE receives the encryption key (HPKE MLKEM768-X25519); "
                    "the entry then requires both signature algorithms. --trust-store also writes the entry as a "
                    "complete trust store file. --rotate ALGORITHM --from OLD writes a new key file with a fresh key "
                    "of that type (the other keys kept) and prints the steps. The private keys never leave this hub.")
    k.add_argument("--private-key", required=True, metavar="FILE", help="where to write the (signing) private key(s)")
    k.add_argument("--hybrid", action="store_true", help="Ed25519 + ML-DSA-65 signing keys and the HPKE key "
                                                         "(needs --decryption-key)")
    k.add_argument("--decryption-key", metavar="FILE", help="also create the HPKE (MLKEM768-X25519) decryption key "
                                                            "in FILE")
    k.add_argument("--rotate", metavar="ALGORITHM", choices=bc.KEY_ALGORITHMS,
                   help=f"replace the key of this type ({', '.join(bc.KEY_ALGORITHMS)}) of the key file --from")
    k.add_argument("--from", dest="source", metavar="FILE",
                   help="with --rotate: the key file in use (optional for mlkem768-x25519: a first decryption key)")
    k.add_argument("--hub", metavar="HUB", help="this hub's id, for the printed entry")
    k.add_argument("--country", metavar="CC", help="this hub's country (ISO 3166-1 alpha-2), for the printed entry")
    k.add_argument("--passphrase-env", metavar="VAR", help="encrypt the keys with the passphrase in this variable")
    k.add_argument("--trust-store", metavar="FILE",
                   help="also write a complete trust store file with this hub's entry (needs --hub), for peers "
                        "to add with 'bundle trust-add --from FILE'")
    k.add_argument("--force", action="store_true", help="overwrite an existing file")
    k.set_defaults(func=_keygen)
    s = bsub.add_parser(
        "seal", help="write one bundle from JSON lines, as the exchange output does",
        description="Seal the events of a JSON lines file (flat IntelMQ field names) into one bundle for "
                    "--recipient, with the exchange output's code: each event's effective TLP decides (RED, "
                    "AMBER+STRICT, above --max-tlp or unreadable labels are left out and listed on stderr), a hidden "
                    "source is removed, the bundle is signed with every key of --key and encrypted to the "
                    "recipient's key when --trust lists one. For a manual exchange or to test a peer. Exit 1 if a "
                    "line is not a JSON object (no bundle is written), 2 if a key, the trust store or a file cannot "
                    "be used.")
    s.add_argument("--key", required=True, metavar="FILE", help="the signing key file (Ed25519, optionally ML-DSA-65)")
    s.add_argument("--passphrase-env", metavar="VAR", help="the signing key's passphrase is in this variable")
    s.add_argument("--sender", required=True, metavar="HUB", help="this hub's id")
    s.add_argument("--recipient", required=True, metavar="HUB", help="the peer hub's id")
    s.add_argument("--trust", required=True, metavar="FILE", help="trust store: the recipient's encryption key")
    s.add_argument("--sequence", type=int, default=1, metavar="N",
                   help="sequence number (default 1; the receiver expects the next of this sender)")
    s.add_argument("--max-tlp", default="AMBER", metavar="LEVEL", help="highest TLP bundled (default AMBER)")
    s.add_argument("--require-encryption", action="store_true",
                   help="refuse to seal in clear when the recipient announces no encryption key")
    s.add_argument("--outbox", default=".", metavar="DIR", help="where to write the bundle (default: here)")
    s.add_argument("events", metavar="EVENTS.jsonl")
    s.set_defaults(func=_seal)
    t = bsub.add_parser(
        "trust-add", help="add a peer hub's public key to a trust store",
        description="Add peer hubs to a trust store (created if missing): the peers of a trust store file "
                    "(--from, e.g. the one a peer wrote with 'bundle keygen --trust-store'), or one peer given "
                    "with --hub and --public-key. The file is replaced atomically; its comments are kept when "
                    "'peers:' is its last top-level key. A hub or key already listed is refused (exit 1) and "
                    "nothing is written; a trust store or input that cannot be read or is not valid exits 2.")
    t.add_argument("--trust", required=True, metavar="FILE", help="the trust store to add to (created if missing)")
    t.add_argument("--from", dest="source", metavar="FILE", help="a trust store file whose peers are added")
    t.add_argument("--hub", metavar="HUB", help="the peer hub's id")
    t.add_argument("--public-key", metavar="BASE64", help="the peer's public key (base64 of the raw key)")
    t.add_argument("--algorithm", default=bc.ED25519, choices=bc.KEY_ALGORITHMS,
                   help="the algorithm of --public-key (default ed25519)")
    t.add_argument("--country", metavar="CC", help="the peer hub's country (ISO 3166-1 alpha-2)")
    t.add_argument("--comment", metavar="TEXT", help="a comment stored with the key")
    t.set_defaults(func=_trust_add)
