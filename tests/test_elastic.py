"""Unit tests of intelmq_crossborder.datalake.elastic (mapping, names, documents, bulk results, client flavours)
and datalake.lifecycle (templates and policies)."""
from datetime import datetime, timezone

import pytest

from intelmq_crossborder.datalake import elastic, lifecycle

from intelmq_crossborder.core import tlp
from intelmq_crossborder.testing.fake_elasticsearch import FakeElasticsearch
from intelmq_crossborder.harmonization import merged_harmonization

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
GREEN = elastic.LakeTLP(tlp.Level.GREEN, False)


def prop(mapping, dotted):
    node = {"properties": mapping["properties"]}
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def test_mapping_types_from_harmonization():
    m = elastic.mapping_from_harmonization(merged_harmonization())
    assert m["dynamic"] is False
    assert prop(m, "source.ip")["type"] == "ip"
    assert prop(m, "destination.ip")["type"] == "ip"
    assert prop(m, "time.source")["type"] == "date"
    assert prop(m, "time.observation")["type"] == "date"
    assert prop(m, "sharing.tlp")["type"] == "keyword"
    assert prop(m, "provenance.originator")["type"] == "keyword"
    assert prop(m, "classification.type")["type"] == "keyword"
    assert prop(m, "sharing.retention_days")["type"] == "long"
    assert prop(m, "vulnerability.cvss_base_score")["type"] == "double"
    assert prop(m, "sharing.do_not_disclose_source")["type"] == "boolean"
    assert prop(m, "source.geolocation.location")["type"] == "geo_point"
    assert prop(m, "destination.geolocation.location")["type"] == "geo_point"
    assert m["properties"]["extra"] == {"type": "object", "enabled": False}
    assert "raw" not in m["properties"]


def test_index_names():
    assert elastic.index_name("lake", "daily", 30, NOW) == "lake-r30d-2026.11.20"
    assert elastic.index_name("lake", "monthly", None, NOW) == "lake-rkeep-2026.11"
    assert elastic.index_name("lake", "none", 7, NOW) == "lake-r7d"
    with pytest.raises(elastic.ElasticConfigError):
        elastic.index_name("lake", "weekly", 7, NOW)
    assert elastic.check_prefix("crossborder-events") is None
    assert elastic.check_prefix("_lake") and elastic.check_prefix("Lake")


def test_document_and_ids():
    flat = {"source.ip": "192.0.2.1", "raw": "aGk=", "extra.foo": 1, "sharing.retention_days": 30,
            "source.geolocation.latitude": 1.5, "source.geolocation.longitude": 2.5,
            "time.observation": "2026-11-20T10:00:00+00:00"}
    doc = elastic.build_document(flat, label=GREEN, prefix="lake", rotation="daily",
                                 default_retention_days=None, now=NOW)
    assert doc.index == "lake-r30d-2026.11.20"
    assert doc.source["sharing"]["tlp"] == "GREEN"
    assert doc.source["extra"] == {"foo": 1}
    assert "raw" not in doc.source
    assert doc.source["source"]["geolocation"]["location"] == {"lat": 1.5, "lon": 2.5}
    # id: the same event (even observed again) has the same id; another event another one
    again = dict(flat, **{"time.observation": "2026-11-21T00:00:00+00:00"})
    assert elastic.document_id(flat) == elastic.document_id(again) != elastic.document_id({"source.ip": "x"})
    assert elastic.document_id({"provenance.fingerprint": "ab" * 32, "source.ip": "1"}) == "ab" * 32


