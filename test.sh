#!/usr/bin/env bash
# Runs every test suite of flexvol: ruff, pytest (unit, integration on real loop devices, and a
# quick sample of the reliability suite), bats against an installed driver, then the end-to-end
# suite against a real kubelet and control plane (FLEXVOL_SKIP_E2E=1 skips it; FLEXVOL_E2E=current,
# the default, legacy or all chooses the Kubernetes releases). Needs root.
# Extra arguments go to pytest.
#   ./test.sh --reliability   the whole reliability suite instead (also `make reliability`);
#                             figures in results/reliability-report.md and .json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

reliability=0
if [[ "${1:-}" == "--reliability" ]]; then
    reliability=1
    shift
fi

# Checked first, so a typo fails before minutes of tests.
e2e="${FLEXVOL_E2E:-current}"
case "$e2e" in
    current|legacy|all) ;;
    *) echo "FLEXVOL_E2E=$e2e: choose current (the default), legacy or all" >&2; exit 2 ;;
esac

scripts/deps.sh test
if [[ ! -x .venv/bin/python ]]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]' >/dev/null

if (( reliability )); then
    echo "== reliability (full)"
    status=0
    FLEXVOL_RELIABILITY=full .venv/bin/python -m pytest tests/reliability "$@" || status=$?
    echo "== report: results/reliability-report.md"
    cat results/reliability-report.md 2>/dev/null || true
    exit "$status"
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
.venv/bin/python -m pytest tests "$@"
echo "== bats"
bats tests/bats
echo "== benchmark smoke run (figures for people, no assertions on timing)"
.venv/bin/python bench/run.py --quick --json results/bench-quick.json
if [[ "${FLEXVOL_SKIP_E2E:-}" == 1 ]]; then
    echo "== e2e skipped (FLEXVOL_SKIP_E2E=1)"
    exit 0
fi
if [[ "$e2e" != legacy ]]; then
    # A real kubelet, runtime and control plane (Kubernetes 1.37.2) and the CSI sidecars; the
    # first run on a machine builds them (scripts/k8s-current-build.sh,
    # scripts/csi-sidecars-build.sh, cached under /var/cache), later runs take minutes. CI runs
    # the CSI scenarios always: FLEXVOL_E2E_CSI=build.
    echo "== e2e (Kubernetes current)"
    FLEXVOL_E2E_K8S=current FLEXVOL_E2E_CSI="${FLEXVOL_E2E_CSI:-build}" \
        .venv/bin/python -m pytest -m e2e tests/e2e
    # Kubernetes' own storage suite (e2e.test's External Storage specs) against `flexvol csi`:
    # the quick subset that fits CI; `--all` runs the rest (README, Tested against a real cluster).
    echo "== Kubernetes storage suite (quick subset)"
    FLEXVOL_E2E_K8S=current .venv/bin/python -m tests.e2e.storage_suite
fi
if [[ "$e2e" != current ]]; then
    # The oldest release tested, 1.20.2 from Debian's source package (scripts/e2e-build.sh):
    # the FlexVolume scenarios (the CSI ones need a current release); out of the default for CI time.
    echo "== e2e (Kubernetes 1.20, legacy)"
    FLEXVOL_E2E_K8S=1.20 FLEXVOL_E2E_CSI=0 .venv/bin/python -m pytest -m e2e tests/e2e
fi
