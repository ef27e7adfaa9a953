"""Where a hub's sharing router runs, for ``intelmq-crossborder retract`` and ``retraction status``.

:func:`find_router` reads a runtime.yaml (the one IntelMQ reads by default) and finds the
cross-border sharing router in it: its bot id, its source queue, its ``hub_id``, its holdings
index (the ``holdings_db`` parameter, or the default beside its audit trail) and the Redis
pipeline it reads.  :func:`inject` puts one message in that queue, as IntelMQ's Redis pipeline
does (``LPUSH`` of the serialised message), so the router handles a retraction exactly like one
that came from a bot before it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.core.inputs import kind_of
from intelmq_crossborder.policy.retraction import Retraction, RetractionError
from intelmq_crossborder.runtime.instance import load_runtime
from intelmq_crossborder.runtime.state_store import redis_client

HUB_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

__all__ = ["RouterLocation", "RouterNotFound", "find_router", "inject", "ROUTER_MODULES", "received_retraction"]

#: Module names (entry points) of the cross-border sharing router.
ROUTER_MODULES = ("intelmq.bots.experts.crossborder.sharing_router.expert",
                  "intelmq_crossborder.bots.experts.sharing_router.expert")


class RouterNotFound(CrossBorderError):
    """The runtime config has no (or more than one) sharing router, or it cannot be used."""


@dataclass(frozen=True)
class RouterLocation:
    """One sharing router of a runtime config."""

    runtime: Path
    bot_id: str
    queue: str
    hub_id: Optional[str]
    holdings: Path
    redis_host: str
    redis_port: int
    redis_db: int
    redis_password: Optional[str]
    broker: str
    #: where a retraction is put: the router's queue, or the early-warning expert's when the router
    #: is behind it (its warnings raised on the retracted event are then corrected, docs/retraction.md)
    entry_queue: str = ""


def _state_dir(runtime_path: Path) -> Path:
    """IntelMQ's VAR_STATE_PATH of the installation ``runtime_path`` belongs to."""
    import intelmq
    if runtime_path.resolve() == Path(intelmq.RUNTIME_CONF_FILE).resolve():
        return Path(intelmq.VAR_STATE_PATH)
    return runtime_path.resolve().parent.parent / "var" / "lib" / "bots"


def find_router(runtime_path: Path, bot_id: Optional[str] = None) -> RouterLocation:
    """The sharing router of ``runtime_path`` (``bot_id`` picks one when there are several).
    Raises :class:`intelmq_crossborder.core.inputs.InputError` for a runtime config that cannot
    be read, :class:`RouterNotFound` when there is no such router."""
    runtime_path = Path(runtime_path)
    root = runtime_path.resolve().parent.parent
    runtime = load_runtime(runtime_path, root)
    glob: Mapping[str, Any] = runtime.get("global", {}) if isinstance(runtime.get("global"), dict) else {}
    routers = [b for b, conf in runtime.items() if b != "global" and conf.get("module") in ROUTER_MODULES]
    if bot_id is not None:
        if bot_id not in runtime or bot_id == "global":
            raise RouterNotFound(f"{runtime_path}: no bot {bot_id!r}")
        if bot_id not in routers:
            raise RouterNotFound(f"{runtime_path}: bot {bot_id!r} is not the cross-border sharing router")
    elif not routers:
        raise RouterNotFound(f"{runtime_path}: no cross-border sharing router (module "
                             f"{ROUTER_MODULES[0]}); retractions are routed by it")
    elif len(routers) > 1:
        raise RouterNotFound(f"{runtime_path}: several sharing routers ({', '.join(routers)}): name one with --router")
    else:
        bot_id = routers[0]
    params = runtime[bot_id].get("parameters", {}) or {}

    def param(name: str, default=None, kind=str):
        value = params.get(name, glob.get(name, default))
        if value is None or value == "":
            return default
        if isinstance(value, bool) or not isinstance(value, kind):
            raise RouterNotFound(f"{runtime_path}: {bot_id}: parameter {name} must be "
                                 f"{'a string' if kind is str else 'an integer'}, not {kind_of(value)}")
        return value

    audit_log = param("audit_log")
    state = Path(os.path.dirname(audit_log)) if audit_log else _state_dir(runtime_path)
    holdings = Path(param("holdings_db") or state / f"{bot_id}-holdings.sqlite")
    hub_id = param("hub_id")
    port, db = param("source_pipeline_port", 6379, int), param("source_pipeline_db", 2, int)
    if hub_id is not None and not HUB_ID.fullmatch(hub_id):
        raise RouterNotFound(f"{runtime_path}: {bot_id}: parameter hub_id {hub_id[:80]!r} is not a hub id")
    queue = param("source_queue", f"{bot_id}-queue")
    return RouterLocation(runtime_path, bot_id, queue, hub_id, holdings,
                          param("source_pipeline_host", "127.0.0.1"), port, db,
                          param("source_pipeline_password"), param("source_pipeline_broker", "redis").lower(),
                          _entry_queue(runtime, queue))


