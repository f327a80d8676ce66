"""Publishing whole or not at all (mnist_etc/atomic.py); the disk-full cases are in tests/faults/test_disk_full.py."""
import os
import stat

import pytest

from mnist_etc.atomic import staged_dir


def test_a_published_directory_has_the_usual_permissions_not_the_staging_ones(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    with staged_dir(tmp_path / "published") as tmp:
        (tmp / "f").write_text("x")
    # mkdtemp stages with 0700; a published model repository must stay readable by a server of another user
    assert stat.S_IMODE((tmp_path / "published").stat().st_mode) == 0o777 & ~mask


def test_a_failed_publication_leaves_the_previous_version_and_no_staging(tmp_path):
    with staged_dir(tmp_path / "m") as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "m") as tmp:
        (tmp / "v").write_text("2")
        raise RuntimeError("killed half-way")
    assert (tmp_path / "m" / "v").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
