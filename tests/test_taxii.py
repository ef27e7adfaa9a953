"""TAXII 2.1 client logic (intelmq_crossborder.formats.stix.taxii) against a real TAXII 2.1 server
(medallion, memory backend, intelmq_crossborder.testing.taxii_server), a faulty one in front of it
(tests/fault_server.py: 429, 500, dropped connections) and a small status-resource fake (pending
statuses, refused objects)."""
import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.retry import Backoff
from intelmq_crossborder.formats.stix import export, taxii
from intelmq_crossborder.testing.http import LocalHTTPServer
from intelmq_crossborder.testing.taxii_server import TAXIIServer
from tests.fault_server import FaultServer

RECIPIENTS = ["csirt-a", "isac b", "empty"]


@pytest.fixture(scope="module")
def server():
    with TAXIIServer(RECIPIENTS, max_page_size=2) as srv:
        yield srv


def connect(server, url=None, **kw):
    kw.setdefault("attempts", 0)
    return taxii.Connection(url or server.discovery_url, user=server.user, password=server.password, **kw)


def indicators(n, prefix="10.0.0", modified="2026-11-20T08:00:00.000Z"):
    return [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}", "created": modified,
             "modified": modified, "pattern": f"[ipv4-addr:value = '{prefix}.{i}']", "pattern_type": "stix",
             "valid_from": modified} for i in range(n)]


# --- discovery ------------------------------------------------------------------------------

def test_collection_by_title_or_id_through_discovery_or_api_root(server):
    by_title = connect(server).collection("isac b")
    assert by_title.id == server.collection_id("isac b")
    assert connect(server).collection(server.collection_id("csirt-a")).title == "csirt-a"
    assert connect(server, server.api_root_url).collection("csirt-a").id == server.collection_id("csirt-a")
    assert connect(server).collection("csirt-a", api_root="Cross-border hub").title == "csirt-a"
    assert connect(server).collection("csirt-a", api_root=server.api_root_url).title == "csirt-a"


def test_unknown_collection_or_api_root_named_with_what_there_is(server):
    with pytest.raises(taxii.TAXIIError, match=r"no collection 'isac b ' \(mind blanks around it\).*csirt-a"):
        connect(server).collection("isac b ")
    with pytest.raises(taxii.TAXIIError, match="no API root 'nowhere'"):
        connect(server).collection("csirt-a", api_root="nowhere")
    with pytest.raises(taxii.TAXIIError, match="no collection named"):
        connect(server).collection("")


def test_wrong_credentials_refused_with_the_status_and_never_the_password(server, caplog):
    conn = taxii.Connection(server.discovery_url, user=server.user, password="wrong-password-123", attempts=2)
    with pytest.raises(taxii.TAXIIError) as info:
        conn.collection("csirt-a")
    assert info.value.status == 401 and not isinstance(info.value, taxii.TAXIIUnavailable)
    assert conn.retries == 0                      # a 401 is not retried
    assert "wrong-password-123" not in str(info.value) + caplog.text


def test_api_key_header():
    conn = taxii.Connection("https://opencti.example/taxii2/root/", api_key="k3y-value", api_key_prefix="Bearer")
    prepared = conn.conn.session.prepare_request(requests.Request("GET", "https://opencti.example/taxii2/root/"))
    assert prepared.headers["Authorization"] == "Bearer k3y-value"
    conn = taxii.Connection("https://hub.example/taxii2/", api_key="k3y-value", api_key_header="X-Api-Key")
    prepared = conn.conn.session.prepare_request(requests.Request("GET", "https://hub.example/taxii2/"))
    assert prepared.headers["X-Api-Key"] == "k3y-value" and "Authorization" not in prepared.headers
    with pytest.raises(taxii.TAXIIError, match="not an http"):
        taxii.Connection("ftp://hub.example/")


# --- pushing ----------------------------------------------------------------------------------

