"""The core's decisions with scripted command results and captured kernel facts, without root.

Commands go to a scripted runner that records each argv; kernel reads (blkid output, sysfs
loop attributes, mountinfo) come from the test. What is asserted is the decision: whether mkfs
ran, which device serves a volume, what is detached, which target is refused.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from flexvol.core import backing, formatting, kernel, loop, mountdir, state, superblock
from flexvol.core.config import Config
from flexvol.core.errors import CommandFailed, FlexvolError, InvalidInput, ProbeFailed, Refused
from flexvol.core.options import VolumeSpec
from flexvol.core.runner import Done
from flexvol.core.undo import Undo

DATA = Path(__file__).parent / "data"
SIZE = 8 << 20


class Script:
    """A runner that answers each command by its name and records every argv it was given."""

    def __init__(self, answers: dict[str, tuple[int, str, str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], *, timeout: float, ok: tuple[int, ...] = (0,),
                 what: str = "", pass_fds: tuple[int, ...] = ()) -> Done:
        argv = [os.fspath(arg) for arg in argv]
        self.calls.append(argv)
        code, out, err = self.answers.get(argv[0], (0, "", ""))
        if code not in ok:
            raise CommandFailed(f"{argv[0]} exited {code}", argv=argv, code=code, stderr=err)
        return Done(argv, code, out, err)

    def ran(self, name: str) -> list[list[str]]:
        return [argv for argv in self.calls if argv[0] == name]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = Config(str(tmp_path / "root"))
    state.ensure_dirs(config)
    return config


def scripted(monkeypatch: pytest.MonkeyPatch, answers: dict[str, tuple[int, str, str]]) -> Script:
    script = Script(answers)
    # Replaced where each step imported it.
    for module in (formatting, kernel, loop):
        monkeypatch.setattr(module, "run", script)
    # What a real mkfs.ext4 would leave for the superblock read after it.
    monkeypatch.setattr(superblock, "read_identity", lambda device: ("ext4", "uuid-made"))
    return script


def make_file(config: Config, volume_id: str, *, written: bool) -> str:
    """A sparse backing file; `written` puts one byte in it, so it holds an allocated block."""
    path = config.backing_file(volume_id)
    with open(path, "wb") as handle:
        handle.truncate(SIZE)
        if written:
            handle.seek(4096)
            handle.write(b"x")
            handle.flush()
            os.fsync(handle.fileno())
    assert (os.stat(path).st_blocks != 0) == written
    return path


# --- never reformat --------------------------------------------------------------------------

BLKID = {
    "ext4": (0, "DEVNAME=/dev/loop9\nUUID=uuid-old\nTYPE=ext4\nUSAGE=filesystem\n", ""),
    "xfs": (0, "DEVNAME=/dev/loop9\nUUID=uuid-x\nTYPE=xfs\nUSAGE=filesystem\n", ""),
    "blank": (2, "", ""),
    "unreadable": (2, "", "error: /dev/loop9: No such device or address\n"),
    "pttype": (0, "DEVNAME=/dev/loop9\nPTUUID=1234\nPTTYPE=dos\n", ""),
}


def expected(interrupted: bool, blkid: str, blocks: bool, created: bool) -> str:
    """What ensure_filesystem must do, from the signs: 'mkfs', 'remember' or an error name."""
    if created and not blocks:
        return "mkfs"  # this call made the file: all holes, no probe needed
    if blkid in ("unreadable", "pttype"):
        return "ProbeFailed"
    if blkid == "ext4":
        return "mkfs" if interrupted else "remember"
    if blkid == "xfs":
        return "mkfs" if interrupted else "Refused"
    return "ProbeFailed" if blocks and not interrupted else "mkfs"


SIGNS = list(itertools.product((False, True), tuple(BLKID), (False, True), (False, True)))


@pytest.mark.parametrize(("interrupted", "blkid", "blocks", "created"), SIGNS,
                         ids=[f"{'intent' if i else 'nointent'}-{b}-{'blocks' if w else 'holes'}-"
                              f"{'created' if c else 'found'}" for i, b, w, c in SIGNS])
def test_never_reformat_every_sign(config: Config, monkeypatch: pytest.MonkeyPatch,
                                   interrupted: bool, blkid: str, blocks: bool, created: bool) -> None:
    """mkfs runs only on a file proven blank (made by this call, or probing blank with no
    written block) or to finish flexvol's own interrupted mkfs; everything else is refused."""
    script = scripted(monkeypatch, {"blkid": BLKID[blkid]})
    make_file(config, "v1", written=blocks)
    record = state.new_record("v1", SIZE, "ext4")
    if interrupted:
        record.mkfs_started = {"fs_type": "ext4", "at": "then"}
    state.save_record(config, record)
    spec = VolumeSpec("v1", size_bytes=SIZE, fs_type="ext4")

    want = expected(interrupted, blkid, blocks, created)
    if want in ("ProbeFailed", "Refused"):
        with pytest.raises({"ProbeFailed": ProbeFailed, "Refused": Refused}[want]):
            formatting.ensure_filesystem(config, record, "/dev/loop9", spec, created=created)
        assert script.ran("mkfs.ext4") == []
        saved = state.load_record(config, "v1")
        assert saved is None or not saved.formatted
        return
    made = formatting.ensure_filesystem(config, record, "/dev/loop9", spec, created=created)
    mkfs = script.ran("mkfs.ext4")
    saved = state.load_record(config, "v1")
    assert saved is not None
    if want == "remember":
        assert made is False and mkfs == []
        assert saved.formatted["uuid"] == "uuid-old"
        return
    assert made is True
    assert len(mkfs) == 1 and mkfs[0][-1] == "/dev/loop9"
    # --force only to finish flexvol's own half-done mkfs.
    assert ("-F" in mkfs[0]) == interrupted
    assert saved.formatted["fs_type"] == "ext4" and saved.mkfs_started is None
    # The probe is skipped only for a file this call made that still holds no block.
    assert (script.ran("blkid") == []) == (created and not blocks)


