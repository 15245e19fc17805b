"""flexvol fsck's judgement of a checker's output and exit code, and the driver kept free of sh."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flexvol.toolkit import fsck
from tests.helpers.driver import REPO

# What `e2fsck -f -n -C 0` wrote on a 64Mi volume: its progress bar sits between \x01 and \x02.
E2FSCK_OUTPUT = (
    "Pass 1: Checking inodes, blocks, and sizes\n"
    "\x01v1.img: |=                                        |  2.2%   \r\x02"
    "\x01                                                                  \r\x02"
    "Pass 2: Checking directory structure\n"
    "\x01v1.img: |========================================| 100.0%   \r\x02"
    "\x01                                                                  \r\x02"
    "v1.img: 11/16384 files (0.0% non-contiguous), 9513/65536 blocks\n"
)


def feed(text: str, progress=lambda line: None, chunk: int = 1) -> tuple[list[str], list[float]]:
    lines: list[str] = []
    fractions: list[float] = []
    stream = fsck.Stream(lines.append, fractions.append, progress)
    for start in range(0, len(text), chunk):
        stream.feed(text[start:start + chunk])
    stream.close()
    return lines, fractions


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_e2fsck_progress_bar_becomes_fractions_and_never_lines(chunk: int) -> None:
    lines, fractions = feed(E2FSCK_OUTPUT, chunk=chunk)
    assert lines == ["Pass 1: Checking inodes, blocks, and sizes", "Pass 2: Checking directory structure",
                     "v1.img: 11/16384 files (0.0% non-contiguous), 9513/65536 blocks"]
    assert fractions == pytest.approx([0.022, 1.0])


def test_xfs_and_btrfs_progress_comes_from_their_phases() -> None:
    _, fractions = feed("Phase 1 - find and verify superblock...\n        - agno = 0\n"
                        "Phase 7 - verify link counts...\n", fsck.CHECKERS["xfs"].progress)
    assert fractions == pytest.approx([1 / 7, 1.0])
    lines, fractions = feed("[1/7] checking root items\r\n[7/7] checking quota groups\n",
                            fsck.CHECKERS["btrfs"].progress)
    assert fractions == pytest.approx([1 / 7, 1.0])
    assert lines == ["[1/7] checking root items", "[7/7] checking quota groups"]


def test_a_last_line_without_a_newline_is_kept() -> None:
    lines, _ = feed("found 147456 bytes used, no error found")
    assert lines == ["found 147456 bytes used, no error found"]


@pytest.mark.parametrize(("code", "outcome"), [
    (0, fsck.CLEAN), (1, fsck.REPAIRED), (2, fsck.REPAIRED), (4, fsck.ERRORS),
    # a corrupt journal stops e2fsck (8) after it found errors (4): errors, not a mere failure
    (12, fsck.ERRORS), (8, fsck.FAILED), (16, fsck.FAILED), (32, fsck.FAILED), (-9, fsck.FAILED),
])
def test_e2fsck_exit_codes(code: int, outcome: str) -> None:
    assert fsck.CHECKERS["ext4"].outcome(code) == outcome


def test_xfs_dirty_log_is_a_failure_with_a_hint_never_errors() -> None:
    xfs = fsck.CHECKERS["xfs"]
    assert [xfs.outcome(code) for code in (0, 1, 2)] == [fsck.CLEAN, fsck.ERRORS, fsck.FAILED]
    assert "-L" in xfs.hint


def test_btrfs_is_checked_but_never_repaired() -> None:
    assert fsck.CHECKERS["btrfs"].repair is None
    assert fsck.CHECKERS["btrfs"].no_repair


def test_the_driver_path_never_imports_sh() -> None:
    """The toolkit's runner (sh) must not reach the driver's per-call path (latency)."""
    code = (
        "import sys\n"
        "from flexvol.flex import verbs\n"
        "from flexvol.core import backing, loop, formatting, mounting, operations, state, kernel, "
        "loopdev, mountdir, options, quantity, undo, guard, filesystems, superblock, budget, journal, "
        "runner\n"
        "heavy = {'sh', 'rich', 'typer', 'psutil', 'subprocess', 'flexvol.toolkit.fsck'}\n"
        "heavy = sorted(heavy & set(sys.modules))\n"
        "print(','.join(heavy))\n"
    )
    # -I without -S: site-packages stay visible, so an `import sh` would succeed and show here.
    prelude = f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
    done = subprocess.run([sys.executable, "-I", "-c", prelude + code],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
