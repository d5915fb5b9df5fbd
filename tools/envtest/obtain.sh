#!/usr/bin/env bash
# Obtains the local control plane binaries (kube-apiserver, etcd) and helm, caching them outside
# the repo, and prints the directory that holds them.
#
#   tools/envtest/obtain.sh control-plane   -> prints a directory with kube-apiserver and etcd
#   tools/envtest/obtain.sh helm            -> prints the path of a helm binary
#   tools/envtest/obtain.sh pause           -> prints the path of a static pause binary (a pod sandbox)
#   tools/envtest/obtain.sh node            -> prints a directory with kubelet, kube-controller-manager
#                                              and kube-scheduler (make node)
#   tools/envtest/obtain.sh seaweedfs       -> prints the path of SeaweedFS's weed (a real S3-compatible
#                                              store, for the S3 tests), built from tools/seaweedfs
#   tools/envtest/obtain.sh fake-gcs-server -> prints the path of fake-gcs-server (Google Cloud Storage's
#                                              JSON API, for the gcs tests), built from its Go module
#   tools/envtest/obtain.sh promtool        -> prints the path of Prometheus's promtool (the chart's alert
#                                              rules are checked and unit-tested with it), built from its
#                                              Go module
#   tools/envtest/obtain.sh azurite         -> prints the path of Azurite's azurite-blob (Microsoft's Azure
#                                              Blob emulator, for the azureblob tests), from npm, pinned
#                                              by tools/azurite/package-lock.json
#   tools/envtest/obtain.sh syft            -> prints the path of Anchore's syft (the image's SBOM in
#                                              make release), built from its Go module
#
# KUBEBUILDER_ASSETS (controller-runtime's convention) names a directory of binaries the user
# already has; it wins when it holds both kube-apiserver and etcd.
# Binaries are built from Go modules pinned in go.mod/go.sum next to this script: no prebuilt
# download is needed, only the Go module proxy. They are cached under FILECLEANUP_CACHE (default
# ~/.cache/filecleanup), each built once even when several of these scripts want it at the same time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kubernetes_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/go.mod")
etcd_version=$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' "$here/go.mod")
helm_version=v3.22.0
helm_kube_minor=37  # the client-go minor helm_version is built with: helm's default capabilities
cache_root=${FILECLEANUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/filecleanup}

log() { echo "obtain.sh: $*" >&2; }

need_go() {
    command -v go >/dev/null || { log "Go is required to build the control plane (see README, Prerequisites)"; exit 1; }
}

# Whether directory $1 holds every executable named after it.
complete() {
    local dir=$1 file
    shift
    for file in "$@"; do
        [[ -x "$dir/$file" ]] || return 1
    done
}

# Fills the cache directory $1 with the executables $3... by running the function $2 with a directory
# to build into, unless it holds them already. Several obtain.sh may want the same artifact at once
# (two CI jobs, a test and a demo): they take turns under a lock next to the directory, a later one
# finds the earlier one's result, and each builds into a directory of its own, renamed into place
# whole, so the cached directory is never half-written nor written by two at once.
build_once() {
    local dir=$1 build=$2
    shift 2
    complete "$dir" "$@" && return
    command -v flock >/dev/null || { log "flock (util-linux) is required to build into the cache"; exit 1; }
    mkdir -p "$(dirname "$dir")"
    (
        flock 9
        complete "$dir" "$@" && exit
        # Left by a build that was killed: none runs now, this one holds the lock.
        rm -rf "$dir".building.*
        staging=$(mktemp -d "$dir.building.XXXXXX")
        trap 'rm -rf "$staging"' EXIT
        started=$SECONDS
        "$build" "$staging" >&2  # stdout carries only the path this script prints
        chmod 755 "$staging"  # not mktemp's 700: the cache's binaries are for every user
        rm -rf "$dir"
        mv "$staging" "$dir"
        log "built $dir in $((SECONDS - started)) s"
    ) 9>"$dir.lock"
}

control_plane() {
    if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
        echo "$KUBEBUILDER_ASSETS"
        return
    fi
    local dir="$cache_root/envtest/kubernetes-$kubernetes_version-etcd-$etcd_version"
    build_once "$dir" build_control_plane kube-apiserver etcd
    echo "$dir"
}

