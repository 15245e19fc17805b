#!/usr/bin/env bash
# Builds or reuses everything the end-to-end suite runs, offline from Debian packages:
#   kubelet, kube-apiserver, kube-controller-manager, kube-scheduler  built from the source of
#       Debian's `kubernetes` package (GOPATH mode, Debian's golang-go)
#   etcd, kubectl, containerd, runc                                    unpacked from Debian .debs
#   pause and app images (docker-archive tarballs)                     static C pause, busybox-static
# into a cache outside the repository, keyed by package versions, so later runs take seconds.
# Prints the ready directory's path as its last line of stdout. Idempotent; needs root and apt.
# Usage: scripts/e2e-build.sh   (FLEXVOL_E2E_CACHE overrides /var/cache/flexvol-e2e)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FLEXVOL_E2E_CACHE:-/var/cache/flexvol-e2e}"
log() { echo "e2e-build: $*" >&2; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # one build at a time; a second caller waits and then reuses

# Build tools go on the machine; the runtime pieces are only unpacked into the cache, so no
# system etcd or containerd service starts and no other kubectl is shadowed.
want=(golang-go gcc libc6-dev dpkg-dev openssl xfsprogs)
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

# A private apt state with deb-src entries derived from the machine's own sources, so the
# machine's apt configuration is left as it was.
apt_dir="$cache/apt"
mkdir -p "$apt_dir/parts" "$apt_dir/lists/partial"
: >"$apt_dir/parts/src.list"
if [[ -f /etc/apt/sources.list ]]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >>"$apt_dir/parts/src.list"
fi
for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && sed 's/^Types: .*/Types: deb-src/' "$f" >"$apt_dir/parts/$(basename "$f")"
done
for f in /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] && sed -n 's/^deb /deb-src /p' "$f" >>"$apt_dir/parts/src.list"
done
srcapt=(-o "Dir::Etc::SourceList=$apt_dir/parts/src.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists")
if [[ -z "$(find "$apt_dir/lists" -maxdepth 1 -name '*Sources*' -mmin -1440 -print -quit)" ]]; then
    log "updating the source package index"
    apt-get "${srcapt[@]}" update -qq
fi
k8s_version="$(apt-cache "${srcapt[@]}" showsrc kubernetes | sed -n 's/^Version: //p' | sort -V | tail -1)"
[[ -n "$k8s_version" ]] || { log "no source package for kubernetes"; exit 1; }

deb_version() { apt-cache policy "$1" | sed -n 's/^ *Candidate: //p'; }
# The tree vendors reflect2 1.0.1, whose map iteration corrupts memory under Go >= 1.18: the
# apiserver dies ("unexpected fault address" in reflect2's UnsafeIterate) as soon as it encodes
# a custom resource. Debian's reflect2 (1.0.2, the upstream fix) replaces it.
reflect2=golang-github-modern-go-reflect2-dev
key="k8s-${k8s_version}"
for package in etcd-server kubernetes-client containerd runc busybox-static "$reflect2"; do
    key+="_${package}-$(deb_version "$package")"
done
key="$(echo "$key" | tr ':~+' '___')"
out="$cache/$key"
if [[ -f "$out/.complete" ]]; then
    log "reusing $out"
    echo "$out"
    exit 0
fi
log "building into $out"
rm -rf "$out"
mkdir -p "$out/bin" "$out/images"
work="$cache/work"
mkdir -p "$work"

