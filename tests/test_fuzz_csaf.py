"""Fuzz the CSAF parser (load, schema validation, mapping, harmonization fill) with damaged real advisories.

Every input either parses into events IntelMQ accepts, or raises one of the documented
errors (CSAFError / CSAFDocumentError / UnknownTLPError) whose message names the source.
XB_FUZZ_EXAMPLES sets the number of cases (default 10,000 per test).
"""
import json
from pathlib import Path

import pytest
from hypothesis import given
from intelmq.lib.message import Event

from intelmq_crossborder import harmonization

from intelmq_crossborder.formats.csaf import document as csaf

from intelmq_crossborder.core import tlp
from tests import fuzzing

pytestmark = pytest.mark.fuzz     # full size in make test, smoke size in make test-fast (docs/testing.md)

FIXTURES = Path(__file__).parent / "fixtures" / "csaf"
SEED_FILES = [FIXTURES / "advisories" / n for n in ("2022-evd-uc-01-a-001.json", "rhsa-2019_1862.json",
                                                    "avendor-advisory-0004.json")] + \
             [FIXTURES / "csaf21" / "oasis_csaf_tc-csaf_2_1-2024-6-1-38-11.json"]
SEED_BYTES = [p.read_bytes() for p in SEED_FILES]
SEED_DOCS = [json.loads(b) for b in SEED_BYTES]
HARM = harmonization.merged_harmonization()
SOURCE = "https://provider.example/csaf/fuzz-case.json"
DOCUMENTED = (csaf.CSAFError, tlp.UnknownTLPError)


def run_parser(data) -> None:
    """What the CSAF parser bot does with one advisory; raises only the documented errors."""
    with fuzzing.time_guard():
        try:
            result = csaf.parse_document(data, source=SOURCE, source_url=SOURCE, default_tlp=tlp.Level.AMBER,
                                         include_raw=False)
        except DOCUMENTED as exc:
            message = str(exc)
            assert message.strip(), "an error with an empty message"
            if isinstance(exc, csaf.CSAFError):
                assert SOURCE in message, f"the error does not name the document: {message[:300]}"
            return
        for flat in result.events:
            assert isinstance(flat, dict)
            event = Event(harmonization=HARM)
            csaf.fill_event(event, flat)         # rejected optional values are returned, never raised
            assert event.get("sharing.tlp") in {level.label for level in tlp.Level}


def _record(test_name: str, data: bytes):
    try:
        run_parser(data)
    except BaseException:
        fuzzing.save_crasher("csaf", data, test_name, ".json")
        raise


@fuzzing.fuzz_settings(0.7)
@given(fuzzing.mutated_json(SEED_DOCS))
def test_fuzz_csaf_structural(doc):
    _record("csaf_structural", fuzzing.dumps(doc))


@fuzzing.fuzz_settings(0.3)
@given(fuzzing.mutated_bytes(SEED_BYTES))
def test_fuzz_csaf_bytes(data):
    _record("csaf_bytes", data)


@pytest.mark.parametrize("path", sorted((fuzzing.FUZZ_DIR / "csaf").glob("*")), ids=lambda p: p.name)
def test_csaf_crasher_regressions(path):
    run_parser(path.read_bytes())
