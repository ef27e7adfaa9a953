"""Cross-border redaction expert: remove fields or replace them with keyed pseudonyms."""
from __future__ import annotations

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.secrets import secret_bytes
from intelmq_crossborder.policy.agreements import AgreementError, agreement_from_dict
from intelmq_crossborder.policy.redact import FieldSelector, label_fields_named, redact
from intelmq_crossborder.policy.retraction import is_retraction
from intelmq_crossborder.core.parameters import as_list, optional
from intelmq_crossborder.runtime.retraction import received_retraction

DEFAULT_KEY_ENV = "CROSSBORDER_HMAC_KEY"


class CrossBorderRedactionExpertBot(ExpertBot):
    """Remove remove_fields from events and replace pseudonymise_fields with a keyed pseudonym (HMAC-SHA256, key from hmac_password or the environment variable hmac_key_env) that fits the field type, never lowering the event's TLP (details in docs/bots/routing.md)."""

    remove_fields: list = []
    pseudonymise_fields: list = []
    hmac_password: str = None
    hmac_key_env: str = DEFAULT_KEY_ENV
    drop_raw: bool = True

    _key = None

    def init(self):
        try:
            remove = as_list(self.remove_fields)
            pseudo = as_list(self.pseudonymise_fields)
        except ValueError as exc:
            raise ConfigurationError("redaction", f"remove_fields and pseudonymise_fields: {exc}") from None
        problem = self._check_fields(remove, pseudo)
        if problem:
            raise ConfigurationError("redaction", problem)
        self._remove = FieldSelector(remove)
        self._pseudo = FieldSelector(pseudo)
        key_env = optional(self.hmac_key_env, DEFAULT_KEY_ENV)
        try:
            self._key = secret_bytes(self.hmac_password, key_env)
        except ValueError as exc:
            raise ConfigurationError("redaction", f"hmac_password: {exc}") from None
        self._drop_raw = bool(optional(self.drop_raw, True))
        if pseudo and not self._key:
            raise ConfigurationError("redaction", "pseudonymise_fields is set but there is no key: set "
                                                  f"hmac_password or the environment variable {key_env}")
        self.logger.info("Removing %s; pseudonymising %s.", ", ".join(remove) or "nothing",
                         ", ".join(pseudo) or "nothing")

    @staticmethod
    def _check_fields(remove: list, pseudo: list):
        for name, fields in (("remove_fields", remove), ("pseudonymise_fields", pseudo)):
            named = label_fields_named(fields)
            if named:
                return (f"parameter {name}: {named[0]} carries the event's TLP label or source flag; "
                        "removing or pseudonymising it could lower the label")
        try:
            agreement_from_dict({"recipient": "redaction-expert", "name": "parameters", "kind": "csirt",
                                 "country": "EU", "relation": "same-organisation", "max_tlp": "CLEAR",
                                 "remove_fields": remove, "pseudonymise_fields": pseudo,
                                 "disclose_source": True}, source="parameters")
        except AgreementError as exc:
            return str(exc).replace("parameters, field ", "parameter ")
        return None

    def process(self):
        message = self.receive_message()
        if is_retraction(message):
            self._pass_retraction(message)
            return
        try:
            out, removed, pseudonymised = redact(dict(message), remove=self._remove, pseudonymise=self._pseudo,
                                                 key=self._key, drop_raw=self._drop_raw)
        except tlp.LabelError as exc:
            value = exc.value if exc.value is None or isinstance(exc.value, str) else repr(exc.value)
            raise InvalidValue(exc.field, value[:200] if isinstance(value, str) else value,
                               reason=f"{exc.reason[:300]}; the event is dumped, not redacted") from None
        if removed or pseudonymised:
            event = self.new_event()
            event.update(out)
            self.send_message(event)
        else:
            self.send_message(message)
        self.acknowledge_message()

    def _pass_retraction(self, message):
        """A retraction carries ids only: passed on unchanged, never label-read; one that cannot be
        read (a content field would escape the redaction) is dumped with the field named."""
        flat = dict(message)
        received_retraction(flat, "the retraction is dumped, not passed on")
        self.send_message(message)
        self.acknowledge_message()

    @staticmethod
    def check(parameters: dict):
        try:
            remove = as_list(parameters.get("remove_fields"))
            pseudo = as_list(parameters.get("pseudonymise_fields"))
        except ValueError:
            return [["error", "Parameters remove_fields and pseudonymise_fields must be lists of field names."]]
        problem = CrossBorderRedactionExpertBot._check_fields(remove, pseudo)
        if problem:
            return [["error", problem + "."]]
        try:
            secret_bytes(parameters.get("hmac_password"))
        except ValueError as exc:
            return [["error", f"Parameter hmac_password: {exc}."]]
        return None


BOT = CrossBorderRedactionExpertBot
