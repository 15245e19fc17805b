"""Test-only fault injection: stop the driver (or the provisioner) dead (SIGKILL) at a named step.

Honoured only when FLEXVOL_TEST_HOOKS=1, so an installed driver ignores stray variables:
  FLEXVOL_TEST_KILL_AT=<step>   kill the driver when it reaches <step>
  FLEXVOL_TEST_TRACE=<file>     append each step reached to <file>, one per line
The reliability tests use this to kill a call between every two steps and check that the
retry converges (issue "a kill at every step"); the end-to-end suite kills the provisioner
between deciding on a claim and creating its PV, and right after.
"""

from __future__ import annotations

import os

_ENABLED = os.environ.get("FLEXVOL_TEST_HOOKS") == "1"
_KILL_AT = os.environ.get("FLEXVOL_TEST_KILL_AT", "") if _ENABLED else ""
_TRACE = os.environ.get("FLEXVOL_TEST_TRACE", "") if _ENABLED else ""


def checkpoint(step: str) -> None:
    """Mark a step boundary; a no-op unless test hooks are enabled."""
    if not _ENABLED:
        return
    if _TRACE:
        with open(_TRACE, "a", encoding="utf-8") as trace:
            trace.write(step + "\n")
    if step == _KILL_AT:
        os.kill(os.getpid(), 9)
