"""core.files: the one atomic writer. Readers see the old content or the new, never a part."""
import json
import os
import stat

import pytest

from intelmq_crossborder.core import files


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_replaces_creates_parents_and_sets_mode(tmp_path):
    target = tmp_path / "a" / "b" / "state.json"
    files.atomic_write(target, b"one")
    assert target.read_bytes() == b"one" and _mode(target) == 0o600
    files.atomic_write(target, b"two", mode=0o644)
    assert target.read_bytes() == b"two" and _mode(target) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]      # no temporary file left


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "state.json"
    files.atomic_write(target, b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_output(target) as fh:
            fh.write(b"half of the new")
            raise RuntimeError("disk went away")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_json_is_sorted_and_survives_a_lone_surrogate(tmp_path):
    target = tmp_path / "names.json"
    name = b"bundle-\xff.xbundle".decode("utf-8", "surrogateescape")
    files.atomic_write_json(target, {"b": 1, "a": name})
    text = target.read_text("ascii")
    assert text.index('"a"') < text.index('"b"')
    assert json.loads(text)["a"] == name


def test_move_durably_and_fsync_dir_of_a_missing_folder(tmp_path):
    source = tmp_path / "in" / "x"
    source.parent.mkdir()
    source.write_bytes(b"x")
    (tmp_path / "out").mkdir()
    files.move_durably(source, tmp_path / "out" / "x")
    assert not source.exists() and (tmp_path / "out" / "x").read_bytes() == b"x"
    files.fsync_dir(tmp_path / "missing")          # best effort: no exception
