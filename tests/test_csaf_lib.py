"""Unit tests of intelmq_crossborder.formats.csaf.document (validation and mapping) and csaf_output, without IntelMQ bots."""
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intelmq_crossborder.formats.csaf import document as csaf, provider as csaf_output

from intelmq_crossborder.core import tlp
FIX = Path(__file__).resolve().parent / "fixtures" / "csaf"
VALID = sorted(p for p in (FIX / "advisories").glob("*.json")
               if not p.name.startswith("malformed-") and p.name != "rhba-2023_0564.json")
CSAF21 = sorted((FIX / "csaf21").glob("*.json"))


def load(path):
    return json.loads(Path(path).read_bytes())


@pytest.mark.parametrize("path", VALID + CSAF21, ids=lambda p: p.name)
def test_real_advisories_validate(path):
    assert csaf.check_document(load(path), str(path))


def test_schemas_resolve_offline_cvss_refs():
    """A CVSS object violating the FIRST schema is caught: the $ref was resolved from the package."""
    doc = load(FIX / "advisories" / "icsma-17-009-01a.json")
    assert csaf.validate(doc) == ([], 0)
    doc["vulnerabilities"][0]["scores"][0]["cvss_v3"]["vectorString"] = "CVSS:3.1/AV:X"
    problems, total = csaf.validate(doc)
    assert total == 1 and problems[0].path == "$.vulnerabilities[0].scores[0].cvss_v3"


def test_registry_has_no_network_retrieval():
    from referencing.exceptions import Unresolvable
    resolver = csaf.schema_registry().resolver()
    with pytest.raises(Unresolvable):
        resolver.lookup("https://example.org/not-shipped.json")
    resolver.lookup("https://www.first.org/cvss/cvss-v3.1.json")


def test_invalid_real_document_names_paths_and_tracking_id():
    with pytest.raises(csaf.CSAFDocumentError) as info:
        csaf.parse_document((FIX / "advisories" / "rhba-2023_0564.json").read_bytes(), source="rhba.json")
    err = info.value
    assert err.tracking_id == ""
    assert "$.document.tracking.id" in [p.path for p in err.problems]
    assert str(err).startswith("rhba.json: not a valid CSAF 2.0 document (tracking id ''): ")


def test_product_tree_branches_and_relationships():
    tree = csaf.ProductTree(load(FIX / "advisories" / "cve-2023-33201.json")["product_tree"])
    product = tree.resolve("cryostat_2:bouncycastle")
    assert (product.name, product.vendor, product.platform) == ("bouncycastle", "Red Hat", "Cryostat 2")
    bsi = csaf.ProductTree(load(FIX / "advisories" / "bsi-2022-0001.json")["product_tree"])
    p = bsi.resolve("CSAFPID-0001")
    assert (p.vendor, p.name, p.version) == ("CSAF Tools", "CVRF-CSAF-Converter", "1.0.0-alpha")
    assert bsi.resolve("NOPE").full_name == "NOPE"


def test_product_groups_expand():
    tree = csaf.ProductTree({"full_product_names": [{"name": "A", "product_id": "A"},
                                                    {"name": "B", "product_id": "B"}],
                             "product_groups": [{"group_id": "G", "product_ids": ["A", "B"]}]})
    assert tree.expand(["A"], ["G"]) == {"A", "B"}


@pytest.mark.parametrize("score,version,expected", [
    (0.0, "3.1", "info"), (3.9, "3.0", "low"), (4.0, "3.1", "medium"), (7.0, "3.1", "high"),
    (9.0, "3.1", "critical"), (3.9, "2.0", "low"), (6.9, "2.0", "medium"), (10.0, "2.0", "high")])
def test_severity(score, version, expected):
    assert csaf.severity_from_score(score, version) == expected


def test_cvss_v3_preferred_over_v2():
    vuln = {"scores": [{"products": ["P"], "cvss_v2": {"version": "2.0", "vectorString": "AV:N/AC:L/Au:N/C:P/I:P/A:P",
                                                       "baseScore": 7.5},
                        "cvss_v3": {"version": "3.0", "vectorString": "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N",
                                    "baseScore": 5.3, "baseSeverity": "MEDIUM"}}]}
    assert csaf.cvss_for_product(vuln, "P")["version"] == "3.0"
    del vuln["scores"][0]["cvss_v3"]
    assert csaf.cvss_for_product(vuln, "P") == {"score": 7.5, "vector": "AV:N/AC:L/Au:N/C:P/I:P/A:P",
                                                "version": "2.0", "severity": "high"}
    assert csaf.cvss_for_product(vuln, "OTHER") is None


