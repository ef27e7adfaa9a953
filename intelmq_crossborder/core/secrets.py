"""Secrets (HMAC keys, API keys, passphrases): THE place they are read.

A secret comes from a parameter (runtime.yaml, which the operator protects) or, when the
parameter is empty, from an environment variable; never from the repository. The value is
never logged: :func:`redact_in_logs` registers it with a filter that masks it in every
record of the given loggers.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Union

__all__ = ["secret", "secret_bytes", "redact_in_logs", "MASK"]

MASK = "***"


def secret(value: Optional[Union[str, bytes]], env_var: Optional[str] = None) -> Optional[str]:
    """The secret from ``value``, else from the environment variable ``env_var``; None if
    neither is set. An empty string (as IntelMQ Manager saves an untouched field) is unset; an
    integer is taken as its digits; any other type raises ValueError (the caller names the parameter)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)      # `hmac_password: 12345678` in YAML: the operator meant these digits
    elif value is not None and not isinstance(value, str):
        raise ValueError(f"a secret must be a string, not {type(value).__name__}")
    if value:
        return value
    if env_var:
        env = os.environ.get(env_var)
        if env:
            return env
    return None


def secret_bytes(value: Optional[Union[str, bytes]], env_var: Optional[str] = None) -> Optional[bytes]:
    """:func:`secret` as bytes (HMAC keys, passphrases): UTF-8, and an environment value that
    is not UTF-8 as the bytes it was (Python hands it over with surrogate escapes)."""
    if isinstance(value, bytes) and value:
        return value
    text = secret(value, env_var)
    return None if text is None else text.encode("utf-8", "surrogateescape")


class _Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__("crossborder-secrets")
        self.secrets: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:       # a record whose arguments do not format: leave it to logging
            return True
        masked = text
        for value in self.secrets:
            if value in masked:
                masked = masked.replace(value, MASK)
        if masked != text:
            record.msg, record.args = masked, None
        return True


_REDACTOR = _Redactor()


def redact_in_logs(value: Optional[str], *loggers: logging.Logger) -> None:
    """Mask ``value`` in every record of ``loggers`` (and of their handlers) from now on.
    Values shorter than 4 characters are not registered (they would mask ordinary text)."""
    if not value or len(value) < 4:
        return
    _REDACTOR.secrets.add(value)
    for logger in loggers:
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)
        for handler in logger.handlers:
            if _REDACTOR not in handler.filters:
                handler.addFilter(_REDACTOR)
