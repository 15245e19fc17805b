"""Script-friendly listings (-o json|yaml|wide|name, --no-headers, no wrapping off a terminal),
one human size format, and the toolkit's own words in its errors and help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from flexvol.cli.render import volumes_table
from flexvol.core import state
from flexvol.core.config import Config
from flexvol.core.errors import InvalidInput
from flexvol.core.options import parse_spec
from flexvol.core.quantity import human_bytes, parse_quantity
from flexvol.toolkit import inventory
from tests.helpers.cli import flexvol

LONG_MOUNT = ("/var/lib/kubelet/pods/0e0c5b8a-4b4f-4c5e-9d7e-2f1a3b4c5d6e/volumes/flexvol~loop/"
              "a-rather-long-persistent-volume-name-for-the-data-of-a-database")
LISTINGS = ("ls", "calls", "repair", "doctor", "capacity", "sanity", "top")


def view(volume_id: str = "v1", size_bytes: int = 1 << 30) -> inventory.VolumeView:
    return inventory.VolumeView(
        volume_id=volume_id, state="mounted", size_bytes=size_bytes, allocated_bytes=4 << 20,
        fs_type="ext4", formatted=True, loop_devices=["/dev/loop7"], direct_io=True,
        mounts=[inventory.MountView(LONG_MOUNT, False, "/dev/loop7", "shop/web-0")],
        file_path=f"/var/lib/flexvol/volumes/{volume_id}.img", file_exists=True)


@pytest.fixture
def two_volumes(monkeypatch: pytest.MonkeyPatch) -> list[inventory.VolumeView]:
    views = [view("v1"), view("v2", 1000001536)]
    monkeypatch.setattr(inventory, "volumes", lambda config, kubelet_root="": views)
    return views


def narrow(*args: str, root: Path) -> str:
    """The command's stdout as a pipe sees it, with a narrow COLUMNS that rich used to obey."""
    from typer.testing import CliRunner

    from flexvol.cli.main import load_commands

    result = CliRunner().invoke(load_commands(), list(args),
                                env={"COLUMNS": "40", "NO_COLOR": "1", "FLEXVOL_ROOT": str(root)})
    assert result.exit_code == 0, result.output
    return result.stdout


# ---- piped output wraps (defect 2) ----------------------------------------------------------

def test_piped_ls_never_wraps_nor_squeezes(two_volumes: list, tmp_path: Path) -> None:
    """Defect 2: off a terminal `ls` wrapped a mount path over several lines and squeezed the
    header to `MOUNT`/`S`; every row must be one whole line."""
    lines = narrow("ls", root=tmp_path).splitlines()
    assert len(lines) == 3, lines
    assert lines[0].split() == ["VOLUME", "SIZE", "ALLOCATED", "USED", "FS", "LOOP", "MOUNTS", "PV", "STATE"]
    assert lines[1].startswith("v1 ") and f"{LONG_MOUNT} [shop/web-0]" in lines[1]
    assert lines[1].endswith("mounted")


def test_piped_calls_keep_a_long_message_on_one_line(tmp_path: Path) -> None:
    """Defect 2: a long journal message must not wrap when piped."""
    config = Config(str(tmp_path))
    Path(config.journal_path).parent.mkdir(parents=True)
    message = "mount of v1 failed: " + "the kernel said no; " * 10
    entries = [{"time": "2026-12-06T10:00:00Z", "verb": "mount", "volume": "v1", "status": "Failure",
                "message": message, "ms": 12.5},
               {"time": "2026-12-06T10:00:01Z", "verb": "init", "volume": "", "status": "Success",
                "message": "", "ms": 1}]
    Path(config.journal_path).write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    lines = narrow("calls", root=tmp_path).splitlines()
    assert len(lines) == 3 and lines[1].endswith(message.rstrip()), lines
    assert narrow("calls", "-o", "name", root=tmp_path) == "v1\n"
    assert narrow("calls", "--no-headers", "--verb", "init", root=tmp_path).split()[1] == "init"
    assert [row["verb"] for row in yaml.safe_load(narrow("calls", "-o", "yaml", root=tmp_path))] == \
        ["mount", "init"]
    assert narrow("calls", "--stats", "-o", "name", root=tmp_path) == "init\nmount\n"


