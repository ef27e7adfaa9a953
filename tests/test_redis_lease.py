"""RedisDatabaseLease: per-run Redis databases claimed with lock keys in database 0.

Runs against the local Redis (skipped without one) under lock keys of its own, so it never touches
the leases of a test run going on at the same time."""
import threading
import time
import uuid

import pytest
import redis

from intelmq_crossborder.runtime.instance import DB_LOCK_KEY, RESERVED_DBS, PipelineError, RedisDatabaseLease
from intelmq_crossborder.testing.polling import wait_until


@pytest.fixture
def client():
    r = redis.Redis(db=0, socket_timeout=5)
    try:
        r.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return r


@pytest.fixture
def keys(client):
    """A lock-key format of this test only; its keys are deleted afterwards."""
    fmt = f"crossborder:test-db-lock-unittest:{uuid.uuid4().hex}:{{}}"
    yield fmt
    names = list(client.scan_iter(match=fmt.format("*")))
    if names:
        client.delete(*names)


def only(*dbs):
    """An ``exclude`` that leaves exactly ``dbs`` as candidates."""
    return [n for n in range(16) if n not in dbs]


def test_default_lock_key_and_reserved_databases():
    assert DB_LOCK_KEY.format(7) == "crossborder:test-db-lock:7"
    assert {0, 2, 3, 4} <= set(RESERVED_DBS)


def test_acquire_claims_free_databases_with_expiring_lock_keys(client, keys):
    lease = RedisDatabaseLease(3, key_format=keys, ttl=60)
    dbs = lease.acquire()
    try:
        assert len(dbs) == 3 == len(set(dbs)) and not set(dbs) & set(RESERVED_DBS)
        assert all(0 < n < 16 for n in dbs)
        for n in dbs:
            assert client.get(keys.format(n)).decode() == lease.token
            assert 0 < client.pttl(keys.format(n)) <= 60_000
        assert lease.acquire() == dbs                       # idempotent
    finally:
        lease.release()
    assert not [n for n in range(16) if client.exists(keys.format(n))]
    assert lease.dbs == ()


def test_two_runs_never_share_a_database_and_a_third_is_refused(client, keys):
    first = RedisDatabaseLease(2, key_format=keys, exclude=only(5, 6, 9, 10))
    second = RedisDatabaseLease(2, key_format=keys, exclude=only(5, 6, 9, 10))
    with first as a, second as b:
        assert not set(a) & set(b) and set(a) | set(b) == {5, 6, 9, 10}
        third = RedisDatabaseLease(1, key_format=keys, exclude=only(5, 6, 9, 10))
        with pytest.raises(PipelineError, match="need 1 free Redis databases, found 0; held by other runs"):
            third.acquire()
    # released: the databases are free again
    with RedisDatabaseLease(4, key_format=keys, exclude=only(5, 6, 9, 10)) as again:
        assert again == (5, 6, 9, 10)


def test_a_partial_claim_is_given_back(client, keys):
    holder = RedisDatabaseLease(1, key_format=keys, exclude=only(5, 6))
    with holder as (held,):
        greedy = RedisDatabaseLease(2, key_format=keys, exclude=only(5, 6))
        with pytest.raises(PipelineError):
            greedy.acquire()
        free = ({5, 6} - {held}).pop()
        assert not client.exists(keys.format(free))        # not kept by the refused lease
        assert client.get(keys.format(held)).decode() == holder.token


def test_release_deletes_only_its_own_locks(client, keys):
    lease = RedisDatabaseLease(1, key_format=keys, exclude=only(11), ttl=60)
    (db,) = lease.acquire()
    client.set(keys.format(db), "another-run")              # the lock expired and another run took it
    assert lease.refresh() is False
    lease.release()
    assert client.get(keys.format(db)) == b"another-run"


def test_expired_lock_of_a_dead_run_is_claimed_again(client, keys):
    dead = RedisDatabaseLease(1, key_format=keys, exclude=only(12), ttl=0.2)
    dead.acquire()                                          # never released: the run was killed
    late = RedisDatabaseLease(1, key_format=keys, exclude=only(12))
    with pytest.raises(PipelineError):
        late.acquire()
    wait_until(lambda: not client.exists(keys.format(12)), 5, message="the dead run's lock to expire")
    assert late.acquire() == (12,)
    late.release()


