"""core.secrets: where secrets come from, what counts as unset, and that logs never show them."""
import logging

import pytest

from intelmq_crossborder.core import secrets


def test_parameter_wins_then_environment_then_none(monkeypatch):
    monkeypatch.setenv("XB_TEST_SECRET", "from-env")
    assert secrets.secret("from-param", "XB_TEST_SECRET") == "from-param"
    assert secrets.secret("", "XB_TEST_SECRET") == "from-env"       # IntelMQ Manager's untouched field
    assert secrets.secret(None, "XB_TEST_SECRET") == "from-env"
    monkeypatch.delenv("XB_TEST_SECRET")
    assert secrets.secret("", "XB_TEST_SECRET") is None
    assert secrets.secret(None) is None


def test_types():
    assert secrets.secret(12345678) == "12345678"
    assert secrets.secret_bytes(12345678) == b"12345678"
    for value in (True, 1.5, ["a"], {"a": 1}):
        with pytest.raises(ValueError, match="must be a string"):
            secrets.secret(value)


def test_environment_value_that_is_not_utf8_keeps_its_bytes(monkeypatch):
    monkeypatch.setenv("XB_TEST_SECRET", b"k\xffey".decode("utf-8", "surrogateescape"))
    assert secrets.secret_bytes(None, "XB_TEST_SECRET") == b"k\xffey"


def test_redacted_in_logs(caplog):
    logger = logging.getLogger("xb-test-secrets")
    secrets.redact_in_logs("s3cr3t-value", logger)
    with caplog.at_level(logging.INFO, logger="xb-test-secrets"):
        logger.info("token %s and again s3cr3t-value", "s3cr3t-value")
    assert "s3cr3t-value" not in caplog.text and "***" in caplog.text
