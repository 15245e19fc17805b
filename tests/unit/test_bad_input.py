"""Bad arguments and options get a clear refusal before anything touches the kernel.

Called in-process through the flex front end's dispatcher with a temporary data root; the unit
conftest fails any test that runs a command (and the fixture any loop ioctl), so a refusal
here is proven to come before every losetup, mkfs and mount. The cases that need a real mount
stay in tests/integration/test_bad_input.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError
from flexvol.core.journal import CallInfo
from flexvol.flex.verbs import dispatch


def options(volume_id: str, **extra: str) -> str:
    return json.dumps({"volumeID": volume_id, **extra})


class Call:
    def __init__(self, tmp_path: Path) -> None:
        self.base = tmp_path
        self.root = tmp_path / "root"
        self.config = Config(str(self.root))

    def dir(self, name: str) -> str:
        return str(self.base / "mnt" / name)

    def fail(self, *argv: str) -> str:
        """The refusal's message, as main puts it in the Failure reply."""
        with pytest.raises(FlexvolError) as caught:
            dispatch(self.config, list(argv), CallInfo(argv[0] if argv else ""))
        message = str(caught.value)
        assert message and "Traceback" not in message
        return message

    def untouched(self) -> None:
        volumes = self.root / "volumes"
        assert not volumes.exists() or list(volumes.iterdir()) == []
        records = self.root / "records"
        assert not records.exists() or list(records.iterdir()) == []


@pytest.fixture
def call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Call:
    # Loop devices are bound by ioctl, not by a command: refuse those too.
    from flexvol.core import loopdev

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a bad-input call reached the loop device ioctls: {args}")

    for name in ("attach", "detach", "set_capacity"):
        monkeypatch.setattr(loopdev, name, refuse)
    return Call(tmp_path)


@pytest.mark.parametrize(("args", "fragment"), [
    (["mount"], "takes 2 argument"),
    (["mount", "/tmp/x"], "takes 2 argument"),
    (["mount", "", ""], "empty"),
    (["unmount"], "takes 1 argument"),
    (["attach", "{}"], "takes 2 argument"),
    (["expandfs", "{}", "", "", ""], "takes 5 argument"),
])
def test_wrong_arity_and_empty_arguments(call: Call, args: list[str], fragment: str) -> None:
    assert fragment in call.fail(*args)
    call.untouched()


@pytest.mark.parametrize(("raw", "fragment"), [
    ("{", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"volumeID": null}', "volumeID"),
    ('{"volumeID": 7}', "volumeID"),
    ('{"volumeID": "../../etc"}', "volumeID"),
    ('{"volumeID": "a/b"}', "volumeID"),
    ('{"volumeID": ""}', "missing"),
    ('{"size": "1Gi"}', "missing"),
    ('{"volumeID": "v1", "size": "-1"}', "size"),
    ('{"volumeID": "v1", "size": "0"}', "size"),
    ('{"volumeID": "v1", "size": "1e400"}', "size"),
    ('{"volumeID": "v1", "size": "10Zi"}', "size"),
    ('{"volumeID": "v1", "size": " 1Gi"}', "size"),
    ('{"volumeID": "v1", "size": "1000Ei"}', "size"),
    ('{"volumeID": "v1", "kubernetes.io/fsType": "ntfs"}', "fsType"),
    ('{"volumeID": "v1", "kubernetes.io/fsType": "ext4;rm -rf /"}', "fsType"),
    ('{"volumeID": "v1", "kubernetes.io/fsType": "xfs", "size": "64Mi"}', "xfs needs"),
    ('{"volumeID": "v1", "kubernetes.io/readwrite": "rwx"}', "readwrite"),
    ('{"volumeID": "v1", "mountOptions": "suid"}', "not allowed"),
    ('{"volumeID": "v1", "mountOptions": "defaults,exec"}', "not allowed"),
])
def test_bad_options_leave_nothing_behind(call: Call, raw: str, fragment: str) -> None:
    assert fragment in call.fail("mount", call.dir("a"), raw)
    call.untouched()


def test_size_larger_than_the_pool_is_refused(call: Call) -> None:
    assert "larger than the whole pool" in call.fail("mount", call.dir("a"), options("v1", size="1Ei"))
    call.untouched()


@pytest.mark.parametrize("target", ["relative/dir", "/", "/.", "//"])
def test_dangerous_mount_targets(call: Call, target: str) -> None:
    call.fail("mount", target, options("v1"))
    call.untouched()


def test_targets_in_or_above_the_data_root_are_refused(call: Call) -> None:
    inside = str(call.root / "volumes" / "x")
    assert "data root" in call.fail("mount", inside, options("v1"))
    assert "data root" in call.fail("mount", str(call.root), options("v1"))
    assert "data root" in call.fail("mount", str(call.base), options("v1"))
    link = call.base / "mnt" / "link"
    link.parent.mkdir(parents=True)
    call.root.mkdir(parents=True, exist_ok=True)
    link.symlink_to(call.root)
    # Through a symlink: refused before anything is resolved (mountdir.py).
    assert "symlink" in call.fail("mount", str(link / "sub"), options("v1"))
    assert "refusing to use '/'" in call.fail("unmount", "/")
    call.untouched()
