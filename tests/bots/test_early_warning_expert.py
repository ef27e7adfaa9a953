"""BotTestCase tests of the cross-border early-warning expert (this run's Redis database, own key prefix per test)."""
import unittest
import unittest.mock as mock
import uuid

import redis

from tests.botcase import CrossBorderBotTestCase

from intelmq_crossborder.analytics import early_warning as ew
from intelmq_crossborder.bots.experts.early_warning import expert as early_warning_expert
from intelmq_crossborder.bots.experts.early_warning.expert import CrossBorderEarlyWarningExpertBot
from intelmq_crossborder.runtime import state_store
from tests.isolation import REDIS_DB

PATHS = ["_default", "early-warning"]


def ev(hub, country, ip="192.0.2.1", tlp="GREEN", **extra):
    out = {"__type": "Event", "classification.type": "scanner", "classification.taxonomy": "information-gathering",
           "source.ip": ip, "sharing.tlp": tlp, "provenance.origin_hub": hub, "provenance.origin_country": country,
           "provenance.originator": f"secret-constituent-of-{hub}", "comment": f"internal note of {hub}",
           "source.port": 4444}
    out.update({k.replace("__", "."): v for k, v in extra.items()})
    return out


class TestCrossBorderEarlyWarningExpertBot(CrossBorderBotTestCase, unittest.TestCase):
    @classmethod
    def set_bot(cls):
        cls.bot_reference = CrossBorderEarlyWarningExpertBot
        cls.sysconfig = {"min_hubs": 3, "min_countries": 0, "window": 3600, "redis_cache_db": REDIS_DB,
                         "hub_id": "eu-hub", "country": "BE"}

    def setUp(self):
        super().setUp()
        self.prefix = f"test-ew-bot-{uuid.uuid4().hex}:"

    def tearDown(self):
        client = redis.Redis(db=REDIS_DB)
        for key in client.scan_iter(self.prefix + "*"):
            client.delete(key)
        super().tearDown()

    def run_events(self, events, **params):
        allowed = {k: params.pop(k) for k in ("allowed_error_count", "allowed_warning_count") if k in params}
        self.input_message = events
        self.prepare_bot(parameters={"redis_key_prefix": self.prefix, **params}, destination_queues=PATHS)
        self.run_bot(iterations=len(events), prepare=False, **allowed)
        self.assertEqual(len(self.output_events()), len(events), "every input goes on unchanged")
        return self.output_events("early-warning")

    def test_three_hubs_raise_one_warning(self):
        warnings = self.run_events([ev("de-hub", "DE"), ev("fr-hub", "FR", tlp="AMBER"), ev("de-hub", "DE"),
                                    ev("at-hub", "AT"), ev("it-hub", "IT")])
        assert len(warnings) == 1, "one warning per indicator and window"
        w = warnings[0]
        assert w["sharing.tlp"] == "AMBER"
        assert w["extra.contributing_hubs"] == ["at-hub", "de-hub", "fr-hub"]
        assert w["extra.contributing_countries"] == ["AT", "DE", "FR"]
        assert w["source.ip"] == "192.0.2.1" and w["extra.early_warning_trigger"] == "spread"
        assert w["provenance.origin_hub"] == "eu-hub" and w["classification.identifier"] == "crossborder-early-warning"
        text = str(w)
        for secret in ("secret-constituent", "internal note", "4444"):
            assert secret not in text, f"{secret} re-shared"
        assert w["comment"].startswith("Early warning: same source.ip indicator (scanner) reported by 3 hubs")
        self.assertValidEvents("early-warning")

    def test_countries_threshold(self):
        warnings = self.run_events([ev("de-hub", "DE"), ev("de2-hub", "DE"), ev("fr-hub", "FR")],
                                   min_hubs=0, min_countries=2)
        assert len(warnings) == 1 and warnings[0]["extra.country_count"] == 2

    def test_different_indicators_do_not_add_up(self):
        assert self.run_events([ev("de-hub", "DE", ip="192.0.2.1"), ev("fr-hub", "FR", ip="192.0.2.2"),
                                ev("at-hub", "AT", ip="192.0.2.3")]) == []

    def test_inputs_above_max_tlp_neither_count_nor_appear(self):
        warnings = self.run_events([ev("de-hub", "DE", tlp="RED"), ev("fr-hub", "FR", tlp="AMBER+STRICT"),
                                    ev("at-hub", "AT"), ev("it-hub", "IT")])
        assert warnings == [], "RED/AMBER+STRICT reports must not make a warning go out"
        unlabelled = ev("be-hub", "BE")
        del unlabelled["sharing.tlp"]
        assert self.run_events([unlabelled, ev("at-hub", "AT"), ev("it-hub", "IT")]) == [], \
            "no label counts as default_tlp RED"

    def test_undisclosed_source_counts_but_is_not_named(self):
        warnings = self.run_events([ev("de-hub", "DE", sharing__do_not_disclose_source=True), ev("fr-hub", "FR"),
                                    ev("at-hub", "AT")])
        w, = warnings
        assert "de-hub" not in str(w) and "DE" not in w["extra.contributing_countries"]
        assert w["extra.undisclosed_contributors"] == 1 and w["extra.hub_count"] == 3

    def test_every_label_counts_not_only_sharing_tlp(self):
        """A sharing.tlp GREEN beside extra.tlp RED is RED: it neither counts nor shows (was counted as GREEN)."""
        hidden_red = ev("de-hub", "DE", extra__tlp="RED")
        assert self.run_events([hidden_red, ev("fr-hub", "FR"), ev("at-hub", "AT")]) == []
        w, = self.run_events([ev("de-hub", "DE", extra__tlp_label="tlp:amber"), ev("fr-hub", "FR"),
                              ev("at-hub", "AT")])
        assert w["sharing.tlp"] == "AMBER", "the warning is the most restrictive of its inputs"

    def test_chatham_house_tag_hides_the_source(self):
        """tlp:ex:chr in the MISP tags hides the hub like sharing.do_not_disclose_source does."""
        w, = self.run_events([ev("de-hub", "DE", extra__misp_tags=[{"name": "tlp:ex:chr"}]), ev("fr-hub", "FR"),
                              ev("at-hub", "AT")])
        assert "de-hub" not in str(w) and w["extra.undisclosed_contributors"] == 1

    def test_hidden_source_keeps_a_source_field_indicator_out(self):
        key = ["csaf.tracking_id"]
        w, = self.run_events([ev("de-hub", "DE", csaf__tracking_id="DE-SECRET-2026-1",
                                 sharing__do_not_disclose_source=True),
                              ev("fr-hub", "FR", csaf__tracking_id="DE-SECRET-2026-1"),
                              ev("at-hub", "AT", csaf__tracking_id="DE-SECRET-2026-1")], key_fields=key)
        assert "DE-SECRET" not in str(w) and w["extra.indicator_type"] == "csaf.tracking_id"

    def test_unreadable_label_is_dumped_and_the_bot_goes_on(self):
        lookalike = ev("de-hub", "DE", extra__misp_tags=[{"name": "tlp\u200b:red"}])
        self.input_message = [lookalike, ev("fr-hub", "FR")]
        self.prepare_bot(parameters={"redis_key_prefix": self.prefix}, destination_queues=PATHS)
        self.run_bot(iterations=2, prepare=False, allowed_error_count=1)
        out = self.output_events()
        assert [e["provenance.origin_hub"] for e in out] == ["fr-hub"], "the unreadable one is not forwarded"
        self.assertRegexpMatchesLog(r"extra\.misp_tags\[0\]\.name.*look-alike")

    def test_large_scale_flag_warns_at_once(self):
        warnings = self.run_events([ev("de-hub", "DE", ip="198.51.100.7", extra__large_scale=True, tlp="CLEAR"),
                                    ev("de-hub", "DE", ip="198.51.100.7", extra__large_scale=True)])
        w, = warnings
        assert w["extra.early_warning_trigger"] == "flag" and w["extra.early_warning_flag"] == "extra.large_scale"
        assert w["sharing.tlp"] == "CLEAR" and w["extra.contributing_hubs"] == ["de-hub"]

    def test_severity_flag_and_red_flagged_event(self):
        warnings = self.run_events([ev("de-hub", "DE", ip="198.51.100.8", extra__severity="critical"),
                                    ev("fr-hub", "FR", ip="198.51.100.9", extra__severity="critical", tlp="RED")])
        w, = warnings
        assert w["source.ip"] == "198.51.100.8"

    def test_without_indicator(self):
        warnings = self.run_events([ev("de-hub", "DE"), ev("fr-hub", "FR"), ev("at-hub", "AT")],
                                   include_indicator=False)
        assert "192.0.2.1" not in str(warnings[0]) and warnings[0]["extra.indicator_type"] == "source.ip"

    def test_check(self):
        check = CrossBorderEarlyWarningExpertBot.check
        assert check(self.sysconfig) is None
        assert "cannot go" in check({**self.sysconfig, "max_tlp": "RED"})[0][1]
        assert "window" in check({**self.sysconfig, "window": 0})[0][1]


    def test_manager_empty_optional_parameters_are_the_defaults(self):
        """'' as IntelMQ Manager saves it: the defaults, state under the default prefix in the default Redis
        (127.0.0.1:6379, db 6; redirected to this run's database for the test)."""
        manager = {name: "" for name in ("warning_path", "min_hubs", "min_countries", "window", "key_fields",
                                         "flag_fields", "severity_field", "severity_values", "max_tlp", "default_tlp",
                                         "include_indicator", "hub_id", "country", "redis_cache_host",
                                         "redis_cache_port", "redis_cache_db", "redis_cache_password",
                                         "redis_key_prefix")}
        check = CrossBorderEarlyWarningExpertBot.check
        assert check(manager) is None
        ip = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
        store = redis.Redis(db=REDIS_DB)
        tracker = ew.Tracker(store, 86400, "crossborder:ew:")
        for kind in ("seen", "warned-flag", "warned-spread"):
            self.addCleanup(store.delete, tracker._key(kind, ("source.ip", ip)))
        asked = []

        def this_runs_redis(host, port, db, password, socket_timeout):
            asked.append((state_store.redis_client(host, port, db, password).connection_pool.connection_kwargs, db))
            return store
        events = [ev("de-hub", "DE", ip=ip, extra__severity="critical"), ev("fr-hub", "FR", ip=ip),
                  ev("at-hub", "AT", ip=ip, tlp="AMBER")]
        self.input_message = events
        with mock.patch.object(early_warning_expert, "redis_client", this_runs_redis):
            self.prepare_bot(parameters=manager, destination_queues=PATHS)
            self.run_bot(iterations=3, prepare=False)
        (kwargs, db), = asked
        assert (kwargs["host"], kwargs["port"], db, kwargs["password"]) == ("127.0.0.1", 6379, 6, None)
        flag, spread = self.output_events("early-warning")
        assert flag["extra.early_warning_flag"] == "extra.severity=critical" and flag["source.ip"] == ip
        assert spread["extra.hub_count"] == 3 and spread["sharing.tlp"] == "AMBER"
        assert spread["extra.window_seconds"] == 86400 and "provenance.origin_hub" not in spread
