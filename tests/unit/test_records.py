"""The typed records (core/records.py) and the walks of the record directories
(core/layout.py): files written by earlier versions load and save back byte for byte, keys of a
newer version survive, a field of the wrong type is refused with a message naming the file and
field, and walks skip temporary files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flexvol.core import layout, state, wirejson
from flexvol.core.config import Config
from flexvol.core.errors import StateCorrupt
from flexvol.core.records import SCHEMA, Attachment, Record, Target

# Exactly what the code before typed records wrote (state.save_record, save_target, save_pv).
RECORD = (b'{"schema":1,"volume_id":"pvc-0b6c","size_bytes":1073741824,"fs_type":"ext4",'
          b'"created_at":"2026-11-29T18:35:57Z","formatted":{"fs_type":"ext4","uuid":"5e0c",'
          b'"at":"2026-11-29T18:35:58Z"},"mkfs_started":null,"loop_device":"/dev/loop6",'
          b'"pv_names":["pvc-0b6c"],"allocation":"thick","namespace":"shop","reserved":true,'
          b'"pv_name":"pvc-0b6c","pv_uid":"9d2e","claim":"shop/data"}\n')
GROWING = (b'{"schema":1,"volume_id":"g1","size_bytes":67108864,"fs_type":"xfs",'
           b'"created_at":"2026-11-29T18:35:57Z","formatted":{"fs_type":"xfs","uuid":"u","at":"t"},'
           b'"mkfs_started":null,"loop_device":null,"pv_names":[],"adopted":true,"created_blank":true,'
           b'"growing":{"to":134217728,"since":"2026-11-30T08:00:00Z","error":"xfs_growfs failed"},'
           b'"created_by":"csi","csi_name":"pvc-x","ephemeral":true,"shareable":true}\n')
POD_DIR = "/var/lib/kubelet/pods/7c2e/volumes/flexvol~loop/data"
TARGET = (b'{"schema":1,"path":"/var/lib/kubelet/pods/7c2e/volumes/flexvol~loop/data",'
          b'"volume_id":"pvc-0b6c","pod":"shop/web-0","mode":"rw","fs_type":"ext4",'
          b'"mount_options":["noatime"]}\n')
OLD_TARGET = b'{"schema":1,"path":"/mnt/old","volume_id":"v1"}\n'
PV = b'{"schema":1,"pv_name":"pv-1","volume_id":"v1","nodes":["worker-1","worker-2"]}\n'


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("volume_id,data", [("pvc-0b6c", RECORD), ("g1", GROWING)])
def test_a_record_as_written_before_loads_and_saves_back_byte_for_byte(config: Config, volume_id: str,
                                                                       data: bytes) -> None:
    path = config.record_path(volume_id)
    write(path, data)
    record = state.load_record(config, volume_id)
    assert isinstance(record, Record) and record.volume_id == volume_id
    os.unlink(path)
    state.save_record(config, record)
    assert read(path) == data


def test_the_fields_of_a_record_read_as_attributes(config: Config) -> None:
    write(config.record_path("pvc-0b6c"), RECORD)
    write(config.record_path("g1"), GROWING)
    record = state.load_record(config, "pvc-0b6c")
    assert record is not None
    assert (record.size_bytes, record.fs_type, record.formatted_fs, record.loop_device) == (
        1 << 30, "ext4", "ext4", "/dev/loop6")
    assert (record.pv_names, record.allocation, record.reserved) == (["pvc-0b6c"], "thick", True)
    assert (record.namespace, record.pv_uid, record.claim) == ("shop", "9d2e", "shop/data")
    assert record.adopted is None and record.growing is None and record.csi_name is None
    grown = state.load_record(config, "g1")
    assert grown is not None and grown.growing == {"to": 128 << 20, "since": "2026-11-30T08:00:00Z",
                                                   "error": "xfs_growfs failed"}
    assert (grown.adopted, grown.ephemeral, grown.shareable, grown.csi_name) == (True, True, True, "pvc-x")
    assert grown.loop_device is None and grown.pv_names == []
    assert grown.extra == {"created_blank": True}  # obsolete: kept, never read


@pytest.mark.parametrize("mount_dir,data", [(POD_DIR, TARGET), ("/mnt/old", OLD_TARGET)])
def test_a_target_as_written_before_loads_and_saves_back_byte_for_byte(config: Config, mount_dir: str,
                                                                       data: bytes) -> None:
    path = state.target_path(config, mount_dir)
    write(path, data)
    target = state.load_target(config, mount_dir)
    assert isinstance(target, Target) and target.volume_id in ("pvc-0b6c", "v1")
    assert read(path) == data
    os.unlink(path)
    # save_target writes what it wrote before from the same arguments.
    state.save_target(config, mount_dir, target.volume_id, target.pod or "", mode=target.mode or "",
                      fs_type=target.fs_type or "", mount_options=tuple(target.mount_options or ()))
    assert read(path) == data


def test_a_pv_record_as_written_before_loads_and_saves_back_byte_for_byte(config: Config) -> None:
    path = state.pv_path(config, "pv-1")
    write(path, PV)
    attachment = state.load_pv(config, "pv-1")
    assert isinstance(attachment, Attachment)
    assert (attachment.pv_name, attachment.volume_id) == ("pv-1", "v1")
    assert attachment.nodes == ["worker-1", "worker-2"]
    os.unlink(path)
    state.save_pv(config, "pv-1", "v1", ["worker-2", "worker-1"])
    assert read(path) == PV


def test_a_new_record_is_written_with_the_keys_it_always_had(config: Config) -> None:
    record = state.new_record("v1", 1 << 20, "ext4")
    state.save_record(config, record)
    assert read(config.record_path("v1")) == (
        b'{"schema":1,"volume_id":"v1","size_bytes":1048576,"fs_type":"ext4","created_at":"'
        + record.created_at.encode() + b'","formatted":null,"mkfs_started":null,"loop_device":null,'
        b'"pv_names":[]}\n')


def test_keys_of_a_newer_flexvol_survive_a_load_change_and_save(config: Config) -> None:
    """A downgrade never loses what the newer version recorded."""
    newer = RECORD[:-2] + b',"snapshots":[{"name":"s1","at":"t"}],"tier":"fast"}\n'
    write(config.record_path("pvc-0b6c"), newer)
    record = state.load_record(config, "pvc-0b6c")
    assert record is not None and record.extra == {"snapshots": [{"name": "s1", "at": "t"}], "tier": "fast"}
    record.loop_device = "/dev/loop9"
    state.save_record(config, record)
    assert read(config.record_path("pvc-0b6c")) == newer.replace(b"/dev/loop6", b"/dev/loop9")
    target = TARGET[:-2] + b',"readonly_reason":"policy"}\n'
    write(state.target_path(config, POD_DIR), target)
    loaded = state.load_target(config, POD_DIR)
    assert loaded is not None and loaded.extra == {"readonly_reason": "policy"}
    assert Target.from_json(loaded.to_json(), "x").to_json() == loaded.to_json()


def test_an_optional_field_cleared_is_no_longer_written(config: Config) -> None:
    write(config.record_path("g1"), GROWING)
    record = state.load_record(config, "g1")
    assert record is not None
    record.growing = None
    record.shareable = None
    state.save_record(config, record)
    saved = read(config.record_path("g1"))
    assert b'"growing"' not in saved and b'"shareable"' not in saved and b'"adopted":true' in saved


@pytest.mark.parametrize("field,value,expected", [
    ("size_bytes", '"1G"', "'size_bytes' is str '1G', not a whole number"),
    ("size_bytes", "true", "'size_bytes' is bool True, not a whole number"),
    ("pv_names", '"pv-1"', "'pv_names' is str 'pv-1', not a list of strings"),
    ("pv_names", "[1]", "'pv_names' is list [1], not a list of strings"),
    ("formatted", '"ext4"', "'formatted' is str 'ext4', not an object or null"),
    ("loop_device", "6", "'loop_device' is int 6, not a string or null"),
    ("reserved", '"yes"', "'reserved' is str 'yes', not true or false or null"),
    ("volume_id", "null", "'volume_id' is null, not a string"),
])
def test_a_field_of_the_wrong_type_is_refused_naming_file_and_field(config: Config, field: str, value: str,
                                                                   expected: str) -> None:
    data = state.new_record("v1", 1 << 20, "ext4").to_json()
    data[field] = wirejson.loads(value)
    write(config.record_path("v1"), wirejson.dumps(data).encode())
    with pytest.raises(StateCorrupt) as caught:
        state.load_record(config, "v1")
    assert caught.value.message == f"volume record {config.record_path('v1')} is corrupt: {expected}"
    assert "move it aside" in caught.value.hint


def test_wrong_types_in_target_and_pv_records_are_refused(config: Config) -> None:
    write(state.target_path(config, "/mnt/a"), b'{"schema":1,"path":"/mnt/a","volume_id":"v1","mode":1}')
    with pytest.raises(StateCorrupt, match=r"mount target record .* 'mode' is int 1, not a string or null"):
        state.load_target(config, "/mnt/a")
    write(state.pv_path(config, "pv-1"), b'{"schema":1,"pv_name":"pv-1","volume_id":"v1","nodes":"n1"}')
    with pytest.raises(StateCorrupt, match=r"PV record .* 'nodes' is str 'n1', not a list of strings"):
        state.load_pv(config, "pv-1")
    write(state.pv_path(config, "pv-2"), b'{"schema":1,"pv_name":"pv-2","nodes":[]}')
    with pytest.raises(StateCorrupt, match=r"PV record .*pv-2.json is corrupt: it has no 'volume_id'"):
        state.load_pv(config, "pv-2")


@pytest.mark.parametrize("kind,schema", [(Record, 2), (Record, None), (Target, 2), (Attachment, "1")])
def test_another_schema_is_refused_with_upgrade_flexvol(kind: type, schema: object) -> None:
    data = {"volume_id": "v1", "path": "/mnt/a", "pv_name": "pv-1"}
    if schema is not None:
        data["schema"] = schema
    with pytest.raises(StateCorrupt) as caught:
        kind.from_json(data, "/root/records/v1.json")
    assert caught.value.message.endswith(f"/root/records/v1.json has schema {schema!r}, this flexvol "
                                         f"reads schema {SCHEMA}")
    assert caught.value.hint == "upgrade flexvol"


def test_not_an_object_is_corrupt() -> None:
    with pytest.raises(StateCorrupt, match="is corrupt: not a JSON object"):
        Record.from_json([1], "/root/records/v1.json")


def test_walks_skip_temporary_files_and_are_sorted(config: Config) -> None:
    for volume_id in ("b", "a", "c"):
        state.save_record(config, state.new_record(volume_id, 1 << 20, "ext4"))
    # A killed writer's temp files, and other files that are not records.
    write(os.path.join(config.records_dir, ".d.json.4242.tmp"), b"{")
    write(os.path.join(config.records_dir, ".e.json"), b"{")
    write(os.path.join(config.records_dir, "notes.txt"), b"x")
    assert [record.volume_id for record in layout.iter_records(config)] == ["a", "b", "c"]
    assert layout.record_ids(config) == ["a", "b", "c"]
    state.save_target(config, "/mnt/z", "a")
    state.save_target(config, "/mnt/y", "b")
    write(os.path.join(config.targets_dir, ".mnt%2Fx.json.99.tmp"), b"")
    assert [(os.path.basename(path), target.path) for path, target in layout.iter_targets(config)] == [
        ("mnt%2Fy.json", "/mnt/y"), ("mnt%2Fz.json", "/mnt/z")]
    state.save_pv(config, "pv-2", "b", ["n1"])
    state.save_pv(config, "pv-1", "a", ["n1"])
    write(os.path.join(config.pvs_dir, ".pv-3.json.7.tmp"), b"")
    assert [item.pv_name for item in layout.iter_attachments(config)] == ["pv-1", "pv-2"]


def test_walks_report_corrupt_entries_or_raise(config: Config) -> None:
    state.save_record(config, state.new_record("a", 1 << 20, "ext4"))
    write(config.record_path("b"), b"garbage{")
    other = state.new_record("other", 1 << 20, "ext4")
    state.save_record(config, other)
    os.rename(config.record_path("other"), config.record_path("c"))  # names another volume
    with pytest.raises(StateCorrupt, match=r"records/b.json is corrupt"):
        list(layout.iter_records(config))
    seen: list[tuple[str, str]] = []
    found = list(layout.iter_records(config, on_corrupt=lambda path, error: seen.append(
        (os.path.basename(path), error.message))))
    assert [record.volume_id for record in found] == ["a"]
    assert seen == [("b.json", f"record {config.record_path('b')} is corrupt"),
                    ("c.json", f"volume record {config.record_path('c')} names volume 'other'")]


def test_walks_of_missing_directories_are_empty(tmp_path: Path) -> None:
    config = Config(str(tmp_path / "nothing"))
    assert list(layout.iter_records(config)) == []
    assert list(layout.iter_targets(config)) == []
    assert list(layout.iter_attachments(config)) == []


def test_a_size_of_the_wrong_type_is_refused_by_resize_not_a_traceback(config: Config) -> None:
    """A hand-edited record ("size_bytes": "1G") used to reach int() and end in a ValueError
    traceback; it is refused naming the file and the field."""
    from flexvol.toolkit import lifecycle

    write(config.record_path("v1"), RECORD.replace(b'"pvc-0b6c"', b'"v1"', 1)
          .replace(b"1073741824", b'"1G"'))
    with pytest.raises(StateCorrupt, match=r"records/v1.json is corrupt: 'size_bytes' is str '1G'"):
        lifecycle.resize(config, "v1", "2G")
