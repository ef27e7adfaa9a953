"""``intelmq-crossborder bundle ...``: verify exchange bundles, create signing keys, edit trust stores."""
from __future__ import annotations

import base64
import binascii
import os
import sys
from pathlib import Path
from typing import Optional

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from intelmq_crossborder.cli.common import fail, printable, unusable
from intelmq_crossborder.core import inputs, secrets
from intelmq_crossborder.core.files import atomic_write, atomic_write_text
from intelmq_crossborder.formats import bundle as b
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
    try:
        with b.open_bundle(path, trust, args.recipient) as opened:
            opened.verify_data()
            manifest, key = opened.manifest, opened.key
            unverified = opened.unverified_algorithms
    except b.BundleError as exc:
        message = str(exc)
        if message.startswith(path.name + ": "):
            message = message[len(path.name) + 2:]
        print(printable(f"BAD {path}: {exc.reason}: {message}"), file=sys.stderr)
        return 1
    note = f"; not checked (unsupported): {', '.join(unverified)}" if unverified else ""
    print(printable(f"OK {path}: {manifest.summary()}, format {manifest.format_version}, signed by {key.key_id}{note}"))
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


def _keygen(args) -> int:
    if args.hub is not None and not b.valid_hub_id(args.hub):
        return _error(f"--hub {args.hub!r} is not a hub id matching {b.HUB_ID_RE.pattern}")
    if args.country is not None and not b.valid_country(args.country):
        return _error(f"--country {args.country!r} is not an ISO 3166-1 alpha-2 code such as FR")
    if args.trust_store is not None and args.hub is None:
        return _error("--trust-store needs --hub: the trust store lists this key under this hub's id")
    target = Path(args.private_key)
    store = Path(args.trust_store) if args.trust_store is not None else None
    for path, what in ((target, "key file"), (store, "trust store file")):
        problem = path is not None and _new_file_problem(path, args.force, what)
        if problem:
            return _error(problem)
    if store is not None and store.absolute() == target.absolute():
        return _error("--trust-store and --private-key name the same file")
    passphrase, problem = _passphrase(args.passphrase_env)
    if problem:
        return _error(problem)
    key = b.generate_private_key()
    trust_text = None
    if store is not None:
        trust_text = trust_skeleton.dumps(
            trust_skeleton.skeleton(args.hub, args.country, key, f"{args.hub} signing key {b.key_id_of(key)}"),
            f"Trust store entry of {args.hub} (docs/exchange-format.md): a peer adds it to its own trust store "
            f"with\n  intelmq-crossborder bundle trust-add --trust TRUST_STORE --from {store.name}")
    try:
        atomic_write(target, b.private_key_pem(key, passphrase), mode=0o600)
    except OSError as exc:
        return _error(f"{target}: cannot write the private key: {exc.strerror or exc}")
    if store is not None:
        try:
            atomic_write_text(store, trust_text, mode=TRUST_STORE_MODE)
        except OSError as exc:
            return _error(f"{store}: cannot write the trust store: {exc.strerror or exc}")
        print(printable(f"# trust store with this key written to {store}"))
    print(printable(f"# private key written to {target} (mode 0600); give peers this trust store entry:"))
    print(f"{args.hub}:" if args.hub else "<your-hub-id>:")
    if args.country:
        print(f"  country: {args.country}")
    print("  keys:")
    print("    - algorithm: ed25519")
    print(f"      public_key: \"{b.public_key_b64(key)}\"")
    print(f"      # key_id {b.key_id_of(key)}")
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
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(args.public_key, validate=True))
    except (ValueError, binascii.Error):
        return None, "--public-key is not the base64 of a raw 32-byte Ed25519 public key"
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
                       description="Verify signed exchange bundles, create signing keys and add peers to trust stores "
                                   "(format: docs/exchange-format.md).")
    bsub = p.add_subparsers(dest="bundle_command", required=True, metavar="COMMAND")
    v = bsub.add_parser(
        "verify", help="check a bundle's signature, trust, hash and event count",
        description="Verify an exchange bundle: container and manifest, sender and key in the trust store, key not "
                    "revoked, Ed25519 signature, SHA-256 and size of the data, event count (and the recipient with "
                    "--recipient). Prints one 'OK' line and exits 0 for a good bundle; prints 'BAD <file>: <reason "
                    "code>: <reason>' on stderr and exits 1 for a bad one; exits 2 if the trust store or the file "
                    "cannot be read. Sequence numbers are checked by the importing collector, which holds the state.")
    v.add_argument("--trust", required=True, metavar="FILE", help="trust store (YAML) with the peers' public keys")
    v.add_argument("--recipient", metavar="HUB", help="also require this recipient hub id")
    v.add_argument("bundle", metavar="BUNDLE")
    v.set_defaults(func=_verify)
    k = bsub.add_parser(
        "keygen", help="create an Ed25519 signing key and print its trust store entry",
        description="Write a new Ed25519 private key (PKCS#8 PEM, mode 0600) and print the trust store entry "
                    "(public key) that peer hubs add; with --trust-store also write it as a complete trust store "
                    "file. The private key never leaves this hub.")
    k.add_argument("--private-key", required=True, metavar="FILE", help="where to write the private key")
    k.add_argument("--hub", metavar="HUB", help="this hub's id, for the printed entry")
    k.add_argument("--country", metavar="CC", help="this hub's country (ISO 3166-1 alpha-2), for the printed entry")
    k.add_argument("--passphrase-env", metavar="VAR", help="encrypt the key with the passphrase in this variable")
    k.add_argument("--trust-store", metavar="FILE",
                   help="also write a complete trust store file with this hub's entry (needs --hub), for peers "
                        "to add with 'bundle trust-add --from FILE'")
    k.add_argument("--force", action="store_true", help="overwrite an existing file")
    k.set_defaults(func=_keygen)
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
    t.add_argument("--public-key", metavar="BASE64", help="the peer's public key (base64 of the raw 32 bytes)")
    t.add_argument("--country", metavar="CC", help="the peer hub's country (ISO 3166-1 alpha-2)")
    t.add_argument("--comment", metavar="TEXT", help="a comment stored with the key")
    t.set_defaults(func=_trust_add)
