"""A hub's first configuration, from a ready pipeline: the work of ``intelmq-crossborder init``.

A role is one of the ready pipelines of the package (``intelmq_crossborder/pipelines/<role>/``,
docs/pipelines.md): ``national-hub``, ``cross-border-hub`` or ``csirt``.  :func:`plan` builds,
in memory, everything that goes into the IntelMQ root (the ``INTELMQ_ROOT_DIR`` of the
installation); :func:`write` writes it:

- ``etc/runtime.yaml``: the role's runtime config, ``${INTELMQ_ROOT_DIR}`` and
  ``${PIPELINES_DIR}`` expanded; the routers' ``agreements_dir`` point at the copies below;
- ``etc/agreements/`` (and ``etc/agreements-early-warning/`` for the cross-border hub): the
  role's agreement templates, one file per router path;
- ``etc/exchange/signing-key.pem``: new Ed25519 and ML-DSA-65 signing keys (PKCS#8 PEM, mode 0600) and
  ``etc/exchange/decryption-key.pem``: the HPKE MLKEM768-X25519 decryption key (mode 0600);
- ``etc/exchange/trust.yaml``: a trust store holding this hub's own public key
  (:mod:`intelmq_crossborder.formats.trust_skeleton`); the peers' keys are added to it;
- the folders the bots use (spool, state, output, audit), ``etc/harmonization.conf`` with the
  cross-border fields (created, or merged into the existing one with a backup) and IntelMQ's
  state file when there is none.  Run as root, what was created goes to the ``intelmq`` user.

A hub id and country (together) replace the template's own identity (``at-hub``/AT,
``fi-hub``/FI, ``at-csirt``/AT) in the bots' parameters and in the agreements' rule "only our
own country's events"; the peers and recipients stay the template's, to edit.  Existing
files are never overwritten without ``force``, nothing is written when a target folder is not
writable, and every file is written atomically (:mod:`intelmq_crossborder.core.files`).
Hostile input (a hub id with white space, upper case or a look-alike letter, a root that is a
file) raises :class:`InitError` with a message fit for one line.

The paths above are those of IntelMQ's default layout (``/opt/intelmq`` or ``INTELMQ_ROOT_DIR``).
IntelMQ has a second one, chosen by ``INTELMQ_PATHS_NO_OPT`` when ``INTELMQ_ROOT_DIR`` is not set
(distribution packages): ``/etc/intelmq/``, ``/var/lib/intelmq/``, ``/var/log/intelmq/``,
``/var/run/intelmq/``, under the prefix ``ROOT_DIR`` (default ``/``).  :class:`Layout` maps the
template's ``${INTELMQ_ROOT_DIR}/etc/...`` and ``${INTELMQ_ROOT_DIR}/var/...`` paths onto either;
:func:`layout_from_environment` picks the one IntelMQ itself would read in this environment.
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from intelmq_crossborder.core import files, inputs
from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.formats import bundle, bundle_crypto, trust_skeleton
from intelmq_crossborder.runtime.instance import (PIPELINES_DIR, PipelineError, chown_for_intelmq, intelmq_ids,
                                                  load_runtime, upgrade_state)

__all__ = ["ROLES", "Role", "InitError", "Layout", "LAYOUTS", "layout_from_environment", "Plan", "check_hub_id",
           "check_country", "plan", "write"]


@dataclass(frozen=True)
class Role:
    """A ready pipeline that ``init`` deploys, and the identity its files are written for."""

    name: str
    hub_id: str          # the template's own hub id (the demo consortium member)
    country: str         # the template's own country

    @property
    def directory(self) -> Path:
        return PIPELINES_DIR / self.name


ROLES: Dict[str, Role] = {r.name: r for r in (
    Role("national-hub", "at-hub", "AT"),
    Role("cross-border-hub", "fi-hub", "FI"),
    Role("csirt", "at-csirt", "AT"),
)}

#: Parameters that hold the hub's own id / own country in the ready pipelines.
HUB_ID_PARAMETERS = ("hub_id",)
COUNTRY_PARAMETERS = ("origin_country", "country")
#: Bots' parameters that name a folder (created) rather than a file (its folder is created).
_FOLDER_PARAMETERS = ("path",)
#: Mode of the written files that hold no secret (an overwritten file keeps its own mode).
PUBLIC_MODE = 0o644
KEY_MODE = 0o600


class InitError(CrossBorderError):
    """``init`` refused its input or could not write: the message names the value or file."""


# --- IntelMQ's two file layouts ------------------------------------------------------------------

LAYOUTS = ("opt", "lsb")
#: IntelMQ's own folder below each standard folder of the lsb layout (intelmq/__init__.py).
_LSB_VAR = ("lib", "log", "run", "spool")


@dataclass(frozen=True)
class Layout:
    """Where IntelMQ reads its files: ``opt`` (everything under ``root``: ``etc/``, ``var/log/``,
    ``var/run/``, ``var/lib/bots/``; ``INTELMQ_ROOT_DIR``, default ``/opt/intelmq``) or ``lsb``
    (``INTELMQ_PATHS_NO_OPT``: ``etc/intelmq/``, ``var/log/intelmq/``, ``var/run/intelmq/``,
    ``var/lib/intelmq/bots/`` under the prefix ``root``, IntelMQ's ``ROOT_DIR``, default ``/``)."""

    kind: str
    root: Path

    def place(self, relative: str) -> Path:
        """The real path of a template path relative to ``${INTELMQ_ROOT_DIR}`` (``etc/x``,
        ``var/lib/x``, ``var/spool/x``, ``var/csaf``): the same below the root in the opt layout;
        in the lsb layout ``etc/intelmq/x``, ``var/<lib|log|run|spool>/intelmq/x`` and, for
        another ``var/<name>``, ``var/lib/intelmq/<name>``."""
        parts = [p for p in relative.split("/") if p]
        if self.kind == "opt" or not parts:
            return self.root.joinpath(*parts)
        if parts[0] == "etc":
            return self.root.joinpath("etc", "intelmq", *parts[1:])
        if parts[0] == "var" and len(parts) > 1:
            if parts[1] in _LSB_VAR:
                return self.root.joinpath("var", parts[1], "intelmq", *parts[2:])
            return self.root.joinpath("var", "lib", "intelmq", *parts[1:])
        return self.root.joinpath("var", "lib", "intelmq", *parts)

    @property
    def etc(self) -> Path:
        """IntelMQ's CONFIG_DIR."""
        return self.place("etc")

    @property
    def state_file(self) -> Path:
        """IntelMQ's STATE_FILE_PATH (``state.json`` beside the bots' state folder)."""
        return self.place("var/lib/state.json")

    def standard_folders(self) -> List[Path]:
        """IntelMQ's CONFIG_DIR, DEFAULT_LOGGING_PATH, VAR_RUN_PATH and VAR_STATE_PATH."""
        return [self.etc, self.place("var/log"), self.place("var/run"), self.place("var/lib/bots")]

    def owns(self, value: str) -> bool:
        """Whether a parameter value is a path in one of this layout's folders of IntelMQ."""
        if self.kind == "opt":
            return value.startswith(str(self.root).rstrip(os.sep) + os.sep)
        return any(value == str(self.place(top)) or value.startswith(str(self.place(top)) + os.sep)
                   for top in ("etc", "var/lib", "var/log", "var/run", "var/spool"))

    def environment(self) -> str:
        """The environment under which ``intelmqctl`` reads this layout, as shell assignments."""
        if self.kind == "opt":
            return f"INTELMQ_ROOT_DIR={self.root}"
        return "INTELMQ_PATHS_NO_OPT=1" + ("" if str(self.root) == os.sep else f" ROOT_DIR={self.root}")


def layout_from_environment(env: Optional[Dict[str, str]] = None) -> Layout:
    """The layout IntelMQ 3 reads in ``env`` (default: this process's environment), decided as
    ``intelmq/__init__.py`` does: ``INTELMQ_ROOT_DIR`` set (not empty): opt under it; else
    ``INTELMQ_PATHS_NO_OPT`` set (not empty): lsb under ``ROOT_DIR`` (default ``/``); else opt
    under ``/opt/intelmq``."""
    env = os.environ if env is None else env
    if env.get("INTELMQ_ROOT_DIR"):
        return Layout("opt", Path(env["INTELMQ_ROOT_DIR"]))
    if env.get("INTELMQ_PATHS_NO_OPT"):
        return Layout("lsb", Path(env.get("ROOT_DIR", "/")))
    return Layout("opt", Path("/opt/intelmq"))


# --- hostile input: hub id, country, root ----------------------------------------------------

def _shown(value: str) -> str:
    """``ascii()`` of a value: white space, line breaks and look-alike letters made visible."""
    return ascii(value)


def _first_non_ascii(value: str) -> Optional[str]:
    for char in value:
        if ord(char) > 127:
            return f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')})"
    return None


def check_hub_id(value: str, option: str = "--hub-id") -> str:
    """``value`` if it is a hub id (:data:`intelmq_crossborder.formats.bundle.HUB_ID_RE`, the
    whole value), else :class:`InitError` saying what is wrong with it."""
    if bundle.valid_hub_id(value):
        return value
    what = f"{option} {_shown(value)}"
    pattern = bundle.HUB_ID_RE.pattern
    if not value:
        raise InitError(f"{option} is empty: a hub id matches {pattern}")
    if value != value.strip() or any(c.isspace() for c in value):
        raise InitError(f"{what} contains white space or a line break: a hub id matches {pattern}, nothing around it")
    odd = _first_non_ascii(value)
    if odd:
        raise InitError(f"{what} contains the non-ASCII character {odd}: a hub id is ASCII ({pattern}); "
                        "a look-alike letter would name another hub")
    if value != value.lower() and bundle.valid_hub_id(value.lower()):
        raise InitError(f"{what} has upper-case letters: hub ids are lower case (did you mean {value.lower()!r}?)")
    raise InitError(f"{what} is not a hub id: it must match {pattern} (lower-case letters, digits, '.' and '-', "
                    "at most 63 characters, starting with a letter or digit)")


def check_country(value: str, option: str = "--country") -> str:
    """``value`` if it is an ISO 3166-1 alpha-2 code such as ``FR``, else :class:`InitError`."""
    if bundle.valid_country(value):
        return value
    what = f"{option} {_shown(value)}"
    if not value:
        raise InitError(f"{option} is empty: give an ISO 3166-1 alpha-2 code such as FR")
    if value != value.strip() or any(c.isspace() for c in value):
        raise InitError(f"{what} contains white space or a line break: give the two letters only, such as FR")
    odd = _first_non_ascii(value)
    if odd:
        raise InitError(f"{what} contains the non-ASCII character {odd}: a country is two ASCII letters such as FR")
    if bundle.valid_country(value.upper()):
        raise InitError(f"{what} is not upper case: did you mean {value.upper()!r}?")
    raise InitError(f"{what} is not an ISO 3166-1 alpha-2 code such as FR")


def _check_root(root: Path) -> Path:
    text = str(root)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InitError(f"--root {_shown(text)}: the path is not valid UTF-8, and runtime.yaml must name it") from None
    if not text.strip():
        raise InitError("--root is empty")
    if any(c in text for c in "\n\r\0"):
        raise InitError(f"--root {_shown(text)} contains a line break or NUL character")
    root = Path(os.path.abspath(root))
    if root.exists() and not root.is_dir():
        raise InitError(f"--root {root}: is not a directory (an IntelMQ root is a folder with etc/ and var/)")
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InitError(f"--root {root}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InitError(f"--root {root}: {existing} is not writable by this user")
    return root


# --- the plan: every file and folder, built in memory before anything is written -------------

@dataclass
class Plan:
    role: Role
    root: Path
    hub_id: str
    country: str
    layout: Optional[Layout] = None
    files: List[Tuple[Path, bytes, int]] = field(default_factory=list)   # path, content, mode
    folders: List[Path] = field(default_factory=list)
    key_id: str = ""
    bots: int = 0
    agreement_dirs: List[Path] = field(default_factory=list)     # the routers' copies
    left_out: List[Tuple[str, List[str]]] = field(default_factory=list)   # bot id, the ${NAME}s it needs

    def __post_init__(self) -> None:
        if self.layout is None:
            self.layout = Layout("opt", self.root)

    @property
    def etc(self) -> Path:
        return self.layout.etc

    @property
    def runtime_file(self) -> Path:
        return self.layout.etc / "runtime.yaml"


def _template_peers(runtime: dict, agreements: Dict[Path, Dict[str, str]]) -> set:
    """Hub ids and recipients the template talks to: none of them may be this hub."""
    peers = set()
    for bot_id, conf in runtime.items():
        params = conf.get("parameters", {}) if bot_id != "global" else {}
        if isinstance(params.get("recipient"), str):
            peers.add(params["recipient"])
        if "agreements_dir" in params and isinstance(params.get("destination_queues"), dict):
            peers.update(p for p in params["destination_queues"] if p != "_default")
    for texts in agreements.values():
        for text in texts.values():
            data = yaml.safe_load(text) or {}
            peers.update(str(data[k]) for k in ("recipient", "hub_id") if data.get(k))
    return peers


_ORIGIN_COUNTRIES = r"^(origin_countries:\s*\[\s*){old}(\s*\]\s*)$"


def _own_country(text: str, source: Path, old: str, new: str) -> str:
    """An agreement template with its rule "only our own country's events" set to ``new``."""
    if old == new:
        return text
    before = yaml.safe_load(text) or {}
    if before.get("origin_countries") != [old]:
        return text
    changed = re.sub(_ORIGIN_COUNTRIES.format(old=re.escape(old)), lambda m: m.group(1) + new + m.group(2),
                     text, flags=re.MULTILINE)
    after = yaml.safe_load(changed) or {}
    if after != {**before, "origin_countries": [new]}:
        raise InitError(f"{source}: cannot set origin_countries to [{new}] in this agreement template; "
                        "copy it and edit it by hand")
    return changed


def _replace_token(value: str, old: str, new: str) -> str:
    """``old`` replaced where it stands as a word of its own (between white space or at the ends)."""
    return re.sub(r"(?<!\S)" + re.escape(old) + r"(?!\S)", lambda _m: new, value)


def _personalise(runtime: dict, role: Role, layout: Layout, hub_id: str, country: str) -> None:
    """The template's own hub id and country replaced by this hub's, in the bots' parameters
    (not in the paths of IntelMQ's folders: they name the peers' outboxes)."""
    for bot_id, conf in runtime.items():
        if bot_id == "global":
            continue
        params = conf.get("parameters", {})
        for name, value in list(params.items()):
            if not isinstance(value, str) or name == "destination_queues" or layout.owns(value):
                continue
            if name in HUB_ID_PARAMETERS and value == role.hub_id:
                params[name] = hub_id
            elif name in COUNTRY_PARAMETERS and value == role.country:
                params[name] = country
            elif name == "originator" and hub_id != role.hub_id:
                params[name] = hub_id            # the template names the demo's hub: edit it
            else:
                params[name] = _replace_token(value, role.hub_id, hub_id)


def _folders_of(runtime: dict, layout: Layout) -> List[Path]:
    """The folders the bots write into: ``*_dir`` and ``path`` parameters, and the folders of
    files in IntelMQ's folders (audit log, output file, key, trust store)."""
    found = layout.standard_folders()
    for bot_id, conf in runtime.items():
        if bot_id == "global":
            continue
        for name, value in conf.get("parameters", {}).items():
            if not isinstance(value, str) or not layout.owns(value):
                continue
            path = Path(value)
            found.append(path if name.endswith("_dir") or name in _FOLDER_PARAMETERS else path.parent)
    return list(dict.fromkeys(found))


#: What ``${INTELMQ_ROOT_DIR}`` expands to while a template is read: then mapped by the layout.
_MARK = "/\0intelmq-root"
_MARKED = re.compile(re.escape(_MARK) + r"((?:/[^/\s,;'\"]*)*)")


def _place_marked(value, layout: Layout):
    """A template value with its ``${INTELMQ_ROOT_DIR}/...`` paths placed by ``layout``."""
    if isinstance(value, str):
        return _MARKED.sub(lambda m: str(layout.place(m.group(1))) + ("/" if m.group(1).endswith("/") else ""),
                           value)
    if isinstance(value, list):
        return [_place_marked(v, layout) for v in value]
    if isinstance(value, dict):
        return {k: _place_marked(v, layout) for k, v in value.items()}
    return value


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _leave_out_unset(runtime: dict) -> Tuple[List[Tuple[str, List[str]]], set]:
    """Take out the bots whose parameters still hold a ``${NAME}`` nobody set (a partner's TAXII
    server, say), the routers' paths that led only to them and those paths' agreement templates:
    an optional route the admin adds later with its value (``init --set NAME=VALUE``).  Returns the
    bots left out and the (agreements_dir, agreement file name) pairs not to copy."""
    left_out, dropped = [], set()
    for bot_id, conf in list(runtime.items()):
        if bot_id == "global":
            continue
        names = sorted({m for v in conf.get("parameters", {}).values() if isinstance(v, str)
                        for m in _PLACEHOLDER.findall(v)})
        if not names:
            continue
        queue = conf.get("parameters", {}).get("source_queue") or f"{bot_id}-queue"
        del runtime[bot_id]
        left_out.append((bot_id, names))
        for other in runtime.values():
            params = other.get("parameters", {}) if isinstance(other, dict) else {}
            paths = params.get("destination_queues")
            if not isinstance(paths, dict):
                continue
            for path, queues in list(paths.items()):
                if isinstance(queues, list) and queue in queues:
                    queues.remove(queue)
                    if not queues and path != "_default":
                        del paths[path]
                        source = params.get("agreements_dir")
                        if isinstance(source, str):
                            dropped.add((Path(source), f"{path}.yaml"))
    return left_out, dropped


def plan(role_name: str, root: Path, hub_id: Optional[str] = None, country: Optional[str] = None,
         layout: str = "opt", values: Optional[Dict[str, str]] = None) -> Plan:
    """Everything ``init`` writes, in memory; :class:`InitError` for bad input.  ``layout``:
    IntelMQ's ``opt`` layout with ``root`` as INTELMQ_ROOT_DIR, or ``lsb`` with ``root`` as the
    prefix ROOT_DIR of INTELMQ_PATHS_NO_OPT (:class:`Layout`).  ``values``: the template's other
    ``${NAME}`` placeholders (a bot that needs one not given is left out, :attr:`Plan.left_out`)."""
    values = dict(values or {})
    for name, value in values.items():
        if not _PLACEHOLDER.fullmatch("${" + name + "}") or name in ("INTELMQ_ROOT_DIR", "PIPELINES_DIR"):
            raise InitError(f"--set {_shown(name)}: not a placeholder name of the template")
        if not isinstance(value, str) or not value.strip() or value != value.strip() or "${" in value:
            raise InitError(f"--set {name}: the value {_shown(value)} is empty, padded or holds a placeholder")
    if layout not in LAYOUTS:
        raise InitError(f"unknown layout {_shown(layout)}: use one of {', '.join(LAYOUTS)}")
    if role_name not in ROLES:
        raise InitError(f"unknown role {_shown(role_name)}: use one of {', '.join(ROLES)}")
    role = ROLES[role_name]
    if (hub_id is None) != (country is None):
        raise InitError(f"--hub-id and --country go together (the {role.name} template's own are "
                        f"{role.hub_id} and {role.country})")
    hub_id = role.hub_id if hub_id is None else check_hub_id(hub_id)
    country = role.country if country is None else check_country(country)
    root = _check_root(root)
    where = Layout(layout, root)
    try:
        runtime = _place_marked(load_runtime(role.directory / "runtime.yaml", Path(_MARK), values), where)
    except inputs.InputError as exc:     # the package itself is damaged
        raise InitError(f"the ready pipeline of {role.name} cannot be read: {exc}") from None
    result = Plan(role, root, hub_id, country, where)
    result.left_out, dropped = _leave_out_unset(runtime)
    # agreement templates -> etc/<folder>; the routers point at the copies
    templates: Dict[Path, Dict[str, str]] = {}
    for bot_id, conf in runtime.items():
        params = conf.get("parameters", {}) if bot_id != "global" else {}
        source = params.get("agreements_dir")
        if not isinstance(source, str):
            continue
        source_dir = Path(source)
        target_dir = where.etc / source_dir.name
        if source_dir not in templates:
            templates[source_dir] = {p.name: p.read_text("utf-8") for p in sorted(source_dir.glob("*.yaml"))
                                     if (source_dir, p.name) not in dropped}
        params["agreements_dir"] = str(target_dir)
    leftover = [f"{b}.{n}" for b, c in runtime.items() if b != "global"
                for n, v in c.get("parameters", {}).items()
                if isinstance(v, str) and (str(PIPELINES_DIR) in v or "\0" in v)]
    if leftover:        # a template value pointing into the package that init does not copy
        raise InitError(f"the {role.name} template points into the package with {', '.join(leftover)}")
    if hub_id in _template_peers(runtime, templates) and hub_id != role.hub_id:
        raise InitError(f"--hub-id {hub_id} is a peer or recipient in the {role.name} template: give this hub's "
                        "own id (the peers are edited afterwards)")
    _personalise(runtime, role, where, hub_id, country)
    for source_dir, texts in templates.items():
        for name, text in texts.items():
            text = _own_country(text, source_dir / name, role.country, country)
            result.files.append((where.etc / source_dir.name / name, text.encode("utf-8"), PUBLIC_MODE))
        result.agreement_dirs.append(where.etc / source_dir.name)
    # keys (hybrid: Ed25519 + ML-DSA-65 signing, MLKEM768-X25519 decryption) and trust store
    signing = [bundle.generate_private_key(), bundle_crypto.generate(bundle_crypto.ML_DSA_65)]
    decryption = bundle_crypto.generate(bundle_crypto.HPKE_KEM)
    result.key_id = ", ".join(bundle.key_id_of(k) for k in signing + [decryption])
    exchange = where.etc / "exchange"
    trust = trust_skeleton.skeleton(hub_id, country, signing + [decryption],
                                    "this hub's own key (intelmq-crossborder init)")
    header = (f"Trust store of {hub_id}: the peers' public keys (docs/exchange-format.md).\n"
              "Written by intelmq-crossborder init with this hub's own key: add each peer's entry "
              "under peers (their `bundle keygen` prints it).")
    result.files.append((exchange / "trust.yaml", trust_skeleton.dumps(trust, header).encode("utf-8"), PUBLIC_MODE))
    result.files.append((exchange / "signing-key.pem", b"".join(bundle_crypto.private_pem(k) for k in signing),
                         KEY_MODE))
    result.files.append((exchange / "decryption-key.pem", bundle_crypto.private_pem(decryption), KEY_MODE))
    # runtime.yaml, last: it names all of the above
    result.bots = len([b for b in runtime if b != "global"])
    head = (f"# Written by intelmq-crossborder init {role.name} --hub-id {hub_id} --country {country}"
            f"{' --layout lsb' if layout == 'lsb' else ''}\n"
            f"# from the ready pipeline intelmq_crossborder/pipelines/{role.name}/runtime.yaml (docs/pipelines.md).\n"
            "# The peers and recipients are the template's: edit the exchange outputs, the routers'\n"
            "# destination_queues and the agreements to match yours.\n")
    body = yaml.safe_dump(runtime, sort_keys=False, allow_unicode=True, width=120)
    result.files.append((result.runtime_file, (head + body).encode("utf-8"), PUBLIC_MODE))
    result.folders = _folders_of(runtime, where) + [exchange]
    return result


# --- writing -------------------------------------------------------------------------------------

def _error(path: Path, exc: OSError, what: str = "write") -> InitError:
    where = exc.filename or path
    return InitError(f"{where}: cannot {what}: {exc.strerror or exc}")


def _writable(folder: Path) -> None:
    """:class:`InitError` unless ``folder`` (or, while it is missing, its nearest existing
    parent) is a folder this user can create files in: checked before anything is written."""
    probe = folder
    while not os.path.lexists(probe):
        probe = probe.parent
    if not probe.is_dir():
        raise InitError(f"{probe}: is not a directory (needed: the folder {folder})")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InitError(f"{probe}: not writable by this user (needed: the folder {folder})")


def write(p: Plan, force: bool = False) -> List[str]:
    """Write a :class:`Plan`; the lines to show.  Refuses (before writing anything) when a file
    exists and ``force`` is false, or a target is a folder."""
    existing = []
    for path, _data, _mode in p.files:
        if path.is_dir() and not path.is_symlink():
            raise InitError(f"{path}: is a directory; move it away first")
        if os.path.lexists(path):
            existing.append(path)
    if existing and not force:
        existing.sort(key=lambda x: x != p.runtime_file)       # the runtime file named first
        shown = ", ".join(str(x) for x in existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise InitError(f"{shown} exist{'s' if len(existing) == 1 else ''} (use --force to overwrite)")
    for folder in dict.fromkeys(p.folders + [path.parent for path, _d, _m in p.files]):
        _writable(folder)
    created = []
    for folder in p.folders + [path.parent for path, _d, _m in p.files]:
        missing = []
        probe = folder
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _error(folder, exc, "create the folder") from None
        created += reversed(missing)
    lines = []
    for path, data, mode in p.files:
        replaced = os.path.lexists(path)
        if replaced and not path.is_symlink() and mode != KEY_MODE:
            mode = path.stat().st_mode & 0o7777
        try:
            files.atomic_write(path, data, mode=mode)
        except OSError as exc:
            raise _error(path, exc) from None
        created.append(path)
        lines.append(f"{'replaced' if replaced else 'wrote'} {path}")
    lines += _intelmq_files(p.layout, created)
    ours = {path for path, _d, _m in p.files}
    for folder in p.agreement_dirs:       # a router reads every agreement file of its folder
        lines += [f"note: {other} is not from the {p.role.name} template: the router reads it as well"
                  for other in sorted(folder.glob("*.yaml")) if other not in ours]
    _give_to_intelmq(created, lines)
    return lines


def _intelmq_files(layout: Layout, created: List[Path]) -> List[str]:
    """The harmonization with the cross-border fields, and IntelMQ's state file if missing."""
    from intelmq_crossborder import harmonization
    lines = []
    target = layout.etc / "harmonization.conf"
    existed = os.path.lexists(target)
    try:
        report, backup = harmonization.install(target)
    except harmonization.HarmonizationError as exc:
        raise InitError(str(exc)) from None
    if not existed:
        created.append(target)
        lines.append(f"wrote {target} (IntelMQ's harmonization with the cross-border fields)")
    elif report.changed:
        lines.append(f"{target}: added {len(report.added)} cross-border field(s); backup {backup}")
    state = layout.state_file
    if not os.path.lexists(state):
        try:
            files.atomic_write_json(state, upgrade_state(), mode=PUBLIC_MODE, indent=4)
        except OSError as exc:
            raise _error(state, exc) from None
        created.append(state)
        lines.append(f"wrote {state} (IntelMQ's state file: config upgrades done)")
    return lines


def _give_to_intelmq(paths: List[Path], lines: List[str]) -> None:
    """Run as root: what init created belongs to the ``intelmq`` user that the bots run as."""
    try:
        ids = intelmq_ids()
    except PipelineError:
        lines.append("note: running as root and there is no 'intelmq' user: the files stay root's")
        return
    if ids is None:
        return
    for path in paths:
        try:
            if path.is_dir():
                chown_for_intelmq(path)
            else:
                os.chown(path, *ids)
        except OSError as exc:
            raise _error(path, exc, "give it to the intelmq user") from None
