"""Sharing agreements for tests: one writer for the folders of agreement YAML files that the router,
the policy CLI and the hostile-input suite read (docs/agreements.md describes the format).

Tests keep their agreements as indented YAML text in a dict (readable next to the assertions)::

    AGREEMENTS = {"cert-at": '''\\
        recipient: cert-at
        ...
        '''}
    folder = write_agreements(tmp_path / "agreements", AGREEMENTS)
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping


def write_agreements(directory: Path, texts: Mapping[str, str], *, replace: bool = False) -> Path:
    """Write one file per entry of ``texts`` into ``directory`` (created if missing) and return it.

    A key is a recipient id (written as ``<key>.yaml``) or a file name ending in ``.yaml``; the text
    is dedented, so it may be indented like the code around it.  ``replace`` first removes the
    ``*.yaml`` files already there (a test that reloads a changed set of agreements)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if replace:
        for old in directory.glob("*.yaml"):
            old.unlink()
    for key, text in texts.items():
        name = key if key.endswith(".yaml") else f"{key}.yaml"
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return directory
