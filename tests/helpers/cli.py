"""Run the `flexvol` command in-process, as a terminal of fixed width without colour."""

from __future__ import annotations

import json

from typer.testing import CliRunner, Result

from flexvol.cli.main import load_commands

ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def flexvol(*args: str, root: str | None = None, kubelet_root: str | None = None,
            input: str | None = None) -> Result:
    env = dict(ENV)
    if root is not None:
        env["FLEXVOL_ROOT"] = root
    if kubelet_root is not None:
        env["FLEXVOL_KUBELET_ROOT"] = kubelet_root
    return CliRunner().invoke(load_commands(), list(args), env=env, input=input)


def flexvol_json(*args: str, **kwargs: str) -> object:
    result = flexvol(*args, "--json", **kwargs)
    assert result.exit_code in (0, 3, 4), result.output
    return json.loads(result.stdout)
