# Shared helpers: call a driver exactly as the kubelet does (docs/flexvolume.md section 2): no shell between,
# a minimal environment, stdin from /dev/null, stdout and stderr read as one stream.

REPO="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"

# kubelet_call DRIVER VERB ARGS... -> sets $output (combined) and $status
kubelet_call() {
    run env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin FLEXVOL_ROOT="${FLEXVOL_ROOT:-}" "$@" </dev/null 2>&1
}

# json_field FIELD: print a field of $output, failing unless $output is exactly one JSON object
json_field() {
    /usr/bin/python3 -c '
import json, sys
reply = json.loads(sys.argv[1])
assert isinstance(reply, dict), "not a JSON object"
value = reply
for part in sys.argv[2].split("."):
    value = value.get(part) if isinstance(value, dict) else None
print(json.dumps(value) if isinstance(value, (bool, dict, list)) or value is None else value)
' "$output" "$1"
}

assert_status() {
    local got
    got="$(json_field status)" || { echo "output is not one JSON object: $output"; return 1; }
    if [[ "$got" != "$1" ]]; then
        echo "expected status $1, got $got: $output"
        return 1
    fi
}

is_mounted() { grep -q " $1 " /proc/self/mountinfo; }

loops_of() { losetup -l -n -O NAME,BACK-FILE | awk -v root="$1" 'index($2, root) == 1 {print $1}'; }