def test_push_accepted_and_a_repeated_push_counts_as_accepted(server):
    conn = connect(server)
    col = conn.collection("csirt-a")
    pusher = taxii.Pusher(conn, col, poll_interval=0.05)
    objs = indicators(5)
    first = pusher.push(objs)
    assert first.accepted == {o["id"] for o in objs} and not first.refused and not first.pending
    again = pusher.push(objs)          # medallion refuses a version it has: the collection holds it
    assert again.accepted == {o["id"] for o in objs} and not again.refused
    held = {o["id"] for o in server.objects("csirt-a")}
    assert {o["id"] for o in objs} <= held


def test_export_bundle_objects_pushed_and_read_back_valid(server):
    builder = export.BundleBuilder(export.ExportSettings("hub-at", profile="both"))
    for i in range(3):
        builder.add({"source.ip": f"192.0.2.{i}", "classification.type": "scanner", "sharing.tlp": "GREEN",
                     "time.source": "2026-11-20T08:00:00+00:00"})
    bundle = builder.bundle()
    conn = connect(server)
    result = taxii.Pusher(conn, conn.collection("isac b"), poll_interval=0.05).push(bundle["objects"])
    assert result.accepted == {o["id"] for o in bundle["objects"]}
    stored = server.objects("isac b")
    assert export.validation_errors(export.make_bundle(stored, "check")) == []


# --- reading, state, resuming -----------------------------------------------------------------

def test_pages_follow_next(server):
    conn = connect(server)
    col = conn.collection("empty")
    assert [p.objects for p in taxii.pages(conn, col)] == [[]]
    server.add("empty", indicators(5, "10.9.9"))
    pages = list(taxii.pages(conn, col, limit=2))
    assert [len(p.objects) for p in pages] == [2, 2, 1]
    assert [p.more for p in pages] == [True, True, False]
    assert all(p.date_added_last for p in pages)


def _fresh(server, tmp_path, name):
    """A collection of its own: a server with one recipient."""
    srv = TAXIIServer([name], max_page_size=2).start()
    conn = connect(srv)
    return srv, conn, conn.collection(name), taxii.CollectorState.load(tmp_path / f"{name}.json", srv.collection_id(name))


class Interrupted(Exception):
    pass


def dies_at_call(n, sent):
    """An emit that hands a page on (``sent``) and dies, without sending, at its ``n``-th call."""
    calls = []

    def emit(objects):
        calls.append(1)
        if len(calls) == n:
            raise Interrupted
        sent.extend(objects)
    return emit


def test_collect_is_incremental_and_resumes_without_loss_or_duplicates(tmp_path, server):
    srv, conn, col, state = _fresh(server, tmp_path, "feed")
    path = tmp_path / "feed.json"
    try:
        first = indicators(5, "10.1.1")            # one POST: the five share one date_added
        srv.add("feed", first)
        sent = []
        with pytest.raises(Interrupted):           # dies while sending the second page
            taxii.collect(conn, col, state, dies_at_call(2, sent), limit=2)
        state = taxii.CollectorState.load(path, col.id)
        assert len(sent) == 2 and len(state.seen) == 2 and state.added_after
        stats = taxii.collect(conn, col, state, sent.extend, limit=2)
        # the instant of the first page is read again: what was sent is skipped, the rest comes once
        assert sorted(o["id"] for o in sent) == sorted(o["id"] for o in first)
        assert (stats.emitted, stats.skipped) == (3, 2)
        assert taxii.collect(conn, col, taxii.CollectorState.load(path, col.id), sent.extend).emitted == 0

        second, third = indicators(3, "10.2.2"), indicators(3, "10.3.3")
        srv.add("feed", second)
        srv.add("feed", third)                     # two instants
        got = []
        with pytest.raises(Interrupted):
            taxii.collect(conn, col, taxii.CollectorState.load(path, col.id), dies_at_call(3, got), limit=2)
        taxii.collect(conn, col, taxii.CollectorState.load(path, col.id), got.extend, limit=2)
        assert sorted(o["id"] for o in got) == sorted(o["id"] for o in second + third)
        assert len(got) == 6

        newer = dict(third[0], modified="2026-11-21T08:00:00.000Z")    # a new version comes again
        srv.add("feed", [newer])
        again = []
        taxii.collect(conn, col, taxii.CollectorState.load(path, col.id), again.extend)
        assert [(o["id"], o["modified"]) for o in again] == [(newer["id"], newer["modified"])]
    finally:
        srv.stop()


