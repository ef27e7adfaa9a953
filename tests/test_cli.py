"""The intelmq-crossborder command line: --help everywhere, tlp normalise, harmonization install/check."""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from intelmq_crossborder.runtime.instance import PIPELINES_DIR
from intelmq_crossborder import cli
FIXTURE = Path(__file__).parent / "fixtures" / "harmonization" / "intelmq-3.5.0-harmonization.conf"
EXE = str(Path(sys.executable).parent / "intelmq-crossborder")


def run(*args):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def _all_command_paths(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _all_command_paths(sub, prefix + (name,))


def test_console_script_help():
    proc = run("--help")
    assert proc.returncode == 0 and "tlp" in proc.stdout and "harmonization" in proc.stdout


@pytest.mark.parametrize("path", sorted(set(_all_command_paths(cli.build_parser()))))
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*path, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    # aliases (normalize) print the usage of their main name
    assert out.startswith("usage: intelmq-crossborder " + " ".join(path[:-1]))
    assert "show this help message and exit" in out


def test_tlp_normalise():
    proc = run("tlp", "normalise", "tlp:amber+strict", "AMBER STRICT", "TLP:WHITE", "tlp:clear",
               "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", "green")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["AMBER+STRICT", "AMBER+STRICT", "CLEAR", "CLEAR", "RED", "GREEN"]


def test_tlp_normalise_show_standard():
    proc = run("tlp", "normalise", "--show-standard", "WHITE", "tlp:amber")
    assert proc.stdout.splitlines() == ["CLEAR\ttlp-1.0", "AMBER\tmisp-taxonomy"]


def test_tlp_normalise_unknown_exits_2():
    proc = run("tlp", "normalise", "GREEN", "PURPLE")
    assert proc.returncode == 2
    assert proc.stdout.splitlines() == ["GREEN"]
    assert "unknown TLP label 'PURPLE'" in proc.stderr


def test_tlp_normalise_chatham_house_is_not_a_level():
    proc = run("tlp", "normalise", "tlp:ex:chr")
    assert proc.returncode == 2 and "Chatham House" in proc.stderr


def test_harmonization_install_and_check(tmp_path):
    target = tmp_path / "harmonization.conf"
    shutil.copy(FIXTURE, target)
    proc = run("harmonization", "check", str(target))
    assert proc.returncode == 1 and "field event.sharing.tlp: cross-border field is missing" in proc.stderr
    proc = run("harmonization", "install", "--target", str(target))
    assert proc.returncode == 0, proc.stderr
    assert f"{target}: added event.sharing.tlp" in proc.stdout and "backup written to" in proc.stdout
    proc = run("harmonization", "install", "--target", str(target))
    assert proc.returncode == 0 and "nothing to do" in proc.stdout and "backup" not in proc.stdout
    assert len(list(tmp_path.glob("harmonization.conf.bak-*"))) == 1
    proc = run("harmonization", "check", str(target))
    assert proc.returncode == 0 and proc.stdout.strip() == f"{target}: OK"


def test_harmonization_install_keeps_custom_field(tmp_path):
    target = tmp_path / "harmonization.conf"
    data = json.loads(FIXTURE.read_text())
    data["event"]["local.case_id"] = {"type": "String", "description": "case id of our ticket system"}
    target.write_text(json.dumps(data))
    assert run("harmonization", "install", "--target", str(target)).returncode == 0
    assert json.loads(target.read_text())["event"]["local.case_id"] == data["event"]["local.case_id"]


def test_harmonization_install_default_target_uses_intelmq_root(tmp_path):
    env_root = tmp_path / "root"
    proc = subprocess.run([EXE, "harmonization", "install"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "INTELMQ_ROOT_DIR": str(env_root)})
    assert proc.returncode == 0, proc.stderr
    assert (env_root / "etc" / "harmonization.conf").exists()


def test_harmonization_install_broken_target_exits_2(tmp_path):
    target = tmp_path / "harmonization.conf"
    target.write_text("[]")
    proc = run("harmonization", "install", "--target", str(target))
    assert proc.returncode == 2 and str(target) in proc.stderr


def test_harmonization_check_names_field(tmp_path):
    target = tmp_path / "h.conf"
    data = json.loads(FIXTURE.read_text())
    data["event"]["source.port"]["type"] = "Port"
    target.write_text(json.dumps(data))
    proc = run("harmonization", "check", "--structure-only", str(target))
    assert proc.returncode == 1 and "field event.source.port: type 'Port'" in proc.stderr


def test_check_fails_on_bad_bot_parameter(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("tlp-expert:\n  module: intelmq.bots.experts.crossborder.tlp.expert\n"
                    "  parameters: {default_tlp: tlp:amber+strict}\n")
    proc = run("check", str(good))
    assert proc.returncode == 0 and "No errors found." in proc.stdout, proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("global: {default_tlp: BLUE}\ntlp-expert:\n  module: intelmq.bots.experts.crossborder.tlp.expert\n"
                   "  parameters: {}\nghost:\n  module: intelmq.bots.experts.nope.expert\n")
    proc = run("check", str(bad))
    assert proc.returncode == 1
    assert f"error: {bad}: bot tlp-expert: Parameter default_tlp: unknown TLP label 'BLUE'" in proc.stderr
    assert "bot ghost: no installed bot has the module" in proc.stderr


#: Configs that need deployment files (exchange keys, trust store under ${INTELMQ_ROOT_DIR}) and
#: ${PIPELINES_DIR}: tests/test_ready_pipelines.py checks them deployed, with both check tools.
DEPLOYED_ONLY = ("national-hub", "cross-border-hub", "csirt", "consortium")


def test_check_shipped_runtime_configs():
    base = PIPELINES_DIR
    configs = sorted(str(p) for p in base.rglob("runtime.yaml")
                     if p.relative_to(base).parts[0] not in DEPLOYED_ONLY)
    assert configs
    proc = run("check", *configs)
    assert proc.returncode == 0, proc.stderr


def test_check_of_a_template_names_placeholders_and_creates_nothing(tmp_path, monkeypatch, capsys):
    """The stock file output's check() creates the folder of its path: for a template that is a
    folder literally named ${INTELMQ_ROOT_DIR} wherever the command runs."""
    monkeypatch.chdir(tmp_path)
    template = PIPELINES_DIR / "first-pipeline" / "runtime.yaml"
    assert cli.main(["check", str(template)]) == 0
    assert list(tmp_path.iterdir()) == []
    out = capsys.readouterr().out        # warnings go to stdout, errors to stderr
    assert "bot file-output: parameter file: ${INTELMQ_ROOT_DIR} is not expanded" in out
    assert "has now been created" not in out
