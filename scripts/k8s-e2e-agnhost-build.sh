#!/usr/bin/env bash
# Builds or reuses agnhost (k8s.io/kubernetes/test/images/agnhost, the image most pods of
# Kubernetes' e2e suite run) at the release scripts/k8s-e2e-suite-build.sh builds e2e.test from,
# the same way: a copy of the cluster build's wrapper module, the same GOCACHE and GOMODCACHE,
# static (CGO_ENABLED=0). Packs it into a docker-archive image under the name the suite asks for
# (`e2e.test -list-images`), over the cluster build's busybox layer (app.tar) so `sh -c` works
# in its pods as in the real (alpine) image; entry point /agnhost, command `pause`, as upstream.
# Lands in <k8s cache dir>/e2e-suite/agnhost-<version>/{agnhost,agnhost.tar,image}.
# Prints the image tarball's path as its last line of stdout.
# Usage: scripts/k8s-e2e-agnhost-build.sh   (the same FLEXVOL_* variables as k8s-current-build.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FLEXVOL_K8S_CACHE:-/var/cache/flexvol-k8s}"
go_bin="${FLEXVOL_GO:-/usr/local/go/bin/go}"
log() { echo "k8s-e2e-agnhost-build: $*" >&2; }

suite_bin="$("$here/k8s-e2e-suite-build.sh" | tail -n 1)"
suite="$(dirname "$suite_bin")"
out="$(dirname "$suite")"
k8s="$(cat "$out/k8s-version")"
exec 9>"$cache/.lock"
flock 9 # the GOCACHE is shared with k8s-current-build.sh: one build at a time
src="$out/gomod/k8s.io/kubernetes@v$k8s/test/images/agnhost"
[[ -f "$src/VERSION" ]] || { log "no agnhost sources in $src (run k8s-e2e-suite-build.sh)"; exit 1; }
version="$(tr -d '[:space:]' <"$src/VERSION")"
dest="$suite/agnhost-$version"
if [[ -f "$dest/.complete" ]]; then
    log "reusing $dest/agnhost.tar ($(cat "$dest/image"))"
    echo "$dest/agnhost.tar"
    exit 0
fi
image="$("$suite_bin" -list-images | grep -E '^registry\.k8s\.io/e2e-test-images/agnhost:' | tail -n 1)"
[[ "$image" == *":$version" ]] || log "note: the suite asks for $image, the sources say $version"

log "building agnhost $version (k8s.io/kubernetes v$k8s) into $dest"
rm -rf "$dest" && mkdir -p "$dest"
work="$out/work/agnhost"
rm -rf "$work" && mkdir -p "$work"
cp "$out/work/e2e/go.mod" "$work/go.mod"
cp "$out/work/e2e/go.sum" "$work/go.sum"
sed -i 's|^module .*|module flexvol.invalid/build/agnhost|' "$work/go.mod"
export GOROOT="$("$go_bin" env GOROOT)" PATH="$("$go_bin" env GOROOT)/bin:$PATH"
export GOCACHE="$out/gocache" GOMODCACHE="$out/gomod" GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local GOPATH="$out/gopath" CGO_ENABLED=0
start=$SECONDS
(cd "$work" && nice -n 10 go build -p 2 -trimpath -mod=mod -ldflags "-s -w" \
    -o "$dest/agnhost" k8s.io/kubernetes/test/images/agnhost)
took=$((SECONDS - start))
echo "agnhost $took" >>"$out/timings"
python3 "$here/e2e_image.py" --over "$out/images/app.tar" "$dest/agnhost.tar" "$image" "$dest/agnhost" /agnhost --cmd pause
echo "$image" >"$dest/image"
rm -rf "$GOPATH"
touch "$dest/.complete"
log "done: $dest/agnhost.tar ($image), agnhost built in $took s"
echo "$dest/agnhost.tar"