@pytest.mark.parametrize("found", ["ext4", "xfs"])
def test_formatted_record_is_never_probed_or_reformatted(config: Config,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         found: str) -> None:
    """A record that says formatted decides alone: the same type mounts, another is refused,
    and no command runs either way (whatever the device probes as)."""
    script = scripted(monkeypatch, {"blkid": BLKID["blank"]})
    make_file(config, "v1", written=False)
    record = state.new_record("v1", SIZE, found)
    record.formatted = {"fs_type": found, "uuid": "u", "at": "then"}
    spec = VolumeSpec("v1", size_bytes=SIZE, fs_type="ext4")
    if found == "ext4":
        assert formatting.ensure_filesystem(config, record, "/dev/loop9", spec, created=True) is False
    else:
        with pytest.raises(Refused, match="already holds an xfs"):
            formatting.ensure_filesystem(config, record, "/dev/loop9", spec, created=True)
    assert script.calls == []


def test_read_only_never_formats(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    script = scripted(monkeypatch, {"blkid": BLKID["blank"]})
    make_file(config, "v1", written=False)
    record = state.new_record("v1", SIZE, "ext4")
    spec = VolumeSpec("v1", size_bytes=SIZE, fs_type="ext4", read_only=True)
    with pytest.raises(Refused, match="read-only"):
        formatting.ensure_filesystem(config, record, "/dev/loop9", spec)
    assert script.ran("mkfs.ext4") == []


def test_created_blank_is_never_persisted(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: "this call created the file" was saved in the record (created_blank) and popped
    later, so a killed call left a per-call fact on disk. It is now passed within the call: the
    record on disk never holds it, and the new file still needs no blkid probe."""
    script = scripted(monkeypatch, {"blkid": BLKID["ext4"]})
    spec = VolumeSpec("v1", size_bytes=SIZE, fs_type="ext4")
    undo = Undo()
    record, created = backing.ensure_file(config, spec, undo, may_create=True)
    assert created is True
    on_disk = state.load_record(config, "v1")
    assert on_disk is not None and "created_blank" not in on_disk.to_json()
    assert "created_blank" not in record.to_json()
    assert formatting.ensure_filesystem(config, record, "/dev/loop9", spec, created=created) is True
    assert script.ran("blkid") == []
    assert len(script.ran("mkfs.ext4")) == 1
    saved = state.load_record(config, "v1")
    assert saved is not None and "created_blank" not in saved.to_json()
    # A second call finds the file: not created, so nothing is taken on trust.
    record, created = backing.ensure_file(config, spec, Undo(), may_create=True)
    assert created is False


@pytest.mark.parametrize("saved_size", [SIZE, SIZE // 2], ids=["record-says-it-all", "record-differs"])
def test_new_file_rewrites_the_record_only_when_it_changes(
        config: Config, monkeypatch: pytest.MonkeyPatch, saved_size: int) -> None:
    """The CSI plugin saves size, filesystem and allocation (with the CSI name) before making
    the file; making the file then writes the record again only if it says something else."""
    spec = VolumeSpec("v1", size_bytes=SIZE, fs_type="ext4", allocation="thick")
    first = state.new_record("v1", saved_size, "ext4")
    first.allocation = "thick"
    first.csi_name = "pvc-1"
    state.save_record(config, first)
    writes: list[str] = []
    real_write = state.atomic_write
    monkeypatch.setattr(state, "atomic_write",
                        lambda path, data, durable=True: writes.append(path) or real_write(path, data,
                                                                                           durable=durable))
    record, created = backing.ensure_file(config, spec, Undo(), may_create=True)
    assert created is True and os.path.getsize(config.backing_file("v1")) == SIZE
    assert len(writes) == (0 if saved_size == SIZE else 1)
    on_disk = state.load_record(config, "v1")
    assert on_disk is not None and on_disk.to_json() == record.to_json()
    assert (on_disk.size_bytes, on_disk.fs_type, on_disk.allocation, on_disk.csi_name) == (
        SIZE, "ext4", "thick", "pvc-1")


def test_stale_created_blank_in_an_old_record_is_ignored(config: Config,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A record left by an older version with created_blank set is probed like any other."""
    script = scripted(monkeypatch, {"blkid": BLKID["xfs"]})
    make_file(config, "v1", written=False)
    record = state.new_record("v1", SIZE, "ext4")
    record.extra["created_blank"] = True  # left by an older version
    state.save_record(config, record)
    record, created = backing.ensure_file(config, VolumeSpec("v1", size_bytes=SIZE), Undo(),
                                          may_create=True)
    assert created is False
    with pytest.raises(Refused):
        formatting.ensure_filesystem(config, record, "/dev/loop9", VolumeSpec("v1", size_bytes=SIZE),
                                     created=created)
    assert len(script.ran("blkid")) == 1 and script.ran("mkfs.ext4") == []


# --- loop reuse and release ------------------------------------------------------------------

class Sysfs:
    """Captured loop attributes: device -> backing_file, and every scan of /sys/block."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, devices: dict[str, str],
                 mountinfo: str = "") -> None:
        self.devices = dict(devices)
        self.scans = 0
        self.detached: list[str] = []
        self.attached: list[str] = []
        monkeypatch.setattr(kernel, "loop_backing_file", lambda device: self.devices.get(device))
        monkeypatch.setattr(kernel, "loop_devices", self.scan)
        monkeypatch.setattr(kernel, "device_number", lambda device: None)
        mounts = kernel.parse_mountinfo(mountinfo)
        monkeypatch.setattr(kernel, "read_mounts", lambda: list(mounts))
        monkeypatch.setattr(loop, "detach_loop", self.detach)
        monkeypatch.setattr(loop, "_attach_loop", self.attach)
        monkeypatch.setattr(kernel, "block_size_bytes",
                            lambda device: os.stat(device).st_size if os.path.exists(device) else None)

    def scan(self) -> dict[str, str]:
        self.scans += 1
        return dict(self.devices)

    def detach(self, device: str) -> None:
        self.detached.append(device)
        self.devices.pop(device, None)

    def attach(self, path: str, record_device: object) -> str:
        device = "/dev/loop99"
        self.attached.append(path)
        self.devices[device] = os.path.realpath(path)
        return device


def loop_record(config: Config, device: str | None) -> state.Record:
    record = state.new_record("v1", SIZE, "ext4")
    if device:
        record.loop_device = device
    state.save_record(config, record)
    return record


def test_recorded_live_device_is_reused_without_a_scan(config: Config,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {"/dev/loop5": os.path.realpath(path)})
    record = loop_record(config, "/dev/loop5")
    assert loop.ensure_loop(config, record, Undo()) == "/dev/loop5"
    assert sysfs.scans == 0 and sysfs.attached == []


@pytest.mark.parametrize("recorded", [None, "/dev/loop5", "/dev/loop6"],
                         ids=["no-record-device", "stale-other-file", "absent"])
def test_stale_or_absent_record_scans_and_reuses_the_live_device(
        config: Config, monkeypatch: pytest.MonkeyPatch, recorded: str | None) -> None:
    """A record that names no live device of the file is not trusted: /sys/block is scanned and
    the device found serving the file is reused, never a second one attached."""
    path = make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {"/dev/loop5": "/elsewhere/other.img",
                                "/dev/loop7": os.path.realpath(path)})
    record = loop_record(config, recorded)
    assert loop.ensure_loop(config, record, Undo()) == "/dev/loop7"
    assert sysfs.scans == 1 and sysfs.attached == []
    saved = state.load_record(config, "v1")
    assert saved is not None and saved.loop_device == "/dev/loop7"


def test_half_recorded_attach_scans_even_with_a_live_record(config: Config,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed attach (loop_attaching) may have bound a second device: scan, whatever the
    record says."""
    path = make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {"/dev/loop5": os.path.realpath(path)})
    record = loop_record(config, "/dev/loop5")
    record.loop_attaching = True
    assert loop.ensure_loop(config, record, Undo()) == "/dev/loop5"
    assert sysfs.scans == 1 and sysfs.attached == []


def test_no_device_attaches_exactly_one(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {"/dev/loop5": "/elsewhere/other.img"})
    record = loop_record(config, None)
    assert loop.ensure_loop(config, record, Undo()) == "/dev/loop99"
    assert sysfs.attached == [path]


@pytest.mark.parametrize(("recorded", "writes"), [("/dev/loop99", 0), ("/dev/loop5", 1), (None, 1)],
                         ids=["same-number-again", "another-number", "none-recorded"])
def test_attaching_the_device_the_record_names_already_writes_no_record(
        config: Config, monkeypatch: pytest.MonkeyPatch, recorded: str | None, writes: int) -> None:
    """The record is saved before the bind only when it would say something new: a volume
    bound again to the number it had last time (the kernel's lowest free one) keeps its record."""
    from flexvol.core import loopdev

    make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {})
    monkeypatch.undo()  # the real _attach_loop, over a scripted loopdev.attach
    monkeypatch.setattr(kernel, "loop_backing_file", lambda device: sysfs.devices.get(device))
    monkeypatch.setattr(kernel, "loop_devices", sysfs.scan)
    monkeypatch.setattr(kernel, "read_only", lambda device: False)
    seen: list[str | None] = []

    def attach(file: str, before_bind: object) -> str:
        before_bind("/dev/loop99")  # type: ignore[operator]
        on_disk = state.load_record(config, "v1")
        seen.append(on_disk.loop_device if on_disk is not None else None)
        sysfs.devices["/dev/loop99"] = os.path.realpath(file)
        return "/dev/loop99"

    monkeypatch.setattr(loopdev, "attach", attach)
    record = loop_record(config, recorded)
    saved: list[str] = []
    real_write = state.atomic_write
    monkeypatch.setattr(state, "atomic_write", lambda target, data, durable=True: saved.append(target)
                        or real_write(target, data, durable=durable))
    undo = Undo()
    assert loop.ensure_loop(config, record, undo) == "/dev/loop99"
    assert sysfs.scans == 1 and len(saved) == writes
    # Written or not, the record on disk names the device before it is bound.
    assert seen == ["/dev/loop99"]
    on_disk = state.load_record(config, "v1")
    assert on_disk is not None and on_disk.loop_device == "/dev/loop99" and not on_disk.loop_attaching
    undo.commit()