@pytest.mark.parametrize("content,words", [
    ("{", "not valid JSON"),
    ("[]", "not a JSON object"),
    ('{"added_after": 5}', "added_after is not a string"),
    ('{"added_after": "yesterday"}', "not a timestamp"),
    ('{"added_after": null, "seen": [["a"]]}', "seen is not a list"),
    ('{"collection": "other"}', "belongs to collection 'other'"),
    ('{"added_after": "2026-01-01T00:00:00Z", "added_after": "2026-01-02T00:00:00Z"}', "duplicate"),
])
def test_a_bad_state_file_is_named_not_guessed(tmp_path, content, words):
    path = tmp_path / "state.json"
    path.write_text(content, "utf-8")
    with pytest.raises(taxii.TAXIIError) as info:
        taxii.CollectorState.load(path, "mine")
    assert words in str(info.value) and "state.json" in str(info.value)


def test_state_round_trip_and_just_before(tmp_path):
    state = taxii.CollectorState(tmp_path / "s.json", "c", "2026-11-20T08:00:00.000001Z", {("indicator--1", "v")})
    state.save()
    again = taxii.CollectorState.load(tmp_path / "s.json", "c")
    assert (again.added_after, again.seen) == (state.added_after, state.seen)
    assert taxii.just_before("2026-11-20T08:00:00.000001Z") == "2026-11-20T08:00:00.000000Z"
    assert taxii.just_before("2026-11-20T08:00:00Z") == "2026-11-20T07:59:59.999999Z"


# --- faults: 429, 500, dropped connections, non-TAXII answers ----------------------------------------

@pytest.fixture
def fault(server):
    with FaultServer(forward=server.base_url) as f:
        yield f


def faulty(server, fault, attempts=3):
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        if len(waits) >= 2:
            fault.mode = "ok"            # the server recovers after the second retry

    conn = taxii.Connection(fault.url + "/hub/", user=server.user, password=server.password, attempts=attempts,
                            backoff=Backoff(0.5, 4.0), sleep=sleep)
    return conn, waits


@pytest.mark.parametrize("mode,status", [("error", 429), ("error", 500), ("error", 503), ("drop", None)])
def test_transient_faults_are_retried_with_the_backoff(server, fault, mode, status):
    conn, waits = faulty(server, fault)
    col = conn.collection("csirt-a")
    fault.mode, fault.status = mode, status or 500
    pages = list(taxii.pages(conn, col, limit=2))
    assert pages and waits == [0.5, 1.0]
    fault.mode, fault.status = mode, status or 500
    waits.clear()
    result = taxii.Pusher(conn, col, poll_interval=0.01).push(indicators(2, "10.4.4"))
    assert len(result.accepted) == 2 and waits == [0.5, 1.0]


def test_a_server_that_stays_down_is_unavailable_after_every_retry(server, fault):
    conn = taxii.Connection(fault.url + "/hub/", user=server.user, password=server.password, attempts=2,
                            backoff=Backoff(0.1, 1.0), sleep=lambda s: None)
    col = conn.collection("csirt-a")
    fault.mode, fault.status = "error", 500
    with pytest.raises(taxii.TAXIIUnavailable, match="after 3 attempt"):
        list(taxii.pages(conn, col))
    outcome = taxii.push_batch(taxii.Pusher(conn, col), [taxii.Outgoing(indicators(1))], [])
    assert len(outcome.pending) == 1 and "after 3 attempt" in outcome.error


