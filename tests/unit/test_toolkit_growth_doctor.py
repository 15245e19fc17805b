"""doctor's check of online ext4 growth, from captured /proc/<pid>/status text."""

from __future__ import annotations

from pathlib import Path

from flexvol.toolkit.doctor import PASS, WARN, check_online_growth, effective_capabilities

WITHOUT = "Name:\tpython3\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\n"
WITH = "Name:\tpython3\nCapEff:\t000001ffffffffff\n"


def test_effective_capabilities_reads_the_capeff_mask() -> None:
    assert effective_capabilities(WITHOUT) == 0x1FFFEFFFFFF
    assert effective_capabilities("Name: x\n") is None
    assert effective_capabilities("CapEff:\tzz\n") is None


def test_doctor_warns_without_cap_sys_resource_and_names_the_fix(tmp_path: Path) -> None:
    """Defect: a failed online ext4 grow; doctor now says beforehand that it would fail here."""
    status = tmp_path / "status"
    status.write_text(WITHOUT)
    [check] = check_online_growth(str(status))
    assert check.status == WARN and "CAP_SYS_RESOURCE" in check.detail and check.fix
    status.write_text(WITH)
    assert check_online_growth(str(status))[0].status == PASS
    assert check_online_growth(str(tmp_path / "missing"))[0].status == WARN