def test_lake_tlp_is_the_effective_tlp():
    # Regression (leak audit): the lake read sharing.tlp only, so an event labelled RED in its stock
    # tlp field (or AMBER+STRICT in its MISP tags) was stored under default_tlp, below its label.
    default = tlp.Level.GREEN
    assert elastic.lake_tlp({"tlp": "RED"}, default) == (tlp.Level.RED, False)
    assert elastic.lake_tlp({"extra.misp_tags": ["osint:x", "tlp:amber+strict"], "extra.tlp": "CLEAR"},
                            default).level is tlp.Level.AMBER_STRICT
    # issue 12: sharing.tlp no longer wins over a more restrictive label elsewhere
    assert elastic.lake_tlp({"sharing.tlp": "CLEAR", "tlp": "RED"}, default).level is tlp.Level.RED
    assert elastic.lake_tlp({"sharing.tlp": "GREEN", "extra.misp_tags": [{"name": "tlp:red"}]},
                            default).level is tlp.Level.RED
    assert elastic.lake_tlp({"source.ip": "192.0.2.1"}, default) == (default, False)
    with pytest.raises(tlp.UnknownTLPError) as err:
        elastic.lake_tlp({"extra.tlp": "PURPLE"}, default)
    assert err.value.field == "extra.tlp" and err.value.value == "PURPLE"


def test_lake_tlp_reads_the_hidden_source_in_the_same_pass():
    assert elastic.lake_tlp({"sharing.do_not_disclose_source": True}, tlp.Level.AMBER) == (tlp.Level.AMBER, True)
    assert elastic.lake_tlp({"extra.misp_tags": [{"name": "tlp:ex:chr"}, {"name": "tlp:green"}]},
                            tlp.Level.AMBER) == (tlp.Level.GREEN, True)


def test_labels_are_read_once_per_document(monkeypatch):
    calls = []
    real = tlp.event_tlp
    monkeypatch.setattr(tlp, "event_tlp", lambda flat: calls.append(1) or real(flat))
    flat = {"source.ip": "192.0.2.1", "sharing.tlp": "GREEN", "feed.name": "x"}
    elastic.build_document(flat, label=elastic.lake_tlp(flat, tlp.Level.AMBER), prefix="lake", rotation="daily",
                           default_retention_days=None, now=NOW)
    assert len(calls) == 1


