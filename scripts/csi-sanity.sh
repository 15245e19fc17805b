#!/usr/bin/env bash
# Runs the official CSI conformance suite (kubernetes-csi/csi-test csi-sanity, pinned) against
# `flexvol csi` on real loop devices, with a temp data root, socket, mount and staging dirs.
# Builds csi-sanity once from the Go module proxy into a cache outside the repository.
# Needs root and Go. Usage: scripts/csi-sanity.sh [ACCESS_TYPE] [extra csi-sanity flags...]
#   ACCESS_TYPE: mount (default) or block
set -euo pipefail

CSI_TEST_VERSION="v5.4.0"
CACHE="${FLEXVOL_CSI_CACHE:-/var/cache/flexvol-csi}"
SANITY="$CACHE/bin/csi-sanity"
repo="$(cd "$(dirname "$0")/.." && pwd)"
flexvol="${FLEXVOL:-$repo/.venv/bin/flexvol}"
access="${1:-mount}"
shift || true

if [[ ! -x "$SANITY" || "$(cat "$CACHE/bin/.version" 2>/dev/null)" != "$CSI_TEST_VERSION" ]]; then
    # The machine's own Go (/usr/local/go) before a distribution's older one on PATH (the
    # real-cluster build installs Debian's golang-go, too old for csi-test v5).
    go="${GO:-}"
    [[ -n "$go" ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; } || true
    [[ -n "$go" ]] || go="$(command -v go || true)"
    [[ -n "$go" ]] || { echo "csi-sanity.sh: go is not installed" >&2; exit 1; }
    mkdir -p "$CACHE/bin" "$CACHE/go"
    GOBIN="$CACHE/bin" GOPATH="$CACHE/go" GOFLAGS=-modcacherw GOTOOLCHAIN=local \
        "$go" install "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$CSI_TEST_VERSION"
    echo "$CSI_TEST_VERSION" > "$CACHE/bin/.version"
fi

work="$(mktemp -d /tmp/flexvol-csi-sanity-XXXXXX)"
plugin=""
finish() {
    if [[ -n "$plugin" ]] && kill -0 "$plugin" 2>/dev/null; then
        kill -TERM "$plugin"; wait "$plugin" || true
    fi
    # What the suite left (a failed spec) under our own dirs only: mounts, then loop devices.
    { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r point; do
        umount "$point" || true
    done
    { losetup -n -O NAME,BACK-FILE -l || true; } | awk -v root="$work/root/" 'index($2, root) == 1 {print $1}' |
        while read -r device; do losetup -d "$device" || true; done
    chattr -R -f -i "$work" 2>/dev/null || true
    rm -rf "$work"
}
trap finish EXIT

FLEXVOL_ROOT="$work/root" "$flexvol" csi --endpoint "unix://$work/csi.sock" --node-id "$(hostname)" \
    -v 2>"$work/plugin.log" &
plugin=$!
for _ in $(seq 100); do [[ -S "$work/csi.sock" ]] && break; sleep 0.1; done

# Thin 64 MiB volumes: the suite makes many, and the default 10 GiB thick ones would need the
# whole pool reserved.
status=0
"$SANITY" --csi.endpoint "$work/csi.sock" \
    --csi.mountdir "$work/mnt" --csi.stagingdir "$work/staging" \
    --csi.testvolumeaccesstype "$access" --csi.testvolumesize $((64 << 20)) \
    --csi.testvolumeparameters <(printf 'allocation: thin\n') "$@" || status=$?
if ((status)); then
    echo "--- plugin log (last 60 lines)" >&2
    tail -n 60 "$work/plugin.log" >&2
fi
exit "$status"