build_control_plane() {
    local into=$1
    need_go
    log "building kube-apiserver $kubernetes_version and etcd $etcd_version (a few minutes, once)"
    build_kubernetes "$into" kube-apiserver
    (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$into/etcd" ./etcd)
}

# Builds Kubernetes commands from the pinned module into $1, stamped with the version.
build_kubernetes() {
    local dir=$1 minor=${kubernetes_version#v1.} command
    shift
    minor=${minor%%.*}
    local stamp="k8s.io/component-base/version"
    local ldflags="-s -w -X $stamp.gitVersion=$kubernetes_version -X $stamp.gitMajor=1 -X $stamp.gitMinor=$minor"
    ldflags+=" -X $stamp.buildDate=1970-01-01T00:00:00Z"
    for command in "$@"; do
        (
            cd "$here"
            CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags providerless -ldflags "$ldflags" \
                -o "$dir/$command" "k8s.io/kubernetes/cmd/$command"
        )
    done
}

node_binaries() {
    local dir="$cache_root/envtest/node-$kubernetes_version"
    build_once "$dir" build_node kubelet kube-controller-manager kube-scheduler
    echo "$dir"
}

build_node() {
    need_go
    log "building kubelet, kube-controller-manager and kube-scheduler $kubernetes_version (minutes, once)"
    build_kubernetes "$1" kubelet kube-controller-manager kube-scheduler
}

# The pod sandbox's pause process, from the Kubernetes module's own source: no image registry needed.
pause_binary() {
    local dir="$cache_root/envtest/pause-$kubernetes_version"
    build_once "$dir" build_pause pause
    echo "$dir/pause"
}

build_pause() {
    need_go
    log "building pause $kubernetes_version"
    local module
    module=$(cd "$here" && GOFLAGS=-mod=mod go mod download -json k8s.io/kubernetes | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    gcc -Os -static -DVERSION="$kubernetes_version" -o "$1/pause" "$module/build/pause/linux/pause.c"
}

helm_binary() {
    if command -v helm >/dev/null && helm version --short 2>/dev/null | grep -q '^v3\.'; then
        command -v helm
        return
    fi
    local dir="$cache_root/helm/$helm_version-kube1.$helm_kube_minor"
    build_once "$dir" build_helm helm
    echo "$dir/helm"
}

build_helm() {
    need_go
    log "building helm $helm_version"
    local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
    # As helm's own Makefile does; otherwise `helm template` assumes Kubernetes 1.20.
    local package
    for package in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$helm_kube_minor"
    done
    CGO_ENABLED=0 GOBIN="$1" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$helm_version"
}

seaweedfs_module="$here/../seaweedfs"

seaweedfs_binary() {
    local version
    version=$(awk '$1 == "require" && $2 == "github.com/seaweedfs/seaweedfs" {print $3}' "$seaweedfs_module/go.mod")
    local dir="$cache_root/seaweedfs/$version"
    build_once "$dir" build_seaweedfs weed
    echo "$dir/weed"
}

build_seaweedfs() {
    local into=$1
    need_go
    log "building SeaweedFS (minutes, once)"
    (cd "$seaweedfs_module" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
        -o "$into/weed" github.com/seaweedfs/seaweedfs/weed)
}

# A command `go install`ed once from a module at a pinned version, cached as NAME/VERSION; prints its
# path. go_installed NAME PACKAGE@VERSION [LDFLAGS]
go_installed() {
    local name=$1 package=$2 dir="$cache_root/$1/${2##*@}"
    go_package=$package go_ldflags="-s -w ${3:-}" build_once "$dir" go_install "$name"
    echo "$dir/$name"
}

go_install() {
    need_go
    log "building $go_package (minutes, once)"
    CGO_ENABLED=0 GOBIN="$1" GOFLAGS=-mod=mod go install -trimpath -ldflags "$go_ldflags" "$go_package"
}

azurite_module="$here/../azurite"

azurite_binary() {
    local version
    version=$(sed -n 's/^ *"azurite": "\(.*\)"$/\1/p' "$azurite_module/package.json")
    local dir="$cache_root/azurite/$version"
    build_once "$dir" install_azurite node_modules/.bin/azurite-blob
    echo "$dir/node_modules/.bin/azurite-blob"
}

install_azurite() {
    local into=$1
    command -v npm >/dev/null || { log "Node.js and npm are required for Azurite (see README, Prerequisites)"; exit 1; }
    log "installing Azurite from npm (a minute, once)"
    cp "$azurite_module/package.json" "$azurite_module/package-lock.json" "$into/"
    # The lock pins every package; no install script is needed to run the emulator.
    (cd "$into" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

case "${1:-}" in
    control-plane) control_plane ;;
    helm) helm_binary ;;
    node) node_binaries ;;
    pause) pause_binary ;;
    seaweedfs) seaweedfs_binary ;;
    fake-gcs-server) go_installed fake-gcs-server github.com/fsouza/fake-gcs-server@v1.56.1 ;;
    azurite) azurite_binary ;;
    promtool) go_installed promtool github.com/prometheus/prometheus/cmd/promtool@v0.316.0 ;;
    # main.version: what syft names itself as in the SBOMs it writes (its releases set it the same way).
    syft) go_installed syft github.com/anchore/syft/cmd/syft@v1.57.2 "-X main.version=1.57.2" ;;
    *) echo "usage: $0 control-plane|helm|node|pause|seaweedfs|fake-gcs-server|azurite|promtool|syft" >&2; exit 2 ;;
esac
