"""BotTestCase tests of the cross-border sharing router."""
import json
import os
import shutil
import tempfile
import textwrap
import unittest
import unittest.mock as mock

from intelmq.lib.exceptions import ConfigurationError
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.policy import audit
from intelmq_crossborder.policy.redact import hidden_event_uuid, pseudonym
from intelmq_crossborder.bots.experts.sharing_router import expert as router_module
from intelmq_crossborder.bots.experts.sharing_router.expert import CrossBorderSharingRouterExpertBot

KEY = "router-test-key-5e9f0c"
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
        retention_days: 730
        """,
    "ee-isac": """\
        recipient: ee-isac
        name: Energy ISAC
        kind: isac
        country: EU
        relation: community
        max_tlp: GREEN
        remove_fields: [source.account]
        pseudonymise_fields: [source.ip]
        """,
}
RECIPIENTS = sorted(AGREEMENTS)

BASE = {"__type": "Event", "classification.type": "infected-system", "classification.taxonomy": "malicious-code",
        "source.ip": "192.0.2.44", "source.account": "operator7", "feed.name": "Peer feed",
        "provenance.originator": "CERT.at", "provenance.event_uuid": "5b0e6bd4-3c1e-4d2f-9a51-0c3d2b1a0f00",
        "time.observation": "2026-11-23T00:00:00+00:00"}


def ev(**fields):
    out = dict(BASE)
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


def write_agreements(directory: Path, texts: dict) -> None:
    for old in directory.glob("*.yaml"):
        old.unlink()
    for rid, text in texts.items():
        (directory / f"{rid}.yaml").write_text(textwrap.dedent(text))


class TestCrossBorderSharingRouterExpertBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="router-test-"))
        cls.agreements = cls.tmp / "agreements"
        cls.agreements.mkdir()
        write_agreements(cls.agreements, AGREEMENTS)
        cls.audit_path = cls.tmp / "audit.jsonl"
        cls.bot_reference = CrossBorderSharingRouterExpertBot
        cls.sysconfig = {"agreements_dir": str(cls.agreements), "hmac_password": KEY,
                         "audit_log": str(cls.audit_path),
                         "destination_queues": {r: [f"{r}-queue"] for r in RECIPIENTS}}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        write_agreements(self.agreements, AGREEMENTS)
        for piece in audit.rotated_files(self.audit_path):
            piece.unlink()

    def route(self, *events, allowed_error_count=0, parameters=None):
        self.input_message = list(events)
        self.prepare_bot(parameters=parameters or {}, destination_queues=RECIPIENTS)
        self.run_bot(iterations=len(events), prepare=False, allowed_error_count=allowed_error_count)
        return {r: self.output_events(r) for r in RECIPIENTS}

    def audit_records(self):
        return list(audit.read_records(self.audit_path))

    def test_green_goes_to_all_three_transformed_per_recipient(self):
        out = self.route(ev(sharing__tlp="GREEN"))
        pseudo_ip = pseudonym("192.0.2.44", KEY.encode(), "IPAddress")
        self.assertEqual(out["hub-soc"], [ev(sharing__tlp="GREEN", sharing__agreement="hub-soc")])
        expected_cert = ev(sharing__tlp="GREEN", sharing__agreement="cert-at", sharing__retention_days=730)
        del expected_cert["feed.name"], expected_cert["provenance.originator"]
        self.assertEqual(out["cert-at"], [expected_cert])
        expected_isac = ev(sharing__tlp="GREEN", sharing__agreement="ee-isac", source__ip=pseudo_ip)
        for name in ("feed.name", "provenance.originator", "source.account"):
            del expected_isac[name]
        self.assertEqual(out["ee-isac"], [expected_isac])
        for r in RECIPIENTS:
            self.assertValidEvents(r)

    def test_amber_not_to_the_community(self):
        out = self.route(ev(sharing__tlp="AMBER"))
        self.assertEqual([len(out[r]) for r in RECIPIENTS], [1, 0, 1])   # cert-at, ee-isac, hub-soc

    def test_amber_strict_only_same_organisation_and_red_nowhere(self):
        out = self.route(ev(sharing__tlp="AMBER+STRICT"), ev(sharing__tlp="RED"))
        self.assertEqual(len(out["hub-soc"]), 1)
        self.assertEqual(out["hub-soc"][0]["sharing.tlp"], "AMBER+STRICT")
        self.assertEqual(out["cert-at"] + out["ee-isac"], [])
        self.assertLogMatches(r"Event shared with no recipient \(1 so far\)\.", "DEBUG")

    def test_audit_trail_one_record_per_event(self):
        self.route(ev(sharing__tlp="AMBER"))
        lines = self.audit_path.read_text().splitlines()
        self.assertEqual(len(lines), 1)
        record = json.loads(lines[0])
        self.assertEqual((record["tlp"], record["tlp_from"]), ("AMBER", "sharing.tlp"))
        self.assertEqual([d["recipient"] for d in record["decisions"]], RECIPIENTS)
        records = self.audit_records()
        self.assertEqual([(r["recipient"], r["allowed"]) for r in records],
                         [("cert-at", True), ("ee-isac", False), ("hub-soc", True)])
        for r in records:
            self.assertEqual(r["event_uuid"], BASE["provenance.event_uuid"])
            self.assertIsNone(r["fingerprint"])       # only computed for events without a UUID
            self.assertEqual(r["bot"], self.bot_id)
            self.assertTrue(r["time"].endswith("+00:00"))
        self.assertTrue(records[1]["reasons"][0].startswith("tlp-above-ceiling: TLP:AMBER"))
        # a second run appends, never truncates
        self.route(ev(sharing__tlp="CLEAR"))
        self.assertEqual(len(self.audit_records()), 6)

    def test_audit_fingerprint_for_events_without_uuid(self):
        from intelmq_crossborder.core.fingerprint import fingerprint
        event = ev(sharing__tlp="GREEN")
        del event["provenance.event_uuid"]
        self.route(event)
        records = self.audit_records()
        self.assertEqual({r["event_uuid"] for r in records}, {None})
        expected = dict(event)
        del expected["__type"]
        self.assertEqual({r["fingerprint"] for r in records}, {fingerprint(expected)})

    def test_unreadable_tlp_is_dumped_and_audited(self):
        # (the harmonization already refuses a bad sharing.tlp; without it, other labels are read)
        out = self.route(ev(extra__tlp="PURPLE"), allowed_error_count=1)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertRegexpMatchesLog(r"invalid value 'PURPLE' \(<class 'str'>\) for key 'extra\.tlp': field "
                                    r"extra\.tlp: 'PURPLE' is not a TLP label; .*denied for every recipient and dumped")
        self.assertEqual({r["allowed"] for r in self.audit_records()}, {False})

    def test_look_alike_label_is_dumped_with_the_field_named(self):
        out = self.route(ev(sharing__tlp="GREEN", extra__misp_tags=["tlp\uff1ared"]), allowed_error_count=1)
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertRegexpMatchesLog(r"for key 'extra\.misp_tags\[0\]': field extra\.misp_tags\[0\]: look-alike")
        self.assertTrue(all(r["reasons"][0].startswith("tlp-unreadable") for r in self.audit_records()))

    def test_sharing_tlp_lower_than_a_misp_tag_never_lowers_it(self):
        out = self.route(ev(sharing__tlp="GREEN", extra__misp_tags=[{"name": "tlp:amber"}]))
        self.assertEqual(out["ee-isac"], [])                      # community: GREEN at most
        self.assertEqual([e["sharing.tlp"] for e in out["cert-at"] + out["hub-soc"]], ["AMBER", "AMBER"])

    def test_hidden_source_stays_hidden_in_every_field(self):
        misp_uuid = "7d1c3a52-2f4e-4b8a-9c61-0e5d4b3a2f10"
        event = ev(sharing__tlp="GREEN", feed__url="https://misp.cert.example/events/view/42",
                   event_description__url="https://misp.cert.example/events/view/42",
                   misp__event_uuid=misp_uuid, provenance__event_uuid=misp_uuid)
        out = self.route(event)
        for recipient in ("cert-at", "ee-isac"):              # disclose_source: false (the default)
            copy = out[recipient][0]
            for name in ("feed.url", "event_description.url", "misp.event_uuid", "feed.name",
                         "provenance.originator"):
                self.assertNotIn(name, copy)
            self.assertNotIn(misp_uuid, str(copy))
            self.assertNotIn("misp.cert.example", str(copy))
            self.assertEqual(copy["provenance.event_uuid"], hidden_event_uuid(misp_uuid, KEY.encode()))
            self.assertValidEvents(recipient)
        soc = out["hub-soc"][0]                                   # disclose_source: true
        self.assertEqual((soc["misp.event_uuid"], soc["provenance.event_uuid"]), (misp_uuid, misp_uuid))
        self.assertEqual({r["event_uuid"] for r in self.audit_records()}, {misp_uuid})

    def test_no_label_not_shared(self):
        out = self.route(ev())
        self.assertEqual(sum(len(v) for v in out.values()), 0)
        self.assertTrue(all(r["reasons"][0].startswith("tlp-missing") for r in self.audit_records()))

    def test_key_is_never_logged(self):
        self.route(ev(sharing__tlp="GREEN"), ev(sharing__tlp="CLEAR"))
        self.assertIn("hmac_password", self.loglines_buffer)      # the parameter is logged ...
        self.assertNotIn(KEY, self.loglines_buffer)               # ... its value is not
        self.assertNotIn(KEY, self.audit_path.read_text())

    def test_key_from_environment(self):
        import os
        os.environ["ROUTER_TEST_KEY"] = KEY
        try:
            out = self.route(ev(sharing__tlp="GREEN"),
                             parameters={"hmac_password": None, "hmac_key_env": "ROUTER_TEST_KEY"})
        finally:
            del os.environ["ROUTER_TEST_KEY"]
        self.assertEqual(out["ee-isac"][0]["source.ip"], pseudonym("192.0.2.44", KEY.encode(), "IPAddress"))
        self.assertNotIn(KEY, self.loglines_buffer)

    def test_counts_logged(self):
        self.route(ev(sharing__tlp="GREEN"), ev(sharing__tlp="AMBER"), parameters={"counts_interval": 1})
        self.bot.log_counts()
        self.assertRegexpMatchesLog(r"Sharing counts: cert-at sent \d+ denied 0; ee-isac sent \d+ denied \d+")

    def test_counts_per_reason_code(self):
        self.route(ev(sharing__tlp="AMBER"), ev(sharing__tlp="RED"), ev(sharing__tlp="RED"),
                   ev(sharing__tlp="GREEN"), parameters={"counts_interval": 0})
        self.bot.log_counts()
        self.assertRegexpMatchesLog(r"Sharing counts: cert-at sent 2 denied 2 \(tlp-red 2\); "
                                    r"ee-isac sent 1 denied 3 \(tlp-above-ceiling 1, tlp-red 2\); "
                                    r"hub-soc sent 2 denied 2 \(tlp-red 2\); shared with nobody 2;")

    def test_reload_rereads_agreements(self):
        self.prepare_bot(destination_queues=RECIPIENTS)
        self.assertEqual([a.recipient for a in self.bot._agreements], RECIPIENTS)
        texts = dict(AGREEMENTS)
        texts["ee-isac"] = texts["ee-isac"] + "enabled: false\n"
        write_agreements(self.agreements, texts)
        self.bot.shutdown()
        self.bot.init()        # what IntelMQ's SIGHUP handling (intelmqctl reload) runs
        self.assertEqual([a.recipient for a in self.bot._agreements], ["cert-at", "hub-soc"])
        self.input_queue = []

    def test_check_reports_bad_agreement_and_missing_paths(self):
        self.assertIsNone(CrossBorderSharingRouterExpertBot.check(self.sysconfig))
        params = dict(self.sysconfig, destination_queues={"cert-at": ["q"], "old-peer": ["q2"]})
        results = CrossBorderSharingRouterExpertBot.check(params)
        self.assertIn(["error", f"Recipient 'ee-isac' ({self.agreements / 'ee-isac.yaml'}) has no named path "
                                "in destination_queues."], results)
        self.assertIn(["warning", "Named path 'old-peer' matches no enabled agreement: it gets nothing."], results)
        (self.agreements / "cert-at.yaml").write_text("recipient: cert-at\nname: x\nkind: csirt\ncountry: AT\n"
                                                      "relation: community\nmax_tlp: AMBER\n")
        results = CrossBorderSharingRouterExpertBot.check(self.sysconfig)
        self.assertEqual(results[0][0], "error")
        self.assertIn("cert-at.yaml, field max_tlp: TLP:AMBER exceeds what relation 'community'", results[0][1])
        self.assertEqual(CrossBorderSharingRouterExpertBot.check({}),
                         [["error", "Parameter agreements_dir is required."]])
        self.assertEqual(CrossBorderSharingRouterExpertBot.check({"agreements_dir": "${PIPELINES_DIR}/x"})[0][0],
                         "warning")

    def test_missing_path_fails_at_start(self):
        with self.assertRaises(ConfigurationError):
            self.prepare_bot(destination_queues=["cert-at", "hub-soc"])
        self.assertIn("no named path in destination_queues for recipient(s) ee-isac", self.log_stream.getvalue())
        self.prepare_bot(destination_queues=RECIPIENTS)   # a valid bot again, for IntelMQ's checks in tearDown
        self.input_queue = []


    def test_manager_empty_optional_parameters_are_the_defaults(self):
        """'' as IntelMQ Manager saves it: the key from $CROSSBORDER_HMAC_KEY, the audit trail in IntelMQ's
        state directory, the pipeline fan-out."""
        manager = {"hmac_password": "", "hmac_key_env": "", "audit_log": "", "audit_max_bytes": "",
                   "audit_fsync": "", "counts_interval": "", "fanout_mode": ""}
        state = self.tmp / "state"
        state.mkdir(exist_ok=True)
        os.environ["CROSSBORDER_HMAC_KEY"] = KEY
        try:
            self.assertIsNone(CrossBorderSharingRouterExpertBot.check({**self.sysconfig, **manager}))
            with mock.patch.object(router_module, "VAR_STATE_PATH", str(state)):
                out = self.route(ev(sharing__tlp="GREEN"), parameters=manager)
        finally:
            del os.environ["CROSSBORDER_HMAC_KEY"]
        self.assertEqual(out["ee-isac"][0]["source.ip"], pseudonym("192.0.2.44", KEY.encode(), "IPAddress"))
        trail, = state.glob("*-audit.jsonl")
        self.assertEqual(len(list(audit.read_records(trail))), len(RECIPIENTS))


if __name__ == "__main__":
    unittest.main()
