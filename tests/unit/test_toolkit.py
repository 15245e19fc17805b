"""Toolkit logic that needs no root: percentiles, redaction, pod names, propagation, rendering,
and the CLI's errors and help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexvol.cli.calls import percentile, redact, verb_stats
from flexvol.cli.render import size, volumes_table
from flexvol.toolkit import doctor, inventory
from tests.helpers.cli import flexvol

COMMANDS = ("ls", "show", "create", "delete", "resize", "capacity", "calls", "call", "repair", "doctor",
            "install", "uninstall")


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7.0], 0.9) == 7
    assert percentile([], 0.5) == 0


def test_verb_stats_counts_failures_per_verb() -> None:
    entries = [{"verb": "mount", "ms": 10, "status": "Success"},
               {"verb": "mount", "ms": 30, "status": "Failure"},
               {"verb": "unmount", "ms": 5, "status": "Success"}]
    stats = verb_stats(entries)
    assert stats["mount"]["calls"] == 2 and stats["mount"]["failed"] == 1
    assert stats["mount"]["max"] == 30 and stats["mount"]["p50"] == 10
    assert stats["unmount"]["failed"] == 0


def test_redact_hides_anything_after_a_secret_key() -> None:
    entry = {"verb": "mount", "message": "bad kubernetes.io/secret/password=hunter2"}
    assert "hunter2" not in json.dumps(redact(entry))
    clean = {"verb": "mount", "message": "fine"}
    assert redact(clean) is clean


def test_pod_of_reads_uid_and_name_from_the_pod_dir(tmp_path: Path) -> None:
    pod = tmp_path / "pods" / "uid-9"
    (pod / "volumes" / "flexvol~loop" / "data").mkdir(parents=True)
    path = str(pod / "volumes" / "flexvol~loop" / "data")
    assert inventory.pod_of(path, str(tmp_path)) == "uid-9"
    (pod / "etc-hosts").write_text("127.0.0.1\tlocalhost\n# comment\n10.0.0.5\tweb-0\n")
    assert inventory.pod_of(path, str(tmp_path)) == "web-0"
    assert inventory.pod_of("/mnt/elsewhere", str(tmp_path)) == ""


def test_propagation_reads_the_shared_tag_of_the_closest_mount(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 8:2 / /var/lib/kubelet rw,relatime - ext4 /dev/sda2 rw\n")
    private = doctor.check_propagation("/var/lib/kubelet", str(info))[0]
    assert private.status == doctor.WARN and "--make-rshared /var/lib/kubelet" in private.fix
    shared = doctor.check_propagation("/var/lib/other", str(info))[0]
    assert shared.status == doctor.PASS


def test_kubelet_config_file_names_the_plugin_dir(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("kind: KubeletConfiguration\nvolumePluginDir: '/var/lib/kubelet/volumeplugins'\n")
    assert doctor._from_config(str(config)) == "/var/lib/kubelet/volumeplugins"
    assert doctor._from_config(str(tmp_path / "missing")) == ""


def test_sizes_are_readable() -> None:
    assert size(64 << 20) == "64Mi"
    assert size(int(1.5 * (1 << 30))) == "1.5Gi"
    assert size(None) == "-"
    assert size(512) == "<0.01Mi"


def test_volumes_table_shows_state_pod_and_direct_io() -> None:
    from rich.console import Console

    view = inventory.VolumeView(
        volume_id="v1", state="mounted", size_bytes=1 << 30, allocated_bytes=4 << 20, fs_type="ext4",
        formatted=True, loop_devices=["/dev/loop7"], direct_io=True,
        mounts=[inventory.MountView("/var/lib/kubelet/pods/u/volumes/flexvol~loop/d", False,
                                    "/dev/loop7", "web-0")])
    console = Console(width=200, no_color=True, record=True)
    console.print(volumes_table([view]))
    text = console.export_text()
    row = next(line for line in text.splitlines() if line.startswith("v1"))
    assert "1Gi" in row and "4Mi" in row and "/dev/loop7 dio" in row and "[web-0]" in row
    assert row.rstrip().endswith("mounted")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = flexvol(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout


def test_ls_of_an_empty_root(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    result = flexvol("ls", root=str(tmp_path / "root"))
    assert result.exit_code == 0 and result.stdout.strip() == "no volumes"
    assert json.loads(flexvol("ls", "--json", root=str(tmp_path / "root")).stdout) == []


def test_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    result = flexvol("show", "nope", root=str(tmp_path / "root"))
    assert result.exit_code == 1
    assert "volume nope does not exist" in result.output
    assert "Traceback" not in result.output
    bad = flexvol("create", "Bad_Name", "--size", "1Gi", root=str(tmp_path / "root"))
    assert bad.exit_code == 2 and "'Bad_Name' is not a volume id" in bad.output
    tiny = flexvol("create", "v1", "--size", "1Mi", "--fs", "xfs", root=str(tmp_path / "root"))
    assert tiny.exit_code == 1 and "xfs needs" in tiny.output


class FakeProcess:
    def __init__(self, name: str, cmdline: list[str]) -> None:
        self.info = {"name": name, "cmdline": cmdline}


def test_plugin_dir_comes_from_the_running_kubelet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    config = tmp_path / "kubelet.yaml"
    config.write_text("volumePluginDir: /var/lib/kubelet/volumeplugins\n")
    processes = [FakeProcess("bash", ["bash"]),
                 FakeProcess("kubelet", ["/usr/bin/kubelet", "--config", str(config)])]
    monkeypatch.setattr(psutil, "process_iter", lambda attrs: iter(processes))
    assert doctor.kubelet_plugin_dir() == ("/var/lib/kubelet/volumeplugins", f"kubelet config {config}")
    processes[1] = FakeProcess("kubelet", ["kubelet", f"--config={config}", "--volume-plugin-dir=/opt/vp"])
    assert doctor.kubelet_plugin_dir() == ("/opt/vp", "kubelet command line")
    processes.pop()
    assert doctor.kubelet_plugin_dir()[0] == doctor.DEFAULT_PLUGIN_DIR
