"""The package's layout keeps its promises: one storage core that imports no front end, a
FlexVolume front end that imports only the core, small modules, empty package files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "flexvol"
MAX_LINES = 400
# What each part may import from flexvol (besides itself).
ALLOWED = {
    "core": {"core"},
    "flex": {"core", "flex"},
}


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def flexvol_imports(path: Path) -> set[str]:
    """The flexvol subpackages a module imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flexvol."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "flexvol":
            found.update(alias.name for alias in node.names if alias.name != "__version__")
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("flexvol."))
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_lies_beneath_it(part: str) -> None:
    """The core is called by every front end and calls none; the FlexVolume front end calls
    only the core, so a second front end can sit beside it."""
    wrong = {str(path.relative_to(PACKAGE)): sorted(flexvol_imports(path) - ALLOWED[part])
             for path in (PACKAGE / part).glob("*.py")}
    assert not {name: parts for name, parts in wrong.items() if parts}


def test_no_module_is_over_400_lines() -> None:
    # Generated wire code (csi/proto, from its .proto) is not written by hand.
    long = {str(path.relative_to(PACKAGE)): count for path in modules()
            if "proto" not in path.parts
            and (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long


def test_package_files_of_the_driver_path_are_empty() -> None:
    """The driver loads flexvol/core and flexvol/flex on every call: their __init__ files cost
    it nothing only when empty."""
    for part in ("core", "flex", "toolkit"):
        assert (PACKAGE / part / "__init__.py").read_text() == ""


def test_only_the_flex_front_end_calls_the_flex_dispatcher() -> None:
    """The toolkit and the agent call core operations, never the driver through its wire."""
    callers = [str(path.relative_to(PACKAGE)) for path in modules()
               if "dispatch(" in path.read_text(encoding="utf-8") and path.parent.name != "flex"]
    assert callers == []