def test_acquire_waits_for_another_run_to_release(client, keys):
    first = RedisDatabaseLease(1, key_format=keys, exclude=only(13))
    first.acquire()
    with pytest.raises(PipelineError):                      # without ``wait``: refused at once
        RedisDatabaseLease(1, key_format=keys, exclude=only(13)).acquire()
    timer = threading.Timer(0.3, first.release)
    timer.start()
    second = RedisDatabaseLease(1, key_format=keys, exclude=only(13))
    assert second.acquire(wait=5, interval=0.05) == (13,)
    second.release()
    timer.join()


def test_refresh_and_keepalive_hold_the_locks_past_their_ttl(client, keys):
    lease = RedisDatabaseLease(1, key_format=keys, exclude=only(14), ttl=0.3, keepalive=True)
    (db,) = lease.acquire()
    try:
        time.sleep(1.0)                                     # more than three times the ttl passes
        assert client.get(keys.format(db)).decode() == lease.token
        assert lease.refresh() is True
    finally:
        lease.release()
    assert not client.exists(keys.format(db))


def test_candidates_without_config_command(client, keys):
    class NoConfig:
        def __getattr__(self, name):
            return getattr(client, name)

        def config_get(self, *args):
            raise redis.exceptions.ResponseError("unknown command 'CONFIG'")

    lease = RedisDatabaseLease(1, key_format=keys, client=NoConfig())
    assert lease.candidates() == [n for n in range(16) if n not in RESERVED_DBS]


@pytest.mark.parametrize("count, ttl", [(0, 10), (1, 0)])
def test_nonsense_arguments_are_refused(count, ttl):
    with pytest.raises(ValueError):
        RedisDatabaseLease(count, ttl=ttl, client=object())


# --- runtime.redis_dbs: the databases of make demo / make bench ---------------------------------
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from intelmq_crossborder.runtime.redis_dbs import BENCH_ENV, DEMO_ENV, HeldDatabases, parse_databases  # noqa: E402
from tests.clirun import run as cli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value, count, expected", [("1,5,7,8", 4, (1, 5, 7, 8)), (" 11 , 12", 2, (11, 12)),
                                                    ([9], 1, (9,)), ((6, 7), 2, (6, 7))])
def test_parse_databases(value, count, expected):
    assert parse_databases(value, count, "--redis-dbs") == expected


@pytest.mark.parametrize("value, count, message", [
    ("1,5,7", 4, "must name 4 Redis databases"), ("1,1,7,8", 4, "names a database twice"),
    ("1,x,7,8", 4, "'x' is not a database number"), ("0", 1, "from 1 up"), ("-1", 1, "not a database number"),
    ("", 1, "'' is not a database number"), ("\u0661", 1, "not a database number"),     # Arabic-Indic one
    ("1 2", 1, "not a database number"), ("9" * 40, 1, "not a database number"), ([True], 1, "not a database"),
    ([1.0], 1, "from 1 up"), ("1,,2", 2, "not a database number")])
