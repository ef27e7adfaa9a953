"""``intelmq-crossborder init ROLE --root DIR``: a hub's first configuration from a ready pipeline.

The work is :mod:`intelmq_crossborder.runtime.deploy` (what it writes, and why); this module
parses the arguments and prints.  Exit status: 0 written, 2 bad input or nothing could be written.
"""
from __future__ import annotations

from pathlib import Path

from intelmq_crossborder.cli.common import fail, printable
from intelmq_crossborder.runtime import deploy


def _run(args) -> int:
    try:
        p = deploy.plan(args.role, Path(args.root), args.hub_id, args.country)
        lines = deploy.write(p, force=args.force)
    except deploy.InitError as exc:
        return fail(printable(f"init: {exc}"))
    for line in lines:
        print(printable(line))
    root = p.root
    print(printable(f"{p.role.name} {p.hub_id} ({p.country}): {p.bots} bots in {p.runtime_file}; "
                    f"signing key {p.key_id}"))
    print("next:")
    print(printable(f"  edit the peers and recipients: {p.runtime_file} and the agreements under {root}/etc/"))
    print(printable(f"  add the peers' public keys: intelmq-crossborder bundle trust-add --trust "
                    f"{root}/etc/exchange/trust.yaml --from PEER_TRUST_FILE"))
    print(printable(f"  give the peers {root}/etc/exchange/trust.yaml (this hub's public key)"))
    print(printable(f"  intelmq-crossborder check {p.runtime_file}"))
    print(printable(f"  INTELMQ_ROOT_DIR={root} intelmqctl check && INTELMQ_ROOT_DIR={root} intelmqctl start"))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "init", help="write a hub's first configuration from a ready pipeline into an IntelMQ root",
        description="Write a ready pipeline (national-hub, cross-border-hub or csirt) into an IntelMQ root: "
                    "etc/runtime.yaml, the agreement templates, a new Ed25519 signing key (mode 0600) and a "
                    "trust store with this hub's own public key, and the folders the bots use. Existing files "
                    "are not overwritten without --force. Afterwards `intelmq-crossborder check "
                    "ROOT/etc/runtime.yaml` passes. Exit 2 on bad input or when nothing could be written.")
    p.add_argument("role", choices=list(deploy.ROLES), metavar="ROLE", help="one of: " + ", ".join(deploy.ROLES))
    p.add_argument("--root", required=True, metavar="DIR", help="the IntelMQ root (INTELMQ_ROOT_DIR) to write into")
    p.add_argument("--hub-id", metavar="ID", help="this hub's id (lower case, [a-z0-9.-]); with --country")
    p.add_argument("--country", metavar="CC", help="this hub's country (ISO 3166-1 alpha-2, e.g. FR); with --hub-id")
    p.add_argument("--force", action="store_true", help="overwrite existing files (a new signing key replaces the old)")
    p.set_defaults(func=_run)
