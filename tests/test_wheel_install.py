"""From a built wheel in a fresh venv (issue 14 §2), not an editable install.

The wheel is built from a copy of the repository (``pip wheel --no-deps --no-build-isolation``:
no download of build tools) and installed with ``pip install WHEEL`` into a new venv; every
command then runs from a folder outside the source tree, with no ``PYTHONPATH``.  Checked:
IntelMQ lists every bot of setup.cfg, the ready pipelines, agreement templates and samples are
package data of the installed package, ``intelmq-crossborder init`` writes a root that passes
``intelmq-crossborder check`` and ``intelmqctl check``, and (integration) ``intelmq-crossborder
demo`` runs the consortium from the wheel.  Set SKIP_FRESH_VENV=1 to skip (no package mirror).
"""
import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parent.parent
READY = ("national-hub", "cross-border-hub", "csirt", "consortium/de-hub", "first-pipeline")
ROLES = ("national-hub", "cross-border-hub", "csirt")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("SKIP_FRESH_VENV") == "1", reason="SKIP_FRESH_VENV=1")]


def bot_entry_points() -> set:
    """The bots' console_scripts names, read from setup.cfg (not from any installed metadata)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    lines = cfg["options.entry_points"]["console_scripts"].splitlines()
    names = {line.split("=")[0].strip() for line in lines if line.strip()}
    return {n for n in names if n.startswith("intelmq.bots.")}


class Venv:
    def __init__(self, work: Path, wheel: Path):
        self.work = work
        self.wheel = wheel
        self.bin = work / "venv" / "bin"
        self.outside = work / "outside"          # the cwd of every command: not the source tree

    def env(self, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "INTELMQ_ROOT_DIR")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def run(self, *argv, timeout: float = 600, **env) -> subprocess.CompletedProcess:
        exe = argv[0] if os.sep in argv[0] else str(self.bin / argv[0])
        return subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.outside), env=self.env(**env))

    def python(self, code: str) -> subprocess.CompletedProcess:
        return self.run("python", "-c", code)


@pytest.fixture(scope="module")
def venv():
    """Build the wheel from a copy of the repository and install it into a new venv.

    The folder is traversable by the ``intelmq`` user (bots started by root drop to it), and
    the venv's interpreter is the one behind this test's (the one scripts/ensure-env.sh chose
    so that the ``intelmq`` user can run it)."""
    work = Path(tempfile.mkdtemp(prefix="intelmq-crossborder-wheel-"))
    work.chmod(0o755)
    try:
        src = work / "src"
        # a copy: setuptools writes build/ and *.egg-info into the tree it builds
        shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache",
            ".demo", ".scratch", "*.whl"))
        dist = work / "dist"
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "--disable-pip-version-check", "-q", "-w", str(dist), str(src)],
                              capture_output=True, text=True, timeout=600, cwd=str(work))
        assert proc.returncode == 0, proc.stderr[-3000:]
        wheels = list(dist.glob("intelmq_crossborder-*.whl"))
        assert len(wheels) == 1, wheels
        shutil.rmtree(src)                       # nothing may come from the source tree from here on
        proc = subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        v = Venv(work, wheels[0])
        v.outside.mkdir()
        proc = v.run("python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                     f"{wheels[0]}[demo]", timeout=1200)         # [demo]: the partner's TAXII server
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield v
    finally:
        if not os.environ.get("CROSSBORDER_KEEP_WORKDIR"):
            shutil.rmtree(work, ignore_errors=True)


def test_the_package_comes_from_the_wheel(venv):
    proc = venv.python("import intelmq_crossborder, json; print(json.dumps(intelmq_crossborder.__file__))")
    assert proc.returncode == 0, proc.stderr
    location = Path(json.loads(proc.stdout))
    assert venv.work / "venv" in location.parents, location
    assert REPO not in location.parents
    proc = venv.run("python", "-m", "pip", "show", "-f", "intelmq-crossborder")
    assert proc.returncode == 0 and "Editable project location" not in proc.stdout, proc.stdout


def test_the_wheel_holds_the_package_data_and_nothing_else(venv):
    names = set(zipfile.ZipFile(venv.wheel).namelist())
    for ready in READY:
        assert f"intelmq_crossborder/pipelines/{ready}/runtime.yaml" in names, ready
    for role in ROLES:
        assert any(n.startswith(f"intelmq_crossborder/pipelines/{role}/agreements/") and n.endswith(".yaml")
                   for n in names), role
    assert "intelmq_crossborder/pipelines/samples/consortium/misp/endor.json" in names
    assert "intelmq_crossborder/harmonization/crossborder.json" in names
    assert "intelmq_crossborder/formats/csaf/schemas/csaf_json_schema.json" in names
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"intelmq_crossborder"}, tops


def test_intelmq_lists_every_bot_of_setup_cfg(venv):
    code = ("import json; from intelmq.lib.utils import list_all_bots; "
            "print(json.dumps({t: {n: b['module'] for n, b in v.items()} for t, v in list_all_bots().items()}))")
    proc = venv.python(code)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    listed = {module: bot_type for bot_type, bots in listing.items() for module in bots.values()}
    expected = bot_entry_points()
    assert len(expected) >= 17
    missing = expected - set(listed)
    assert not missing, f"not listed by IntelMQ from the wheel: {sorted(missing)}"
    for module in expected:      # intelmq.bots.<type>s.crossborder...: listed under that type
        assert listed[module].lower() + "s" == module.split(".")[2], (module, listed[module])


def test_ready_pipelines_and_samples_are_installed_package_data(venv):
    code = ("import json; from intelmq_crossborder.runtime.instance import PIPELINES_DIR; "
            "from intelmq_crossborder.demo import consortium; "
            "print(json.dumps([str(PIPELINES_DIR)] + [str(p) for m in consortium.default_members() "
            "for p in [m.runtime_file] + [f for fs in m.inputs.values() for f in fs]]))")
    proc = venv.python(code)
    assert proc.returncode == 0, proc.stderr
    pipelines, *needed = [Path(p) for p in json.loads(proc.stdout)]
    assert venv.work / "venv" in pipelines.parents, pipelines
    assert len(needed) > 4
    for path in needed:
        assert pipelines in path.parents and path.is_file(), path


@pytest.mark.parametrize("role", ROLES)
def test_init_then_check_from_the_wheel(venv, role):
    root = venv.work / f"root-{role.replace('/', '-')}"
    proc = venv.run("intelmq-crossborder", "init", role, "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    runtime_file = root / "etc" / "runtime.yaml"
    text = runtime_file.read_text("utf-8")
    assert str(venv.work / "venv") not in text and "${" not in text   # nothing points into the package
    proc = venv.run("intelmq-crossborder", "check", str(runtime_file))
    assert proc.returncode == 0 and "No errors found." in proc.stdout, proc.stdout + proc.stderr
    proc = venv.run("intelmqctl", "--type", "json", "check", "--no-connections", INTELMQ_ROOT_DIR=str(root))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["status"] == "success" and not [line for line in report["lines"] if line[0] == "error"], report


@pytest.mark.integration
def test_demo_runs_from_the_wheel(venv, consortium_dbs):
    """`intelmq-crossborder demo` (what `make demo` runs) from the wheel venv: four IntelMQ instances
    with real bots on Redis (four databases leased for the test, tests/isolation.py), the nightly exchange, the early
    warning; exit 0 means no leak and no lost event.  Run as root, the bots drop to the `intelmq`
    user (scripts/ensure-env.sh creates it), which can enter the venv's folder."""
    workdir = venv.work / "demo"
    proc = venv.run("intelmq-crossborder", "demo", "--workdir", str(workdir),
                    "--redis-dbs", ",".join(map(str, consortium_dbs)), timeout=1800)
    assert proc.returncode == 0, (proc.stdout[-5000:], proc.stderr[-3000:])
    assert "Leak count: 0" in proc.stdout and "Lost events: 0" in proc.stdout, proc.stdout[-5000:]
