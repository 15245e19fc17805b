"""When the CSI end-to-end scenarios run: where the sidecars are built already, or when asked
to build them (FLEXVOL_E2E_CSI), never by surprise for about 15 cold minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import csi, sidecars


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLEXVOL_CSI_SIDECARS_CACHE", str(tmp_path))
    monkeypatch.delenv("FLEXVOL_E2E_CSI", raising=False)
    built = tmp_path / "built" / "bin"
    monkeypatch.setattr(sidecars, "build", lambda: built)
    return tmp_path


def pinned_key() -> str:
    script = sidecars.BUILD_SCRIPT.read_text()
    versions = [line.split('"')[1] for line in script.splitlines()
                if line.startswith(("PROVISIONER_VERSION=", "RESIZER_VERSION=", "SNAPSHOTTER_VERSION="))]
    provisioner, resizer, snapshotter = versions
    return f"provisioner-{provisioner}.resizer-{resizer}.snapshotter-{snapshotter}.go1.99.0"


def test_a_cold_machine_leaves_the_csi_scenarios_out_with_the_way_to_run_them(cache: Path) -> None:
    bin_dir, why = csi.sidecars_bin_dir()
    assert bin_dir is None
    assert "csi-sidecars-build.sh" in why and "FLEXVOL_E2E_CSI=build" in why


def test_built_sidecars_of_the_pinned_releases_run_them(cache: Path) -> None:
    done = cache / pinned_key() / "bin"
    done.mkdir(parents=True)
    (done / ".complete").touch()
    assert csi.sidecars_bin_dir() == (cache / "built" / "bin", "")


def test_sidecars_of_other_releases_or_an_unfinished_build_do_not_count(cache: Path) -> None:
    (cache / "provisioner-v0.0.1.resizer-v0.0.1.snapshotter-v0.0.1.go1.26.8" / "bin").mkdir(parents=True)
    (cache / "provisioner-v0.0.1.resizer-v0.0.1.snapshotter-v0.0.1.go1.26.8" / "bin" / ".complete").touch()
    (cache / pinned_key() / "bin").mkdir(parents=True)  # no .complete: a build that stopped
    assert csi.sidecars_bin_dir()[0] is None


def test_build_builds_and_0_leaves_them_out(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXVOL_E2E_CSI", "build")
    assert csi.sidecars_bin_dir() == (cache / "built" / "bin", "")
    monkeypatch.setenv("FLEXVOL_E2E_CSI", "0")
    assert csi.sidecars_bin_dir() == (None, "FLEXVOL_E2E_CSI=0")
