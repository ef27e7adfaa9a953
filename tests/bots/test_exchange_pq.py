"""BotTestCase tests of the exchange bots with hybrid keys and encryption (issue 18): the output
signs with Ed25519 + ML-DSA-65 and encrypts to the key the trust store announces; the collector
decrypts with its decryption key, and quarantines what it cannot read."""
import atexit
import base64
import json
import shutil
import tempfile
import unittest
from pathlib import Path

import yaml

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.bots.collectors.exchange.collector import CrossBorderExchangeCollectorBot
from intelmq_crossborder.bots.outputs.exchange.output import CrossBorderExchangeOutputBot
from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.formats import bundle_crypto as bc
from intelmq_crossborder.formats import trust_skeleton

CONF = Path(tempfile.mkdtemp(prefix="xb-pq-conf-"))
atexit.register(shutil.rmtree, CONF, True)
DE = [bc.generate(bc.ED25519), bc.generate(bc.ML_DSA_65)]
FR_KEM = bc.generate(bc.HPKE_KEM)
(CONF / "de-sign.pem").write_bytes(b"".join(bc.private_pem(k) for k in DE))
(CONF / "fr-decrypt.pem").write_bytes(bc.private_pem(FR_KEM))
(CONF / "fr-decrypt-locked.pem").write_bytes(bc.private_pem(FR_KEM, b"s3cret"))
(CONF / "trust.yaml").write_text(yaml.safe_dump({"version": 1, "peers": {
    "de-hub": trust_skeleton.peer_entry("DE", DE), "fr-hub": trust_skeleton.peer_entry("FR", [FR_KEM])}}))
(CONF / "trust-nokey.yaml").write_text(yaml.safe_dump({"version": 1, "peers": {
    "de-hub": trust_skeleton.peer_entry("DE", DE)}}))
TRUST = b.TrustStore.from_file(CONF / "trust.yaml")


def ev(n, tlp="GREEN"):
    return {"__type": "Event", "classification.type": "scanner", "classification.taxonomy": "information-gathering",
            "source.ip": f"192.0.2.{n}", "sharing.tlp": tlp}


class TestExchangeOutputHybrid(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeOutputBot
        cls.sysconfig = {"hub_id": "de-hub", "recipient": "fr-hub", "signing_key_file": str(CONF / "de-sign.pem"),
                         "seal_check_interval": 0, "max_bundle_events": 2, "max_bundle_age": 0}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="xb-pq-out-"))
        self.params = {"spool_dir": str(self.dir / "spool"), "outbox_dir": str(self.dir / "outbox")}

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def run_with(self, messages, **params):
        self.input_message = messages
        allowed = {k: params.pop(k) for k in ("allowed_error_count",) if k in params}
        self.run_bot(parameters={**self.params, **params}, iterations=len(messages), **allowed)

    def opened(self):
        (path,) = sorted((self.dir / "outbox").glob("*.xbundle"))
        opened = b.open_bundle(path, TRUST, "fr-hub", b.DecryptionKeys([FR_KEM]))
        opened.verify_data()
        return opened

    def test_hybrid_and_encrypted_with_trust_store(self):
        self.run_with([ev(1), ev(2)], trust_store=str(CONF / "trust.yaml"))
        with self.opened() as opened:
            assert opened.manifest.format_version == "2.0" and opened.decrypted
            assert opened.verified_algorithms == ("ed25519", "ml-dsa-65")
            assert [e["source.ip"] for _, e in b.iter_events(opened)] == ["192.0.2.1", "192.0.2.2"]
        raw = next((self.dir / "outbox").glob("*.xbundle")).read_bytes()
        assert b"192.0.2.1" not in raw
        self.assertLogMatches(r"Signing bundles for fr-hub with ed25519:[0-9a-f]{32}, ml-dsa-65:[0-9a-f]{32}\.",
                              "INFO")

    def test_hybrid_in_clear_without_recipient_key(self):
        """A peer without an encryption key keeps receiving bundles in clear (signed hybrid)."""
        self.run_with([ev(1), ev(2)], trust_store=str(CONF / "trust-nokey.yaml"))
        with self.opened() as opened:
            assert opened.manifest.format_version == "1.1" and not opened.encrypted

    def test_require_encryption_keeps_events_spooled(self):
        """require_encryption and the recipient's key gone from the trust store at the seal:
        nothing is sealed in clear, the events stay spooled, every message is acknowledged
        (nothing lost, nothing dumped); with the key back, the next start finishes the seal."""
        from unittest import mock
        real = b.TrustStore.from_file
        calls = []

        def key_gone_after_init(path):
            calls.append(path)
            return real(CONF / ("trust.yaml" if len(calls) == 1 else "trust-nokey.yaml"))
        with mock.patch.object(b.TrustStore, "from_file", side_effect=key_gone_after_init):
            self.run_with([ev(1), ev(2)], trust_store=str(CONF / "trust.yaml"), require_encryption=True,
                          allowed_error_count=1)
        assert len(calls) >= 2 and not list((self.dir / "outbox").glob("*.xbundle"))
        self.assertLogMatches(r"Sealing a bundle for fr-hub failed.*not sealed in clear", "ERROR")
        assert (self.dir / "spool" / "sealing.jsonl").read_bytes().count(b"\n") == 2
        self.assertOutputQueueLen(0)
        self.run_with([ev(3)], trust_store=str(CONF / "trust.yaml"), require_encryption=True, max_bundle_events=1)
        bundles = sorted((self.dir / "outbox").glob("*.xbundle"))
        assert len(bundles) == 2
        with b.open_bundle(bundles[0], TRUST, "fr-hub", b.DecryptionKeys([FR_KEM])) as opened:
            opened.verify_data()
            assert opened.decrypted and [e["source.ip"] for _, e in b.iter_events(opened)] == \
                ["192.0.2.1", "192.0.2.2"]

    def test_check(self):
        check = CrossBorderExchangeOutputBot.check
        base = dict(self.sysconfig)
        assert check({**base, "trust_store": str(CONF / "trust.yaml"), "require_encryption": True}) is None
        problems = check({**base, "trust_store": str(CONF / "trust-nokey.yaml"), "require_encryption": True})
        assert problems and "no encryption key of fr-hub" in problems[0][1]
        assert "needs trust_store" in check({**base, "require_encryption": True})[0][1]
        assert "trust_store" in check({**base, "trust_store": str(self.dir / "missing.yaml")})[0][1]
        assert "not a signing key file" in check({**base, "signing_key_file": str(CONF / "fr-decrypt.pem")})[0][1]
        assert check({**base, "trust_store": "", "require_encryption": ""}) is None      # Manager's ''