#: Experts that pass a retraction on unchanged to their default path (the early warning after
#: correcting its warnings); a retraction for the router enters before them.
EARLY_WARNING_MODULE = "intelmq.bots.experts.crossborder.early_warning.expert"
PASS_ON_MODULES = (EARLY_WARNING_MODULE, "intelmq.bots.experts.crossborder.analytics.expert")


def _entry_queue(runtime: Mapping[str, Any], queue: str) -> str:
    """The source queue of the early-warning expert whose default path leads to ``queue`` (through
    experts that pass retractions on), else ``queue`` itself."""
    def feeding(target: str) -> Optional[tuple]:
        for bot, conf in runtime.items():
            if bot == "global" or not isinstance(conf, dict) or conf.get("module") not in PASS_ON_MODULES:
                continue
            params = conf.get("parameters") if isinstance(conf.get("parameters"), dict) else {}
            paths = params.get("destination_queues")
            default = paths.get("_default") if isinstance(paths, dict) else paths
            if isinstance(default, list) and target in default:
                source = params.get("source_queue") or f"{bot}-queue"
                return (conf["module"], source) if isinstance(source, str) else None
        return None

    current, entry, seen = queue, queue, {queue}
    while True:
        upstream = feeding(current)
        if upstream is None or upstream[1] in seen:
            return entry
        current = upstream[1]
        seen.add(current)
        if upstream[0] == EARLY_WARNING_MODULE:
            entry = current


def inject(where: RouterLocation, event: Mapping[str, Any]) -> None:
    """Put ``event`` (flat fields) in the router's queue as IntelMQ's Redis pipeline would."""
    if where.broker != "redis":
        raise RouterNotFound(f"{where.runtime}: the router reads a {where.broker} pipeline; only Redis is supported "
                             "for injecting a retraction (use intelmqctl run ... process -m)")
    import redis
    message = json.dumps({**{k: v for k, v in event.items() if k != "__type"}, "__type": "Event"})
    try:
        client = redis_client(where.redis_host, where.redis_port, where.redis_db, where.redis_password)
        client.lpush(where.entry_queue or where.queue, message.encode("utf-8"))
    except redis.RedisError as exc:
        raise RouterNotFound(f"cannot put the retraction in {where.entry_queue or where.queue} on Redis {where.redis_host}:"
                             f"{where.redis_port}/{where.redis_db}: {exc}") from None


def received_retraction(flat: Mapping[str, Any], consequence: str = "the retraction is not applied") -> Retraction:
    """The retraction a bot received (flat fields), or IntelMQ's ``InvalidValue`` naming the field
    (the bot dumps the message); ``consequence`` ends the reason: what did not happen."""
    from intelmq.lib.exceptions import InvalidValue
    try:
        return Retraction.from_event({k: v for k, v in flat.items() if k != "__type"})
    except RetractionError as exc:
        name = exc.field or "retraction.id"
        value = flat.get(name)
        raise InvalidValue(name, value[:200] if isinstance(value, str) else value,
                           reason=f"{exc.reason}; {consequence}") from None
