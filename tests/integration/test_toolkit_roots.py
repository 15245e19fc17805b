"""The toolkit run by a user who cannot read the data root, and a garbage overcommit file under
the driver: errors with the path and the fix, never an empty pool nor a PASS."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers.driver import REPO, Driver, options

FLEXVOL = REPO / ".venv" / "bin" / "flexvol"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command as an unprivileged user, at a pinned terminal width."""
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "NO_COLOR": "1", "HOME": "/"}
    return subprocess.run([*NOBODY, str(FLEXVOL), *args], capture_output=True, text=True, env=env,
                          cwd="/", timeout=60, check=False)


@pytest.fixture
def pool(driver: Driver) -> Driver:
    """A data root with a volume and a journal in it, as root made them."""
    if not os.access(FLEXVOL, os.X_OK):
        pytest.skip(f"{FLEXVOL} is not installed (pip install -e . in .venv)")
    target = driver.dir("pod")
    driver.ok("mount", target, options("v1"))
    driver.ok("unmount", target)
    return driver


def test_unprivileged_user_gets_errors_not_an_empty_pool(pool: Driver) -> None:
    """Defect 4: as an unprivileged user `calls` said "no calls" (exit 0)."""
    root = str(pool.root)
    for command in (["ls"], ["calls"], ["calls", "--stats"], ["capacity"], ["repair"], ["show", "v1"]):
        done = as_nobody(*command, "--root", root)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "permission denied" in done.stderr.lower() and root in done.stderr, done.stderr
        assert "run as root" in done.stderr
        assert "no calls" not in done.stdout and "no volumes" not in done.stdout


def test_unreadable_journal_is_an_error_for_calls(pool: Driver) -> None:
    """Defect 4: a journal the user cannot read made `calls` say "no calls"."""
    journal = pool.root / "log" / "calls.jsonl"
    assert journal.exists()
    # The dirs open to everyone, the journal itself root's only.
    for path in (pool.base, pool.root, *(path for path in pool.root.iterdir() if path.is_dir())):
        path.chmod(0o755)
    journal.chmod(0o600)
    done = as_nobody("calls", "--root", str(pool.root))
    assert done.returncode == 1, done.stdout
    assert f"cannot read {journal}: permission denied" in done.stderr


def test_doctor_does_not_pass_what_an_unprivileged_user_cannot_vouch_for(pool: Driver) -> None:
    """Defect 4: as an unprivileged user `doctor` passed everything, "plugin dir is writable"
    included."""
    plugins = pool.base / "plugins"
    plugins.mkdir()
    pool.base.chmod(0o755)
    done = as_nobody("doctor", "--json", "--root", str(pool.root), "--plugin-dir", str(plugins),
                     "--kubelet-root", str(pool.base / "kubelet"))
    assert done.returncode == 4, done.stderr
    checks = {check["name"]: check for check in json.loads(done.stdout)}
    assert checks["privileges"]["status"] == "FAIL"
    assert checks["plugin dir"]["status"] == "FAIL" and "not writable" in checks["plugin dir"]["detail"]
    assert checks["data root"]["status"] == "FAIL" and str(pool.root) in checks["data root"]["detail"]
    assert "pool space" not in checks, "no figures measured through an unreadable root"


def test_garbage_overcommit_file_is_a_failure_naming_it(driver: Driver) -> None:
    """Defect 4: a garbage <root>/overcommit was silently ignored; the driver answers a Failure
    naming the file and the fix (no internal error) and makes nothing."""
    driver.ok("mount", driver.dir("first"), options("v0"))
    overcommit = driver.root / "overcommit"
    overcommit.write_text("two and a half\n")
    failed = driver.fail("mount", driver.dir("pod"), options("v1"))
    assert str(overcommit) in failed.message and "positive number" in failed.message
    assert "internal error" not in failed.message
    assert not driver.backing_file("v1").exists()
    # A volume that exists is not created nor grown: it still mounts.
    driver.ok("unmount", driver.dir("first"))
    driver.ok("mount", driver.dir("again"), options("v0"))
    driver.ok("unmount", driver.dir("again"))


def test_volume_completion_in_an_unreadable_root_offers_nothing_without_a_traceback(pool: Driver) -> None:
    """Defect 4: completing a volume id where the user cannot read the root is quiet, not a crash."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "FLEXVOL_ROOT": str(pool.root),
           "_FLEXVOL_COMPLETE": "complete_bash", "COMP_WORDS": "flexvol show ", "COMP_CWORD": "2"}
    done = subprocess.run([*NOBODY, str(FLEXVOL)], capture_output=True, text=True, env=env, cwd="/",
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