def test_device_of_a_deleted_file_refuses_a_new_attach(config: Config,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {"/dev/loop5": os.path.realpath(path) + kernel.DELETED_SUFFIX})
    with pytest.raises(Refused, match="deleted former backing file"):
        loop.ensure_loop(config, loop_record(config, "/dev/loop5"), Undo())
    assert sysfs.attached == []


def fake_device(tmp_path: Path, content: bytes) -> str:
    """A regular file standing in for /dev/loopN's contents (named so kernel helpers accept it)."""
    device = tmp_path / "loop42"
    device.write_bytes(content)
    return str(device)


@pytest.mark.parametrize("at_path", ["absent", "other-bytes", "same-bytes"])
def test_deleted_file_device_is_detached_only_when_the_path_holds_its_bytes(
        config: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, at_path: str) -> None:
    """The device of a deleted backing file holds the only copy of its data: release keeps it
    (and says how to copy it back) unless the file now at the path has exactly its bytes."""
    content = b"data" * 4096
    device = fake_device(tmp_path, content)
    path = config.backing_file("v1")
    if at_path != "absent":
        with open(path, "wb") as handle:
            handle.write(content if at_path == "same-bytes" else b"x" * len(content))
    sysfs = Sysfs(monkeypatch, {device: os.path.realpath(path) + kernel.DELETED_SUFFIX})
    loop_record(config, device)
    if at_path == "same-bytes":
        assert loop.release_loop(config, "v1") == [device]
        assert sysfs.detached == [device]
        return
    with pytest.raises(Refused, match="only copy"):
        loop.release_loop(config, "v1")
    assert sysfs.detached == []