def test_output_formats_of_ls(two_volumes: list, tmp_path: Path) -> None:
    """Defect 2: -o json|yaml|wide|name and --no-headers, as kubectl has them."""
    assert narrow("ls", "-o", "name", root=tmp_path) == "v1\nv2\n"
    as_json = json.loads(narrow("ls", "-o", "json", root=tmp_path))
    assert json.loads(narrow("ls", "--json", root=tmp_path)) == as_json
    assert yaml.safe_load(narrow("ls", "-o", "yaml", root=tmp_path)) == as_json
    assert [item["volume_id"] for item in as_json] == ["v1", "v2"]
    headless = narrow("ls", "--no-headers", root=tmp_path).splitlines()
    assert [line.split()[0] for line in headless] == ["v1", "v2"]
    wide = narrow("ls", "-o", "wide", root=tmp_path).splitlines()
    assert "FILE" in wide[0].split() and "/var/lib/flexvol/volumes/v2.img" in wide[2]
    clash = flexvol("ls", "--json", "-o", "yaml", root=str(tmp_path))
    assert clash.exit_code == 2
    assert flexvol("ls", "-o", "xml", root=str(tmp_path)).exit_code == 2


def test_an_empty_listing_prints_nothing_for_scripts(tmp_path: Path) -> None:
    """Defect 2: `-o name` and `--no-headers` of nothing are empty, not 'no volumes'."""
    assert narrow("ls", "-o", "name", root=tmp_path) == ""
    assert narrow("ls", "--no-headers", root=tmp_path) == ""
    assert narrow("ls", root=tmp_path).strip() == "no volumes"


def test_capacity_lists_its_figures_on_whole_lines(tmp_path: Path) -> None:
    """Defect 2: capacity piped is one figure per line; -o name its pool, -o yaml its numbers."""
    (tmp_path / "volumes").mkdir()
    lines = narrow("capacity", root=tmp_path).splitlines()
    assert lines[0].split() == ["pool", str(tmp_path / "volumes")]
    assert any(line.startswith("available to new or grown volumes ") for line in lines)
    assert narrow("capacity", "-o", "name", root=tmp_path) == f"{tmp_path / 'volumes'}\n"
    assert yaml.safe_load(narrow("capacity", "-o", "yaml", root=tmp_path))["pool_bytes"] > 0


@pytest.mark.parametrize("command", LISTINGS)
def test_every_listing_has_output_and_no_headers(command: str) -> None:
    """Defect 2: every listing takes -o/--output and --no-headers (and keeps --json)."""
    shown = flexvol(command, "--help").stdout
    for option in ("--output", "-o", "--no-headers", "--json"):
        assert re.search(rf"(^|\s){option}(\s|,)", shown), (option, shown)


def test_a_narrow_terminal_folds_paths_not_headers_nor_states() -> None:
    """Defect 2: on an 80-column terminal a long mount and state dropped the MOUNTS column
    and squeezed headers; long paths fold, short cells and headers stay whole."""
    item = view()
    item.state = "inconsistent"
    item.loop_devices = ["/dev/loop7", "/dev/loop12"]
    console = Console(width=80, force_terminal=True, no_color=True, record=True)
    console.print(volumes_table([item]))
    lines = console.export_text(styles=False).splitlines()
    assert lines[0].split() == ["VOLUME", "SIZE", "ALLOCATED", "USED", "FS", "LOOP", "MOUNTS", "PV", "STATE"]
    assert lines[1].split()[-1] == "inconsistent"
    assert lines[1].split()[5] == "/dev/loop7" and lines[2].split()[0] == "/dev/loop12"
    assert "".join(line[lines[0].index("MOUNTS"):].split(" ")[0] for line in lines[1:]).startswith(
        "/var/lib/kubelet/pods/")


# ---- one human formatting of sizes; the toolkit's own words (defect 5) ----------------------

def test_create_echoes_the_size_ls_shows(monkeypatch: pytest.MonkeyPatch, two_volumes: list,
                                         tmp_path: Path) -> None:
    """Defect 5: `create -s 1G` echoed 976564Ki while `ls` said 954Mi: one figure, no Ki."""
    from flexvol.toolkit import lifecycle

    made = []

    def create(config: Config, volume_id: str, size: str, fs: str, **kwargs: object) -> state.Record:
        made.append(size)
        record = state.new_record(volume_id, 1000001536, "ext4")
        record.allocation, record.formatted = "thick", {"fs_type": "ext4"}
        return record

    monkeypatch.setattr(lifecycle, "create", create)
    echoed = narrow("create", "v2", "-s", "1G", root=tmp_path)
    assert made == ["1G"]
    assert "created v2: 953.7Mi ext4" in echoed and "Ki" not in echoed
    row = next(line for line in narrow("ls", root=tmp_path).splitlines() if line.startswith("v2 "))
    assert row.split()[1] == "953.7Mi"