def test_parse_databases_refuses_with_the_source_named(value, count, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_databases(value, count, "XB_DEMO_REDIS_DBS")
    assert str(info.value).startswith("XB_DEMO_REDIS_DBS")


def test_held_databases_given_or_from_the_environment_are_used_as_they_are(monkeypatch):
    class NoRedis:
        def __getattr__(self, name):
            raise AssertionError("Redis asked although the databases were named")
    monkeypatch.setenv(DEMO_ENV, "6,9,10,11")
    held = HeldDatabases(4, given="1,5,7,8", env=DEMO_ENV, option="--redis-dbs", client=NoRedis())
    with held as dbs:
        assert dbs == (1, 5, 7, 8) and "from --redis-dbs, not locked" in held.describe()
    held = HeldDatabases(4, env=DEMO_ENV, client=NoRedis())
    assert held.acquire() == (6, 9, 10, 11) and held.source == DEMO_ENV
    monkeypatch.setenv(DEMO_ENV, "6,9")
    with pytest.raises(ValueError, match=f"^{DEMO_ENV} must name 4"):
        HeldDatabases(4, env=DEMO_ENV, client=NoRedis()).acquire()


def test_held_databases_lease_free_ones_and_give_them_back(client, keys):
    first = HeldDatabases(2, key_format=keys, exclude=only(5, 6, 9, 10), env="XB_UNSET_FOR_THIS_TEST")
    second = HeldDatabases(2, key_format=keys, exclude=only(5, 6, 9, 10))
    with first as a, second as b:
        assert not set(a) & set(b) and set(a) | set(b) == {5, 6, 9, 10}
        assert first.source == "lease" and "leased for this run" in first.describe()
        assert all(client.exists(keys.format(n)) for n in (5, 6, 9, 10))
        assert client.pttl(keys.format(a[0])) > 0                       # expires if the run is killed
        with pytest.raises(PipelineError, match="need 1 free Redis databases"):
            HeldDatabases(1, key_format=keys, exclude=only(5, 6, 9, 10)).acquire()
    assert not any(client.exists(keys.format(n)) for n in (5, 6, 9, 10))
    first.release()                                                     # idempotent


def test_held_databases_without_redis_name_the_way_out():
    held = HeldDatabases(4, host="127.0.0.1", port=1, env=DEMO_ENV, option="--redis-dbs")
    with pytest.raises(PipelineError, match=r"127.0.0.1:1 is not usable .*--redis-dbs or XB_DEMO_REDIS_DBS"):
        held.acquire()


def test_demo_refuses_bad_databases_before_starting_anything(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv(DEMO_ENV, raising=False)
    status, out, _ = cli(["demo", "--workdir", str(tmp_path / "w"), "--redis-dbs", "1,5,x,8"], capsys)
    assert status == 2 and "ERROR: --redis-dbs: 'x' is not a database number" in out
    monkeypatch.setenv(DEMO_ENV, "1,5")
    status, out, _ = cli(["demo", "--workdir", str(tmp_path / "w")], capsys)
    assert status == 2 and f"ERROR: {DEMO_ENV} must name 4 Redis databases" in out


def test_demo_leases_its_databases_and_releases_them(client, monkeypatch, tmp_path):
    """run_demo takes four leased databases (none of IntelMQ's defaults), gives them to the
    consortium, and releases them when the run ends, also when it fails."""
    from intelmq_crossborder.demo import consortium
    monkeypatch.delenv(DEMO_ENV, raising=False)
    seen = {}

    def fake_init(self, workdir, members=None, dbs=(), **kw):
        seen["dbs"] = tuple(dbs)
        seen["locks"] = [client.get(f"crossborder:test-db-lock:{n}") for n in dbs]
        raise ValueError("stopped here by the test")
    monkeypatch.setattr(consortium.Consortium, "__init__", fake_init)
    assert consortium.run_demo(tmp_path / "w") == 2
    assert len(seen["dbs"]) == 4 and not set(seen["dbs"]) & set(RESERVED_DBS)
    assert all(seen["locks"])                                   # held while the consortium runs
    for n in seen["dbs"]:                                       # and given back afterwards, unless
        token = client.get(f"crossborder:test-db-lock:{n}")     # another run took it in between
        assert token not in seen["locks"]


def test_benchmarks_lease_a_database_unless_told(client, monkeypatch, tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    calls = []

    def fake_run(script, quick, redis_db, show_db=True):
        calls.append((script.name, redis_db, show_db, client.get(f"crossborder:test-db-lock:{redis_db}")))
        return {"script": script.name, "rc": 0, "rows": [{}], "seconds": 0, "command": "", "stdout": "",
                "stderr": ""}
    monkeypatch.setattr(run_all, "run", fake_run)
    monkeypatch.setattr(run_all, "write_doc", lambda results, quick: None)
    monkeypatch.delenv(BENCH_ENV, raising=False)
    assert run_all.main(["--only", "bench_router.py", "--only", "bench_consortium.py"]) == 0
    (a, db, show, lock), (b, db2, _, _) = calls
    assert db == db2 and int(db) not in RESERVED_DBS and lock is not None and show is False
    assert client.get(f"crossborder:test-db-lock:{db}") != lock        # released at the end
    calls.clear()
    monkeypatch.setenv(BENCH_ENV, "12")
    assert run_all.main(["--only", "bench_router.py"]) == 0
    assert calls[0][1:3] == ("12", True)
    monkeypatch.setenv(BENCH_ENV, "three")
    assert run_all.main(["--only", "bench_router.py"]) == 2


@pytest.mark.parametrize("script", ["bench_consortium.py", "bench_router.py"])
def test_benchmark_scripts_refuse_a_bad_database_setting(script, monkeypatch, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(script[:-3], REPO / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv(BENCH_ENV, "3,4")
    assert module.main([]) == 2
    assert f"{BENCH_ENV} must name 1 Redis database" in capsys.readouterr().err
    assert os.environ[BENCH_ENV] == "3,4"