def test_retry_after_is_honoured_up_to_the_maximum(server):
    class Limited(LocalHTTPServer):
        calls = 0

        def handler_class(self):
            outer = self

            class H(BaseHTTPRequestHandler):
                def log_message(self, *a):
                    pass

                def do_GET(self):
                    outer.calls += 1
                    if outer.calls == 1:
                        self.send_response(429)
                        self.send_header("Retry-After", "30")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    body = b'{"objects": []}'
                    self.send_response(200)
                    self.send_header("Content-Type", taxii.MEDIA_TYPE)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
            return H

    with Limited() as srv:
        waits = []
        conn = taxii.Connection(srv.base_url + "/", attempts=2, backoff=Backoff(1.0, 8.0), sleep=waits.append)
        col = type("C", (), {"objects_url": srv.base_url + "/objects/"})()
        assert [p.objects for p in taxii.pages(conn, col)] == [[]]
        assert waits == [8.0]          # Retry-After 30 s, capped at the backoff's maximum


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b"[1, 2]", b'{"objects": {"a": 1}}',
                                  b'{"objects": [{"type": "indicator"}]}', b'{"objects": [], "more": true}',
                                  b'{"a": 1, "a": 2}'])
def test_an_answer_that_is_not_taxii_is_refused_clearly(server, fault, body):
    conn = connect(server, fault.url + "/hub/")
    col = conn.collection("csirt-a")
    fault.forward, fault.body = None, body
    with pytest.raises(taxii.TAXIIError) as info:
        list(taxii.pages(conn, col))
    assert "TAXII objects at" in str(info.value) and not isinstance(info.value, taxii.TAXIIUnavailable)


# --- status resources: pending, refused -------------------------------------------------------------

class StatusFake(LocalHTTPServer):
    """POST objects -> a pending status; the first poll -> still pending; then complete, with the
    objects whose id contains 'refuse' as failures.  A whole envelope with 'reject-all' -> 422."""

    def __init__(self):
        super().__init__()
        self.statuses, self.polls, self.lock = {}, 0, threading.Lock()

    def handler_class(self):
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", taxii.MEDIA_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ids = [o["id"] for o in data["objects"]]
                if any("reject-all" in i for i in ids):
                    return self._send(422, {"title": "ProcessingError", "description": "bad envelope"})
                sid = str(uuid.uuid4())
                outer.statuses[sid] = ids
                self._send(202, {"id": sid, "status": "pending", "total_count": len(ids), "success_count": 0,
                                 "failure_count": 0, "pending_count": len(ids)})

            def do_GET(self):
                if "/status/" in self.path:
                    sid = self.path.rstrip("/").rsplit("/", 1)[1]
                    ids = outer.statuses[sid]
                    with outer.lock:
                        outer.polls += 1
                        polls = outer.polls
                    if polls % 2 == 1:
                        return self._send(200, {"id": sid, "status": "pending", "pending_count": len(ids)})
                    return self._send(200, {
                        "id": sid, "status": "complete",
                        "successes": [{"id": i, "version": "v"} for i in ids if "refuse" not in i],
                        "failures": [{"id": i, "version": "v", "message": "schema says no"} for i in ids
                                     if "refuse" in i]})
                return self._send(200, {"objects": []})     # the object is not there
        return H


def test_pending_statuses_are_polled_and_refusals_reported():
    with StatusFake() as fake:
        conn = taxii.Connection(fake.base_url + "/root/", attempts=0)
        col = type("C", (), {"objects_url": fake.base_url + "/root/collections/c1/objects/",
                             "url": fake.base_url + "/root/collections/c1/"})()
        sleeps = []
        pusher = taxii.Pusher(conn, col, poll_interval=0.5, sleep=sleeps.append)
        good = {"type": "indicator", "id": "indicator--ok", "modified": "v"}
        bad = {"type": "indicator", "id": "indicator--refuse-me", "modified": "v"}
        result = pusher.push([good, bad])
        assert result.accepted == {"indicator--ok"} and result.refused == {"indicator--refuse-me": "schema says no"}
        assert sleeps == [0.5, 0.5]

        items = [taxii.Outgoing([good]), taxii.Outgoing([bad]), taxii.Outgoing([{"id": "indicator--reject-all"}])]
        outcome = taxii.push_batch(pusher, items, [])
        assert [i.primary["id"] for i in outcome.done] == ["indicator--ok"]
        assert sorted(i.primary["id"] for i, _ in outcome.refused) == ["indicator--refuse-me",
                                                                      "indicator--reject-all"]
        reasons = dict((i.primary["id"], r) for i, r in outcome.refused)
        assert "schema says no" in reasons["indicator--refuse-me"]
        assert "HTTP 422" in reasons["indicator--reject-all"] and "bad envelope" in reasons["indicator--reject-all"]


