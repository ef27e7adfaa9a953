"""Fuzz the STIX parser (JSON -> load -> Converter items -> IntelMQ event) with damaged real bundles.

What the STIX parser bot does per report, in process: every input either becomes
harmonization-valid IntelMQ events or an error of the parser's own (STIXFormatError naming the
report and, for an object, its JSON path). Anything else (a traceback of another type, a hang)
fails. 10,000 cases by default (XB_FUZZ_EXAMPLES scales it).
"""
import json
from pathlib import Path

import pytest
from hypothesis import given
from intelmq.lib.exceptions import InvalidValue
from intelmq.lib.message import Event

from tests import fuzzing
from intelmq_crossborder import harmonization
from intelmq_crossborder.formats.stix import parse as stix

pytestmark = pytest.mark.fuzz     # full size in make test, smoke size in make test-fast (docs/testing.md)
FIX = Path(__file__).parent / "fixtures" / "stix"
SEED_FILES = [FIX / "using-marking-definitions.json", FIX / "extra" / "oasis-elevator" / "141-TLP-marking-structures.json",
              FIX / "malformed" / "revoked-and-unconvertible.json"]
SEED_BYTES = [p.read_bytes() for p in SEED_FILES]
SEED_DOCS = [json.loads(b) for b in SEED_BYTES]
# a small 2.0 bundle with a container marking, observed-data in the inline form and a sighting
SEED_DOCS.append({"type": "bundle", "spec_version": "2.0", "id": "bundle--1", "objects": [
    {"type": "report", "id": "report--1", "object_refs": ["observed-data--1", "indicator--1"],
     "object_marking_refs": ["marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"]},
    {"type": "observed-data", "id": "observed-data--1", "objects": {
        "0": {"type": "ipv4-addr", "value": "192.0.2.1"}, "1": {"type": "ipv4-addr", "value": "192.0.2.2"},
        "2": {"type": "network-traffic", "src_ref": "0", "dst_ref": "1", "dst_port": 443}}},
    {"type": "indicator", "id": "indicator--1", "labels": ["malicious-activity", "tlp:amber"],
     "pattern": "[url:value = 'http://evil.example/a' OR domain-name:value = '192.0.2.9']"},
    {"type": "sighting", "id": "sighting--1", "sighting_of_ref": "indicator--1", "count": 3,
     "granular_markings": [{"marking_ref": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
                            "selectors": ["count"]}]}]})
HARM = harmonization.merged_harmonization()
WHERE = "report of feed fuzz-stix"


def run_parser(data: bytes) -> None:
    with fuzzing.time_guard():
        converter = stix.Converter(default_tlp="AMBER", where=WHERE)
        try:
            bundle = stix.loads(data, WHERE)
        except stix.STIXFormatError as exc:
            assert WHERE in str(exc), f"error does not name the report: {exc}"
            return
        for item in converter.items(bundle):
            item.raw()
            if item.error is not None:
                assert isinstance(item.error, stix.STIXFormatError)
                assert WHERE in str(item.error) and item.error.field, f"error names no field: {item.error}"
                continue
            for fields in item.events:
                assert fields.get("sharing.tlp"), "an event without a label although default_tlp is set"
                ev = Event(harmonization=HARM)
                for key, value in fields.items():
                    try:
                        ev.add(key, value, overwrite=True)
                    except InvalidValue:                  # the bot turns this into STIXFormatError
                        pass


def _record(test_name, data):
    try:
        run_parser(data)
    except BaseException:
        fuzzing.save_crasher("stix", data, test_name, ".json")
        raise


@fuzzing.fuzz_settings(0.5)
@given(fuzzing.mutated_json(SEED_DOCS))
def test_fuzz_stix_structural(doc):
    _record("stix_structural", fuzzing.dumps(doc))


@fuzzing.fuzz_settings(0.2)
@given(fuzzing.mutated_bytes(SEED_BYTES))
def test_fuzz_stix_bytes(data):
    _record("stix_bytes", data)


@pytest.mark.parametrize("path", sorted((fuzzing.FUZZ_DIR / "stix").glob("*")), ids=lambda p: p.name)
def test_stix_crasher_regressions(path):
    run_parser(path.read_bytes())
