"""Every bot's ``check()`` accepts parameters as IntelMQ Manager saves them (issue 14 §1).

The Manager lists a bot's parameters with :func:`intelmq.lib.utils.list_all_bots` (the typed
class attributes) and saves a field left empty as ``''``: an untouched parameter whose default
is ``None`` becomes ``''``, and an admin who clears a field saves ``''`` too.  For every bot entry
point of setup.cfg:

- the config the Manager saves for a new bot (every listed parameter, ``None`` as ``''``), plus
  the values an admin must fill in (:data:`REQUIRED`), passes ``check()`` without an error;
- each optional parameter (every listed one but those of :data:`REQUIRED`) set to ``''`` alone,
  beside the required values, gives no error either: ``''`` means "unset", like ``None``;
- :data:`REQUIRED` holds no more than ``check()`` requires: the required values alone pass, and
  leaving any one of them out is an error (so the table cannot hide an optional parameter).
"""
import configparser
import enum
import importlib
import shutil
from pathlib import Path

import pytest
from intelmq.lib.utils import list_all_bots

from intelmq_crossborder.formats import bundle, trust_skeleton
from intelmq_crossborder.runtime.instance import PIPELINES_DIR

REPO = Path(__file__).resolve().parents[2]


def bot_entry_points() -> dict:
    """entry point name -> module, for every bot of setup.cfg (console_scripts intelmq.bots.*)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    out = {}
    for line in cfg["options.entry_points"]["console_scripts"].splitlines():
        name, _, target = line.partition("=")
        if name.strip().startswith("intelmq.bots."):
            out[name.strip()] = target.strip().replace(":BOT.run", "")
    return out


ENTRY_POINTS = bot_entry_points()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Files the required parameters point at: trust store, signing key, agreements."""
    root = tmp_path_factory.mktemp("manager")
    key = bundle.generate_private_key()
    (root / "signing-key.pem").write_bytes(bundle.private_key_pem(key))
    (root / "signing-key.pem").chmod(0o600)
    (root / "trust.yaml").write_text(trust_skeleton.dumps(trust_skeleton.skeleton("fr-hub", "FR", key)))
    shutil.copytree(PIPELINES_DIR / "csirt" / "agreements", root / "agreements")
    for sub in ("inbox", "csaf-out", "misp-feed"):
        (root / sub).mkdir()
    return root


def required(entry_point: str, root: Path) -> dict:
    """The parameters an admin must fill in for each bot (check() reports their absence)."""
    agreement = str(root / "agreements" / "soc.yaml")
    table = {
        "intelmq.bots.collectors.crossborder.csaf.collector": {
            "csaf_source": "https://provider.example/.well-known/csaf/provider-metadata.json"},
        "intelmq.bots.collectors.crossborder.exchange.collector": {
            "hub_id": "fr-hub", "trust_store": str(root / "trust.yaml"), "inbox_dir": str(root / "inbox")},
        "intelmq.bots.collectors.crossborder.misp.collector": {"misp_url": "https://misp.example"},
        "intelmq.bots.experts.crossborder.provenance.expert": {"hub_id": "fr-hub"},
        "intelmq.bots.experts.crossborder.sharing_router.expert": {
            "agreements_dir": str(root / "agreements")},
        "intelmq.bots.outputs.crossborder.csaf.output": {
            "output_dir": str(root / "csaf-out"), "publisher_name": "FR hub",
            "publisher_namespace": "https://hub.example"},
        "intelmq.bots.outputs.crossborder.exchange.output": {
            "hub_id": "fr-hub", "recipient": "de-hub", "signing_key_file": str(root / "signing-key.pem")},
        "intelmq.bots.outputs.crossborder.misp.output": {"misp_url": "https://misp.example",
                                                         "agreement_file": agreement},
        "intelmq.bots.outputs.crossborder.misp_feed.output": {"feed_directory": str(root / "misp-feed"),
                                                              "agreement_file": agreement},
        "intelmq.bots.outputs.crossborder.file.output": {"file": str(root / "events.jsonl")},
        "intelmq.bots.collectors.crossborder.taxii.collector": {
            "taxii_url": "https://taxii.example/taxii2/", "collection": "partner-feed"},
        "intelmq.bots.outputs.crossborder.taxii.output": {
            "taxii_url": "https://taxii.example/taxii2/", "collection": "partner-cti", "hub_id": "fr-hub"},
    }
    return dict(table.get(entry_point, {}))


#: Parameters every configured bot has that the Manager does not list (Bot's own): the router
#: needs a named path per agreement, as in any runtime.yaml.
def context(entry_point: str) -> dict:
    if entry_point == "intelmq.bots.experts.crossborder.sharing_router.expert":
        return {"destination_queues": {"_default": [], "soc": ["soc-queue"],
                                       "at-grid-operator": ["operator-queue"]}}
    return {}


@pytest.fixture(scope="module")
def listing():
    """entry point name -> the parameters IntelMQ Manager lists (list_all_bots)."""
    out = {}
    for bots in list_all_bots().values():
        for bot in bots.values():
            if bot["module"] in ENTRY_POINTS:
                out[bot["module"]] = {name: value for name, value in bot["parameters"].items()
                                      if not isinstance(value, enum.Enum)}     # bottype: not a setting
    return out


def manager_saved(parameters: dict) -> dict:
    """What the Manager writes for a new bot: every listed parameter, an empty one as ''."""
    return {name: ("" if value is None else value) for name, value in parameters.items()}


def errors(entry_point: str, parameters: dict) -> list:
    cls = importlib.import_module(ENTRY_POINTS[entry_point]).BOT
    found = cls.check({**context(entry_point), **parameters}) or []
    return [message for level, message in found if str(level).lower() == "error"]


def optional_parameters():
    """(entry point, parameter) for every listed parameter outside the required table."""
    root = Path("/nonexistent")
    out = []
    for bots in list_all_bots().values():
        for bot in bots.values():
            if bot["module"] not in ENTRY_POINTS:
                continue
            needed = required(bot["module"], root)
            out += [pytest.param(bot["module"], name, id=f"{short(bot['module'])}-{name}")
                    for name, value in sorted(bot["parameters"].items())
                    if name not in needed and not isinstance(value, enum.Enum)]
    return out


def short(entry_point: str) -> str:
    parts = entry_point.split(".")
    return f"{parts[2]}.{parts[4]}"


def test_every_bot_entry_point_is_listed(listing):
    assert len(ENTRY_POINTS) >= 17
    assert set(listing) == set(ENTRY_POINTS), set(ENTRY_POINTS) ^ set(listing)
    for entry_point, parameters in listing.items():
        assert parameters, f"{entry_point}: the Manager lists no parameter"


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS), ids=short)
def test_the_config_the_manager_saves_passes_check(entry_point, listing, deployment):
    parameters = {**manager_saved(listing[entry_point]), **required(entry_point, deployment)}
    assert errors(entry_point, parameters) == []


@pytest.mark.parametrize("entry_point, name", optional_parameters())
def test_an_empty_optional_parameter_is_unset(entry_point, name, deployment):
    parameters = {**required(entry_point, deployment), name: ""}
    assert errors(entry_point, parameters) == [], f"{name}='' (as IntelMQ Manager saves an empty field)"


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS), ids=short)
def test_the_required_table_holds_only_what_check_requires(entry_point, deployment):
    needed = required(entry_point, deployment)
    assert errors(entry_point, needed) == []
    for name in needed:
        for absent in ({k: v for k, v in needed.items() if k != name}, {**needed, name: ""}):
            assert errors(entry_point, absent), f"check() does not require {name}: it is optional"
