#!/usr/bin/env bash
# A short demonstration of the installed driver, called the way the kubelet calls it:
# provision a volume, mount it into a pod dir, write, unmount, mount into another pod dir,
# read back, clean up. Uses a temporary data root; touches nothing else.
#
#   ./demo.sh [DRIVER]   (default: the driver install.sh placed in the kubelet plugin dir)
set -euo pipefail

DRIVER="${1:-/usr/libexec/kubernetes/kubelet-plugins/volume/exec/flexvol~loop/loop}"
if [[ ! -x "$DRIVER" ]]; then
    echo "demo.sh: no driver at $DRIVER; run ./install.sh first" >&2
    exit 1
fi
WORK="$(mktemp -d /tmp/flexvol-demo-XXXXXX)"
export FLEXVOL_ROOT="$WORK/data"
KUBELET="$WORK/kubelet"
POD_A="$KUBELET/pods/1111/volumes/flexvol~loop/data"
POD_B="$KUBELET/pods/2222/volumes/flexvol~loop/data"
OPTIONS='{"kubernetes.io/fsType":"ext4","kubernetes.io/readwrite":"rw","kubernetes.io/pvOrVolumeName":"demo-pv","volumeID":"demo","size":"256Mi"}'

cleanup() {
    for target in "$POD_A" "$POD_B"; do
        "$DRIVER" unmount "$target" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

call() {
    echo "\$ loop $*" | sed "s|$WORK|\$WORK|g"
    local reply
    reply="$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin FLEXVOL_ROOT="$FLEXVOL_ROOT" "$DRIVER" "$@" </dev/null 2>&1)"
    echo "  -> $reply"
    [[ "$reply" == *'"status":"Success"'* ]]
}

FLEXVOL="$(command -v flexvol || true)"
export FLEXVOL_KUBELET_ROOT="$KUBELET"

call init
if [[ -n "$FLEXVOL" ]]; then
    echo "\$ flexvol create demo --size 256Mi"
    "$FLEXVOL" create demo --size 256Mi | sed "s|$WORK|\$WORK|g"
fi
call mount "$POD_A" "$OPTIONS"
echo "  mounted: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS --mountpoint "$POD_A")"
if [[ -n "$FLEXVOL" ]]; then
    echo "\$ flexvol ls"
    COLUMNS=160 "$FLEXVOL" ls | sed "s|$WORK|\$WORK|g"
fi
echo "hello from pod A, $(date -u +%FT%TZ)" > "$POD_A/greeting.txt"
echo "  wrote greeting.txt in pod A"
call unmount "$POD_A"
echo "  loop devices of the volume now: $(losetup -j "$FLEXVOL_ROOT/volumes/demo.img" | wc -l)"
call mount "$POD_B" "$OPTIONS"
echo "  pod B reads: $(cat "$POD_B/greeting.txt")"
call unmount "$POD_B"
echo "  backing file: $(du -h --apparent-size "$FLEXVOL_ROOT/volumes/demo.img" | cut -f1) apparent, $(du -h "$FLEXVOL_ROOT/volumes/demo.img" | cut -f1) allocated (thick, the default: every block reserved)"
if [[ -n "$FLEXVOL" ]]; then
    echo "\$ flexvol delete demo --yes"
    COLUMNS=160 "$FLEXVOL" delete demo --yes | sed "s|$WORK|\$WORK|g"
fi
echo "demo done: data survived unmount and remount; nothing left mounted or attached"
