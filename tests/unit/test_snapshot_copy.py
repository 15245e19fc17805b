"""The pieces of snapshots that need no root: the sparse copy (holes stay holes, data is copied
exactly, progress counts data only), snapshot names, and what the budget counts of snapshots."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flexvol.core import budget, filecopy, snapshots, state
from flexvol.core.budget import Pool
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError, InvalidInput

MiB = 1 << 20


def sparse_file(path: Path) -> dict[int, bytes]:
    """64 MiB of holes with three runs of data; offset -> bytes written."""
    pieces = {0: os.urandom(4096), 10 * MiB: os.urandom(3 * MiB), 63 * MiB: os.urandom(MiB)}
    with open(path, "wb") as handle:
        handle.truncate(64 * MiB)
        for offset, data in pieces.items():
            handle.seek(offset)
            handle.write(data)
    return pieces


def test_sparse_copy_copies_the_data_and_keeps_the_holes(tmp_path: Path) -> None:
    source, copy = tmp_path / "a.img", tmp_path / "b.img"
    sparse_file(source)
    seen: list[tuple[int, int]] = []
    method = filecopy.copy_file(str(source), str(copy), allow_reflink=False,
                                progress=lambda done, total: seen.append((done, total)))
    assert method == filecopy.COPY
    assert copy.read_bytes() == source.read_bytes()
    assert os.stat(copy).st_size == 64 * MiB
    assert os.stat(copy).st_blocks * 512 <= os.stat(source).st_blocks * 512 + MiB  # holes stayed holes
    totals = {total for _, total in seen}
    assert len(totals) == 1 and totals.pop() < 8 * MiB  # progress counts data, never the holes
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1][0] == seen[-1][1]


def test_copy_refuses_an_existing_destination_and_names_a_missing_source(tmp_path: Path) -> None:
    (tmp_path / "a.img").write_bytes(b"x")
    (tmp_path / "b.img").write_bytes(b"keep")
    with pytest.raises(FlexvolError, match="cannot create"):
        filecopy.copy_file(str(tmp_path / "a.img"), str(tmp_path / "b.img"))
    assert (tmp_path / "b.img").read_bytes() == b"keep"
    with pytest.raises(FlexvolError, match="does not exist"):
        filecopy.copy_file(str(tmp_path / "missing.img"), str(tmp_path / "c.img"))
    assert not (tmp_path / "c.img").exists()


@pytest.mark.parametrize("name", ["", "Bad", "a/b", "-x", "x" * 64, "@snapshot.x"])
def test_snapshot_names_follow_the_volume_id_rules(name: str) -> None:
    with pytest.raises(InvalidInput, match="snapshot name"):
        snapshots.check_name(name)


def test_budget_counts_what_snapshots_hold_and_promises_the_reflinked_share(tmp_path: Path) -> None:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    os.makedirs(snapshots.snapshots_dir(config))
    for name, method in (("copied", "copy"), ("shared", "reflink")):
        with open(snapshots.snapshot_file(config, name), "wb") as handle:
            handle.truncate(64 * MiB)
            handle.write(os.urandom(MiB))
        Path(snapshots.record_path(config, name)).write_text(json.dumps({"name": name, "method": method}))
    held, shared = budget.snapshot_usage(config)
    one = os.stat(snapshots.snapshot_file(config, "copied")).st_blocks * 512
    assert held == 2 * one and shared == one  # sizes (64 MiB each) never count
    found = Pool("/p", 320 * MiB, 200 * MiB, 1.0, {"v": (64 * MiB, 64 * MiB)}, (held, shared))
    assert found.committed_bytes == 64 * MiB and found.promised_bytes == shared
    assert found.available_bytes == 200 * MiB - shared
    assert budget.measure(config).snapshot_bytes == held
