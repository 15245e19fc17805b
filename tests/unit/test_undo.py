"""Rollback reports only what its checks confirm (data-safety defect 6c: rollback marked each
undo step done because it did not raise)."""

from __future__ import annotations

from pathlib import Path

from flexvol.core.undo import Undo


def test_defect6_step_whose_check_fails_is_reported_as_not_rolled_back(tmp_path: Path) -> None:
    """Defect 6c: an action that returns without doing its work is not 'rolled back'."""
    kept = tmp_path / "kept"
    kept.write_text("x")
    gone = tmp_path / "gone"
    gone.write_text("x")
    undo = Undo()
    undo.push("remove gone", gone.unlink, undo.path_gone(str(gone)))
    undo.push("remove kept", lambda: None, undo.path_gone(str(kept)))  # returns, does nothing
    undo.rollback()
    assert undo.done == ["remove gone"]
    assert undo.errors == ["remove kept (still there)"]


def test_a_raising_action_or_check_is_reported_and_rollback_goes_on() -> None:
    undo = Undo()
    done: list[str] = []

    def broken_check() -> str:
        raise OSError("cannot look")

    undo.push("first", lambda: done.append("first"))  # no check: as before
    undo.push("second", lambda: done.append("second"), broken_check)
    undo.push("third", lambda: 1 / 0)
    undo.rollback()
    assert done == ["second", "first"]
    assert undo.done == ["first"]
    assert undo.errors == ["third: division by zero", "second (unverified: cannot look)"]
