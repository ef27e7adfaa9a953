"""Real IntelMQ processes: CSAF collector (scheduled) -> CSAF parser -> CSAF output, on this run's Redis database (tests/isolation.py)."""
import json
import time
from pathlib import Path

import pytest

from intelmq_crossborder.testing.csaf_provider import ADVISORIES, Provider

CSAF_ADVISORIES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "csaf" / "advisories"
from intelmq_crossborder.formats.csaf import document as csaf
from intelmq_crossborder.runtime.instance import IntelMQInstance, chown_for_intelmq
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration


def runtime(root: Path, metadata_url: str) -> dict:
    return {
        "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "error_retry_delay": 1, "rate_limit": 0},
        "csaf-collector": {
            "group": "Collector", "name": "CSAF", "module": "intelmq.bots.collectors.crossborder.csaf.collector",
            "enabled": True, "run_mode": "scheduled",
            "parameters": {"csaf_source": metadata_url, "name": "Test CSAF", "provider": "Test provider",
                           "state_file": str(root / "var/lib/bots/csaf-collector.json"),
                           "destination_queues": {"_default": ["csaf-parser-queue"]}}},
        "csaf-parser": {
            "group": "Parser", "name": "CSAF parser", "module": "intelmq.bots.parsers.crossborder.csaf.parser",
            "enabled": True, "run_mode": "continuous",
            "parameters": {"default_tlp": "AMBER", "destination_queues": {"_default": ["csaf-output-queue"]}}},
        "csaf-output": {
            "group": "Output", "name": "CSAF output", "module": "intelmq.bots.outputs.crossborder.csaf.output",
            "enabled": True, "run_mode": "continuous",
            "parameters": {"output_dir": str(root / "var/csaf"), "state_dir": str(root / "var/lib/bots/spool"),
                           "publisher_name": "Test Hub", "publisher_namespace": "https://hub.example.org"}},
    }


def run_scheduled(inst, bot_id):
    """Start a scheduled bot: it runs once and exits. intelmqctl start exits 1 ("stopped") when
    the run was over before it looked, so the exit status says nothing here; the log does."""
    inst.ctl("start", bot_id, check=False)


def test_collector_parser_output_pipeline(intelmq_workdir):
    root = intelmq_workdir / "intelmq"
    with Provider(CSAF_ADVISORIES, ADVISORIES + ["rhba-2023_0564.json"]) as provider:
        wrong = "/.well-known/csaf/white/2019/icsa-19-344-03.json"
        provider.hashes[wrong] = (provider.hashes[wrong][0], "0" * 128)
        inst = IntelMQInstance(root, runtime(root, provider.metadata_url), redis_db=REDIS_DB).setup()
        inst.clear_queues()
        (root / "var" / "csaf").mkdir(parents=True, exist_ok=True)
        chown_for_intelmq(root / "var")
        out = root / "var" / "csaf" / "white"

        def docs():
            return sorted(out.rglob("*.json")) if out.exists() else []
        try:
            inst.start(["csaf-parser", "csaf-output"])
            run_scheduled(inst, "csaf-collector")
            # 5 advisories served OK (rhba invalid -> parser dump), icsa-19-344-03 wrong hash -> not emitted:
            # documents for bsi, icsma, va-24-201-01, rhsa-2019_1862.
            inst.wait_until_drained(timeout=90, done=lambda: len(docs()) >= 4 and inst.dumps().get("csaf-parser"))
            written = docs()
            assert sorted(p.name for p in written) == sorted(
                ["hub-bsi-2022-0001.json", "hub-icsma-17-009-01a.json", "hub-va-24-201-01.json",
                 "hub-rhsa-2019_1862.json"])
            for path in written:
                assert csaf.validate(json.loads(path.read_bytes())) == ([], 0), path
            dumps = inst.dumps()["csaf-parser"]
            assert len(dumps) == 1 and "tracking id ''" in dumps[0]["traceback"]
            log = (root / "var" / "log" / "csaf-collector.log").read_text()
            assert "icsa-19-344-03.json not emitted: sha512 mismatch" in log
            state = json.loads((root / "var/lib/bots/csaf-collector.json").read_text())
            assert len(next(iter(state["distributions"].values()))) == 5
            # the nightly run: only the fixed file comes
            provider.rehash(wrong)
            before = {p.name: p.stat().st_mtime for p in written}
            run_scheduled(inst, "csaf-collector")
            inst.wait_until_drained(timeout=60, done=lambda: len(docs()) >= 5)
            assert "hub-icsa-19-344-03.json" in [p.name for p in docs()]
            time.sleep(0.5)                   # deliberate: a rewrite of the unchanged files would show in their mtime
            assert {p.name: p.stat().st_mtime for p in written} == before
            log = (root / "var" / "log" / "csaf-collector.log").read_text()
            assert log.count("CSAF run done") == 2
            assert "1 listed" not in log and "6 listed, 1 emitted, 0 failed" in log
        finally:
            inst.stop()
