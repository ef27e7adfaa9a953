"""Run a real IntelMQ pipeline from a runtime config under a scratch root.

Used by ``make demo``, the integration tests and the benchmarks.  Each
:class:`IntelMQInstance` has its own ``INTELMQ_ROOT_DIR`` (etc/, var/log, var/run,
var/lib) and its own Redis database, so instances never touch ``/opt/intelmq``
or each other.  Bots are real processes started and stopped by ``intelmqctl``.
:class:`RedisDatabaseLease` claims free Redis databases for one run (a test suite), so two
runs on one Redis server never share a database.

Runtime configs may use ``${INTELMQ_ROOT_DIR}`` and ``${PIPELINES_DIR}`` (the ready
pipelines shipped in the package, :data:`PIPELINES_DIR`) in string values; they are
expanded when the instance is set up (``envsubst`` does the same for a hand-run
deployment).
"""
from __future__ import annotations

import fcntl
import json
import os
import pwd
import shutil
import string
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Optional, Tuple

import yaml

from intelmq_crossborder import harmonization

from intelmq_crossborder.core import inputs
from intelmq_crossborder.runtime.state_store import redis_client
from intelmq_crossborder.core.errors import CrossBorderError
#: The ready pipelines, agreement templates and samples: package data, so that they are
#: there in a wheel install as in a checkout.
PIPELINES_DIR = Path(__file__).resolve().parent.parent / "pipelines"


#: The one switch between IntelMQ's brokers: these ``global`` settings are what
#: ``broker="redis"`` / ``broker="amqp"`` put into runtime.yaml (AMQP credentials
#: from INTELMQ_AMQP_USERNAME / INTELMQ_AMQP_PASSWORD, default guest/guest).
BROKERS = ("redis", "amqp")


def _read_dump_locked(path: Path, wait: float = 5.0) -> bytes:
    """The bytes of a dump file that a running bot may be rewriting.

    IntelMQ rewrites ``<bot>.dump`` in place under an exclusive ``flock``; a shared lock waits for that
    write to finish. A file that is still empty was created by a writer that has not taken the lock yet,
    so it is read again until ``wait`` seconds have passed."""
    deadline = time.monotonic() + wait
    while True:
        with open(path, "rb") as fp:
            fcntl.flock(fp, fcntl.LOCK_SH)
            try:
                data = fp.read(inputs.MAX_FILE_BYTES + 1)
            finally:
                fcntl.flock(fp, fcntl.LOCK_UN)
        if len(data) > inputs.MAX_FILE_BYTES:
            raise PipelineError(f"{path}: dump file larger than {inputs.MAX_FILE_BYTES} bytes")
        if data.strip() or time.monotonic() >= deadline:
            return data
        time.sleep(0.05)


class PipelineError(CrossBorderError, RuntimeError):
    """The pipeline did not start, drain or stop as expected."""


def _expand(value, mapping: dict):
    if isinstance(value, str):
        return string.Template(value).safe_substitute(mapping)
    if isinstance(value, list):
        return [_expand(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, mapping) for k, v in value.items()}
    return value


def load_runtime(path: Path, root: Path, extra: Optional[dict] = None) -> dict:
    """Read a runtime.yaml and expand ``${INTELMQ_ROOT_DIR}``, ``${PIPELINES_DIR}`` and ``extra``.

    Raises :class:`intelmq_crossborder.core.inputs.InputError` (naming the file, line and field)
    for a file that cannot be read as YAML or is not a mapping of bot id to bot mapping."""
    mapping = {"INTELMQ_ROOT_DIR": str(root), "PIPELINES_DIR": str(PIPELINES_DIR), **(extra or {})}
    try:
        runtime = inputs.read_yaml(path, what="runtime config")
    except inputs.InputError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:    # a YAML constructor refused a value
        raise inputs.InputError(path, f"not valid YAML: {exc}") from None
    if not isinstance(runtime, dict):
        raise inputs.InputError(path, "the top level must be a mapping of bot ids")
    for bot_id, conf in runtime.items():
        if not isinstance(bot_id, str) or not isinstance(conf, dict):
            raise inputs.InputError(path, "must be a mapping (of parameters, or with module and parameters)",
                                    field=str(bot_id))
        if not isinstance(conf.get("parameters", {}) if bot_id != "global" else {}, dict):
            raise inputs.InputError(path, "must be a mapping", field=f"{bot_id}.parameters")
    return _expand(runtime, mapping)


