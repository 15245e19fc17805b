"""The typed snapshot record (core/records.py Snapshot) and its walk (core/layout.py): records
written before it load and save back byte for byte, a new one is written with the keys and
order the untyped code wrote, keys of a newer version survive, and a corrupt one is refused
naming its file and field, or skipped where the caller asks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flexvol.core import layout, snapshots, state, wirejson
from flexvol.core.config import Config
from flexvol.core.errors import StateCorrupt
from flexvol.core.records import Snapshot

# Exactly what core/snapshots.py wrote before typed snapshot records: a ready CSI snapshot of a
# mounted volume, one of an idle volume made by the toolkit, and one still being taken.
CSI_SNAPSHOT = (b'{"schema":1,"name":"snapshot-5f2c","source_volume":"pvc-0b6c","size_bytes":67108864,'
                b'"fs_type":"ext4","uuid":"5e0c","created_at":"2026-12-05T10:00:00Z","ready":true,'
                b'"csi_name":"snapshot-5f2c","frozen":true,"method":"reflink"}\n')
TOOLKIT_SNAPSHOT = (b'{"schema":1,"name":"data-1-monday","source_volume":"data-1","size_bytes":1073741824,'
                    b'"fs_type":"xfs","uuid":"77aa","created_at":"2026-12-01T08:00:00Z","ready":true,'
                    b'"frozen":false,"method":"copy"}\n')
PARTIAL = (b'{"schema":1,"name":"half","source_volume":"data-1","size_bytes":1048576,"fs_type":"btrfs",'
           b'"uuid":"u","created_at":"2026-12-01T08:00:00Z","ready":false}\n')


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    snapshots.ensure_dir(config)
    return config


def write(config: Config, name: str, data: bytes) -> str:
    path = snapshots.record_path(config, name)
    Path(path).write_bytes(data)
    return path


@pytest.mark.parametrize("name,data", [("snapshot-5f2c", CSI_SNAPSHOT), ("data-1-monday", TOOLKIT_SNAPSHOT),
                                       ("half", PARTIAL)])
def test_a_snapshot_record_as_written_before_loads_and_saves_back_byte_for_byte(
        config: Config, name: str, data: bytes) -> None:
    path = write(config, name, data)
    record = snapshots.load_snapshot(config, name)
    assert isinstance(record, Snapshot) and record.name == name
    os.remove(path)
    snapshots._save(config, record)
    assert Path(path).read_bytes() == data


def test_the_fields_of_a_snapshot_read_as_attributes(config: Config) -> None:
    write(config, "snapshot-5f2c", CSI_SNAPSHOT)
    record = snapshots.load_snapshot(config, "snapshot-5f2c")
    assert record is not None
    assert (record.source_volume, record.size_bytes, record.fs_type, record.uuid, record.ready,
            record.csi_name, record.frozen, record.method, record.block) == (
        "pvc-0b6c", 64 << 20, "ext4", "5e0c", True, "snapshot-5f2c", True, "reflink", None)


def test_a_new_snapshot_is_written_with_the_keys_the_untyped_code_wrote(config: Config) -> None:
    """The untyped code's two writes (claimed, then ready), rebuilt here as it made them."""
    old = {"schema": 1, "name": "s1", "source_volume": "v1", "size_bytes": 4096, "fs_type": "ext4",
           "uuid": "u1", "created_at": "2026-12-06T00:00:00Z", "ready": False, "csi_name": "s1"}
    record = Snapshot("s1", "v1", 4096, "2026-12-06T00:00:00Z")
    record.fs_type, record.uuid = "ext4", "u1"
    record.set_fields({"csi_name": "s1"})
    assert wirejson.dumps(record.to_json()) == wirejson.dumps(old)
    old.update(frozen=False, method="copy")
    old["ready"] = True
    record.frozen, record.method, record.ready = False, "copy", True
    assert wirejson.dumps(record.to_json()) == wirejson.dumps(old)


