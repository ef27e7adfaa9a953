"""`intelmq-crossborder retract` and `retraction status|list`: the hub's records decide, Redis carries."""
import json
import shutil
import uuid

import pytest
import yaml

from tests.clirun import run
from tests.isolation import REDIS_DB

from intelmq_crossborder.policy import holdings as H
from intelmq_crossborder.policy.agreements import load_agreements
from intelmq_crossborder.policy.retraction import Retraction
from intelmq_crossborder.policy.retraction_router import RetractionRouter
from intelmq_crossborder.runtime.state_store import redis_client

UUID = "5b0e6bd4-3c1e-4d2f-9a51-0c3d2b1a0f00"
PEER_UUID = "6c0e6bd4-3c1e-4d2f-9a51-0c3d2b1a0f00"
FP = "ab" * 32
AGREEMENTS = {
    "cert-at": {"recipient": "cert-at", "name": "CERT.at", "kind": "csirt", "country": "AT",
                "relation": "constituent", "max_tlp": "AMBER"},
    "de-hub": {"recipient": "de-hub", "name": "German hub", "kind": "national-hub", "country": "DE",
               "relation": "community", "max_tlp": "GREEN", "hub_id": "de-hub"},
}


@pytest.fixture
def hub(tmp_path):
    agreements = tmp_path / "agreements"
    agreements.mkdir()
    for rid, conf in AGREEMENTS.items():
        (agreements / f"{rid}.yaml").write_text(yaml.safe_dump(conf))
    queue = f"retract-test-{uuid.uuid4().hex[:8]}-queue"
    runtime = tmp_path / "etc" / "runtime.yaml"
    runtime.parent.mkdir()
    holdings = tmp_path / "holdings.sqlite"
    runtime.write_text(yaml.safe_dump({
        "global": {"source_pipeline_db": REDIS_DB, "destination_pipeline_db": REDIS_DB},
        "router": {"module": "intelmq.bots.experts.crossborder.sharing_router.expert", "parameters": {
            "agreements_dir": str(agreements), "hub_id": "at-hub", "holdings_db": str(holdings),
            "audit_log": str(tmp_path / "audit.jsonl"), "source_queue": queue,
            "destination_queues": {"cert-at": ["a"], "de-hub": ["b"]}}}}))
    with H.Holdings(holdings) as index:
        index.record_sent(UUID, FP, [("cert-at", UUID, FP, "GREEN", None, True),
                                     ("de-hub", UUID, FP, "GREEN", None, True)])
        index.record_sent(PEER_UUID, None, [("cert-at", PEER_UUID, None, "GREEN", None, True)], peer="de-hub")
    client = redis_client("127.0.0.1", 6379, REDIS_DB)
    yield {"runtime": str(runtime), "holdings": holdings, "queue": queue, "redis": client,
           "agreements": load_agreements(agreements)}
    client.delete(queue)


def _route_queued(hub) -> Retraction:
    """What the router does with the queued message (the library part of the bot)."""
    raw = hub["redis"].rpop(hub["queue"])
    event = {k: v for k, v in json.loads(raw).items() if k != "__type"}
    msg = Retraction.from_event(event)
    with H.Holdings(hub["holdings"]) as index:
        router = RetractionRouter(index, hub["agreements"].values(), "at-hub", ["cert-at", "de-hub"])
        router.commit(router.plan(msg))
    return msg


def test_retract_injects_and_status_follows_confirmations(hub, capsys):
    status, out, err = run(["retract", "--event-uuid", UUID, "--action", "withdraw", "--reason", "false positive",
                            "--runtime", hub["runtime"]], capsys)
    assert status == 0, err
    assert "holders as far as the index knows: cert-at, de-hub" in out
    msg = _route_queued(hub)
    assert (msg.action, msg.target_event_uuid, msg.originator) == ("withdraw", UUID, "at-hub")
    status, out, err = run(["retraction", "status", msg.id, "--runtime", hub["runtime"]], capsys)
    assert status == 0, err
    assert "holders reached: 2" in out and "not yet: de-hub" in out and "still holding: 0" in out
    with H.Holdings(hub["holdings"]) as index:
        index.record_confirmation(msg.id, "de-hub", "2026-12-01T12:00:00+00:00", 4)
    status, out, _ = run(["retraction", "status", msg.id, "--db", str(hub["holdings"]), "--format", "json"], capsys)
    data = json.loads(out)
    assert data["unconfirmed"] == [] and data["confirmations"][0]["holders_reached"] == 4
    status, out, _ = run(["retraction", "list", "--runtime", hub["runtime"]], capsys)
    assert status == 0 and msg.id in out


