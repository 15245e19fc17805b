#!/usr/bin/env bash
# Builds the Kubernetes CSI sidecars that deploy/csi runs, at pinned releases, offline from the
# Go module proxy with the machine's Go, so the end-to-end suite can run them as host processes:
#   csi-provisioner      external-provisioner
#   csi-resizer          external-resizer
#   csi-snapshotter, snapshot-controller, and the snapshot CRDs  external-snapshotter
# into /var/cache/flexvol-csi-sidecars/<key>/ (FLEXVOL_CSI_SIDECARS_CACHE overrides the parent),
# the key naming every version, with the Go build and module caches under the cache too.
# Prints the bin dir as its last line of stdout; a second run with the same versions takes
# well under a second. Idempotent; one build at a time (flock).
# The release images in deploy/csi name the same versions (tests/unit/test_deploy_csi_sidecars.py
# checks that). livenessprobe and node-driver-registrar are not built: the module proxy serves
# neither (their modules lack the /v2 suffix their tags need).
set -euo pipefail

PROVISIONER_VERSION="v6.4.0"
RESIZER_VERSION="v2.3.0"
SNAPSHOTTER_VERSION="v8.7.0"

parent="${FLEXVOL_CSI_SIDECARS_CACHE:-/var/cache/flexvol-csi-sidecars}"
log() { echo "csi-sidecars-build: $*" >&2; }

# The machine's own Go (/usr/local/go) before a distribution's older one on PATH.
go="${GO:-}"
[[ -n "$go" ]] || { [[ -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go; } || true
[[ -n "$go" ]] || go="$(command -v go || true)"
[[ -n "$go" ]] || { log "go is not installed (the sidecars need Go >= 1.26)"; exit 1; }
export GOTOOLCHAIN=local
go_version="$("$go" env GOVERSION)"

key="provisioner-$PROVISIONER_VERSION.resizer-$RESIZER_VERSION.snapshotter-$SNAPSHOTTER_VERSION.$go_version"
cache="$parent/$key"
bin="$cache/bin"
mkdir -p "$parent"
exec 9>"$parent/.lock"
flock 9 # one build at a time; a second caller waits and then reuses

if [[ -f "$bin/.complete" ]]; then
    echo "$bin"
    exit 0
fi

export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache" GOPATH="$cache/gopath"
export GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0
src="$cache/src"
rm -rf "$src" "$bin.partial"
mkdir -p "$src" "$bin.partial"

# Unpacks module@version into a writable source tree and prints its path.
unpack() {
    local module="$1" version="$2" dir name
    dir="$("$go" mod download -json "$module@$version" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -n "$dir" && -d "$dir" ]] || { log "could not download $module@$version"; exit 1; }
    name="$(basename "${module%/v[0-9]*}")"
    cp -r "$dir" "$src/$name"
    echo "$src/$name"
}

# Builds ./cmd/<command> of a module tree (its own go.mod, replace directives and go.sum: what
# `go install module@version` cannot do for modules with replace directives).
build() {
    local tree="$1" command="$2" version="$3"
    log "building $command $version"
    (cd "$tree" && nice -n 10 "$go" build -mod=mod -trimpath \
        -ldflags "-s -w -X main.version=$version" -o "$bin.partial/$command" "./cmd/$command")
}

started=$SECONDS
tree="$(unpack github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION")"
build "$tree" csi-provisioner "$PROVISIONER_VERSION"
tree="$(unpack github.com/kubernetes-csi/external-resizer/v2 "$RESIZER_VERSION")"
build "$tree" csi-resizer "$RESIZER_VERSION"
# The snapshotter's client/ directory is a module of its own (so not in the snapshotter's zip),
# released under the same tag; the snapshotter's go.mod replaces it with ./client, so it goes
# back where the repository has it. It also holds the CRDs.
client="$(unpack github.com/kubernetes-csi/external-snapshotter/client/v8 "$SNAPSHOTTER_VERSION")"
tree="$(unpack github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION")"
mv "$client" "$tree/client"
build "$tree" csi-snapshotter "$SNAPSHOTTER_VERSION"
build "$tree" snapshot-controller "$SNAPSHOTTER_VERSION"
mkdir -p "$cache/crd.partial"
# The CRDs only (not the directory's kustomization.yaml), so `kubectl apply -f crd/` works.
cp "$tree"/client/config/crd/*.storage.k8s.io_*.yaml "$cache/crd.partial/"
chmod 0644 "$cache/crd.partial"/*.yaml
rm -rf "$cache/crd" && mv "$cache/crd.partial" "$cache/crd"

cat >"$bin.partial/versions.txt" <<EOF
csi-provisioner $PROVISIONER_VERSION
csi-resizer $RESIZER_VERSION
csi-snapshotter $SNAPSHOTTER_VERSION
snapshot-controller $SNAPSHOTTER_VERSION
snapshot-crds $SNAPSHOTTER_VERSION
go $go_version
EOF
touch "$bin.partial/.complete"
rm -rf "$bin" && mv "$bin.partial" "$bin"
rm -rf "$src" # the module cache keeps the sources; the copies were only for building
log "built in $((SECONDS - started)) s"
echo "$bin"