def test_a_raw_block_snapshot_says_block_and_holds_no_filesystem() -> None:
    record = Snapshot("s2", "raw", 4096, "t")
    record.block = True
    assert record.to_json() == {"schema": 1, "name": "s2", "source_volume": "raw", "size_bytes": 4096,
                                "fs_type": None, "uuid": None, "created_at": "t", "ready": False,
                                "block": True}


def test_keys_of_a_newer_flexvol_survive_a_load_change_and_save(config: Config) -> None:
    newer = CSI_SNAPSHOT.replace(b'"ready":true,', b'"ready":true,"labels":{"team":"a"},')
    path = write(config, "snapshot-5f2c", newer)
    record = snapshots.load_snapshot(config, "snapshot-5f2c")
    assert record is not None and record.extra == {"labels": {"team": "a"}}
    record.method = "copy"
    snapshots._save(config, record)
    assert Path(path).read_bytes() == newer.replace(b'"method":"reflink"', b'"method":"copy"')
    unknown = Snapshot("s3", "v1", 1, "t")
    unknown.set_fields({"origin": "backup"})
    assert unknown.extra == {"origin": "backup"} and unknown.to_json()["origin"] == "backup"


@pytest.mark.parametrize("field,value,says", [("size_bytes", '"64Mi"', "not a whole number"),
                                               ("ready", '"yes"', "not true or false"),
                                               ("fs_type", "7", "not a string or null")])
def test_a_snapshot_field_of_the_wrong_type_is_refused_naming_file_and_field(
        config: Config, field: str, value: str, says: str) -> None:
    data = CSI_SNAPSHOT.decode()
    start = data.index(f'"{field}":') + len(field) + 3
    end = min(index for index in (data.find(",", start), data.find("}", start)) if index != -1)
    path = write(config, "snapshot-5f2c", (data[:start] + value + data[end:]).encode())
    with pytest.raises(StateCorrupt) as caught:
        snapshots.load_snapshot(config, "snapshot-5f2c")
    assert caught.value.message.startswith(f"snapshot record {path} is corrupt: '{field}' is ")
    assert says in caught.value.message


def test_the_snapshot_walk_is_sorted_skips_temporary_files_and_reports_corrupt_ones(config: Config) -> None:
    write(config, "snapshot-5f2c", CSI_SNAPSHOT)
    write(config, "data-1-monday", TOOLKIT_SNAPSHOT)
    write(config, "half", PARTIAL)
    directory = snapshots.snapshots_dir(config)
    Path(directory, ".half.json.77.tmp").write_bytes(b"{")
    assert [item.name for item in layout.iter_snapshots(config)] == ["data-1-monday", "half", "snapshot-5f2c"]
    # Listing: ready ones, oldest first; by volume.
    assert [item.name for item in snapshots.list_snapshots(config)] == ["data-1-monday", "snapshot-5f2c"]
    assert [item.name for item in snapshots.list_snapshots(config, "data-1", partial=True)] == [
        "data-1-monday", "half"]
    write(config, "broken", b"garbage{")
    os.rename(write(config, "elsewhere", TOOLKIT_SNAPSHOT.replace(b"data-1-monday", b"other")),
              snapshots.record_path(config, "moved"))
    with pytest.raises(StateCorrupt):
        snapshots.list_snapshots(config)
    seen: list[str] = []
    found = snapshots.list_snapshots(config, partial=True, on_corrupt=lambda path, error: seen.append(
        error.message))
    assert [item.name for item in found] == ["data-1-monday", "half", "snapshot-5f2c"]
    assert seen == [f"record {snapshots.record_path(config, 'broken')} is corrupt",
                    f"snapshot record {snapshots.record_path(config, 'moved')} names snapshot 'other'"]


def test_a_corrupt_partial_snapshot_does_not_stop_other_snapshots_and_is_deletable(config: Config) -> None:
    write(config, "broken", b'{"schema":1,"name":"broken","source_volume":"v1","ready":"no"}\n')
    state.ensure_dirs(config)
    assert snapshots.clean_leftovers(config) == []  # skipped, not raised: repair reports it
    from flexvol.core.journal import CallInfo

    removed = snapshots.delete_snapshot(config, "broken", CallInfo("test"))
    assert removed == [snapshots.record_path(config, "broken")]
