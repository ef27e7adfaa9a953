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
