"""delete_volume on files and records (no loop device: see tests/integration for those)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput, Refused
from flexvol.provisioning.deletion import delete_volume


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config


def test_removes_the_file_and_record_of_that_volume_only(config: Config) -> None:
    for volume_id in ("v1", "v2"):
        state.save_record(config, state.new_record(volume_id, 1 << 20, "ext4"))
        Path(config.backing_file(volume_id)).write_bytes(b"data")
    assert delete_volume(config, "v1") is True
    assert not os.path.exists(config.backing_file("v1"))
    assert state.load_record(config, "v1") is None
    assert Path(config.backing_file("v2")).read_bytes() == b"data"
    assert state.load_record(config, "v2") is not None


def test_a_volume_attached_to_a_node_is_refused(config: Config) -> None:
    state.save_record(config, state.new_record("v1", 1 << 20, "ext4"))
    Path(config.backing_file("v1")).write_bytes(b"data")
    state.save_pv(config, "pv-1", "v1", ["worker-1"])
    with pytest.raises(Refused, match="attached to node"):
        delete_volume(config, "v1")
    assert Path(config.backing_file("v1")).exists()


def test_nothing_to_delete_is_not_an_error(config: Config, tmp_path: Path) -> None:
    assert delete_volume(config, "never-made") is False
    assert delete_volume(Config(str(tmp_path / "no-root")), "v1") is False
    assert not (tmp_path / "no-root").exists()


@pytest.mark.parametrize("volume_id", ["", "../records/v1", "V1", "a/b"])
def test_invalid_volume_ids_touch_nothing(config: Config, volume_id: str) -> None:
    with pytest.raises(InvalidInput):
        delete_volume(config, volume_id)
