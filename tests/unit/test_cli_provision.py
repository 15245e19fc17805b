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


def test_agent_metrics_listen_on_loopback_by_default(tmp_path: Path, monkeypatch) -> None:
    """The metrics name every volume and are served without authentication: the agent bound
    them to the node's address (NODE_IP, set by deploy/agent.yaml); now loopback unless told."""
    import prometheus_client

    from flexvol.cli import provision
    from flexvol.provisioning.agent import Agent

    bound: list[tuple[int, str]] = []
    monkeypatch.setattr(prometheus_client, "start_http_server",
                        lambda port, addr="0.0.0.0", registry=None: bound.append((port, addr)))
    monkeypatch.setattr(provision, "_cluster", lambda kubeconfig: object())
    monkeypatch.setattr(Agent, "run", lambda self, stop, watch_seconds=30: None)
    common = ("agent", "--no-install", "--node", "n1", "--root", str(tmp_path), "--metrics-port", "9808")
    assert invoke(*common, env={"NODE_IP": "10.0.0.5"}).exit_code == 0
    assert invoke(*common, "--metrics-address", "0.0.0.0").exit_code == 0
    assert bound == [(9808, "127.0.0.1"), (9808, "0.0.0.0")]


def test_the_shipped_agent_serves_metrics_on_loopback() -> None:
    import yaml

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "agent.yaml"
    [daemonset] = list(yaml.safe_load_all(deploy.read_text()))
    [agent] = daemonset["spec"]["template"]["spec"]["containers"]
    args = agent["args"]
    assert "--metrics-port" in args
    assert "--metrics-address" not in args or args[args.index("--metrics-address") + 1] == "127.0.0.1"
