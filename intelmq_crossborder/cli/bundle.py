"""``intelmq-crossborder bundle ...``: verify exchange bundles and create signing keys."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from intelmq_crossborder.formats import bundle as b
def _text(value) -> str:
    """A path or value from the command line, printable on any stream (undecodable bytes escaped)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _error(message: str, status: int = 2) -> int:
    print(f"intelmq-crossborder: error: {_text(message)}", file=sys.stderr)
    return status


def _readable_file(path: Path, what: str):
    """None if ``path`` is a regular file we can open, else the reason."""
    try:
        if path.is_dir():
            return f"{path}: is a directory, not a {what}"
        if not path.is_file():
            return f"{path}: no such file"
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"{path}: cannot read the {what}: {exc.strerror or exc}"
    return None


def _verify(args) -> int:
    if args.recipient is not None and not b.valid_hub_id(args.recipient):
        return _error(f"--recipient {args.recipient!r} is not a hub id matching {b.HUB_ID_RE.pattern}")
    try:
        trust = b.TrustStore.from_file(args.trust)
    except b.BundleError as exc:
        return _error(str(exc))
    path = Path(args.bundle)
    problem = _readable_file(path, "bundle")
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
        print(_text(f"BAD {path}: {exc.reason}: {message}"), file=sys.stderr)
        return 1
    note = f"; not checked (unsupported): {', '.join(unverified)}" if unverified else ""
    print(_text(f"OK {path}: {manifest.summary()}, format {manifest.format_version}, signed by {key.key_id}{note}"))
    return 0


def _keygen(args) -> int:
    if args.hub is not None and not b.valid_hub_id(args.hub):
        return _error(f"--hub {args.hub!r} is not a hub id matching {b.HUB_ID_RE.pattern}")
    if args.country is not None and not b.valid_country(args.country):
        return _error(f"--country {args.country!r} is not an ISO 3166-1 alpha-2 code such as FR")
    target = Path(args.private_key)
    if target.is_dir():
        return _error(f"{target}: is a directory, not a key file")
    if (target.exists() or target.is_symlink()) and not args.force:
        return _error(f"{target} exists (use --force to overwrite)")
    passphrase = None
    if args.passphrase_env is not None:
        value = os.environb.get(os.fsencode(args.passphrase_env))
        if value is None:
            return _error(f"environment variable {args.passphrase_env} is not set")
        if not value:
            return _error(f"environment variable {args.passphrase_env} is empty (no passphrase)")
        passphrase = value
    key = b.generate_private_key()
    try:
        fd = os.open(str(target), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b.private_key_pem(key, passphrase))
        os.chmod(target, 0o600)
    except OSError as exc:
        return _error(f"{target}: cannot write the private key: {exc.strerror or exc}")
    print(_text(f"# private key written to {target} (mode 0600); give peers this trust store entry:"))
    print(f"{args.hub}:" if args.hub else "<your-hub-id>:")
    if args.country:
        print(f"  country: {args.country}")
    print("  keys:")
    print("    - algorithm: ed25519")
    print(f"      public_key: \"{b.public_key_b64(key)}\"")
    print(f"      # key_id {b.key_id_of(key)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("bundle", help="hub-to-hub exchange bundles",
                       description="Verify signed exchange bundles and create signing keys "
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
                    "(public key) that peer hubs add. The private key never leaves this hub.")
    k.add_argument("--private-key", required=True, metavar="FILE", help="where to write the private key")
    k.add_argument("--hub", metavar="HUB", help="this hub's id, for the printed entry")
    k.add_argument("--country", metavar="CC", help="this hub's country (ISO 3166-1 alpha-2), for the printed entry")
    k.add_argument("--passphrase-env", metavar="VAR", help="encrypt the key with the passphrase in this variable")
    k.add_argument("--force", action="store_true", help="overwrite an existing file")
    k.set_defaults(func=_keygen)
