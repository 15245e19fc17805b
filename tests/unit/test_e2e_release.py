"""The end-to-end suite's per-release settings (tests/e2e/release.py), checked without a cluster."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.e2e import release

REPO = Path(__file__).resolve().parents[2]


def test_the_release_is_read_from_the_built_directory(tmp_path: Path) -> None:
    (tmp_path / "k8s-version").write_text("1.20.5+really1.20.2-1.1~deb12u1\n")  # Debian's 1.20 build
    assert not release.is_current(tmp_path)
    (tmp_path / "k8s-version").write_text("1.37.2\n")
    assert release.is_current(tmp_path)


def test_an_unknown_release_name_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXVOL_E2E_K8S", "1.99")
    with pytest.raises(SystemExit, match=r"choose one of 1\.20, current"):
        release.chosen()
    monkeypatch.delenv("FLEXVOL_E2E_K8S")
    assert release.chosen() == "current"


def test_flags_the_current_release_dropped_are_left_out() -> None:
    argv = ["kube-controller-manager", "--port=0", "--secure-port=0", "--insecure-port=0",
            "--container-runtime=remote", "--controllers=*,-nodeipam,-service,-route,-cloud-node-lifecycle"]
    assert release.adapt(argv) == ["kube-controller-manager", "--secure-port=0", "--controllers=*,-nodeipam"]


def test_the_containerd_config_is_version_3_with_the_cri_split(tmp_path: Path) -> None:
    text = release.containerd_config(tmp_path, tmp_path / "c.sock", Path("/b/runc"), Path("/cni/bin"),
                                     Path("/cni/conf"), "localhost/pause:1")
    config = tomllib.loads(text)
    assert config["version"] == 3
    plugins = config["plugins"]
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "localhost/pause:1"
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["BinaryName"] == "/b/runc"
    assert runtime["cni"]["bin_dirs"] == ["/cni/bin"]
    assert "io.containerd.nri.v1.nri" in config["disabled_plugins"]


def test_the_kubelet_config_allows_cgroup_v1_and_needs_no_api_server(tmp_path: Path) -> None:
    config = json.loads(release.kubelet_config(tmp_path / "kubelet.json").read_text())
    assert config["kind"] == "KubeletConfiguration"
    assert config["failCgroupV1"] is False
    assert config["authentication"]["webhook"]["enabled"] is False
    assert config["authorization"]["mode"] == "AlwaysAllow"


def test_log_lines_are_quoted_as_each_release_writes_them() -> None:
    assert release.plugin_loaded(False, "flexvol/loop") == 'Loaded volume plugin "flexvol/loop"'
    assert release.plugin_loaded(True, "flexvol/loop") == '"Loaded volume plugin" pluginName="flexvol/loop"'
    assert release.setup_succeeded(False, "pv") == 'MountVolume.SetUp succeeded for volume "pv"'
    assert release.setup_succeeded(True, "pv") == 'MountVolume.SetUp succeeded for volume \\"pv\\"'


def test_test_sh_refuses_an_unknown_e2e_choice_before_running_anything(tmp_path: Path) -> None:
    """FLEXVOL_E2E picks the releases (current, legacy, all); a typo must fail at once, not
    after the minutes of tests before the e2e stage."""
    done = subprocess.run(["bash", str(REPO / "test.sh")], capture_output=True, text=True,
                          env={**os.environ, "FLEXVOL_E2E": "1.20"}, cwd=tmp_path, timeout=30, check=False)
    assert done.returncode == 2
    assert "FLEXVOL_E2E=1.20: choose current (the default), legacy or all" in done.stderr
    assert "== ruff" not in done.stdout
