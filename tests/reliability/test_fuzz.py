"""Scenario 1, fuzzing the protocol surface: thousands of generated calls (a seeded generator)
over every verb, each answered by one clean JSON reply with the right exit code, with nothing
made or changed on disk. Plus the decisions for garbage input, one test each.

Never sent: unmount/unmountdevice of `/` or of any path resolving outside the test's own dir
(a defective driver would detach the machine's root); a path is sent to mount only after the
in-process path check has refused it. `/` itself is tested on mounting.check_target alone.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from flexvol.core import mounting
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError
from tests.helpers.driver import options
from tests.reliability.harness import FIGURES, Harness, journal_tracebacks, scale, settled_loops

SEED = int(os.environ.get("FLEXVOL_FUZZ_SEED", "20261129"))
VERBS = ["init", "attach", "isattached", "detach", "waitforattach", "mountdevice", "unmountdevice",
         "mount", "unmount", "expandvolume", "expandfs", "getvolumename"]
UNKNOWN_VERBS = ["", "Mount", "mount ", "provision", "delete", "--help", "x" * 300, "ïnit"]
ARITY = {"init": 0, "attach": 2, "isattached": 2, "detach": 2, "waitforattach": 2, "mountdevice": 3,
         "unmountdevice": 1, "mount": 2, "unmount": 1, "expandvolume": 4, "expandfs": 5}
NON_STRINGS = [None, 0, 1, -1, 1.5, 1e308, True, False, [], ["v1"], {}, {"a": "b"}]
# Large, yet two of them fit the kernel's 128 KiB limit on one argument.
HUGE = "x" * 60_000

# Values that must each make a call fail, by option.
BAD_VALUES = {
    "volumeID": ["", "..", "../v1", "a/b", "/v1", "a\u0000b", "vé", "V1", "x" * 64, " v1", "v1 ", "-v1",
                 ".v1", "v1\n", "v\u200b1", HUGE],
    "size": ["0", "-1", "1e400", "10Zi", "１６Mi", " 1Gi", "1Gi ", "1 Gi", "abc", "1.5.5Gi", "1e", "0x10",
             "Infinity", "NaN", "1e-400", "1m", "-0", "+-1", "1ee3", "1Gi\n", "٣Mi", HUGE],
    "kubernetes.io/fsType": ["ext4;rm", "ext4 ", "EXT4", "vfat", "auto", "none", "tmpfs", "../ext4",
                             "ext4\u0000", HUGE],
    "kubernetes.io/readwrite": ["RW", "ro ", "rw,ro", "yes", "true", "1", "read-only", "\u0000", HUGE],
    "mountOptions": ["defaults,exec", "suid", "dev", "exec", "remount", "bind", "noatime;rm -rf /",
                     "x-mount.mkdir", "loop", "uid=0", "context=x", "rw", "ro", "nosuid,suid", HUGE],
    "kubernetes.io/mounterArgs.FsGroup": ["-1", "abc", "1e3", "4294967295", "٣", " 1", HUGE],
    "kubernetes.io/secret/password": ["!!", "a", "é", "YQ", HUGE + "!"],
}
# Not quantities at all (the size option above also refuses valid ones below a filesystem's minimum).
BAD_NEW_SIZES = [size for size in BAD_VALUES["size"] if size not in ("1e-400", "1m")]
GOOD_EXTRA = {
    "kubernetes.io/pod.name": "web-0", "kubernetes.io/pod.namespace": "default",
    "kubernetes.io/pod.uid": "6ed4b9bc-2c27-4a57-b5b6-2d1a1c9a4f6c",
    "kubernetes.io/serviceAccount.name": "default", "unknownKey": "whatever", "": "",
    "kubernetes.io/secret/token": "c2VjcmV0", "size": "64Mi", "mountOptions": "noatime",
}
BAD_JSON = ["", " ", "{", "}", "[]", "null", '"v1"', "1", "{'volumeID':'v1'}", '{"volumeID":"v1"}x',
            '{"volumeID":"v1",}', "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, "1e400",
            '{"volumeID":"v1","volumeID":null}', '{"volumeID":"\\ud800"}', "\u00ff\u00fe", HUGE,
            '{"volumeID":"v1"', '{"size":1e400,"volumeID":"v1"}', '{"volumeID":NaN}']


class Fuzzer:
    def __init__(self, harness: Harness, rng: random.Random) -> None:
        self.harness = harness
        self.rng = rng
        base = harness.base
        self.config = Config(str(harness.root))
        self.live = harness.dir("live")
        # Paths the mount verbs must refuse; each is checked in-process before it is sent.
        (base / "link-root").symlink_to("/")
        (base / "link-data").symlink_to(harness.root)
        (base / "link-volumes").symlink_to(harness.root / "volumes")
        (base / "a-file").write_text("not a dir")
        self.refused_paths = [str(harness.root), str(harness.root / "volumes"),
                              str(harness.root / "records" / "x"), str(harness.root) + "/../root/log",
                              str(base / "link-root"), str(base / "link-root") + "/tmp",
                              str(base / "link-data"), str(base / "link-volumes" / "v1.img"),
                              "relative/dir", "mnt", "./x", "", "~/x", "x" * 5000]
        for path in self.refused_paths:
            with pytest.raises(FlexvolError):
                mounting.check_target(path, self.config)
        # Paths unmount may be sent: inside the test's dir, never a mount of ours.
        self.unmount_paths = [harness.dir("never"), harness.dir("a b"), harness.dir("ü"),
                              str(base / "a-file"),
                              harness.dir("x") + "/../y", str(harness.root), str(harness.root / "volumes"),
                              "relative", "", str(base / "link-data"), harness.dir("q\nr")]
        for path in self.unmount_paths:
            real = os.path.realpath(path) if path.startswith("/") else ""
            assert not real or real.startswith(str(base) + "/"), path

    # -- pieces --------------------------------------------------------------------------------

    def text(self) -> str:
        return self.rng.choice(["", " ", "x", HUGE, "é", "\t", "-", "--", "null", "{}", "v1", "flexvol:v1",
                                "/dev/loop0", "node1", "64Mi", "0", "-1", "1e400"])

    def good_options(self, volume_id: str = "fz") -> dict[str, object]:
        body: dict[str, object] = json.loads(options(volume_id))
        for key in self.rng.sample(sorted(GOOD_EXTRA), self.rng.randint(0, 3)):
            body[key] = GOOD_EXTRA[key]
        return body

    def bad_options(self) -> str:
        """Options text that must make any verb taking options fail."""
        kind = self.rng.random()
        if kind < 0.2:
            return self.rng.choice(BAD_JSON)
        body = self.good_options(self.rng.choice(["fz", "v1", "fz2"]))
        if kind < 0.4:
            body[self.rng.choice([*sorted(body), "volumeID"])] = self.rng.choice(NON_STRINGS)
        elif kind < 0.45:
            body.pop("volumeID")
        else:
            key = self.rng.choice(sorted(BAD_VALUES))
            body[key] = self.rng.choice(BAD_VALUES[key])
        if self.rng.random() < 0.3:
            noise = self.rng.choice(sorted(BAD_VALUES))
            body.setdefault(noise, self.rng.choice(BAD_VALUES[noise]))
        return json.dumps(body, ensure_ascii=self.rng.random() < 0.5)

    def mount_dir(self) -> str:
        return self.harness.dir(f"fz-{self.rng.randint(0, 9)}")

    # -- calls ---------------------------------------------------------------------------------

    def call(self) -> tuple[list[str], str]:
        """One generated call and the status it must get ("" when either is fine)."""
        rng = self.rng
        if rng.random() < 0.05:
            verb = rng.choice(UNKNOWN_VERBS)
            return [verb, *[self.text() for _ in range(rng.randint(0, 5))]], "Not supported"
        verb = rng.choice(VERBS)
        if verb == "getvolumename":
            args = [rng.choice([self.text(), self.bad_options()]) for _ in range(rng.randint(0, 3))]
            return [verb, *args], "Not supported"
        arity = ARITY[verb]
        if rng.random() < 0.15:
            count = rng.choice([n for n in range(0, 7) if n != arity])
            return [verb, *[self.text() for _ in range(count)]], "Failure"
        if verb == "init":
            return [verb], "Success"
        if verb in ("unmount", "unmountdevice"):
            path = rng.choice(self.unmount_paths)
            refused = not path.startswith("/") or os.path.realpath(path).startswith(str(self.harness.root))
            return [verb, path], "Failure" if refused else "Success"
        if verb in ("mount", "mountdevice"):
            if rng.random() < 0.5:
                target, body = rng.choice(self.refused_paths), json.dumps(self.good_options())
            else:
                target, body = self.mount_dir(), self.bad_options()
            if verb == "mount":
                return [verb, target, body], "Failure"
            return [verb, target, rng.choice(["flexvol:fz", "", "/dev/sda", HUGE]), body], "Failure"
        if verb in ("attach", "isattached"):
            if rng.random() < 0.3:
                body = self.good_options()
                body["kubernetes.io/pvOrVolumeName"] = rng.choice(["", "../x", "A" * 300, "a/b", ".x", "é"])
                return [verb, json.dumps(body), "node1"], "Failure"
            return [verb, self.bad_options(), rng.choice(["node1", ""])], "Failure"
        if verb == "detach":
            return [verb, rng.choice(["", "../x", "a/b", ".x", "A" * 300, "é", "x\ny"]), "node1"], "Failure"
        if verb == "waitforattach":
            return [verb, rng.choice(["flexvol:v1", "", HUGE]), self.bad_options()], "Failure"
        if verb == "expandvolume":
            if rng.random() < 0.5:
                return [verb, self.bad_options(), "/ctrl", "128Mi", "64Mi"], "Failure"
            return [verb, json.dumps(self.good_options()), "/ctrl",
                    rng.choice(BAD_NEW_SIZES), "64Mi"], "Failure"
        # expandfs
        if rng.random() < 0.4:
            return [verb, self.bad_options(), "flexvol:v1", self.live, "128Mi", "64Mi"], "Failure"
        if rng.random() < 0.5:
            return [verb, json.dumps(self.good_options("v1")), "flexvol:v1", self.live,
                    rng.choice(BAD_NEW_SIZES), "64Mi"], "Failure"
        # a volume that does not exist on this node
        return [verb, json.dumps(self.good_options("nowhere")), "flexvol:nowhere", self.live,
                "128Mi", "64Mi"], "Failure"


def snapshot(harness: Harness) -> tuple:
    """What a refused call must not change: files (but the journal), mounts, loops."""
    files = []
    for directory, _dirs, names in os.walk(harness.base):
        if directory.startswith(str(harness.root / "log")):
            continue
        for name in names + _dirs:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            files.append((path, info.st_mode, info.st_size if not name.endswith(".img") else 0,
                          info.st_mtime_ns if name.endswith(".json") else 0))
    mounts = sorted((m.mount_point, m.source, m.options) for m in harness.mounts())
    return sorted(files), mounts, harness.loops()


def test_fuzz_protocol_surface(harness: Harness) -> None:
    rng = random.Random(SEED)
    harness.must("mount", harness.dir("live"), options("v1"))
    Path(harness.dir("live"), "keep").write_bytes(b"precious" * 512)
    fuzzer = Fuzzer(harness, rng)
    count = scale(300, 2200)
    problems: list[str] = []
    tally = {"calls": 0, "tracebacks": 0, "non-JSON replies": 0, "wrong status or exit code": 0,
             "disk changes": 0}
    before = snapshot(harness)
    for _ in range(count):
        argv, expected = fuzzer.call()
        outcome = harness.raw(*argv)
        tally["calls"] += 1
        short = [arg[:60] for arg in argv]
        if any("traceback" in p for p in outcome.problems) or "internal error" in outcome.message:
            tally["tracebacks"] += 1
            problems.append(f"traceback/internal error: {short}: {outcome.output[:300]}")
        if outcome.reply is None:
            tally["non-JSON replies"] += 1
            problems.append(f"not JSON: {short}: {outcome.output[:300]!r}")
        elif outcome.problems or (expected and outcome.status != expected):
            tally["wrong status or exit code"] += 1
            problems.append(f"expected {expected}: {short}: {outcome.code} {outcome.output[:300]}")
        after = snapshot(harness)
        if after != before:
            tally["disk changes"] += 1
            changed = set(after[0]) ^ set(before[0])
            problems.append(f"changed disk: {short}: {changed} {after[1:]} {before[1:]}")
            before = after
    tally["tracebacks"] += len(journal_tracebacks(harness))
    assert Path(harness.dir("live"), "keep").read_bytes() == b"precious" * 512
    for key, value in tally.items():
        FIGURES.add("fuzzing", key, value)
    FIGURES.put("fuzzing", "seed", SEED)
    harness.must("unmount", harness.dir("live"))
    assert not problems, "\n".join(problems[:30])


# ---- the decisions for garbage input, one by one -----------------------------------------------

@pytest.mark.parametrize(("key", "value"), [
    ("volumeID", None), ("volumeID", 7), ("volumeID", {"a": "b"}), ("size", 64), ("size", None),
    ("kubernetes.io/readwrite", True), ("kubernetes.io/fsType", ["ext4"]),
])
def test_non_string_option_is_a_failure_naming_the_key(harness: Harness, key: str, value: object) -> None:
    body = json.loads(options("v1"))
    body[key] = value
    result = harness.must("mount", harness.dir("a"), json.dumps(body), status="Failure")
    assert key in result.message and result.code == 1
    assert not harness.root.exists() or not (harness.root / "volumes" / "null.img").exists()
    assert harness.mounts() == [] and settled_loops(harness) == []


@pytest.mark.parametrize("size", ["１６Mi", " 16Mi", "16Mi ", "1e400", "10Zi", "0", "-1", "16 Mi", "٣Mi"])
def test_size_outside_quantity_syntax_is_refused(harness: Harness, size: str) -> None:
    result = harness.must("expandvolume", options("v1"), "/ctrl", size, "", status="Failure")
    assert "size" in result.message


@pytest.mark.parametrize(("size", "value"), [
    ("+1Gi", 1 << 30), ("1.5Gi", 3 << 29), ("1e3", 1000), ("1E3", 1000), ("2G", 2 * 10**9),
    ("1e+3", 1000), (".5Ki", 512),
])
def test_plus_exponent_and_fraction_forms_are_read_correctly(harness: Harness, size: str, value: int) -> None:
    result = harness.must("expandvolume", options("v1"), "/ctrl", size, "")
    assert result.reply["volumeNewSize"] == str(value)


@pytest.mark.parametrize("mode", ["RW", "read-only", "ro ", "true", "0"])
def test_readwrite_other_than_ro_rw_or_empty_is_a_failure(harness: Harness, mode: str) -> None:
    result = harness.must("mount", harness.dir("a"), options("v1", mode=mode), status="Failure")
    assert "readwrite" in result.message
    assert not harness.backing_file("v1").exists()


def test_dangerous_targets_are_refused_by_the_path_check(harness: Harness) -> None:
    """`/` is checked on the path check alone: it is never sent to unmount."""
    config = Config(str(harness.root))
    (harness.base / "to-root").symlink_to("/")
    (harness.base / "to-data").symlink_to(harness.root)
    for path in ["/", "//", "/.", "/tmp/..", str(harness.base / "to-root"), str(harness.root),
                 str(harness.root / "volumes"), str(harness.base / "to-data") + "/log", str(harness.base)]:
        with pytest.raises(FlexvolError):
            mounting.check_target(path, config)


def test_not_supported_never_depends_on_the_arguments(harness: Harness) -> None:
    for args in ([], ["x"], [options("v1")], ["/a", options("v1")], ["{"], [""] * 7):
        assert harness.must("getvolumename", *args, status="Not supported").code == 0
        assert harness.must("provision", *args, status="Not supported").code == 0
    for verb, arity in ARITY.items():
        outcome = harness.raw(verb, *[""] * (arity + 1))
        assert outcome.status == "Failure" and outcome.code == 1, outcome.output
