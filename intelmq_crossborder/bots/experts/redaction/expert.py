"""Cross-border redaction expert: remove fields or replace them with keyed pseudonyms."""
from __future__ import annotations

from intelmq.lib.bot import ExpertBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.policy.agreements import agreement_from_dict, AgreementError
from intelmq_crossborder.policy.redact import FieldSelector, label_fields_named, redact
from intelmq_crossborder.core.secrets import secret_bytes

from intelmq_crossborder.core import tlp
def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


class CrossBorderRedactionExpertBot(ExpertBot):
    """
    Remove chosen fields from events, or replace them with a keyed pseudonym (HMAC-SHA256).

    remove_fields are deleted; pseudonymise_fields are replaced by a pseudonym that
    fits the field type (an IPv6 unique-local address for an IP, a name under
    .invalid for a domain, pseudo-<hex> for text). The same value with the same key
    always gives the same pseudonym, so recipients can still correlate events; without
    the key it cannot be reversed. The key comes from hmac_password or from the
    environment variable named in hmac_key_env, and is never logged. A field name may
    end in .* to select a group (extra.*). raw is dropped when anything was changed,
    as it would hold the values in clear. A redaction never lowers the event's TLP:
    the label fields cannot be named, and when a removed field carried a label, the
    effective label is kept in sharing.tlp; an unreadable label is dumped.
    """

    remove_fields: list = []
    pseudonymise_fields: list = []
    hmac_password: str = None
    hmac_key_env: str = "CROSSBORDER_HMAC_KEY"
    drop_raw: bool = True

    _key = None

    def init(self):
        remove = _as_list(self.remove_fields)
        pseudo = _as_list(self.pseudonymise_fields)
        problem = self._check_fields(remove, pseudo)
        if problem:
            raise ConfigurationError("redaction", problem)
        self._remove = FieldSelector(remove)
        self._pseudo = FieldSelector(pseudo)
        self._key = secret_bytes(self.hmac_password, self.hmac_key_env)
        if pseudo and not self._key:
            raise ConfigurationError("redaction", "pseudonymise_fields is set but there is no key: set "
                                                  f"hmac_password or the environment variable {self.hmac_key_env}")
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
        try:
            out, removed, pseudonymised = redact(dict(message), remove=self._remove, pseudonymise=self._pseudo,
                                                 key=self._key, drop_raw=self.drop_raw)
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

    @staticmethod
    def check(parameters: dict):
        try:
            remove = _as_list(parameters.get("remove_fields"))
            pseudo = _as_list(parameters.get("pseudonymise_fields"))
        except TypeError:
            return [["error", "Parameters remove_fields and pseudonymise_fields must be lists of field names."]]
        problem = CrossBorderRedactionExpertBot._check_fields(remove, pseudo)
        if problem:
            return [["error", problem + "."]]
        return None


BOT = CrossBorderRedactionExpertBot
