"""write_atomic: a reader sees the old file or the new one, never half of one, and no temp file is left behind."""

import os
import stat

import pytest

from parity.files import write_atomic


def test_replaces_whole_file_with_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "policy.json"
    write_atomic(target, "old\n")
    write_atomic(target, "new\n", mode=0o600)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["policy.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keys.json"
    write_atomic(target, "kept")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(target, "\ud800 lone surrogate")
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]