@pytest.mark.parametrize("args", [("create", "", "-s", "1Gi"), ("delete", "", "-y"), ("show", ""),
                                  ("resize", "", "2Gi")], ids=lambda args: args[0])
def test_an_empty_volume_argument_is_named_as_the_cli_names_it(args: tuple[str, ...], tmp_path: Path) -> None:
    """Defect 5: `flexvol create ''` said "option 'volumeID' is missing — hint: set
    flexVolume.options.volumeID"; the CLI names its VOLUME argument."""
    result = flexvol(*args, root=str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "VOLUME" in result.output and "empty" in result.output
    assert "flexVolume.options" not in result.output and "option 'volumeID'" not in result.output


@pytest.mark.parametrize("args", [("create", "v1", "--size", ""), ("create", "v1", "--size", "0"),
                                  ("resize", "v1", ""), ("resize", "v1", "0")], ids=repr)
def test_an_empty_size_is_an_error_not_1gi(args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """Defect 5: `--size ""` silently made a 1Gi volume."""
    from flexvol.toolkit import lifecycle

    called = []
    monkeypatch.setattr(lifecycle, "create", lambda *a, **k: called.append(a) or {})
    monkeypatch.setattr(lifecycle, "resize", lambda *a, **k: called.append(a) or 0)
    result = flexvol(*args, root=str(tmp_path))
    assert result.exit_code == 1 and not called, result.output
    assert ("--size" if args[0] == "create" else "SIZE") in result.output
    assert "option 'size'" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("text", ["{", '{"volumeID": "v1"', '{"a" 1}', '{"a": NaN}', "[1,"])
def test_a_json_error_does_not_nest_itself(text: str) -> None:
    """Defect 5: 'not valid JSON (not valid JSON (truncated or malformed))'. Run as the driver
    runs, without the json module (it changes how the C scanner reports errors)."""
    code = ("import sys\nfrom flexvol.flex import protocol\nassert 'json' not in sys.modules\n"
            "try:\n    protocol.parse_options(sys.argv[1])\n"
            "except Exception as error:\n    print(error.message)\n")
    done = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True, check=True)
    message = done.stdout.strip()
    assert message.startswith("the options argument is not valid JSON"), message
    assert message.count("valid JSON") == 1, message


def test_help_names_values_not_python_types() -> None:
    """Defect 5: help showed <str>, <bool>, <list[str]> as metavars."""
    from typer.main import get_command

    from flexvol.cli.main import load_commands

    typeish = re.compile(r"<(str|bool|int|float|path|list\[[^]]*\]|[a-z]+ range)>")
    group = get_command(load_commands())
    for name in ["", *group.commands]:  # type: ignore[attr-defined]
        shown = flexvol(*([name] if name else []), "--help").stdout
        assert not typeish.search(shown), (name, typeish.search(shown))
    create = flexvol("create", "--help").stdout
    assert re.search(r"--size\s+-s\s+SIZE", create) and re.search(r"--root\s+PATH", create)
    assert "Usage: flexvol create [OPTIONS] VOLUME" in create


def test_sizes_read_the_same_everywhere() -> None:
    """Defect 5: one rule: binary units, no raw bytes, no Ki; a hint's figure parses back to at
    least the size it stands for."""
    assert human_bytes(1000001536) == "953.7Mi"
    assert human_bytes(3 << 29) == "1.5Gi"
    assert human_bytes(1 << 30) == "1Gi"
    with pytest.raises(InvalidInput) as small:
        parse_spec({"volumeID": "v1", "size": "1M", "kubernetes.io/fsType": "xfs"})
    assert "Ki" not in str(small.value) and not re.search(r"\d{5,}", str(small.value)), small.value
    for value in (1, 4095, 1000001536, (5 << 30) + 1, 123456789012):
        assert parse_quantity(human_bytes(value, round_up=True)) >= value