def test_polling_gives_up_and_leaves_the_objects_pending():
    with StatusFake() as fake:
        conn = taxii.Connection(fake.base_url + "/root/", attempts=0)
        col = type("C", (), {"objects_url": fake.base_url + "/root/collections/c1/objects/",
                             "url": fake.base_url + "/root/collections/c1/"})()
        clock = iter(range(0, 1000, 10))
        pusher = taxii.Pusher(conn, col, poll_interval=0, poll_timeout=5, sleep=lambda s: None,
                              clock=lambda: next(clock))
        outcome = taxii.push_batch(pusher, [taxii.Outgoing([{"id": "indicator--slow", "modified": "v"}])], [])
        assert [i.primary["id"] for i in outcome.pending] == ["indicator--slow"]
        assert "pending" in outcome.error


def test_pushed_store_finds_what_a_retraction_names():
    from tests.isolation import REDIS_DB
    from intelmq_crossborder.runtime.state_store import redis_client
    redis = redis_client(db=REDIS_DB)
    prefix = f"test-taxii-store:{uuid.uuid4()}"
    store = taxii.PushedStore(redis, prefix)
    try:
        obj = indicators(1)[0]
        store.record(taxii.Outgoing([obj], tlp.Level.GREEN, event_uuid="u-1", fingerprint="f" * 64))
        assert store.held("u-1") == [("GREEN", obj)] == store.held(None, "f" * 64)
        assert store.held("u-2", "0" * 64) == []
        newer = export.revoked(obj, dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
        store.replace(newer, tlp.Level.GREEN)
        assert store.held("u-1") == [("GREEN", newer)]
    finally:
        for key in redis.scan_iter(prefix + "*"):
            redis.delete(key)


def test_demo_recipient_counts_what_it_received_by_tlp(tmp_path):
    from intelmq_crossborder.demo.taxii import TAXIIRecipient
    partner = TAXIIRecipient(tmp_path / "taxii").start()
    try:
        builder = export.BundleBuilder(export.ExportSettings("fi-hub", profile="opencti"))
        for i, level in enumerate(["CLEAR", "GREEN", "GREEN", "AMBER"]):
            builder.add({"source.ip": f"192.0.2.{i}", "sharing.tlp": level, "classification.type": "scanner"})
        conn = taxii.Connection(partner.discovery_url, user=partner.user, password=partner.password)
        taxii.Pusher(conn, conn.collection("partner-cti"), poll_interval=0.05).push(builder.bundle()["objects"])
        assert partner.received_by_tlp() == {"AMBER": 1, "CLEAR": 1, "GREEN": 2}
        assert len(partner.leaks("GREEN")) == 1 and partner.leaks("AMBER") == []
        assert "received 4 STIX object(s)" in partner.report_lines()[0]
        block = partner.runtime_block("fi-hub", 3)
        assert block["module"] == "intelmq.bots.outputs.crossborder.taxii.output"
        from intelmq_crossborder.bots.outputs.taxii.output import CrossBorderTAXIIOutputBot
        assert CrossBorderTAXIIOutputBot.check(block["parameters"]) is None
        process = partner._process
    finally:
        partner.stop()
    assert process.poll() is not None           # the server process is gone
