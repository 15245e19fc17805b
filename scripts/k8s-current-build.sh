#!/usr/bin/env bash
# Builds or reuses a current Kubernetes release for the end-to-end suite, offline from the Go
# module proxy (scripts/e2e-build.sh builds the 1.20 one from Debian's source package):
#   kubelet, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   k8s.io/kubernetes
#   etcd                                                go.etcd.io/etcd/server/v3
#   containerd, containerd-shim-runc-v2, ctr            github.com/containerd/containerd/v2
#   runc (cgo, libseccomp)                              github.com/opencontainers/runc
#   pause and app images (docker-archive tarballs)      static C pause, busybox-static
# Each comes from a small wrapper module made under the cache (never in the repository): a
# module download of k8s.io/kubernetes has no ./staging, so the wrapper pins every k8s.io/*
# staging module to the matching v0.x release with replace directives.
# Everything (GOCACHE and GOMODCACHE too) lives in /var/cache/flexvol-k8s/<versions>, so a
# second run takes seconds. Prints the ready directory's path as its last line of stdout.
# Usage: scripts/k8s-current-build.sh
#   FLEXVOL_K8S_CACHE (default /var/cache/flexvol-k8s), FLEXVOL_GO (default /usr/local/go/bin/go),
#   FLEXVOL_K8S_VERSION, FLEXVOL_ETCD_VERSION, FLEXVOL_CONTAINERD_VERSION, FLEXVOL_RUNC_VERSION
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FLEXVOL_K8S_CACHE:-/var/cache/flexvol-k8s}"
go_bin="${FLEXVOL_GO:-/usr/local/go/bin/go}"
k8s="${FLEXVOL_K8S_VERSION:-1.37.2}"
etcd="${FLEXVOL_ETCD_VERSION:-3.7.3}"
containerd="${FLEXVOL_CONTAINERD_VERSION:-2.2.9}"
runc="${FLEXVOL_RUNC_VERSION:-1.4.4}"
log() { echo "k8s-current-build: $*" >&2; }

[[ -x "$go_bin" ]] || { log "no Go toolchain at $go_bin (k8s.io/kubernetes v$k8s needs Go >= its go.mod's)"; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time; a second caller waits and then reuses

key="k8s-${k8s}_etcd-${etcd}_containerd-${containerd}_runc-${runc}_$("$go_bin" env GOVERSION)"
out="$cache/$key"
if [[ -f "$out/.complete" ]]; then
    log "reusing $out"
    echo "$out"
    exit 0
fi

want=(gcc libc6-dev libseccomp-dev pkg-config openssl xfsprogs)
missing=()
for package in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "building into $out"
rm -rf "$out/bin" "$out/images" "$out/work"
mkdir -p "$out/bin" "$out/images" "$out/work"
work="$out/work"
export GOROOT="$("$go_bin" env GOROOT)" PATH="$("$go_bin" env GOROOT)/bin:$PATH"
export GOCACHE="$out/gocache" GOMODCACHE="$out/gomod" GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local GOPATH="$out/gopath" CGO_ENABLED=0
go_build() { nice -n 10 go build -p 2 -trimpath "$@"; }
timings="$out/timings"
: >"$timings"
timed() { # name command...: runs it and records its wall time
    local name="$1" start=$SECONDS
    shift
    "$@"
    echo "$name $((SECONDS - start))" >>"$timings"
    log "$name took $((SECONDS - start)) s"
}

# A wrapper module in $work/<name> that requires `module@version`.
wrapper() {
    local dir="$work/$1" module="$2" version="$3"
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && go mod init "flexvol.invalid/build/$1" >/dev/null 2>&1 \
        && go mod edit -go="$("$go_bin" env GOVERSION | sed 's/^go//')" \
        && go mod edit -require="$module@$version")
}

# 1. Kubernetes.
wrapper k8s k8s.io/kubernetes "v$k8s"
(cd "$work/k8s" && go mod download k8s.io/kubernetes)
k8s_src="$GOMODCACHE/k8s.io/kubernetes@v$k8s"
staging_version="v0.${k8s#1.}"
replaces=()
while read -r module; do
    replaces+=("-replace=$module=$module@$staging_version")
done < <(sed -n 's|^[[:space:]]*\(k8s.io/[^[:space:]]*\) => ./staging/.*|\1|p' "$k8s_src/go.mod")
((${#replaces[@]})) || { log "no staging replace directives in k8s.io/kubernetes v$k8s's go.mod"; exit 1; }
(cd "$work/k8s" && go mod edit "${replaces[@]}")
log "pinned ${#replaces[@]} staging modules to $staging_version"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_ldflags+=" -X $pkg.gitVersion=v$k8s -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$k8s" | cut -d. -f2)"
    version_ldflags+=" -X $pkg.gitTreeState=clean"
done
cmds=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl)
for cmd in "${cmds[@]}"; do
    log "building $cmd (nice, 2 jobs)"
    (cd "$work/k8s" && timed "$cmd" go_build -mod=mod -ldflags "-s -w $version_ldflags" \
        -o "$out/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd")
done

# 2. etcd (its go.mod's replace directives point at sibling dirs; the wrapper's requirements
# resolve the same modules at the same release).
wrapper etcd go.etcd.io/etcd/server/v3 "v$etcd"
(cd "$work/etcd" && timed etcd go_build -mod=mod -o "$out/bin/etcd" go.etcd.io/etcd/server/v3)

# 3. containerd (static; btrfs and devmapper snapshotters are not needed).
wrapper containerd github.com/containerd/containerd/v2 "v$containerd"
for cmd in containerd containerd-shim-runc-v2 ctr; do
    (cd "$work/containerd" && timed "$cmd" go_build -mod=mod -tags "no_btrfs no_devmapper no_zfs" \
        -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$containerd" \
        -o "$out/bin/$cmd" "github.com/containerd/containerd/v2/cmd/$cmd")
done

# 4. runc: cgo with libseccomp, as its own release builds are.
wrapper runc github.com/opencontainers/runc "v$runc"
(cd "$work/runc" && export CGO_ENABLED=1 && timed runc go_build -mod=mod -tags seccomp \
    -ldflags "-s -w -X main.version=$runc" -o "$out/bin/runc" github.com/opencontainers/runc)

# 5. Images, with no registry (as scripts/e2e-build.sh makes them).
cat >"$work/pause.c" <<'EOF'
/* The pod sandbox: sleeps until told to stop. */
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) pause();
}
EOF
gcc -static -O2 -o "$work/pause" "$work/pause.c"
(cd "$work" && apt-get download -qq busybox-static && dpkg-deb -x busybox-static_*.deb busybox-root)
python3 "$here/e2e_image.py" "$out/images/pause.tar" localhost/flexvol-e2e/pause:1 "$work/pause" /pause
python3 "$here/e2e_image.py" "$out/images/app.tar" localhost/flexvol-e2e/app:1 "$work/busybox-root/bin/busybox" \
    /bin/busybox \
    --applets
log "packed images"

{
    echo "kubernetes v$k8s"
    echo "etcd v$etcd"
    echo "containerd v$containerd"
    echo "runc v$runc"
    "$go_bin" version
} >"$out/versions"
echo "$k8s" >"$out/k8s-version"
rm -rf "$GOPATH" "$work/busybox-root"
touch "$out/.complete"
log "done: $out (timings in $out/timings)"
echo "$out"
