"""BotTestCase tests of the sharing router with retractions: exactly the holders, each under the
ids of its own copy; relabel removals; who may retract; loops; confirmations; the audit trail."""
import json
import shutil
import tempfile
import textwrap
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.experts.sharing_router.expert import CrossBorderSharingRouterExpertBot
from intelmq_crossborder.policy import audit, holdings as H
from intelmq_crossborder.policy.retraction import Retraction, confirmation, new_retraction

KEY = "router-retraction-key-1c2d"
HUB = "at-hub"
AGREEMENTS = {
    "hub-soc": """\
        recipient: hub-soc
        name: Hub SOC
        kind: csirt
        country: AT
        relation: same-organisation
        max_tlp: AMBER+STRICT
        disclose_source: true
        """,
    "cert-at": """\
        recipient: cert-at
        name: CERT.at
        kind: csirt
        country: AT
        relation: constituent
        max_tlp: AMBER
        """,
    "ee-isac": """\
        recipient: ee-isac
        name: Energy ISAC
        kind: isac
        country: EU
        relation: community
        max_tlp: GREEN
        max_pap: GREEN
        pseudonymise_fields: [source.ip]
        """,
    "de-hub": """\
        recipient: de-hub
        name: German hub
        kind: national-hub
        country: DE
        relation: community
        max_tlp: GREEN
        hub_id: de-hub
        """,
}
RECIPIENTS = sorted(AGREEMENTS)
UUID = "5b0e6bd4-3c1e-4d2f-9a51-0c3d2b1a0f00"
FP = "ab" * 32
SECRET_VALUES = ("192.0.2.44", "operator7", "Peer feed", "CERT.at")
BASE = {"__type": "Event", "classification.type": "infected-system", "classification.taxonomy": "malicious-code",
        "source.ip": "192.0.2.44", "source.account": "operator7", "feed.name": "Peer feed",
        "provenance.originator": "CERT.at", "provenance.event_uuid": UUID, "provenance.fingerprint": FP,
        "provenance.hub_path": HUB, "provenance.origin_hub": HUB, "time.observation": "2026-11-23T00:00:00+00:00"}


def ev(**fields):
    out = dict(BASE)
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


def retraction_event(msg: Retraction, **extra) -> dict:
    out = {"__type": "Event", **msg.to_event()}
    out.update(extra)
    return out


