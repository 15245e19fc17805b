#!/usr/bin/env bats
# The installed driver, called as a black box the way the kubelet calls it.

load helpers

setup_file() {
    export WORK="$(mktemp -d /tmp/flexvol-test-bats-XXXXXX)"
    export PLUGIN_DIR="$WORK/plugins"
    "$REPO/install.sh" --no-deps --prefix "$WORK/prefix" --plugin-dir "$PLUGIN_DIR" \
        --data-root "$WORK/data" --bin-dir "$WORK/bin" >/dev/null
    export DRIVER="$PLUGIN_DIR/flexvol~loop/loop"
}

teardown_file() {
    for target in $(awk -v w="$WORK" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount "$target" || true
    done
    for device in $(loops_of "$WORK"); do losetup -d "$device" || true; done
    "$REPO/install.sh" --uninstall --prefix "$WORK/prefix" --plugin-dir "$PLUGIN_DIR" \
        --data-root "$WORK/data" --bin-dir "$WORK/bin" >/dev/null
    # mount dirs keep the driver's write guard (immutable attribute) when a test fails early
    chattr -R -f -i "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}

opts() { printf '{"kubernetes.io/fsType":"","kubernetes.io/readwrite":"rw","kubernetes.io/pvOrVolumeName":"%s","volumeID":"%s","size":"32Mi"}' "$1" "$1"; }

@test "installed at <plugin dir>/flexvol~loop/loop, executable, no temp files left" {
    [ -x "$DRIVER" ]
    run ls -A "$PLUGIN_DIR/flexvol~loop"
    [ "$output" = "loop" ]
}

@test "init: one JSON object, Success, exit 0, attach false as a JSON boolean" {
    kubelet_call "$DRIVER" init
    [ "$status" -eq 0 ]
    assert_status Success
    [ "$(json_field capabilities.attach)" = "false" ]
}

@test "init writes nothing into the plugin dir" {
    before="$(ls -lAR "$PLUGIN_DIR")"
    kubelet_call "$DRIVER" init
    [ "$(ls -lAR "$PLUGIN_DIR")" = "$before" ]
}

@test "unknown verb and getvolumename answer Not supported with exit 0" {
    kubelet_call "$DRIVER" frobnicate x
    [ "$status" -eq 0 ]
    assert_status "Not supported"
    kubelet_call "$DRIVER" getvolumename "$(opts v0)"
    assert_status "Not supported"
}

@test "no arguments and empty-string arguments give a Failure with a message, exit 1" {
    kubelet_call "$DRIVER"
    assert_status "Not supported"
    kubelet_call "$DRIVER" mount "" ""
    [ "$status" -eq 1 ]
    assert_status Failure
    [ -n "$(json_field message)" ]
    kubelet_call "$DRIVER" mount
    assert_status Failure
}

@test "invalid JSON is a Failure, not a traceback" {
    kubelet_call "$DRIVER" mount "$WORK/m-bad" '{"volumeID":'
    assert_status Failure
    [[ "$output" != *Traceback* ]]
}

@test "mount, write, unmount, remount, read back; loop device freed" {
    target="$WORK/pods/a/vol"
    kubelet_call "$DRIVER" mount "$target" "$(opts bv1)"
    assert_status Success
    is_mounted "$target"
    echo "bats-data" > "$target/file"
    kubelet_call "$DRIVER" mount "$target" "$(opts bv1)"
    assert_status Success
    [ "$(grep -c " $target " /proc/self/mountinfo)" -eq 1 ]
    kubelet_call "$DRIVER" unmount "$target"
    assert_status Success
    ! is_mounted "$target"
    [ -z "$(ls -A "$target")" ]
    [ -z "$(loops_of "$WORK/data")" ]
    kubelet_call "$DRIVER" mount "$target" "$(opts bv1)"
    [ "$(cat "$target/file")" = "bats-data" ]
    kubelet_call "$DRIVER" unmount "$target"
    kubelet_call "$DRIVER" unmount "$target"
    assert_status Success
}

@test "works with stdin closed and finishes in bounded time" {
    run timeout 20 env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$DRIVER" init <&- 2>&1
    [ "$status" -eq 0 ]
    assert_status Success
}

@test "the data root baked in at install is used" {
    target="$WORK/pods/b/vol"
    run env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$DRIVER" mount "$target" "$(opts bv2)" </dev/null 2>&1
    assert_status Success
    [ -f "$WORK/data/volumes/bv2.img" ]
    run env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$DRIVER" unmount "$target" </dev/null 2>&1
    assert_status Success
}

@test "install.sh twice is the same as once; --attach flips the capability" {
    "$REPO/install.sh" --no-deps --prefix "$WORK/prefix" --plugin-dir "$PLUGIN_DIR" \
        --data-root "$WORK/data" --bin-dir "$WORK/bin" --attach >/dev/null
    kubelet_call "$DRIVER" init
    [ "$(json_field capabilities.attach)" = "true" ]
    "$REPO/install.sh" --no-deps --prefix "$WORK/prefix" --plugin-dir "$PLUGIN_DIR" \
        --data-root "$WORK/data" --bin-dir "$WORK/bin" >/dev/null
    kubelet_call "$DRIVER" init
    [ "$(json_field capabilities.attach)" = "false" ]
    run ls -A "$PLUGIN_DIR/flexvol~loop"
    [ "$output" = "loop" ]
}

@test "the installed flexvol command checks the installed driver with flexvol sanity" {
    run "$WORK/bin/flexvol" sanity "$DRIVER" --only lifecycle --only output --json --tmp-dir "$WORK"
    [ "$status" -eq 0 ] || { echo "$output"; return 1; }
    [ "$(json_field driver_name)" = "flexvol/loop" ]
    [ "$(json_field passed)" = "true" ]
}

@test "the installed flexvol command plans examples/pv-pvc-pod.yaml against the plugin dir" {
    run "$WORK/bin/flexvol" simulate --dry-run --plugin-dir "$PLUGIN_DIR" \
        -f "$REPO/examples/storageclass.yaml" -f "$REPO/examples/pv-pvc-pod.yaml"
    [ "$status" -eq 0 ] || { echo "$output"; return 1; }
    [[ "$output" == *"claim default/data binds to PV pv-data-1"* ]]
}