def test_normalise_datetime():
    assert csaf.normalise_datetime("2024-08-27T00:00:00") == ("2024-08-27T00:00:00+00:00", True)
    assert csaf.normalise_datetime("2022-03-17T13:03:42.105Z") == ("2022-03-17T13:03:42.105000+00:00", False)
    assert csaf.normalise_datetime("2024-01-01T02:00:00+02:00") == ("2024-01-01T00:00:00+00:00", False)
    assert csaf.normalise_datetime("yesterday") == (None, False)


def test_tlp_labels_2_0_and_2_1():
    assert csaf.document_tlp(load(FIX / "csaf21" / "oasis_csaf_tc-csaf_2_1-2024-6-1-38-12.json")).level \
        is tlp.Level.AMBER_STRICT
    assert csaf.document_tlp(load(FIX / "advisories" / "bsi-2022-0001.json")).level is tlp.Level.CLEAR
    assert csaf.document_tlp(load(FIX / "advisories" / "2022-evd-uc-01-a-001.json")) is None


def test_default_tlp_only_when_absent():
    doc = load(FIX / "advisories" / "2022-evd-uc-01-a-001.json")
    result = csaf.document_events(doc, default_tlp=tlp.Level.AMBER_STRICT)
    assert result.tlp_source == "default"
    assert {e["sharing.tlp"] for e in result.events} == {"AMBER+STRICT"}
    assert {e["tlp"] for e in result.events} == {"RED"}


def test_every_valid_document_gives_at_least_one_event():
    for path in VALID + CSAF21:
        result = csaf.document_events(load(path))
        assert result.events, path.name
        for event in result.events:
            assert event["classification.type"] in ("vulnerable-system", "other")
            assert event["sharing.tlp"] in ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")


@pytest.mark.parametrize("path", [p for p in VALID if load(p).get("vulnerabilities")], ids=lambda p: p.name)
def test_output_of_parsed_real_advisories_passes_schema(path):
    """Parse a real advisory, write it back as CSAF: the result passes the CSAF 2.0 schema."""
    result = csaf.document_events(load(path), include_raw=False)
    doc = csaf_output.build_advisory(result.events, tracking_id="HUB-TEST-1",
                                     publisher={"category": "coordinator", "name": "Hub",
                                                "namespace": "https://hub.example.org"})
    assert csaf.validate(doc) == ([], 0)
    again = csaf.document_events(doc, include_raw=False)
    cves = {e.get("product.vulnerabilities") for e in result.events}
    assert {e.get("product.vulnerabilities") for e in again.events} == cves


label_st = st.sampled_from(["CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED"])
text_st = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(str.strip)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "sharing.tlp": label_st,
    "product.vulnerabilities": st.from_regex(r"cve-20[0-9]{2}-[0-9]{4,6}", fullmatch=True),
    "product.vendor": text_st, "product.name": text_st,
    "product.version": st.one_of(st.none(), text_st),
    "vulnerability.product_status": st.sampled_from(csaf_output.STATUS_KEYS),
    "vulnerability.cvss_base_score": st.floats(0, 10).map(lambda f: round(f, 1)),
    "event_description.text": text_st,
}), min_size=1, max_size=8))
def test_output_property_schema_valid_and_tlp_ceiling(events):
    events = [{k: v for k, v in e.items() if v is not None} for e in events]
    for e in events:
        e["vulnerability.cvss_vector"] = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    doc = csaf_output.build_advisory(events, tracking_id="HUB-PROP-1",
                                     publisher={"category": "coordinator", "name": "Hub",
                                                "namespace": "https://hub.example.org"})
    assert csaf.validate(doc) == ([], 0)
    level = max(tlp.Level.from_label(e["sharing.tlp"]) for e in events)
    written = tlp.parse_csaf(doc["document"]["distribution"]["tlp"]["label"], "2.0").level
    assert written >= level      # never less restrictive than the most restrictive event


def test_output_refuses_event_without_tlp():
    with pytest.raises(csaf_output.OutputError, match="sharing.tlp"):
        csaf_output.build_advisory([{"product.vulnerabilities": "cve-2024-0001"}], tracking_id="X",
                                   publisher={"category": "other", "name": "n", "namespace": "https://n"})


def test_byte_order_mark_is_accepted():
    raw = (FIX / "advisories" / "icsma-17-009-01a.json").read_bytes()
    assert csaf.parse_document(b"\xef\xbb\xbf" + raw).events
    assert csaf.parse_document("\ufeff" + raw.decode()).events


def test_csaf21_document_with_broken_distribution_is_a_schema_error_not_a_crash():
    doc = load(FIX / "csaf21" / "oasis_csaf_tc-csaf_2_1-2024-6-1-38-11.json")
    doc["document"]["distribution"] = {"tlp": "RED"}
    with pytest.raises(csaf.CSAFDocumentError, match=r"\$\.document\.distribution\.tlp"):
        csaf.check_document(doc)