def prefix_queues(runtime: dict, prefix: str) -> dict:
    """Prefix every queue name of a runtime config (each bot's ``source_queue`` and all
    ``destination_queues``), in place.  Several IntelMQ instances can then share one
    RabbitMQ virtual host (AMQP queue names are global, unlike Redis databases)."""
    for bot_id, conf in runtime.items():
        if bot_id == "global" or not isinstance(conf, dict):
            continue
        params = conf.setdefault("parameters", {})
        if conf.get("group") != "Collector":
            params["source_queue"] = prefix + params.get("source_queue", f"{bot_id}-queue")
        dest = params.get("destination_queues")
        if isinstance(dest, dict):
            params["destination_queues"] = {
                path: ([prefix + q for q in queues] if isinstance(queues, list) else prefix + queues)
                for path, queues in dest.items()}
        elif isinstance(dest, list):
            params["destination_queues"] = [prefix + q for q in dest]
    return runtime


#: The lock of Redis database ``n`` (in database 0): the owner token of the run that holds it.
DB_LOCK_KEY = "crossborder:test-db-lock:{}"
#: Never leased: 0 holds the locks; 2, 3 and 4 are IntelMQ's defaults (pipeline, statistics and
#: the cache of its BotTestCase), which a local IntelMQ may be using.
RESERVED_DBS = (0, 2, 3, 4)

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_REFRESH = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
            "return 0")


class RedisDatabaseLease:
    """``count`` Redis databases held for one run, so concurrent runs on one server never share one.

    A database ``n`` is held by the key ``crossborder:test-db-lock:<n>`` in database 0, set with
    SET NX and an expiry (``ttl`` seconds) to a token naming this host, process and lease.  A run
    that dies without releasing loses its databases when the keys expire; a live one keeps them
    with :meth:`refresh` (``keepalive=True`` refreshes from a daemon thread every ``ttl``/3 s).
    Release deletes only keys that still hold this lease's token.  The databases are not flushed:
    whoever uses one clears the keys it uses, as before.

    ``exclude``: databases never leased (default :data:`RESERVED_DBS`); the candidates are the
    others below the server's ``databases`` setting (16 when CONFIG is not allowed).
    """

    def __init__(self, count: int = 1, *, host: str = "127.0.0.1", port: int = 6379,
                 password: Optional[str] = None, exclude: Iterable[int] = RESERVED_DBS, ttl: float = 600,
                 key_format: str = DB_LOCK_KEY, keepalive: bool = False, client=None):
        if count < 1 or ttl <= 0:
            raise ValueError("count must be >= 1 and ttl > 0")
        self.count = count
        self.exclude = frozenset(exclude) | {0}
        self.ttl_ms = int(ttl * 1000)
        self.key_format = key_format
        self.keepalive = keepalive
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self.dbs: Tuple[int, ...] = ()
        if client is None:
            client = redis_client(host, port, 0, password, socket_timeout=10)
        self._redis = client
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def candidates(self) -> list:
        import redis
        try:
            total = int(self._redis.config_get("databases").get("databases", 16))
        except redis.exceptions.ResponseError:    # CONFIG renamed or refused (managed Redis): the default
            total = 16
        return [n for n in range(total) if n not in self.exclude]

    def _key(self, db: int) -> str:
        return self.key_format.format(db)

    def acquire(self, wait: float = 0, interval: float = 0.5) -> Tuple[int, ...]:
        """Claim ``count`` free databases (waiting up to ``wait`` seconds for other runs to release
        some) and return their numbers; :class:`PipelineError` naming the holders if there are not enough."""
        if self.dbs:
            return self.dbs
        candidates = self.candidates()
        deadline = time.monotonic() + wait
        held: list = []
        while True:
            for db in candidates:
                if len(held) == self.count:
                    break
                if db not in held and self._redis.set(self._key(db), self.token, nx=True, px=self.ttl_ms):
                    held.append(db)
            if len(held) == self.count:
                break
            if time.monotonic() >= deadline:
                self.dbs = tuple(held)
                holders = {db: self._redis.get(self._key(db)) for db in candidates if db not in held}
                self.release()
                raise PipelineError(f"need {self.count} free Redis databases, found {len(held)}; "
                                    f"held by other runs: {holders}")
            time.sleep(interval)
        self.dbs = tuple(sorted(held))
        if self.keepalive:
            self._stop.clear()
            self._thread = threading.Thread(target=self._keep, name="redis-db-lease", daemon=True)
            self._thread.start()
        return self.dbs

    def refresh(self) -> bool:
        """Extend the expiry of every held lock; False if one is no longer this lease's (expired
        and taken by another run)."""
        ok = True
        for db in self.dbs:
            ok = bool(self._redis.eval(_REFRESH, 1, self._key(db), self.token, self.ttl_ms)) and ok
        return ok

    def _keep(self) -> None:
        import redis
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                self.refresh()
            except redis.exceptions.RedisError:    # Redis briefly away: the next round tries again
                pass

    def release(self) -> None:
        """Give the databases back (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for db in self.dbs:
            self._redis.eval(_RELEASE, 1, self._key(db), self.token)
        self.dbs = ()

    def __enter__(self) -> Tuple[int, ...]:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def process_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def intelmq_ids() -> Optional[tuple]:
    """uid/gid of the ``intelmq`` user when we are root (bots drop privileges to it)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("intelmq")
    except KeyError:
        raise PipelineError("running as root but there is no 'intelmq' user; "
                            "run scripts/ensure-env.sh (make test / make demo do)") from None
    return pw.pw_uid, pw.pw_gid


