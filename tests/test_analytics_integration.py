"""The analytics expert as a real IntelMQ bot process on Redis (this run's database).

Events sharing a network from three countries go through the running bot: every event comes out on
``_default``, the third and later carry ``extra.campaign_id``, one incident candidate goes to the
early-warning path.  The bot is stopped (it saves its state as the intelmq user) and started again:
a fourth country joins the same campaign (same id, no second candidate), and a bad event is dumped.
"""
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from intelmq_crossborder.analytics import stage as analytics_stage
from intelmq_crossborder.runtime.instance import IntelMQInstance
from intelmq_crossborder.testing.polling import wait_until
from tests.isolation import REDIS_DB

pytestmark = pytest.mark.integration

BOT = "analytics-expert"


def ev(country, n, **extra):
    when = datetime.fromtimestamp(time.time() - 600, timezone.utc).replace(microsecond=0).isoformat()
    out = {"__type": "Event", "classification.taxonomy": "fraud", "classification.type": "phishing",
           "source.ip": f"185.220.101.{n}", "source.asn": 64500, "source.geolocation.cc": country,
           "provenance.origin_hub": f"hub-{country.lower()}", "provenance.origin_country": country,
           "sharing.tlp": "GREEN", "time.source": when}
    out.update(extra)
    return out


@pytest.fixture
def instance():
    work = Path(tempfile.mkdtemp(prefix="analytics-integration-"))
    work.chmod(0o755)
    root = work / "intelmq"
    lib = root / "var" / "lib" / "analytics"
    runtime = {
        "global": {"logging_level": "INFO", "error_procedure": "pass", "error_dump_message": True,
                   "error_max_retries": 0, "rate_limit": 0},
        BOT: {"group": "Expert", "name": "Analytics", "enabled": True, "run_mode": "continuous",
              "module": "intelmq.bots.experts.crossborder.analytics.expert",
              "parameters": {"hub_id": "eu-hub", "country": "BE", "campaign_warmup": 0,
                             "campaign_min_countries": 3, "campaign_min_hubs": 3,
                             "state_file": str(lib / "state.json"), "alerts_file": str(lib / "alerts.jsonl"),
                             "destination_queues": {"_default": ["it-analytics-out"],
                                                    "early-warning": ["it-analytics-warnings"]}}},
    }
    inst = IntelMQInstance(root, runtime, redis_db=REDIS_DB).setup()
    inst.clear_queues()
    inst.lib = lib
    yield inst
    inst.stop()
    inst.clear_queues()
    r = inst.redis()
    r.delete("it-analytics-out", "it-analytics-warnings")
    stats = list(r.scan_iter(match=f"{BOT}.*"))
    if stats:
        r.delete(*stats)
    shutil.rmtree(work, ignore_errors=True)


def push(inst, events):
    r = inst.redis()
    for e in events:
        r.lpush(f"{BOT}-queue", json.dumps(e))


def drained(inst, out_count):
    r = inst.redis()
    wait_until(lambda: not r.llen(f"{BOT}-queue") and not r.llen(f"{BOT}-queue-internal")
               and r.llen("it-analytics-out") >= out_count, 60,
               lambda: f"the analytics expert to forward {out_count} events; log: "
               + "".join(p.read_text()[-3000:] for p in inst.log_dir.glob("*.log")), interval=0.2)


def messages(inst, queue):
    return [json.loads(m) for m in reversed(inst.redis().lrange(queue, 0, -1))]


def test_campaign_through_a_real_bot_and_a_restart(instance):
    inst = instance
    inst.start()
    push(inst, [ev("DE", 1), ev("FR", 2), ev("IT", 3)])
    drained(inst, 3)
    out = messages(inst, "it-analytics-out")
    ids = [m.get("extra.campaign_id") for m in out]
    assert ids[0] is None and ids[1] is None and ids[2] and ids[2].startswith("campaign-")
    warnings = messages(inst, "it-analytics-warnings")
    assert len(warnings) == 1 and warnings[0]["extra.early_warning_trigger"] == "campaign"
    assert warnings[0]["extra.contributing_countries"] == ["DE", "FR", "IT"]
    assert "185.220.101" not in json.dumps(warnings[0])

    inst.stop()                                      # saves the state, as the intelmq user
    state = inst.lib / "state.json"
    assert state.exists() and (state.stat().st_mode & 0o777) == 0o600
    inst.start()
    push(inst, [ev("AT", 4), ev("PL", 5, **{"time.source": "not a time"})])
    drained(inst, 4)
    out = messages(inst, "it-analytics-out")
    assert len(out) == 4 and out[3]["extra.campaign_id"] == ids[2], "the same campaign after the restart"
    assert len(messages(inst, "it-analytics-warnings")) == 1, "no second candidate"
    records = [r for r, _ in analytics_stage.read_journal(inst.lib / "alerts.jsonl")]
    assert len(records) == 1
    wait_until(lambda: (inst.log_dir / f"{BOT}.dump").exists(), 30, "the bad event to be dumped")
    assert "time.source" in (inst.log_dir / f"{BOT}.dump").read_text()
