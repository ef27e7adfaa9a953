"""Retractions in the two MISP outputs (the MISP API output and the MISP feed output).

Both keep a holdings index of what they wrote (``formats.misp.holdings``) and apply a retraction
with ``formats.misp.push.apply_retraction``; they differ only in where the change is made (the
peer's MISP, the feed directory) and how it is made (``_retraction_target``)."""
from intelmq.lib.exceptions import InvalidValue

from intelmq_crossborder.formats.misp import push as misp_push
from intelmq_crossborder.policy.retraction import is_retraction
from intelmq_crossborder.runtime.retraction import received_retraction


class MISPRetractions:
    """Mixin of the MISP outputs: ``_retraction_handled(flat)`` at the top of ``process()``."""

    _holdings = None
    _filtered = 0
    _written = "written"                 # the log's verb: "not written again"

    def _retraction_target(self) -> tuple:
        """``(apply, withdraw_mode)`` for ``misp_push.apply_retraction``."""
        raise NotImplementedError

    def _retraction_refused(self, retraction, exc: Exception) -> str:
        """The reason when the target refuses a retraction for good (``PermanentMISPError``)."""
        return str(exc)

    def _retraction_handled(self, flat: dict) -> bool:
        """Apply a retraction, or filter an event a retraction buried (counted and logged): True when
        the message was one of them, and acknowledged."""
        if is_retraction(flat):
            self._retract(flat)
            self.acknowledge_message()
            return True
        ids = flat.get("provenance.event_uuid"), flat.get("provenance.fingerprint")
        buried = self._holdings.tombstone(*ids) if self._holdings is not None else None
        if not buried:
            return False
        self._filtered += 1
        self.logger.info("Event %s was retracted (%s, retraction %s): not %s again (%d so far).",
                         ids[0] or ids[1], buried[1], buried[0], self._written, self._filtered)
        self.acknowledge_message()
        return True

    def _retract(self, flat: dict):
        retraction = received_retraction(flat, "the retraction is not applied")
        if self._holdings is None:
            raise InvalidValue("retraction.id", retraction.id, reason="this output keeps no holdings index; "
                                                                      "the retraction is not applied")
        apply, mode = self._retraction_target()
        try:
            done = misp_push.apply_retraction(retraction, self._holdings, self.agreement, apply, mode)
        except misp_push.PermanentMISPError as exc:
            raise InvalidValue("retraction.id", retraction.id, reason=self._retraction_refused(retraction, exc)) \
                from None
        except ValueError as exc:          # an unreadable TLP tag on the copy it wrote
            raise InvalidValue("retraction.id", retraction.id, reason=f"{exc}; the retraction is not applied") \
                from None
        self.logger.info("Retraction %s (%s, %s) applied: %s; %d held event(s), %d attribute(s) changed, "
                         "%d kept for another event with the same indicator.", retraction.id, retraction.action,
                         retraction.target, done.way or "not held here", done.held, done.changed, done.shared)
