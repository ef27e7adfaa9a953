"""Index templates and retention policies of the data lake: ILM on Elasticsearch, ISM on OpenSearch.

Each retention value (``sharing.retention_days``) gets a delete policy ``<prefix>-retention-<days>d``
and a composable index template for ``<prefix>-r<days>d-*`` that attaches it; events without a
retention period go to ``<prefix>-rkeep-*`` with a template and no policy.  :class:`Lifecycle` puts
them through the official client, once per retention value and process.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

from intelmq_crossborder.core.errors import CrossBorderError
from intelmq_crossborder.datalake.elastic import retention_label

__all__ = ["policy_name", "template_name", "index_template", "ilm_policy", "ism_policy", "Lifecycle",
           "LifecycleRefused"]


class LifecycleRefused(CrossBorderError):
    """The lake answered a template or policy request with an error; names the request."""

    def __init__(self, request: str, status: int, message: str):
        super().__init__(f"{request} ({status}: {message})")
        self.request, self.status = request, status


def policy_name(prefix: str, days: int) -> str:
    return f"{prefix}-retention-{int(days)}d"


def template_name(prefix: str, days: Optional[int]) -> str:
    return f"{prefix}-{retention_label(days)}"


def index_template(prefix: str, days: Optional[int], mapping: dict, flavour: str,
                   shards: int = 1, replicas: int = 1) -> dict:
    """The composable index template (``PUT _index_template/<name>``) for one retention value."""
    settings: dict = {"number_of_shards": shards, "number_of_replicas": replicas}
    if days and flavour != "opensearch2":
        settings["index.lifecycle.name"] = policy_name(prefix, days)
    return {
        "index_patterns": [f"{prefix}-{retention_label(days)}-*", f"{prefix}-{retention_label(days)}"],
        "priority": 200,
        "template": {"settings": settings, "mappings": mapping},
        "_meta": {"managed_by": "intelmq-crossborder", "retention_days": days or None},
    }


def ilm_policy(days: int) -> dict:
    """Elasticsearch ILM policy: delete ``days`` days after the index was created."""
    return {"policy": {
        "_meta": {"managed_by": "intelmq-crossborder", "retention_days": days},
        "phases": {
            "hot": {"min_age": "0ms", "actions": {}},
            "delete": {"min_age": f"{int(days)}d", "actions": {"delete": {}}},
        }}}


def ism_policy(prefix: str, days: int) -> dict:
    """OpenSearch ISM policy with the same meaning; attached to new indices by ``ism_template``."""
    return {"policy": {
        "description": f"intelmq-crossborder: delete {int(days)} days after creation",
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{int(days)}d"}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [f"{prefix}-{retention_label(days)}-*"], "priority": 100}],
    }}


class Lifecycle:
    """Puts the policy and template of each retention value the first time a batch needs it.

    ``manage``: False where an administrator manages templates and policies (nothing is put).
    An ISM policy that exists already (409) is left as it is: ISM updates need ``if_seq_no``.
    """

    def __init__(self, prefix: str, mapping: dict, flavour: str, *, shards: int = 1, replicas: int = 1,
                 default_retention_days: Optional[int] = None, manage: bool = True,
                 logger: Optional[logging.Logger] = None):
        self.prefix, self.mapping, self.flavour = prefix, mapping, flavour
        self.shards, self.replicas = shards, replicas
        self.default_retention_days, self.manage = default_retention_days, manage
        self.logger = logger or logging.getLogger(__name__)
        self.done: set = set()

    def retention_values(self, sources: Iterable[dict]) -> list:
        """The retention values (0: keep) of documents' ``_source`` bodies, sorted."""
        return sorted({s.get("sharing", {}).get("retention_days", self.default_retention_days) or 0
                       for s in sources})

    def ensure(self, client, sources: Iterable[dict]) -> None:
        """Put what the documents (their ``_source``) need and was not put yet by this process."""
        if not self.manage:
            return
        for days in self.retention_values(sources):
            if days not in self.done:
                self._put(client, days)
                self.done.add(days)

    def _put(self, client, days: int) -> None:
        from elasticsearch import ApiError, ConflictError

        request = ""
        try:
            if days:
                name = policy_name(self.prefix, days)
                if self.flavour == "opensearch2":
                    request = f"PUT _plugins/_ism/policies/{name}"
                    try:
                        client.perform_request(
                            "PUT", f"/_plugins/_ism/policies/{name}",
                            headers={"accept": "application/json", "content-type": "application/json"},
                            body=ism_policy(self.prefix, days))
                    except ConflictError:
                        pass  # exists already; never overwritten here
                else:
                    request = f"PUT _ilm/policy/{name}"
                    client.ilm.put_lifecycle(name=name, policy=ilm_policy(days)["policy"])
            tpl = index_template(self.prefix, days or None, self.mapping, self.flavour, self.shards, self.replicas)
            name = template_name(self.prefix, days or None)
            request = f"PUT _index_template/{name}"
            client.indices.put_index_template(name=name, index_patterns=tpl["index_patterns"],
                                              priority=tpl["priority"], template=tpl["template"], meta=tpl["_meta"])
        except ApiError as exc:
            raise LifecycleRefused(request, exc.status_code, exc.message) from None
        self.logger.info("Index template %s is in place.", name)