class TestExchangeCollectorDecrypts(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeCollectorBot
        cls.sysconfig = {"hub_id": "fr-hub", "trust_store": str(CONF / "trust.yaml"),
                         "inbox_dir": str(CONF / "unused-inbox"), "events_per_report": 10}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="xb-pq-in-"))
        self.inbox = self.dir / "inbox"
        self.inbox.mkdir()
        self.params = {"inbox_dir": str(self.inbox), "state_dir": str(self.dir / "state")}

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def send(self, seq, n):
        return b.write_bundle(self.inbox, "de-hub", "fr-hub", seq, b.SigningKeys(DE),
                              [{"source.ip": f"192.0.2.{i + 1}", "sharing.tlp": "GREEN"} for i in range(n)],
                              encrypt_to=TRUST.encryption_key("fr-hub"), fsync=False)

    def lines(self):
        return [json.loads(line) for r in self.output_events()
                for line in base64.b64decode(r["raw"]).decode().splitlines()]

    def test_decrypts_and_logs_what_verified(self):
        self.send(1, 3)
        self.run_bot(parameters={**self.params, "decryption_key_file": str(CONF / "fr-decrypt.pem")})
        assert [e["source.ip"] for e in self.lines()] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        self.assertLogMatches(r"Imported .*: 3 events from de-hub \(sequence 1; signed ed25519\+ml-dsa-65, "
                              r"decrypted\)\.", "INFO")

    def test_passphrase_from_environment(self):
        self.send(1, 2)
        import os
        os.environ["XB_PQ_TEST_PASS"] = "s3cret"
        try:
            self.run_bot(parameters={**self.params, "decryption_key_file": str(CONF / "fr-decrypt-locked.pem"),
                                     "decryption_key_passphrase_env": "XB_PQ_TEST_PASS"})
        finally:
            del os.environ["XB_PQ_TEST_PASS"]
        assert len(self.lines()) == 2
        assert "s3cret" not in self.loglines_buffer

    def test_without_key_quarantined_with_reason(self):
        path = self.send(1, 2)
        self.run_bot(parameters=self.params, allowed_error_count=1)
        self.assertOutputQueueLen(0)
        reason = json.loads((self.dir / "state" / "quarantine" / (path.name + ".reason.json")).read_text())
        assert reason["reason"] == "no-decryption-key" and reason["algorithm"] == "mlkem768-x25519"

    def test_check(self):
        check = CrossBorderExchangeCollectorBot.check
        base = {**self.sysconfig, **self.params}
        assert check({**base, "decryption_key_file": str(CONF / "fr-decrypt.pem")}) is None
        assert check({**base, "decryption_key_file": ""}) is None
        assert "not a decryption key file" in check({**base, "decryption_key_file": str(CONF / "de-sign.pem")})[0][1]
        assert "no such file" in check({**base, "decryption_key_file": str(self.dir / "x.pem")})[0][1].lower()
        # encrypted key, passphrase only in the bot's environment: the file is read, not loaded
        assert check({**base, "decryption_key_file": str(CONF / "fr-decrypt-locked.pem"),
                      "decryption_key_passphrase_env": "XB_UNSET"}) is None