# 1. Runtime pieces from .debs.
debs="$work/debs"
rm -rf "$debs" && mkdir -p "$debs/root"
(cd "$debs" && apt-get download -qq etcd-server kubernetes-client containerd runc busybox-static)
for deb in "$debs"/*.deb; do
    dpkg-deb -x "$deb" "$debs/root"
done
cp "$debs/root/usr/bin/etcd" "$debs/root/usr/bin/kubectl" "$debs/root/usr/bin/containerd" \
    "$debs/root/usr/bin/containerd-shim-runc-v2" "$debs/root/usr/bin/ctr" "$out/bin/"
cp "$debs/root/usr/sbin/runc" "$out/bin/" 2>/dev/null || cp "$debs/root/usr/bin/runc" "$out/bin/"
cp "$debs/root/bin/busybox" "$work/busybox"
log "unpacked etcd, kubectl, containerd, runc"

# 2. Kubernetes from source, GOPATH mode (a module-mode build wants go.mod updates).
gopath="$work/gopath"
tree="$gopath/src/k8s.io/kubernetes"
stamp="$work/source-$k8s_version"
if [[ ! -f "$stamp" ]]; then
    log "fetching the kubernetes source package $k8s_version"
    rm -rf "$work/src" "$gopath" "$work"/source-*
    mkdir -p "$work/src" "$(dirname "$tree")"
    (cd "$work/src" && apt-get "${srcapt[@]}" source -qq "kubernetes=$k8s_version" >/dev/null)
    srcdir="$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)"
    mv "$srcdir" "$tree"
    rm -rf "$work/src"
    touch "$stamp"
fi
reflect2_stamp="$tree/vendor/github.com/modern-go/reflect2/.debian-$(deb_version "$reflect2")"
if [[ ! -f "$reflect2_stamp" ]]; then
    log "replacing the vendored reflect2 with Debian's $(deb_version "$reflect2")"
    rm -rf "$work/reflect2" && mkdir -p "$work/reflect2"
    (cd "$work/reflect2" && apt-get download -qq "$reflect2" && dpkg-deb -x ./*.deb root)
    vendored="$tree/vendor/github.com/modern-go/reflect2"
    rm -f "$vendored"/*.go "$vendored"/*.s "$vendored"/.debian-*
    cp "$work/reflect2/root/usr/share/gocode/src/github.com/modern-go/reflect2/"*.go "$vendored/"
    rm -rf "$work/reflect2"
    touch "$reflect2_stamp"
fi
# GOROOT explicitly: openapi-gen is built with -trimpath and must still find the standard library.
export GOROOT="$(go env GOROOT)"
export GOPATH="$gopath" GO111MODULE=off GOFLAGS="" GOCACHE="$cache/gocache" CGO_ENABLED=1
go_build() { nice -n 15 go build -p 2 -trimpath "$@"; }

openapi="$tree/pkg/generated/openapi/zz_generated.openapi.go"
if [[ ! -f "$openapi" ]]; then
    log "generating pkg/generated/openapi (Debian's tree lacks it)"
    go_build -o "$work/openapi-gen" k8s.io/kubernetes/vendor/k8s.io/kube-openapi/cmd/openapi-gen
    # The inputs upstream's generated-files makefile uses: every package tagged +k8s:openapi-gen.
    # As upstream names them in GOPATH mode: k8s.io/kubernetes/vendor/k8s.io/<repo>/...
    inputs="$(cd "$tree" && grep -rl --include='*.go' -e '+k8s:openapi-gen=' pkg cmd vendor/k8s.io/*/ \
        | grep -v -e '_test.go$' -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
        | xargs -n1 dirname | sed 's|//*|/|g' | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd,)"
    (cd "$tree" && nice -n 15 "$work/openapi-gen" --logtostderr -v 1 \
        -i "$inputs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
        -o "$gopath/src" --go-header-file hack/boilerplate/boilerplate.generatego.txt \
        -r /dev/null) >"$work/openapi-gen.log" 2>&1 || {
        tail -20 "$work/openapi-gen.log" >&2
        exit 1
    }
fi

# The version the binaries report (the package's "1.20.5+really1.20.2-..." is upstream 1.20.2).
upstream="${k8s_version%%-*}"
upstream="${upstream##*really}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for prefix in "" k8s.io/kubernetes/vendor/; do
        version_ldflags+=" -X ${prefix}${pkg}.gitVersion=v$upstream -X ${prefix}${pkg}.gitMajor=1"
        version_ldflags+=" -X ${prefix}${pkg}.gitMinor=$(echo "$upstream" | cut -d. -f2)"
        version_ldflags+=" -X ${prefix}${pkg}.gitTreeState=clean"
    done
done
for cmd in kubelet kube-scheduler kube-controller-manager kube-apiserver; do
    log "building $cmd (nice, 2 jobs; a few minutes on 2 cores)"
    start=$SECONDS
    go_build -ldflags "-s -w $version_ldflags" -o "$out/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
    log "built $cmd in $((SECONDS - start)) s"
done

# 3. Images, with no registry.
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
python3 "$here/e2e_image.py" "$out/images/pause.tar" localhost/flexvol-e2e/pause:1 "$work/pause" /pause
python3 "$here/e2e_image.py" "$out/images/app.tar" localhost/flexvol-e2e/app:1 "$work/busybox" /bin/busybox \
    --applets
log "packed images"

echo "$k8s_version" >"$out/k8s-version"
touch "$out/.complete"
log "done: $out"
echo "$out"