def test_dry_run_prints_the_message_and_injects_nothing(hub, capsys):
    status, out, _ = run(["retract", "--fingerprint", FP, "--scope", "indicator", "--action", "relabel", "--tlp",
                          "amber", "--reason", "too low", "--dry-run", "--runtime", hub["runtime"]], capsys)
    assert status == 0
    event = json.loads(out[:out.index("\n}") + 2])
    assert event["retraction.new_tlp"] == "AMBER" and event["retraction.scope"] == "indicator"
    assert hub["redis"].llen(hub["queue"]) == 0


@pytest.mark.parametrize("argv,code,says", [
    (["--event-uuid", PEER_UUID, "--action", "withdraw", "--reason", "x"], 1, "came from peer hub(s) de-hub"),
    (["--event-uuid", UUID, "--action", "relabel", "--tlp", "CLEAR", "--reason", "x"], 1, "lower than"),
    (["--event-uuid", UUID, "--action", "withdraw", "--tlp", "RED", "--reason", "x"], 2, "relabel only"),
    (["--event-uuid", UUID, "--action", "relabel", "--pap", "PURPLE", "--reason", "x"], 2, "not a PAP label"),
    (["--event-uuid", UUID, "--action", "relabel", "--reason", "x"], 2, "names a new TLP"),
    (["--event-uuid", UUID, "--action", "withdraw", "--reason", "x", "--hub-id", "fr-hub"], 2, "not this hub"),
    (["--event-uuid", UUID.upper(), "--action", "withdraw", "--reason", "x"], 2, "not a lowercase UUID"),
    (["--event-uuid", UUID + " ", "--action", "withdraw", "--reason", "x"], 2, "not a lowercase UUID"),
    (["--fingerprint", "xyz", "--action", "withdraw", "--reason", "x"], 2, "not a SHA-256"),
    (["--event-uuid", UUID, "--action", "delete", "--reason", "x"], 2, "invalid choice"),
    (["--event-uuid", UUID, "--action", "withdraw", "--reason", " padded"], 2, "white space"),
    (["--event-uuid", UUID, "--action", "withdraw", "--reason", "x", "--router", "nope"], 2, "no bot 'nope'"),
])
def test_retract_refusals(hub, capsys, argv, code, says):
    status, out, err = run(["retract", *argv, "--runtime", hub["runtime"]], capsys)
    assert status == code, (out, err)
    assert says in err
    assert hub["redis"].llen(hub["queue"]) == 0


def test_unreadable_runtime_and_no_router(tmp_path, capsys):
    bad = tmp_path / "runtime.yaml"
    bad.write_text("a: [\n")
    status, _, err = run(["retract", "--event-uuid", UUID, "--action", "withdraw", "--reason", "x",
                          "--runtime", str(bad)], capsys)
    assert status == 2 and "runtime.yaml" in err
    bad.write_text(yaml.safe_dump({"parser": {"module": "intelmq.bots.parsers.json.parser"}}))
    status, _, err = run(["retraction", "status", UUID, "--runtime", str(bad)], capsys)
    assert status == 2 and "no cross-border sharing router" in err


def test_status_of_an_unknown_id_and_of_a_file_that_is_no_index(hub, tmp_path, capsys):
    status, _, err = run(["retraction", "status", UUID, "--db", str(hub["holdings"])], capsys)
    assert status == 1 and "no retraction" in err
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    status, _, err = run(["retraction", "status", UUID, "--db", str(junk)], capsys)
    assert status == 2 and "not a usable holdings index" in err
    status, _, err = run(["retraction", "status", UUID, "--db", str(tmp_path / "missing.sqlite")], capsys)
    assert status == 2 and "no holdings index" in err



def test_a_retraction_enters_before_the_early_warning_that_leads_to_the_router(tmp_path):
    """The cross-border hub: early warning -> analytics -> router. A retraction put in the router's
    queue would never reach the early warning, whose warnings raised on the event need a correction;
    it enters at the early warning's queue instead. Where no early warning leads to the router, it
    enters at the router's own queue."""
    from intelmq_crossborder.runtime import retraction as rt
    from intelmq_crossborder.runtime.instance import PIPELINES_DIR
    root = tmp_path / "hub"
    (root / "etc").mkdir(parents=True)
    for name, bot, entry in (("cross-border-hub", "router", "early-warning-queue"),
                             ("cross-border-hub", "early-warning-router", "early-warning-router-queue"),
                             ("national-hub", "router", "router-queue")):
        shutil.copy(PIPELINES_DIR / name / "runtime.yaml", root / "etc" / "runtime.yaml")
        where = rt.find_router(root / "etc" / "runtime.yaml", bot)
        assert (where.queue, where.entry_queue) == (f"{bot}-queue", entry), name
