#!/usr/bin/env bash
# Installs the Debian packages flexvol needs, only those missing. Usage: scripts/deps.sh [test]
# "test" adds what the test suites need (bats; debootstrap for the end-to-end suite's image).
# Needs root and apt.
set -euo pipefail

want=(python3 python3-venv util-linux mount e2fsprogs xfsprogs btrfs-progs)
if [[ "${1:-}" == "test" ]]; then
    want+=(bats debootstrap)
fi

missing=()
for package in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} == 0)); then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "flexvol: missing packages ${missing[*]} and no apt-get to install them" >&2
    exit 1
fi
echo "flexvol: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
