"""`intelmq-crossborder convert csaf FILE...`: the contract scripts depend on."""
import json
import subprocess
import sys
from pathlib import Path

from intelmq_crossborder import cli
FIX = Path(__file__).resolve().parent / "fixtures" / "csaf" / "advisories"


def run(*args):
    return subprocess.run([sys.executable, "-m", "intelmq_crossborder.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_convert_prints_flat_events_one_per_line():
    proc = run("convert", "csaf", str(FIX / "bsi-2022-0001.json"), str(FIX / "rhsa-2019_1862.json"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 6
    events = [json.loads(line) for line in lines]
    assert events[0]["csaf.tracking_id"] == "BSI-2022-0001"
    assert events[0]["product.vulnerabilities"] == "cve-2022-27193"
    assert events[0]["classification.type"] == "vulnerable-system"
    assert "raw" in events[0] and "extra.csaf_product_id" in events[0]
    assert events[-1]["csaf.category"] == "csaf_informational_advisory"
    assert not any(isinstance(v, dict) for e in events for v in e.values())   # flat keys, no nesting


def test_invalid_document_error_on_stderr_exit_1_after_all_files():
    proc = run("convert", "csaf", str(FIX / "rhba-2023_0564.json"), str(FIX / "malformed-truncated.json"),
               str(FIX / "icsma-17-009-01a.json"))
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 3          # the valid file after the bad ones was converted
    assert "rhba-2023_0564.json: not a valid CSAF 2.0 document (tracking id ''): $.document" in proc.stderr
    assert "malformed-truncated.json:103: not valid JSON" in proc.stderr


def test_absent_tlp_default_noted_on_stderr():
    proc = run("convert", "csaf", "--default-tlp", "GREEN", str(FIX / "2022-evd-uc-01-a-001.json"))
    assert proc.returncode == 0
    assert json.loads(proc.stdout.splitlines()[0])["sharing.tlp"] == "GREEN"
    assert "no document.distribution.tlp.label, default GREEN applied" in proc.stderr


def test_usage_errors_exit_2():
    assert run("convert", "csaf", "--default-tlp", "BLUE", str(FIX / "bsi-2022-0001.json")).returncode == 2
    assert run("convert", "csaf", str(FIX / "does-not-exist.json")).returncode == 2
    assert run("convert").returncode == 2


def test_help_and_converter_registry():
    assert run("convert", "csaf", "--help").returncode == 0
    assert "intelmq_crossborder.cli.csaf:register_convert_csaf" in cli.CONVERTERS
    parser = cli.build_parser()
    args = parser.parse_args(["convert", "csaf", "x.json"])
    assert args.convert_command == "csaf"


def test_sample_runtime_config_passes_bot_checks():
    runtime = Path(__file__).resolve().parents[1] / "intelmq_crossborder" / "pipelines" / "csaf" / "runtime.yaml"
    proc = run("check", str(runtime))
    assert proc.returncode == 0, proc.stdout + proc.stderr
