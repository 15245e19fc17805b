#!/usr/bin/env bash
# Runs every test suite of flexvol: ruff, pytest (unit, and integration on real loop devices),
# and bats against an installed driver. Needs root. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

scripts/deps.sh test
if [[ ! -x .venv/bin/python ]]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]' >/dev/null

echo "== ruff"
.venv/bin/ruff check .
echo "== pytest"
.venv/bin/python -m pytest tests "$@"
echo "== bats"
bats tests/bats
echo "== benchmark smoke run (figures for people, no assertions on timing)"
.venv/bin/python bench/run.py --quick --json results/bench-quick.json