def chown_for_intelmq(path: Path) -> None:
    """Give a scratch tree to the ``intelmq`` user when running as root (no-op otherwise)."""
    ids = intelmq_ids()
    if ids is None:
        return
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, *ids)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), *ids)


def upgrade_state() -> dict:
    """IntelMQ's state file (``var/lib/state.json``) with every config upgrade marked done, as
    intelmqsetup writes it for a fresh install: the runtime configs here are in the current
    (3.x) format.  Without it ``intelmqctl check`` reports an error."""
    from intelmq import __version__ as intelmq_version
    from intelmq.lib import upgrades

    return {"version_history": [intelmq_version],
            "upgrades": {name: True for name in upgrades.__all__}, "results": []}


class IntelMQInstance:
    """One IntelMQ installation: a root directory, a runtime config, a Redis database."""

    def __init__(self, root: Path, runtime: dict, *, redis_db: int = 2, redis_host: str = "127.0.0.1",
                 redis_port: int = 6379, harmonization_conf: Optional[dict] = None,
                 broker: str = "redis", amqp_host: str = "127.0.0.1", amqp_port: int = 5672):
        self.root = Path(root).resolve()
        self.runtime = runtime
        self.redis_db = redis_db
        self.redis_host = redis_host
        self.redis_port = redis_port
        self.broker = broker
        self.amqp_host = amqp_host
        self.amqp_port = amqp_port
        self.harmonization_conf = harmonization_conf

    # --- set-up ---------------------------------------------------------------
    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def log_dir(self) -> Path:
        return self.root / "var" / "log"

    def bot_ids(self) -> list:
        return [k for k in self.runtime if k != "global"]

    def setup(self) -> "IntelMQInstance":
        for sub in ("etc", "var/log", "var/run", "var/lib/bots"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        runtime = json.loads(json.dumps(self.runtime))
        glob = runtime.setdefault("global", {})
        glob.setdefault("logging_path", str(self.log_dir))
        if self.broker not in BROKERS:
            raise PipelineError(f"unknown broker {self.broker!r}; use one of {BROKERS}")
        for side in ("source", "destination"):
            glob.setdefault(f"{side}_pipeline_broker", self.broker)
            if self.broker == "redis":
                glob.setdefault(f"{side}_pipeline_host", self.redis_host)
                glob.setdefault(f"{side}_pipeline_port", self.redis_port)
                glob.setdefault(f"{side}_pipeline_db", self.redis_db)
            else:
                glob.setdefault(f"{side}_pipeline_host", self.amqp_host)
                glob.setdefault(f"{side}_pipeline_port", self.amqp_port)
                glob.setdefault(f"{side}_pipeline_username", os.environ.get("INTELMQ_AMQP_USERNAME", "guest"))
                glob.setdefault(f"{side}_pipeline_password", os.environ.get("INTELMQ_AMQP_PASSWORD", "guest"))
        glob.setdefault("statistics_host", self.redis_host)
        glob.setdefault("statistics_port", self.redis_port)
        glob.setdefault("statistics_database", self.redis_db)
        self.runtime = runtime
        with open(self.etc / "runtime.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(runtime, fh, sort_keys=False)
        self._write_upgrade_state()
        harm = self.harmonization_conf or harmonization.merged_harmonization()
        (self.etc / "harmonization.conf").write_text(json.dumps(harm, indent=4, sort_keys=True), "utf-8")
        chown_for_intelmq(self.root)
        return self

    def _write_upgrade_state(self) -> None:
        (self.root / "var" / "lib" / "state.json").write_text(json.dumps(upgrade_state(), indent=4), "utf-8")

    # --- processes ----------------------------------------------------------------
    def env(self) -> dict:
        env = dict(os.environ)
        env["INTELMQ_ROOT_DIR"] = str(self.root)
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env.pop("INTELMQ_PATHS_NO_OPT", None)
        return env

    def ctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        exe = shutil.which("intelmqctl", path=str(Path(sys.executable).parent)) or "intelmqctl"
        proc = subprocess.run([exe, "--type", "json", *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout, cwd=str(self.root))
        if check and proc.returncode != 0:
            raise PipelineError(f"intelmqctl {' '.join(args)} exited {proc.returncode}: "
                                f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def start(self, bot_ids: Optional[Iterable[str]] = None, check: bool = True) -> None:
        """Start bots. ``check=False`` for bots that may legitimately exit before intelmqctl
        looks (scheduled bots, a bot that stops on a fault): intelmqctl then reports "stopped"."""
        for bot_id in (bot_ids or self.bot_ids()):
            self.ctl("start", bot_id, check=check)

    def pid(self, bot_id: str) -> Optional[int]:
        """The process id intelmqctl recorded for a bot, or None."""
        try:
            return int((self.root / "var" / "run" / f"{bot_id}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, bot_ids: Optional[Iterable[str]] = None, wait: float = 120) -> None:
        """Stop bots and wait until their processes have exited.

        ``intelmqctl stop`` sends SIGTERM and waits only about 2 s; a bot that seals
        or flushes on shutdown may take longer, and starting it again before it has
        exited would find it "running" and start nothing.
        """
        ids = list(bot_ids or self.bot_ids())
        pids = {bot_id: self.pid(bot_id) for bot_id in ids}
        for bot_id in ids:
            self.ctl("stop", bot_id, check=False)
        deadline = time.monotonic() + wait
        while True:
            alive = [b for b, p in pids.items() if p and process_alive(p)]
            if not alive:
                return
            if time.monotonic() > deadline:
                raise PipelineError(f"bots {alive} did not exit within {wait}s after intelmqctl stop; "
                                    f"logs in {self.log_dir}")
            time.sleep(0.1)

    def status(self) -> dict:
        try:
            return inputs.loads_json(self.ctl("status", check=False).stdout or "{}", "intelmqctl status")
        except inputs.InputError as exc:
            raise PipelineError(str(exc)) from None

    # --- queues -------------------------------------------------------------------
    def redis(self):
        return redis_client(self.redis_host, self.redis_port, self.redis_db)

    def queues(self) -> set:
        names = set()
        for bot_id, conf in self.runtime.items():
            if bot_id == "global":
                continue
            params = conf.get("parameters", {})
            if conf.get("group") != "Collector":
                src = params.get("source_queue", f"{bot_id}-queue")
                names.update({src, f"{src}-internal"})
            dest = params.get("destination_queues", {})
            for value in (dest.values() if isinstance(dest, dict) else [dest]):
                names.update([value] if isinstance(value, str) else value)
        return names

    def _amqp_channel(self):
        import pika
        glob = self.runtime.get("global", {})
        params = pika.ConnectionParameters(
            host=self.amqp_host, port=self.amqp_port,
            credentials=pika.PlainCredentials(glob.get("source_pipeline_username", "guest"),
                                              glob.get("source_pipeline_password", "guest")))
        return pika.BlockingConnection(params)

    def _amqp_queue_lengths(self) -> dict:
        import pika.exceptions
        names = sorted(q for q in self.queues() if not q.endswith("-internal"))  # AMQP has none
        out = {}
        conn = self._amqp_channel()
        try:
            channel = conn.channel()
            for name in names:
                try:
                    out[name] = channel.queue_declare(name, passive=True, durable=True).method.message_count
                except pika.exceptions.ChannelClosedByBroker:  # 404: not declared yet
                    out[name] = 0
                    channel = conn.channel()
        finally:
            conn.close()
        return out

    def queue_lengths(self) -> dict:
        if self.broker == "amqp":
            return self._amqp_queue_lengths()
        r = self.redis()
        pipe = r.pipeline()
        names = sorted(self.queues())
        for name in names:
            pipe.llen(name)
        return dict(zip(names, pipe.execute()))

    def clear_queues(self) -> None:
        if self.broker == "amqp":
            conn = self._amqp_channel()
            try:
                channel = conn.channel()
                for name in self.queues():
                    if not name.endswith("-internal"):
                        channel.queue_delete(name)
            finally:
                conn.close()
            return
        names = self.queues()
        if names:
            self.redis().delete(*names)

    def wait_until_drained(self, timeout: float = 60, settle: float = 1.5,
                           done: Optional[Callable[[], bool]] = None) -> None:
        """Wait until every queue is empty (and ``done()`` holds) for ``settle`` seconds."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            lengths = self.queue_lengths()
            if not any(lengths.values()) and (done is None or done()):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return
            else:
                quiet_since = None
            time.sleep(0.2)
        raise PipelineError(f"pipeline did not drain within {timeout}s: queues {self.queue_lengths()}; "
                            f"logs in {self.log_dir}")

    def dumps(self) -> dict:
        """bot id -> list of dumped entries (IntelMQ's ``<bot>.dump`` files).

        A dump file that is not a JSON object raises :class:`PipelineError` naming it."""
        out = {}
        for path in self.log_dir.glob("*.dump"):
            try:
                dump = inputs.loads_json(_read_dump_locked(path), path)
            except inputs.InputError as exc:
                raise PipelineError(str(exc)) from None
            if not isinstance(dump, dict):
                raise PipelineError(f"{path}: a dump file must be a JSON object of entries")
            out[path.stem] = list(dump.values())
        return out
