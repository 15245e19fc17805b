from __future__ import annotations

import pytest

from flexvol.core import options
from flexvol.core.errors import InvalidInput


def spec(**values: str) -> options.VolumeSpec:
    return options.parse_spec({"volumeID": "v1", **values})


def test_defaults() -> None:
    parsed = spec()
    assert parsed.volume_id == "v1"
    assert parsed.size_bytes == 1 << 30 and not parsed.size_given
    assert parsed.fs_type == "ext4" and not parsed.read_only
    assert parsed.mount_options == () and parsed.fs_group is None


@pytest.mark.parametrize("volume_id", [
    "", "../etc", "a/b", "A1", "-a", ".a", "a" * 64, "a\0b", "vé", "a b", "..",
])
def test_bad_volume_ids_name_the_key(volume_id: str) -> None:
    with pytest.raises(InvalidInput, match="volumeID"):
        options.parse_spec({"volumeID": volume_id})


def test_missing_volume_id() -> None:
    with pytest.raises(InvalidInput, match=r"volumeID.*missing"):
        options.parse_spec({"kubernetes.io/pvOrVolumeName": "data"})


@pytest.mark.parametrize("good", ["a", "0", "a.b-c_d", "a" * 63])
def test_good_volume_ids(good: str) -> None:
    assert options.check_volume_id(good) == good


def test_size_is_rounded_to_pages() -> None:
    assert spec(size="2000001").size_bytes == 2002944
    assert spec(size="64Mi").size_bytes == 64 << 20


@pytest.mark.parametrize("size", ["0", "-1", "abc", "1e400"])
def test_bad_sizes(size: str) -> None:
    with pytest.raises(InvalidInput, match="size"):
        spec(size=size)


def test_xfs_below_its_minimum_is_refused_before_anything() -> None:
    with pytest.raises(InvalidInput, match="xfs needs"):
        spec(size="64Mi", **{"kubernetes.io/fsType": "xfs"})


@pytest.mark.parametrize("fs_type", ["ntfs", "ext4;rm", "EXT4", "vfat"])
def test_bad_fs_types(fs_type: str) -> None:
    with pytest.raises(InvalidInput, match="fsType"):
        spec(**{"kubernetes.io/fsType": fs_type})


def test_read_write_values() -> None:
    assert spec(**{"kubernetes.io/readwrite": "ro"}).read_only
    assert not spec(**{"kubernetes.io/readwrite": ""}).read_only
    with pytest.raises(InvalidInput, match="readwrite"):
        spec(**{"kubernetes.io/readwrite": "RW"})


@pytest.mark.parametrize("bad", ["suid", "exec", "defaults,exec", "dev", "remount", "loop", "uid=0"])
def test_mount_options_outside_the_allowlist(bad: str) -> None:
    with pytest.raises(InvalidInput, match="not allowed"):
        spec(mountOptions=bad)


def test_mount_options_deduplicated() -> None:
    assert spec(mountOptions="noatime, noatime,discard").mount_options == ("noatime", "discard")


def test_fs_group_both_keys() -> None:
    assert spec(**{"kubernetes.io/mounterArgs.FsGroup": "2000"}).fs_group == 2000
    assert spec(**{"kubernetes.io/fsGroup": "3000"}).fs_group == 3000
    with pytest.raises(InvalidInput, match="group id"):
        spec(**{"kubernetes.io/fsGroup": "wheel"})


def test_secrets_decoded_and_errors_never_show_values() -> None:
    parsed = spec(**{"kubernetes.io/secret/token": "aGVsbG8="})
    assert parsed.secrets == {"token": b"hello"}
    with pytest.raises(InvalidInput) as caught:
        spec(**{"kubernetes.io/secret/token": "not base64 SECRETVALUE"})
    assert "SECRETVALUE" not in str(caught.value)


@pytest.mark.parametrize("name", ["", ".a", "a/b", "a b", "x" * 254])
def test_bad_pv_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        options.check_pv_name(name)


def test_allocation_values() -> None:
    assert spec().allocation == options.DEFAULT_ALLOCATION
    assert spec(**{options.ALLOCATION: options.THIN}).allocation == options.THIN
    assert spec(**{options.ALLOCATION: options.THICK}).allocation == options.THICK
    for bad in ("Thin", "thick ", "sparse", "thin;x"):
        with pytest.raises(InvalidInput, match="must be"):
            spec(**{options.ALLOCATION: bad})


@pytest.mark.parametrize(("size", "expected"), [
    ("1", 4096), ("1m", 4096), ("0.0", None), ("0Gi", None), ("4096", 4096), ("4097", 8192),
])
def test_tiny_sizes_round_up_to_a_page_or_are_refused(size: str, expected: int | None) -> None:
    """Zero is refused; any positive size, even a fraction of a byte, becomes whole pages (and
    then meets the filesystem minimum or is refused for it)."""
    if expected is None:
        with pytest.raises(InvalidInput, match="size"):
            options.parse_size(size)
    else:
        assert options.parse_size(size) == expected
