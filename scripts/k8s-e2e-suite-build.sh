#!/usr/bin/env bash
# Builds or reuses Kubernetes' own end-to-end test binary, e2e.test (the package
# k8s.io/kubernetes/test/e2e, whose test/e2e/storage/external suite certifies CSI drivers), at
# the release scripts/k8s-current-build.sh builds the cluster from. It reuses that build's cache
# directory: the same wrapper module approach (k8s.io/* staging modules pinned to the matching
# v0.x release), the same GOCACHE and GOMODCACHE, so only the test packages are compiled anew.
# The binary lands in <k8s cache dir>/e2e-suite/e2e.test; a second run takes a second.
# Prints the binary's path as its last line of stdout.
# Usage: scripts/k8s-e2e-suite-build.sh   (the same FLEXVOL_* variables as k8s-current-build.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FLEXVOL_K8S_CACHE:-/var/cache/flexvol-k8s}"
go_bin="${FLEXVOL_GO:-/usr/local/go/bin/go}"
log() { echo "k8s-e2e-suite-build: $*" >&2; }

out="$("$here/k8s-current-build.sh" | tail -n 1)"
[[ -f "$out/.complete" && -f "$out/k8s-version" ]] || { log "no complete Kubernetes build in '$out'"; exit 1; }
k8s="$(cat "$out/k8s-version")"
suite="$out/e2e-suite"
exec 9>"$cache/.lock"
flock 9 # the GOCACHE is shared with k8s-current-build.sh: one build at a time
if [[ -f "$suite/.complete" ]]; then
    log "reusing $suite/e2e.test"
    echo "$suite/e2e.test"
    exit 0
fi

log "building e2e.test (k8s.io/kubernetes/test/e2e v$k8s) into $suite"
rm -rf "$suite" && mkdir -p "$suite"
work="$out/work/e2e"
# Its own wrapper, a copy of the cluster build's (the test packages need more of go.sum).
rm -rf "$work" && mkdir -p "$work"
cp "$out/work/k8s/go.mod" "$work/go.mod"
[[ -f "$out/work/k8s/go.sum" ]] && cp "$out/work/k8s/go.sum" "$work/go.sum"
sed -i 's|^module .*|module flexvol.invalid/build/e2e|' "$work/go.mod"
export GOROOT="$("$go_bin" env GOROOT)" PATH="$("$go_bin" env GOROOT)/bin:$PATH"
export GOCACHE="$out/gocache" GOMODCACHE="$out/gomod" GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local GOPATH="$out/gopath" CGO_ENABLED=0
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_ldflags+=" -X $pkg.gitVersion=v$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$k8s" | cut -d. -f2)"
    version_ldflags+=" -X $pkg.gitTreeState=clean"
done
start=$SECONDS
(cd "$work" && nice -n 10 go test -c -p 2 -trimpath -mod=mod -ldflags "-s -w $version_ldflags" \
    -o "$suite/e2e.test" k8s.io/kubernetes/test/e2e)
took=$((SECONDS - start))
echo "e2e.test $took" >>"$out/timings"
echo "e2e.test $took" >"$suite/timings"
echo "$k8s" >"$suite/k8s-version"
# The suite's own documentation for the driver definition file, kept next to the binary.
cp "$GOMODCACHE/k8s.io/kubernetes@v$k8s/test/e2e/storage/external/README.md" "$suite/external-README.md"
rm -rf "$GOPATH"
touch "$suite/.complete"
log "done: $suite/e2e.test in $took s"
echo "$suite/e2e.test"
