"""``intelmq-crossborder init ROLE [--root DIR] [--layout opt|lsb]``: a hub's first configuration.

The work is :mod:`intelmq_crossborder.runtime.deploy` (what it writes, and why); this module
parses the arguments and prints.  Exit status: 0 written, 2 bad input or nothing could be written.
"""
from __future__ import annotations

import os
from pathlib import Path

from intelmq_crossborder.cli.common import fail, printable
from intelmq_crossborder.runtime import deploy


def _target(args) -> tuple:
    """The layout and root: as given, else what IntelMQ reads in this environment
    (INTELMQ_ROOT_DIR, INTELMQ_PATHS_NO_OPT with ROOT_DIR, /opt/intelmq)."""
    env = deploy.layout_from_environment()
    kind = args.layout or env.kind
    if args.root is not None:
        return kind, Path(args.root), env
    if kind == env.kind:
        return kind, env.root, env
    return kind, Path("/opt/intelmq") if kind == "opt" else Path(os.environ.get("ROOT_DIR") or "/"), env


def _run(args) -> int:
    kind, root, env = _target(args)
    values = {}
    for item in args.set or ():
        name, sep, value = item.partition("=")
        if not sep:
            return fail(printable(f"init: --set {item}: give NAME=VALUE"))
        values[name] = value
    try:
        p = deploy.plan(args.role, root, args.hub_id, args.country, layout=kind, values=values)
        lines = deploy.write(p, force=args.force)
    except deploy.InitError as exc:
        return fail(printable(f"init: {exc}"))
    for line in lines:
        print(printable(line))
    etc = p.etc
    print(printable(f"{p.role.name} {p.hub_id} ({p.country}): {p.bots} bots in {p.runtime_file} "
                    f"(IntelMQ's {kind} layout); signing key {p.key_id}"))
    for bot_id, names in p.left_out:
        print(printable(f"left out: {bot_id} (and its route and agreement): it needs "
                        + ", ".join(f"--set {n}=..." for n in names)))
    intelmqctl = p.layout.environment() + " intelmqctl"
    if (env.kind, env.etc) != (p.layout.kind, p.layout.etc):
        print(printable(f"note: intelmqctl in this environment reads {env.etc / 'runtime.yaml'}, not "
                        f"{p.runtime_file}: run it as {intelmqctl}"))
    print("next:")
    print(printable(f"  edit the peers and recipients: {p.runtime_file} and the agreements under {etc}/"))
    print(printable(f"  add the peers' public keys: intelmq-crossborder bundle trust-add --trust "
                    f"{etc}/exchange/trust.yaml --from PEER_TRUST_FILE"))
    print(printable(f"  give the peers {etc}/exchange/trust.yaml (this hub's public key)"))
    print(printable(f"  intelmq-crossborder check {p.runtime_file}"))
    print(printable(f"  {intelmqctl} check && {intelmqctl} start"))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "init", help="write a hub's first configuration from a ready pipeline into an IntelMQ root",
        description="Write a ready pipeline (national-hub, cross-border-hub or csirt) into an IntelMQ root: "
                    "etc/runtime.yaml, the agreement templates, a new Ed25519 signing key (mode 0600) and a "
                    "trust store with this hub's own public key, and the folders the bots use. Existing files "
                    "are not overwritten without --force. Afterwards `intelmq-crossborder check "
                    "ROOT/etc/runtime.yaml` passes. Where: IntelMQ's own layout in this environment "
                    "(INTELMQ_ROOT_DIR; else with INTELMQ_PATHS_NO_OPT /etc/intelmq, /var/lib/intelmq ... under "
                    "ROOT_DIR; else /opt/intelmq) unless --root/--layout say otherwise. Exit 2 on bad input or "
                    "when nothing could be written.")
    p.add_argument("role", choices=list(deploy.ROLES), metavar="ROLE", help="one of: " + ", ".join(deploy.ROLES))
    p.add_argument("--root", metavar="DIR",
                   help="the IntelMQ root to write into: INTELMQ_ROOT_DIR in the opt layout, the prefix ROOT_DIR "
                        "in the lsb layout (default: IntelMQ's in this environment; /opt/intelmq)")
    p.add_argument("--layout", choices=deploy.LAYOUTS,
                   help="IntelMQ's file layout: opt (ROOT/etc, ROOT/var/lib ...) or lsb (INTELMQ_PATHS_NO_OPT: "
                        "ROOT/etc/intelmq, ROOT/var/lib/intelmq ...); default: the one IntelMQ uses in this "
                        "environment")
    p.add_argument("--hub-id", metavar="ID", help="this hub's id (lower case, [a-z0-9.-]); with --country")
    p.add_argument("--country", metavar="CC", help="this hub's country (ISO 3166-1 alpha-2, e.g. FR); with --hub-id")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a value for one of the template's other ${NAME} placeholders (e.g. the cross-border hub's "
                        "PARTNER_TAXII_URL); a bot that needs one not given is left out, with its route")
    p.add_argument("--force", action="store_true", help="overwrite existing files (a new signing key replaces the old)")
    p.set_defaults(func=_run)
