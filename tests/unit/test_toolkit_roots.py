"""A wrong data root is an error with the path and the fix, never an empty pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexvol.core import budget
from flexvol.core.config import Config
from flexvol.core.errors import FlexvolError
from tests.helpers.cli import flexvol

READERS = (("ls",), ("ls", "--json"), ("capacity",), ("capacity", "--json"), ("calls",),
           ("calls", "--stats"), ("repair",), ("show", "v1"))


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_missing_root_is_an_error_not_an_empty_pool(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Defect 4: `ls --root /nonexistent` printed "no volumes" and exited 0, `capacity`
    reported the pool `/`, `calls` said "no calls", `repair` "nothing to repair"."""
    missing = tmp_path / "missing"
    result = flexvol(*command, root=str(missing))
    assert result.exit_code == 1, result.output
    assert f"data root {missing} does not exist" in result.stderr
    assert "--root or FLEXVOL_ROOT" in result.stderr
    assert result.stdout == "", "nothing that looks like an (empty) answer"
    assert not missing.exists(), "reading never makes the root"


def test_a_root_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    """Defect 4: a root that is not a directory is named as such."""
    file = tmp_path / "file"
    file.write_text("x")
    result = flexvol("capacity", root=str(file))
    assert result.exit_code == 1 and f"data root {file} is not a directory" in result.stderr


def test_an_existing_empty_root_is_an_empty_pool(tmp_path: Path) -> None:
    result = flexvol("ls", root=str(tmp_path))
    assert result.exit_code == 0 and result.stdout.strip() == "no volumes"
    assert json.loads(flexvol("ls", "--json", root=str(tmp_path)).stdout) == []
    assert flexvol("calls", root=str(tmp_path)).stdout.strip() == "no calls"


@pytest.mark.parametrize("text", ["lots", "", "-1", "0", "nan", "inf", "\xff\xfe"])
def test_garbage_overcommit_file_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    """Defect 4: a garbage <root>/overcommit was silently taken as the default ratio."""
    config = Config(str(tmp_path))
    Path(config.overcommit_path).write_bytes(text.encode("latin-1"))
    with pytest.raises(FlexvolError) as raised:
        budget.measure(config)
    assert config.overcommit_path in raised.value.message
    assert "positive number" in raised.value.hint and "remove the file" in raised.value.hint
    result = flexvol("capacity", root=str(tmp_path))
    assert result.exit_code == 1 and config.overcommit_path in result.stderr
    assert "Traceback" not in result.output


def test_overcommit_file_read_when_valid_default_when_absent(tmp_path: Path) -> None:
    config = Config(str(tmp_path))
    assert budget.overcommit_ratio(config) == budget.DEFAULT_OVERCOMMIT
    Path(config.overcommit_path).write_text("1.5\n")
    assert budget.overcommit_ratio(config) == 1.5


def test_doctor_fails_a_missing_root_and_a_garbage_overcommit_file(tmp_path: Path) -> None:
    """Defect 4: doctor names a missing data root and a garbage overcommit file as FAILs with
    their fix, and measures no pool through a root it cannot read."""
    from flexvol.toolkit import doctor

    missing = Config(str(tmp_path / "missing"))
    [check] = doctor.check_data_root(missing)
    assert check.status == doctor.FAIL and str(tmp_path / "missing") in check.detail and check.fix
    config = Config(str(tmp_path))
    Path(config.overcommit_path).write_text("lots")
    assert doctor.check_data_root(config)[0].status == doctor.PASS
    [space] = doctor.check_space(config)
    assert space.status == doctor.FAIL and config.overcommit_path in space.detail
    assert "positive number" in space.fix