class TestRouterRetractions(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="router-retraction-"))
        cls.agreements = cls.tmp / "agreements"
        cls.agreements.mkdir()
        for rid, text in AGREEMENTS.items():
            (cls.agreements / f"{rid}.yaml").write_text(textwrap.dedent(text))
        cls.audit_path = cls.tmp / "audit.jsonl"
        cls.holdings_path = cls.tmp / "holdings.sqlite"
        cls.bot_reference = CrossBorderSharingRouterExpertBot
        cls.sysconfig = {"agreements_dir": str(cls.agreements), "hmac_password": KEY, "hub_id": HUB,
                         "audit_log": str(cls.audit_path), "holdings_db": str(cls.holdings_path),
                         "destination_queues": {r: [f"{r}-queue"] for r in RECIPIENTS}}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        for piece in audit.rotated_files(self.audit_path):
            piece.unlink()
        for p in self.tmp.glob("holdings.sqlite*"):
            p.unlink()

    def route(self, *events, allowed_error_count=0, allowed_warning_count=0):
        self.input_message = list(events)
        self.prepare_bot(destination_queues=RECIPIENTS)
        self.run_bot(iterations=len(events), prepare=False, allowed_error_count=allowed_error_count,
                     allowed_warning_count=allowed_warning_count)
        return {r: self.output_events(r) for r in RECIPIENTS}

    def holdings(self):
        return H.Holdings(self.holdings_path, readonly=True)

    def test_withdraw_goes_to_exactly_the_holders_under_their_own_ids(self):
        out = self.route(ev(sharing__tlp="AMBER"))
        self.assertEqual([len(out[r]) for r in RECIPIENTS], [1, 0, 0, 1])     # cert-at, de-hub, ee-isac, hub-soc
        msg = new_retraction("withdraw", "false positive", HUB, target_event_uuid=UUID, target_fingerprint=FP)
        out = self.route(retraction_event(msg))
        self.assertEqual([len(out[r]) for r in RECIPIENTS], [1, 0, 0, 1])
        for r in ("cert-at", "hub-soc"):
            got = out[r][0]
            self.assertEqual(got["retraction.id"], msg.id)
            self.assertEqual(got["retraction.action"], "withdraw")
            self.assertEqual(got["sharing.agreement"], r)
            self.assertEqual(got["provenance.hub_path"], HUB)
            self.assertFalse(any(v in json.dumps(got) for v in SECRET_VALUES), got)
            Retraction.from_event(got)                  # what a recipient reads
            self.assertValidEvents(r)
        with self.holdings() as h:
            self.assertEqual(h.still_held(UUID), [])
            status = h.status(msg.id)
        self.assertEqual(status["outcome"], "routed")
        self.assertEqual(sorted(d["recipient"] for d in status["deliveries"]), ["cert-at", "hub-soc"])

    def test_a_pseudonymised_copy_is_named_by_its_own_fingerprint(self):
        out = self.route(ev(sharing__tlp="GREEN"))
        isac_fp = out["ee-isac"][0]["provenance.fingerprint"]
        self.assertNotEqual(isac_fp, FP)               # source.ip pseudonymised: fingerprint recomputed
        msg = new_retraction("erase", "personal data", HUB, target_event_uuid=UUID, target_fingerprint=FP)
        out = self.route(retraction_event(msg))
        self.assertEqual(out["ee-isac"][0]["retraction.target_fingerprint"], isac_fp)
        self.assertEqual(out["cert-at"][0]["retraction.target_fingerprint"], FP)
        self.assertEqual(len(out["de-hub"]), 1)        # the peer hub got the GREEN event: it gets the erase
        with self.holdings() as h:
            states = {c.recipient: c.state for c in h.copies(UUID)}
        self.assertEqual(set(states.values()), {H.ERASED})

    def test_relabel_relabels_the_entitled_and_removes_the_others_without_telling_the_label(self):
        self.route(ev(sharing__tlp="GREEN"))
        msg = new_retraction("relabel", "was too low", HUB, target_event_uuid=UUID, new_tlp="AMBER")
        out = self.route(retraction_event(msg))
        self.assertEqual(out["cert-at"][0]["retraction.action"], "relabel")
        self.assertEqual(out["cert-at"][0]["retraction.new_tlp"], "AMBER")
        self.assertEqual(out["hub-soc"][0]["retraction.action"], "relabel")
        for r in ("ee-isac", "de-hub"):
            removal = out[r][0]
            self.assertEqual(removal["retraction.action"], "withdraw")
            self.assertNotIn("retraction.new_tlp", removal)
            self.assertIn("tlp-above-ceiling", removal["retraction.reason"])
        with self.holdings() as h:
            self.assertEqual(h.still_held(UUID), ["cert-at", "hub-soc"])
            levels = {c.recipient: c.level.label for c in h.copies(UUID, held_only=True)}
        self.assertEqual(levels, {"cert-at": "AMBER", "hub-soc": "AMBER"})

    def test_relabel_pap_and_hidden_source(self):
        self.route(ev(sharing__tlp="GREEN", sharing__pap="CLEAR"))
        msg = new_retraction("relabel", "PAP was too low", HUB, target_event_uuid=UUID, new_pap="AMBER",
                             new_do_not_disclose_source=True)
        out = self.route(retraction_event(msg))
        self.assertEqual(out["ee-isac"][0]["retraction.action"], "withdraw")     # max_pap GREEN
        self.assertEqual(out["hub-soc"][0]["retraction.action"], "withdraw")     # its copy named the source
        self.assertEqual(out["cert-at"][0]["retraction.action"], "relabel")      # source already hidden there

    def test_a_relabel_never_lowers(self):
        self.route(ev(sharing__tlp="AMBER"))
        msg = new_retraction("relabel", "lower it", HUB, target_event_uuid=UUID, new_tlp="GREEN")
        out = self.route(retraction_event(msg), allowed_warning_count=1)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertLogMatches(r".*refused: lowers-label \(retraction\.new_tlp\): TLP:GREEN is lower.*", "WARNING")
        with self.holdings() as h:
            self.assertEqual(h.still_held(UUID), ["cert-at", "hub-soc"])

    def test_only_the_originating_hub_may_retract(self):
        self.route(ev(sharing__tlp="AMBER"))
        msg = new_retraction("withdraw", "x", "fr-hub", target_event_uuid=UUID)
        out = self.route(retraction_event(msg), allowed_warning_count=1)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertLogMatches(r".*refused: not-originator.*", "WARNING")

    def test_a_peers_retraction_only_for_what_that_peer_sent_and_it_is_confirmed(self):
        imported = ev(sharing__tlp="GREEN", provenance__hub_path="de-hub,at-hub", provenance__origin_hub="de-hub")
        out = self.route(imported)
        self.assertEqual(out["de-hub"], [])                       # never sent back
        self.assertEqual(len(out["cert-at"]), 1)
        # this hub may not retract a peer's event
        local = new_retraction("withdraw", "x", HUB, target_event_uuid=UUID)
        out = self.route(retraction_event(local), allowed_warning_count=1)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertLogMatches(r".*came from peer hub\(s\) de-hub.*", "WARNING")
        # another peer may not either (it is told: confirmed, 0 holders)
        other = new_retraction("withdraw", "x", "fr-hub", target_event_uuid=UUID)
        out = self.route(retraction_event(other, **{"provenance.hub_path": "fr-hub"}), allowed_warning_count=2)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        # a loop is dropped
        looped = new_retraction("withdraw", "x", "de-hub", target_event_uuid=UUID)
        out = self.route(retraction_event(looped, **{"provenance.hub_path": "at-hub,de-hub"}), allowed_warning_count=1)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        # the peer that sent it may
        peer = new_retraction("erase", "personal data", "de-hub", target_event_uuid=UUID)
        out = self.route(retraction_event(peer, **{"provenance.hub_path": "de-hub"}))
        self.assertEqual(sorted(r for r in RECIPIENTS if out[r] and "retraction.confirmed_by" not in out[r][0]),
                         ["cert-at", "ee-isac", "hub-soc"])
        self.assertEqual(out["cert-at"][0]["provenance.hub_path"], "de-hub,at-hub")
        conf, = out["de-hub"]
        self.assertEqual((conf["retraction.confirmed_by"], conf["retraction.holders_reached"]), (HUB, 3))
        self.assertEqual(conf["retraction.id"], peer.id)
        self.assertEqual(conf["provenance.hub_path"], HUB)
        self.assertNotIn("retraction.reason", {k for k, v in conf.items() if v != peer.reason} - set(conf))

    def test_an_imported_event_without_hub_path_came_from_its_origin_hub(self):
        imported = ev(sharing__tlp="GREEN", provenance__origin_hub="de-hub")
        del imported["provenance.hub_path"]
        self.route(imported)
        with self.holdings() as h:
            self.assertEqual(h.received_from(UUID), {"de-hub"})

    def test_confirmations_are_recorded_and_shown_in_the_status(self):
        self.route(ev(sharing__tlp="GREEN"))
        msg = new_retraction("withdraw", "false positive", HUB, target_event_uuid=UUID)
        self.route(retraction_event(msg))
        with self.holdings() as h:
            self.assertEqual(h.status(msg.id)["unconfirmed"], ["de-hub"])
        conf = confirmation(msg, "de-hub", 2)
        out = self.route(retraction_event(conf, **{"provenance.hub_path": "de-hub"}))
        self.assertEqual(sum(len(v) for v in out.values()), 0)     # recorded, not forwarded
        with self.holdings() as h:
            status = h.status(msg.id)
        self.assertEqual(status["unconfirmed"], [])
        self.assertEqual(status["confirmations"][0]["hub"], "de-hub")
        self.assertEqual(status["confirmations"][0]["holders_reached"], 2)
        # a hub cannot confirm for another one
        forged = confirmation(msg, "de-hub", 2)
        self.route(retraction_event(forged, **{"provenance.hub_path": "fr-hub"}), allowed_warning_count=1)
        self.assertLogMatches(r".*a hub confirms only for itself.*", "WARNING")

    def test_a_retraction_carrying_content_is_dumped_with_the_field_named(self):
        msg = new_retraction("withdraw", "x", HUB, target_event_uuid=UUID)
        out = self.route(retraction_event(msg, **{"source.ip": "192.0.2.44"}), allowed_error_count=1)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertLogMatches(r".*for key 'source\.ip'.*carries no event content.*dumped.*", "ERROR")

    def test_a_retraction_of_an_unknown_event_reaches_nobody_and_is_recorded(self):
        msg = new_retraction("withdraw", "x", HUB, target_event_uuid="00000000-0000-4000-8000-000000000000")
        out = self.route(retraction_event(msg))
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertLogMatches(r".*nobody holds the event.*", "INFO")
        with self.holdings() as h:
            self.assertEqual(h.status(msg.id)["deliveries"], [])

    def test_a_retried_retraction_goes_to_the_same_holders_again(self):
        self.route(ev(sharing__tlp="AMBER"))
        msg = new_retraction("withdraw", "x", HUB, target_event_uuid=UUID)
        first = self.route(retraction_event(msg))
        again = self.route(retraction_event(msg))
        self.assertEqual([len(first[r]) for r in RECIPIENTS], [len(again[r]) for r in RECIPIENTS])

    def test_audit_trail_holds_no_values_and_rebuilds_the_index(self):
        self.route(ev(sharing__tlp="GREEN"), ev(sharing__tlp="AMBER", provenance__event_uuid=UUID.replace("5b", "6c", 1),
                                               provenance__fingerprint="cd" * 32))
        msg = new_retraction("erase", "personal data", HUB, target_event_uuid=UUID)
        self.route(retraction_event(msg))
        text = self.audit_path.read_text()
        self.assertFalse([v for v in SECRET_VALUES if v in text])
        self.assertEqual(len(list(audit.read_retractions(self.audit_path))), 1)
        rebuilt_path = self.tmp / "rebuilt.sqlite"
        with H.Holdings(rebuilt_path) as rebuilt:
            n = H.rebuild(rebuilt, audit.read_records(self.audit_path))
            copies = {(c.recipient, c.sent_fingerprint, c.level.label) for c in rebuilt.copies(UUID)}
        with self.holdings() as h:
            original = {(c.recipient, c.sent_fingerprint, c.level.label) for c in h.copies(UUID)}
        self.assertEqual(n, 6)
        self.assertEqual(copies, original)
        for p in self.tmp.glob("rebuilt.sqlite*"):
            p.unlink()


if __name__ == "__main__":
    unittest.main()
