"""The provisioner and agent commands: options, install-only and refusals before any API call."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flexvol.cli.main import load_commands

ENV = {"COLUMNS": "100", "NO_COLOR": "1"}


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(load_commands(), list(args), env=ENV | (env or {}))


def test_agent_needs_a_node_name(tmp_path: Path) -> None:
    result = invoke("agent", "--no-install", "--root", str(tmp_path), env={"NODE_NAME": ""})
    assert result.exit_code == 1
    assert "--node (or NODE_NAME) is required" in result.output


def test_agent_refuses_a_bad_capacity_before_installing(tmp_path: Path) -> None:
    result = invoke("agent", "--node", "n1", "--capacity", "lots", "--plugin-dir", str(tmp_path / "p"),
                    "--lib-dir", str(tmp_path / "lib"), "--root", str(tmp_path / "data"))
    assert result.exit_code == 1
    assert "--capacity 'lots' is not a valid quantity" in result.output
    assert not (tmp_path / "p").exists()


def test_unreadable_kubeconfig_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    result = invoke("provisioner", "--kubeconfig", str(missing))
    assert result.exit_code == 1
    assert "cannot load the Kubernetes configuration" in result.output


def test_help_lists_both_commands() -> None:
    result = invoke("--help")
    assert "provisioner" in result.output and "agent" in result.output