def test_device_still_mounted_is_kept(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Captured mountinfo shows /dev/loop0 mounted in a pod: release leaves it attached."""
    path = make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {"/dev/loop0": os.path.realpath(path)},
                  (DATA / "mountinfo.txt").read_text())
    loop_record(config, "/dev/loop0")
    assert loop.release_loop(config, "v1") == []
    assert sysfs.detached == []


def test_unmounted_live_device_is_released(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_file(config, "v1", written=False)
    sysfs = Sysfs(monkeypatch, {"/dev/loop8": os.path.realpath(path),
                                "/dev/loop9": "/elsewhere/other.img"},
                  (DATA / "mountinfo.txt").read_text())
    loop_record(config, "/dev/loop8")
    assert loop.release_loop(config, "v1") == ["/dev/loop8"]
    assert sysfs.detached == ["/dev/loop8"]


def test_loop_scan_opens_only_bound_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node keeps every loop device node it ever made, most unbound: the scan finds every
    bound one (a backing file named, or empty) yet opens no unbound node's attribute."""
    block = tmp_path / "block"
    for name, content in (("loop0", "/data/a.img\n"), ("loop1", None), ("loop2", None),
                          ("loop7", "/data/b.img (deleted)\n"), ("loop9", "")):
        (block / name).mkdir(parents=True)
        if content is not None:
            (block / name / "loop").mkdir()
            (block / name / "loop" / "backing_file").write_text(content)
    (block / "ram0").mkdir()
    monkeypatch.setattr(kernel, "SYS_VIRTUAL_BLOCK", str(block))
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        opened.append(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(kernel.os, "open", counting_open)
    assert kernel.loop_devices() == {"/dev/loop0": "/data/a.img", "/dev/loop7": "/data/b.img (deleted)"}
    assert sorted(opened[1:]) == ["loop0/loop/backing_file", "loop7/loop/backing_file",
                                  "loop9/loop/backing_file"]


def test_release_reads_the_mount_table_once(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every unmount and detach releases the loop: one read of mountinfo serves the scratch
    check and the in-use check (the table grows with the node's pods)."""
    path = make_file(config, "v1", written=False)
    Sysfs(monkeypatch, {"/dev/loop8": os.path.realpath(path)}, (DATA / "mountinfo.txt").read_text())
    captured = kernel.read_mounts
    reads = []
    monkeypatch.setattr(kernel, "read_mounts", lambda: reads.append(1) or captured())
    loop_record(config, "/dev/loop8")
    assert loop.release_loop(config, "v1") == ["/dev/loop8"]
    assert len(reads) == 1


# --- target safety ---------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "error"), [
    ("", InvalidInput),
    ("relative/dir", InvalidInput),
    ("/", Refused),
    ("//", Refused),
    ("/var/lib/../lib/kubelet", mountdir.NeverMountable),
    ("/var/./lib", mountdir.NeverMountable),
    ("/proc/self/cwd", FlexvolError),
    ("/sys/fs/x", FlexvolError),
    ("/dev/shm/x", FlexvolError),
    ("/var/" + "n" * 256, mountdir.NeverMountable),
    ("/var/lib/a\0b", InvalidInput),
    ("/" + "a/" * 2100, InvalidInput),
])
def test_check_path_refusals(path: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        mountdir.check_path(path)
    assert str(caught.value)


def test_check_path_accepts_a_plain_path_of_255_byte_names() -> None:
    path = "/var/lib/kubelet/" + "n" * 255
    assert mountdir.check_path(path) == path
    assert mountdir.check_path("/var//lib/kubelet/") in ("/var/lib/kubelet", "/var//lib/kubelet/")


@pytest.mark.parametrize("where", ["data-root", "inside", "volumes", "parent", "dotdot"])
def test_check_target_refuses_the_data_root(config: Config, where: str) -> None:
    root = config.data_root
    path = {"data-root": root, "inside": root + "/volumes/x", "volumes": config.volumes_dir,
            "parent": os.path.dirname(root), "dotdot": root + "/../root"}[where]
    with pytest.raises(FlexvolError):
        mountdir.check_target(path, config)


def test_check_target_refuses_a_symlink_on_the_way(config: Config, tmp_path: Path) -> None:
    (tmp_path / "pods").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "pods")
    with pytest.raises(FlexvolError, match=r"symlink|symbolic"):
        mountdir.check_target(str(tmp_path / "link" / "vol"), config)


def test_check_target_accepts_a_pod_dir(config: Config, tmp_path: Path) -> None:
    target = tmp_path / "pods" / "u1" / "vol"
    target.parent.mkdir(parents=True)
    assert mountdir.check_target(str(target), config) == str(target)
