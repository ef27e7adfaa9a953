"""Packaging: IntelMQ sees every bot of this package, under the right type, with docs and parameters."""
import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from intelmq.lib.utils import list_all_bots

from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from tests.isolation import REDIS_DB

REPO = Path(__file__).resolve().parent.parent
BOTS = REPO / "intelmq_crossborder" / "bots"
BIN = Path(sys.executable).parent
TYPES = {"collectors": "Collector", "parsers": "Parser", "experts": "Expert", "outputs": "Output"}


def our_entry_points():
    return [ep for ep in entry_points(group="console_scripts")
            if ep.name.startswith("intelmq.bots.") and ep.value.startswith("intelmq_crossborder.bots.")]


def bot_modules_on_disk():
    """intelmq_crossborder.bots.<type>s.<name>.<kind> for every bot file under intelmq_crossborder/bots/."""
    found = set()
    for type_dir in TYPES:
        for path in sorted((BOTS / type_dir).glob("*/*.py")):
            if path.name == "__init__.py" or path.name.startswith("test"):
                continue
            if "\nBOT = " in path.read_text():
                found.add(f"intelmq_crossborder.bots.{type_dir}.{path.parent.name}.{path.stem}")
    return found


def test_there_are_bots():
    assert bot_modules_on_disk(), "no bot found under intelmq_crossborder/bots/"


def test_every_bot_on_disk_has_an_entry_point():
    modules = {ep.value.replace(":BOT.run", "") for ep in our_entry_points()}
    missing = bot_modules_on_disk() - modules
    assert not missing, f"bots without a console_scripts entry point in setup.cfg: {sorted(missing)}"
    for ep in our_entry_points():
        assert ep.value.endswith(":BOT.run"), ep


def test_every_code_folder_is_a_package():
    """setup.cfg finds packages (``packages = find:``): a folder of code without __init__.py
    would be missing from the wheel."""
    package = REPO / "intelmq_crossborder"
    missing = sorted(str(d.relative_to(REPO)) for d in {p.parent for p in package.rglob("*.py")}
                     if not (d / "__init__.py").exists() and "pipelines" not in d.relative_to(package).parts)
    assert not missing, f"folders with code but no __init__.py: {missing}"


def test_list_all_bots_shows_each_bot_under_its_type():
    listing = list_all_bots()
    for ep in our_entry_points():
        module = ep.value.replace(":BOT.run", "")
        bot_type = TYPES[module.split(".")[2]]
        cls = importlib.import_module(module).BOT
        key = cls.__name__
        for suffix in ("CollectorBot", "ParserBot", "ExpertBot", "OutputBot", "Bot"):
            key = key.replace(suffix, "")
        assert key in listing[bot_type], f"{cls.__name__} not listed as {bot_type}"
        entry = listing[bot_type][key]
        assert entry["module"] == ep.name
        assert entry["description"] != "Missing description"
        assert "\n    " not in entry["description"], "docstring must start on a new line so dedent works"
        # IntelMQ Manager shows the description in a one-line field and glues lines together:
        # one short paragraph, no line breaks; the details belong in docs/bots/
        assert "\n" not in entry["description"].strip(), f"{cls.__name__}: docstring is more than one line"
        assert len(entry["description"]) <= 600, f"{cls.__name__}: docstring longer than a short paragraph"
        assert entry["parameters"], f"{cls.__name__} lists no parameters"
        assert cls.__name__.startswith("CrossBorder"), cls.__name__


def test_no_class_name_clash_with_stock_bots():
    stock = set()
    for ep in entry_points(group="console_scripts"):
        if ep.name.startswith("intelmq.bots.") and ep.value.startswith("intelmq.bots."):
            try:
                stock.add(importlib.import_module(ep.value.replace(":BOT.run", "")).BOT.__name__)
            except Exception:  # optional dependencies of stock bots
                continue
    ours = {importlib.import_module(ep.value.replace(":BOT.run", "")).BOT.__name__ for ep in our_entry_points()}
    assert stock, "stock bots not found"
    assert not ours & stock


def _intelmq_root(workdir, runtime: dict) -> dict:
    root = workdir / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    (root / "var" / "run").mkdir(parents=True)
    (root / "etc" / "runtime.yaml").write_text(json.dumps(runtime))
    chown_for_intelmq(root)
    env = dict(os.environ, INTELMQ_ROOT_DIR=str(root), PATH=f"{BIN}:{os.environ['PATH']}")
    return env


def test_intelmqctl_list_bots_is_clean(intelmq_workdir):
    env = _intelmq_root(intelmq_workdir, {"global": {}})
    proc = subprocess.run([str(BIN / "intelmqctl"), "--type", "json", "list", "bots"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", "intelmq-api treats any stderr output of intelmqctl as a failure"
    listing = json.loads(proc.stdout)
    assert "CrossBorderTLP" in listing["Expert"]


def test_intelmqctl_check_runs_our_check(intelmq_workdir):
    """intelmqctl check logs the errors of our check() (though IntelMQ still exits 0 for them)."""
    runtime = {"tlp-expert": {
        "group": "Expert", "name": "TLP", "module": "intelmq.bots.experts.crossborder.tlp.expert",
        "description": "TLP", "enabled": True,
        "parameters": {"default_tlp": "BLUE", "destination_queues": {"_default": ["out-queue"]}}}}
    inst = IntelMQInstance(intelmq_workdir / "root", runtime, redis_db=REDIS_DB).setup()
    proc = inst.ctl("check", "--no-connections", check=False)
    assert "Parameter default_tlp: unknown TLP label 'BLUE'" in proc.stdout
    inst.runtime["tlp-expert"]["parameters"]["default_tlp"] = "amber"
    inst.setup()
    proc = inst.ctl("check", "--no-connections", check=False)
    assert "default_tlp" not in proc.stdout and '"status": "success"' in proc.stdout, proc.stdout
