"""BotTestCase tests of the cross-border exchange output."""
import atexit
import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

from tests.botcase import CrossBorderBotTestCase
from tests.exchange_helpers import ExchangeServer, make_pki, write_trust

from intelmq_crossborder.formats import bundle as b
from intelmq_crossborder.bots.outputs.exchange.output import CrossBorderExchangeOutputBot
from intelmq_crossborder.testing.polling import wait_until

KEY_DIR = Path(tempfile.mkdtemp(prefix="xb-output-keys-"))
atexit.register(shutil.rmtree, KEY_DIR, True)
KEY = b.generate_private_key()
(KEY_DIR / "de.pem").write_bytes(b.private_key_pem(KEY))
PASSPHRASE = "correct horse battery staple"
(KEY_DIR / "de-encrypted.pem").write_bytes(b.private_key_pem(KEY, PASSPHRASE.encode()))
TRUST = write_trust(KEY_DIR / "trust.yaml", {"de-hub": KEY})


#: What names or points at a source that must stay hidden (tlp.SOURCE_FIELDS), with values to search for.
HIDDEN_SOURCE = {"feed.url": "https://feeds.secret-originator.example/cti", "feed.name": "Secret Originator Feed",
                 "event_description.url": "https://misp.secret-originator.example/events/view/4242",
                 "misp.event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
                 "provenance.originator": "cert-secret-originator"}


def ev(n, tlp="GREEN", **extra):
    out = {"__type": "Event", "classification.type": "scanner", "classification.taxonomy": "information-gathering",
           "source.ip": f"192.0.2.{n}", "sharing.tlp": tlp, "provenance.origin_hub": "de-hub",
           "provenance.origin_country": "DE"}
    out.update(extra)
    return out


class TestCrossBorderExchangeOutputBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderExchangeOutputBot
        cls.sysconfig = {"hub_id": "de-hub", "recipient": "fr-hub", "signing_key_file": str(KEY_DIR / "de.pem"),
                         "seal_check_interval": 0, "max_bundle_events": 100, "max_bundle_age": 0}

    def setUp(self):
        super().setUp()
        self.dir = Path(tempfile.mkdtemp(prefix="xb-output-"))
        self.params = {"spool_dir": str(self.dir / "spool"), "outbox_dir": str(self.dir / "outbox")}

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def run_with(self, messages, **params):
        allowed = {k: params.pop(k) for k in ("allowed_error_count", "allowed_warning_count") if k in params}
        self.input_message = messages
        self.run_bot(parameters={**self.params, **params}, iterations=len(messages) if messages else 1, **allowed)

    def bundles(self, folder="outbox"):
        out = []
        for path in sorted((self.dir / folder).glob("*.xbundle")):
            with b.open_bundle(path, TRUST, "fr-hub") as opened:
                opened.verify_data()
                out.append((opened.manifest, [e for _, e in b.iter_events(opened)]))
        return out

    def test_size_bound_seals_signed_bundle(self):
        self.run_with([ev(1), ev(2), ev(3)], max_bundle_events=2)
        (manifest, events), = self.bundles()
        assert (manifest.sender, manifest.recipient, manifest.sequence, manifest.event_count) == \
               ("de-hub", "fr-hub", 1, 2)
        expected = [{k: v for k, v in ev(i).items() if k != "__type"} for i in (1, 2)]
        assert events == expected
        spool = (self.dir / "spool" / "spool.jsonl").read_bytes().splitlines()
        assert [json.loads(l)["source.ip"] for l in spool] == ["192.0.2.3"]
        assert not list((self.dir / "outbox").glob(".*"))
        self.assertOutputQueueLen(0)

    def test_stop_keeps_spool_and_next_start_continues(self):
        self.run_with([ev(1), ev(2)])
        assert self.bundles() == []
        self.run_with([ev(3)], seal_on_shutdown=True)
        (manifest, events), = self.bundles()
        assert [e["source.ip"] for e in events] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        self.run_with([ev(4)], seal_on_shutdown=True)
        assert [m.sequence for m, _ in self.bundles()] == [1, 2]

    def test_redelivered_last_message_not_spooled_twice(self):
        """A stop between spooling and acknowledging makes IntelMQ deliver the message again."""
        self.run_with([ev(1), ev(2)])
        self.run_with([ev(2), ev(3)], seal_on_shutdown=True)
        (_, events), = self.bundles()
        assert [e["source.ip"] for e in events] == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        self.assertRegexpMatchesLog("acknowledged without spooling it twice")

    def test_time_bound_seals_at_start(self):
        self.run_with([ev(1)], max_bundle_age=3600)
        state_file = self.dir / "spool" / "state.json"
        state = json.loads(state_file.read_text())
        state["spool_opened_at"] -= 7200
        state_file.write_text(json.dumps(state))
        self.run_with([ev(2)], max_bundle_age=3600)
        (manifest, events), = self.bundles()
        assert [e["source.ip"] for e in events] == ["192.0.2.1"]
        assert manifest.window_start < manifest.window_end

    def test_timer_seals_a_quiet_bundle(self):
        self.input_message = [ev(1)]
        self.run_bot(parameters={**self.params, "seal_check_interval": 1, "max_bundle_age": 1}, stop_bot=False)
        try:
            wait_until(self.bundles, 10, "the timer to seal the quiet bundle", interval=0.2)
        finally:
            self.bot.stop(exitcode=0)
        (_, events), = self.bundles()
        assert [e["source.ip"] for e in events] == ["192.0.2.1"]

    def test_nightly_cut_seal_at(self):
        # the schedule itself: tests/test_exchange.py (SealSchedule, last_cut)
        self.run_with([ev(1)], seal_at="02:00")
        assert self.bundles() == []
        state_file = self.dir / "spool" / "state.json"
        state = json.loads(state_file.read_text())
        state["spool_opened_at"] -= 86400 + 60      # the spool was opened before the last cut
        state_file.write_text(json.dumps(state))
        self.run_with([ev(2)], seal_at="02:00")
        (_, events), = self.bundles()
        assert [e["source.ip"] for e in events] == ["192.0.2.1"]
        assert "seal_at" in CrossBorderExchangeOutputBot.check({**self.sysconfig, "seal_at": "25:00"})[0][1]

    def test_red_and_unlabelled_events_are_dumped(self):
        for message, label in ((ev(1, tlp="RED"), "TLP:RED is never forwarded automatically"),
                               (ev(1, tlp="AMBER+STRICT"), "TLP:AMBER\\+STRICT never leaves the organisation")):
            self.run_with([message], allowed_error_count=1, seal_on_shutdown=True)
            self.assertRegexpMatchesLog(label)
        unlabelled = ev(2)
        del unlabelled["sharing.tlp"]
        self.run_with([unlabelled], allowed_error_count=1, seal_on_shutdown=True)
        self.assertRegexpMatchesLog("without a TLP label")
        assert self.bundles() == []

    def test_effective_tlp_is_the_most_restrictive_label(self):
        # issue 12: sharing.tlp GREEN does not lower a tlp:red MISP tag (or an AMBER extra.tlp)
        red = ev(1, **{"extra.misp_tags": [{"name": "osint:source-type=\"feed\""}, {"name": "tlp:red"}]})
        amber = ev(2, **{"extra.tlp": "amber"})
        self.run_with([red, amber], allowed_error_count=1, seal_on_shutdown=True)
        self.assertRegexpMatchesLog(r"for key 'extra\.misp_tags\[1\]\.name': TLP:RED is never forwarded")
        (_, events), = self.bundles()
        assert [(e["source.ip"], e["sharing.tlp"]) for e in events] == [("192.0.2.2", "AMBER")]
        self.run_with([ev(3, **{"extra.tlp": "amber"})], max_tlp="GREEN", allowed_error_count=1)
        self.assertRegexpMatchesLog(r"for key 'extra\.tlp': TLP:AMBER is above max_tlp GREEN")

    def test_hostile_labels_are_dumped_with_the_field_named(self):
        hostile = {"extra.tlp": ["RED"], "extra.misp_tags[0].name": [{"name": "tlp\u200b:red"}],
                   "extra.misp_tags[0]": [{"colour": "#cc0033"}]}
        for field, value in hostile.items():
            base = field.split("[")[0]
            self.run_with([ev(1, **{base: value})], allowed_error_count=1, seal_on_shutdown=True)
            self.assertRegexpMatchesLog("for key '" + field.replace(".", "\\.").replace("[", "\\[")
                                        .replace("]", "\\]") + "'")
            assert self.bundles() == []

    def test_hidden_source_never_in_the_bundle(self):
        from intelmq_crossborder.core.fingerprint import fingerprint
        flagged = ev(1, **HIDDEN_SOURCE, **{"sharing.do_not_disclose_source": True})
        flagged["provenance.fingerprint"] = fingerprint(flagged)      # over event_description.url
        chr_tag = ev(2, **HIDDEN_SOURCE, **{"extra.misp_tags": [{"name": "tlp:ex:chr"}]})
        shown = ev(3, **{"feed.name": "Public Feed"})
        self.run_with([flagged, chr_tag, shown], seal_on_shutdown=True)
        (manifest, events), = self.bundles()
        written = json.dumps([manifest.to_dict(), events]) + "".join(
            p.read_text(errors="replace") for p in (self.dir / "spool").rglob("*") if p.is_file())
        for field, value in HIDDEN_SOURCE.items():
            assert value not in written, field
        assert "secret-originator" not in written.lower()
        assert [e.get("sharing.do_not_disclose_source") for e in events] == [True, True, None]
        assert events[0]["provenance.fingerprint"] not in (flagged["provenance.fingerprint"], None)
        assert events[0]["provenance.fingerprint"] == fingerprint(events[0])
        assert events[2]["feed.name"] == "Public Feed"            # a source not hidden stays

    def test_amber_allowed_up_to_max_tlp(self):
        self.run_with([ev(1, tlp="AMBER"), ev(2, tlp="CLEAR")], seal_on_shutdown=True)
        (_, events), = self.bundles()
        assert [e["sharing.tlp"] for e in events] == ["AMBER", "CLEAR"]

    def test_encrypted_key_passphrase_from_environment_not_logged(self):
        os.environ["XB_TEST_PASSPHRASE"] = PASSPHRASE
        try:
            self.run_with([ev(1)], signing_key_file=str(KEY_DIR / "de-encrypted.pem"),
                          signing_key_passphrase_env="XB_TEST_PASSPHRASE", seal_on_shutdown=True,
                          logging_level="DEBUG")
        finally:
            del os.environ["XB_TEST_PASSPHRASE"]
        assert len(self.bundles()) == 1
        pem = (KEY_DIR / "de.pem").read_text().splitlines()[1]
        assert PASSPHRASE not in self.loglines_buffer and pem not in self.loglines_buffer

    def test_push_with_mutual_tls(self):
        pki = make_pki(self.dir)
        with ExchangeServer(pki, self.dir / "peer-inbox") as server:
            self.run_with([ev(1), ev(2)], max_bundle_events=2, push_url=server.url,
                          client_cert=pki["client_cert"], client_key=pki["client_key"], ca_bundle=pki["ca"],
                          sent_dir=str(self.dir / "sent"))
        received = list((self.dir / "peer-inbox").glob("*.xbundle"))
        assert len(received) == 1 and b.verify_bundle(received[0], TRUST, "fr-hub").event_count == 2
        assert not list((self.dir / "outbox").glob("*.xbundle"))
        assert [p.name for p in (self.dir / "sent").iterdir()] == [received[0].name]

    def test_failed_push_keeps_bundle_for_retry(self):
        self.run_with([ev(1), ev(2)], max_bundle_events=2, push_url="https://127.0.0.1:9/exchange",
                      push_timeout=2, allowed_warning_count=1)
        assert len(self.bundles()) == 1
        self.assertRegexpMatchesLog("kept in the outbox for the next attempt")

    def test_no_push_attempt_while_backing_off(self):
        # four seals while the peer is down: one push attempt, then the backoff (60 s by default)
        # keeps process() from contacting the peer again; the bundles wait in the outbox
        self.run_with([ev(i) for i in range(1, 5)], max_bundle_events=1, push_url="https://127.0.0.1:9/exchange",
                      push_timeout=2, allowed_warning_count=1)
        assert len(self.bundles()) == 4
        assert self.loglines_buffer.count("kept in the outbox for the next attempt") == 1
        self.assertRegexpMatchesLog(r"\(1 bundle\(s\) waiting, signed and complete\): ConnectionError: .*"
                                    r"Failure 1 in a row; next attempt in 60 s, at \d{4}-\d\d-\d\dT")

    def test_check(self):
        check = CrossBorderExchangeOutputBot.check
        assert "positive" in check({**self.sysconfig, "push_retry_backoff": 0})[0][1]
        assert "positive" in check({**self.sysconfig, "push_retry_max_backoff": "10"})[0][1]
        assert "not be below" in check({**self.sysconfig, "push_retry_backoff": 60, "push_retry_max_backoff": 30})[0][1]
        assert check(self.sysconfig) is None
        assert "never leaves" in check({**self.sysconfig, "max_tlp": "RED"})[0][1]
        assert "hub_id" in check({**self.sysconfig, "hub_id": "DE_HUB"})[0][1]
        assert "https" in check({**self.sysconfig, "push_url": "http://x"})[0][1]
        assert "signing_key_file" in check({**self.sysconfig, "signing_key_file": None})[0][1]
        assert "same hub" in check({**self.sysconfig, "recipient": self.sysconfig["hub_id"]})[0][1]
        assert "positive integer" in check({**self.sysconfig, "max_bundle_events": True})[0][1]

    def test_check_signing_key_file_exists_and_is_readable(self):
        check = CrossBorderExchangeOutputBot.check
        missing = check({**self.sysconfig, "signing_key_file": str(self.dir / "nope.pem")})
        assert missing and "signing_key_file" in missing[0][1] and "No such file" in missing[0][1]
        assert "is a directory" in check({**self.sysconfig, "signing_key_file": str(self.dir)})[0][1]
        (self.dir / "not-a-key.pem").write_text("hello")
        assert "not a readable PEM private key" in check(
            {**self.sysconfig, "signing_key_file": str(self.dir / "not-a-key.pem")})[0][1]
        # an encrypted key needs its passphrase, which may be only in the bot's environment: read, not loaded
        encrypted = {**self.sysconfig, "signing_key_file": str(KEY_DIR / "de-encrypted.pem")}
        assert "not a readable PEM private key" in check(encrypted)[0][1]
        assert check({**encrypted, "signing_key_passphrase_env": "XB_UNSET_IN_CHECK"}) is None
        assert "not a PEM private key" in check({**self.sysconfig, "signing_key_passphrase_env": "X",
                                                 "signing_key_file": str(self.dir / "not-a-key.pem")})[0][1]
        if os.geteuid() != 0:           # root reads any file
            unreadable = self.dir / "unreadable.pem"
            unreadable.write_bytes((KEY_DIR / "de.pem").read_bytes())
            unreadable.chmod(0)
            assert "Permission denied" in check({**self.sysconfig, "signing_key_file": str(unreadable)})[0][1]

    def test_manager_style_empty_optional_parameters(self):
        """IntelMQ Manager saves every untouched optional parameter as ''."""
        empty = {name: "" for name in CrossBorderExchangeOutputBot.OPTIONAL}
        assert CrossBorderExchangeOutputBot.check({**self.sysconfig, **empty}) is None
        self.run_with([ev(1), ev(2)], **{**empty, **self.params, "seal_check_interval": 0,
                                         "max_bundle_events": 2})
        (manifest, events), = self.bundles()
        assert manifest.event_count == 2 and [e["sharing.tlp"] for e in events] == ["GREEN", "GREEN"]
        # defaults, not '' or false: AMBER is allowed (max_tlp), the spool is kept on stop (seal_on_shutdown)
        self.run_with([ev(3, tlp="AMBER")], **{**empty, **self.params, "seal_check_interval": 0})
        assert len(self.bundles()) == 1
        assert len((self.dir / "spool" / "spool.jsonl").read_bytes().splitlines()) == 1