def test_classify_items():
    assert elastic.classify_item({"index": {"_id": "1", "status": 201}})[0] == elastic.INDEXED
    assert elastic.classify_item({"index": {"_id": "1", "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "busy"}}})[0] == elastic.RETRY
    outcome, status, reason = elastic.classify_item({"index": {"_id": "1", "status": 400, "error": {
        "type": "document_parsing_exception", "reason": "failed to parse field [source.ip] of type [ip]",
        "caused_by": {"type": "illegal_argument_exception", "reason": "'x' is not an IP string literal."}}}})
    assert (outcome, status) == (elastic.REJECT, 400)
    assert reason == ("document_parsing_exception: failed to parse field [source.ip] of type [ip] "
                      "(caused by illegal_argument_exception: 'x' is not an IP string literal.)")


def test_templates_and_policies():
    m = {"dynamic": False, "properties": {}}
    es_tpl = lifecycle.index_template("lake", 30, m, "elasticsearch9")
    assert es_tpl["index_patterns"][0] == "lake-r30d-*"
    assert es_tpl["template"]["settings"]["index.lifecycle.name"] == "lake-retention-30d"
    assert "index.lifecycle.name" not in lifecycle.index_template("lake", 30, m, "opensearch2")["template"]["settings"]
    assert lifecycle.ilm_policy(30)["policy"]["phases"]["delete"] == {"min_age": "30d", "actions": {"delete": {}}}
    ism = lifecycle.ism_policy("lake", 30)["policy"]
    assert ism["states"][0]["transitions"][0]["conditions"] == {"min_index_age": "30d"}
    assert ism["ism_template"][0]["index_patterns"] == ["lake-r30d-*"]


@pytest.mark.parametrize("flavour", elastic.FLAVOURS)
def test_official_client_talks_to_each_flavour(flavour):
    with FakeElasticsearch(flavour) as es:
        client = elastic.make_client(es.url, flavour)
        assert client.info()["version"]["number"] == es.info()["version"]["number"]


def test_plain_client_refuses_opensearch_and_es8_with_9x_client():
    import elasticsearch
    with FakeElasticsearch("opensearch2") as es:
        with pytest.raises(elasticsearch.ApiError):
            elasticsearch.Elasticsearch(es.url).info()     # 406: vnd.elasticsearch media type
    if int(elasticsearch.__versionstr__.split(".")[0]) >= 9:
        with FakeElasticsearch("elasticsearch8") as es:
            with pytest.raises(elasticsearch.BadRequestError):
                elasticsearch.Elasticsearch(es.url).info()  # compatible-with=9 refused by ES 8


def test_opensearch_flavour_refuses_elasticsearch():
    with FakeElasticsearch("elasticsearch9") as es:
        with pytest.raises(elastic.ElasticConfigError, match="does not say distribution 'opensearch'"):
            elastic.make_client(es.url, "opensearch2")


def test_product_check_still_applies_without_opensearch_distribution():
    """The node only vouches for servers that said distribution=opensearch."""
    import elasticsearch
    NodeClass = elastic._compat_node_class("opensearch2")
    with FakeElasticsearch("opensearch2") as es:
        client = elasticsearch.Elasticsearch(es.url, node_class=NodeClass)
        NodeClass._opensearch_confirmed = False
        es.info = lambda: {"version": {"number": "2.0.0"}, "tagline": "not opensearch"}
        with pytest.raises(elasticsearch.UnsupportedProductError):
            client.info()


def test_document_of_a_hidden_source_holds_none_of_its_fields():
    import json
    from intelmq_crossborder.core.fingerprint import fingerprint
    source = {"feed.url": "https://feeds.secret-originator.example/cti", "feed.name": "Secret Originator Feed",
              "event_description.url": "https://misp.secret-originator.example/events/view/4242",
              "misp.event_uuid": "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "provenance.originator": "cert-x",
              "raw": "c2VjcmV0LW9yaWdpbmF0b3I="}
    for hide in ({"sharing.do_not_disclose_source": True}, {"extra.misp_tags": [{"name": "tlp:ex:chr"}]}):
        flat = {"source.ip": "192.0.2.1", "sharing.tlp": "GREEN", **source, **hide}
        flat["provenance.fingerprint"] = fingerprint(flat)            # over event_description.url
        doc = elastic.build_document(flat, label=elastic.lake_tlp(flat, tlp.Level.AMBER), prefix="lake", rotation="daily",
                                     default_retention_days=None, now=NOW, drop_fields=())
        written = json.dumps([doc.id, doc.source])
        assert not any(value in written for value in source.values())
        assert doc.id != flat["provenance.fingerprint"] and doc.source["sharing"]["do_not_disclose_source"] is True
    shown = elastic.build_document({"source.ip": "192.0.2.1", "feed.name": "Public"}, label=GREEN,
                                   prefix="lake", rotation="daily", default_retention_days=None, now=NOW)
    assert shown.source["feed"]["name"] == "Public"


@pytest.mark.parametrize("flat, field", [
    ({"extra.tlp": ["RED"]}, "extra.tlp"),
    ({"extra.misp_tags": [{"name": "tlp\u200b:red"}]}, "extra.misp_tags[0].name"),
    ({"extra.misp_tags": [{"colour": "#cc0033"}]}, "extra.misp_tags[0]"),
])
def test_lake_tlp_refuses_hostile_labels_naming_the_field(flat, field):
    with pytest.raises(tlp.LabelError) as err:
        elastic.lake_tlp(dict(flat, **{"sharing.tlp": "GREEN"}), tlp.Level.GREEN)
    assert err.value.field == field


def test_document_follows_the_label_it_is_given():
    # build_document reads no label itself: the level and the hidden source are lake_tlp's
    flat = {"source.ip": "192.0.2.1", "sharing.tlp": "GREEN", "feed.url": "https://x.example/"}
    doc = elastic.build_document(flat, label=elastic.LakeTLP(tlp.Level.RED, True), prefix="lake",
                                 rotation="daily", default_retention_days=None, now=NOW)
    assert "feed" not in doc.source and doc.source["sharing"]["tlp"] == "RED" and doc.level is tlp.Level.RED
    doc = elastic.build_document(flat, label=GREEN, prefix="lake", rotation="daily",
                                 default_retention_days=None, now=NOW)
    assert doc.source["feed"]["url"] == "https://x.example/"
