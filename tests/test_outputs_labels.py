"""The CSAF output's library (csaf_output) under issue 12: the effective TLP of tlp.event_tlp decides,
RED and AMBER+STRICT are never published, and a hidden source never reaches an advisory."""
import json

import pytest

from intelmq_crossborder.formats.csaf import provider as csaf_output

from intelmq_crossborder.core import tlp
PUBLISHER = {"category": "coordinator", "name": "Example Hub", "namespace": "https://hub.example.org"}
SOURCE = {"csaf.tracking_id": "SECRET-2024-0042", "csaf.publisher": "Secret Originator PSIRT",
          "csaf.document_url": "https://csaf.secret-originator.example/2024/secret-2024-0042.json",
          "event_description.url": "https://misp.secret-originator.example/events/view/4242",
          "feed.url": "https://feeds.secret-originator.example/csaf", "provenance.originator": "psirt-x"}


def vuln(**fields):
    return {"product.vulnerabilities": "CVE-2024-3094", "product.vendor": "tukaani", "product.name": "xz",
            "product.version": "5.6.0", "classification.type": "vulnerable-system", "sharing.tlp": "GREEN",
            **fields}


def test_admit_reads_every_label_and_refuses_what_is_never_published():
    assert csaf_output.admit(vuln(**{"extra.tlp": "amber"}), tlp.Level.AMBER).level is tlp.Level.AMBER
    for fields, field, reason in (
            ({"extra.misp_tags": [{"name": "tlp:red"}]}, "extra.misp_tags[0].name", "never published"),
            ({"extra.tags": "tlp:amber+strict"}, "extra.tags[0]", "never leaves the organisation"),
            ({"tlp": "AMBER"}, "tlp", "above max_tlp GREEN"),
            ({"extra.tlp": ["RED"]}, "extra.tlp", "must be a string"),
            ({"extra.misp_tags": [{"name": "tlp\u200b:red"}]}, "extra.misp_tags[0].name", "look-alike"),
            ({"extra.misp_tags": [{"colour": "#cc0033"}]}, "extra.misp_tags[0]", "without a string 'name'")):
        with pytest.raises(csaf_output.OutputError) as err:
            csaf_output.admit(vuln(**fields), tlp.Level.GREEN)
        assert err.value.field == field and reason in err.value.reason
    unlabelled = vuln()
    del unlabelled["sharing.tlp"]
    with pytest.raises(csaf_output.OutputError, match="no TLP label"):
        csaf_output.admit(unlabelled, tlp.Level.AMBER)


def test_advisory_label_is_the_most_restrictive_effective_tlp():
    doc = csaf_output.build_advisory([vuln(), vuln(**{"extra.misp_tags": [{"name": "tlp:amber"}]})],
                                     tracking_id="HUB-1", publisher=PUBLISHER, now="2026-12-01T00:00:00Z")
    assert doc["document"]["distribution"]["tlp"]["label"] == "AMBER"


@pytest.mark.parametrize("hide", [{"sharing.do_not_disclose_source": True}, {"extra.tags": "osint,tlp:ex:chr"}])
def test_hidden_source_never_in_the_advisory(hide):
    shown = vuln(**{"csaf.tracking_id": "PUBLIC-1", "csaf.document_url": "https://public.example/public-1.json"})
    doc = csaf_output.build_advisory([vuln(**SOURCE, **hide), shown], tracking_id="HUB-CVE-2024-3094",
                                     publisher=PUBLISHER, now="2026-12-01T00:00:00Z")
    written = json.dumps(doc)
    assert not any(value in written for value in SOURCE.values())
    assert doc["document"]["title"] == "HUB-CVE-2024-3094"          # not the hidden tracking id
    assert [r["url"] for r in doc["document"]["references"]] == ["https://public.example/public-1.json"]


def test_a_red_document_is_never_written(tmp_path):
    doc = csaf_output.build_advisory([vuln(**{"sharing.tlp": "AMBER+STRICT"})], tracking_id="HUB-1",
                                     publisher=PUBLISHER, now="2026-12-01T00:00:00Z")
    assert doc["document"]["distribution"]["tlp"]["label"] == "RED"
    with pytest.raises(csaf_output.OutputError, match="never published"):
        csaf_output.ProviderDirectory(str(tmp_path)).write(doc)
    assert list(tmp_path.rglob("*")) == []
