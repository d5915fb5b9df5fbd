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
#   tools/envtest/obtain.sh azurite         -> prints the path of Azurite's azurite-blob (Microsoft's Azure
#                                              Blob emulator, for the azureblob tests), from npm, pinned
#                                              by tools/azurite/package-lock.json
#
# KUBEBUILDER_ASSETS (controller-runtime's convention) names a directory of binaries the user
# already has; it wins when it holds both kube-apiserver and etcd.
# Binaries are built from Go modules pinned in go.mod/go.sum next to this script: no prebuilt
# download is needed, only the Go module proxy.
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

control_plane() {
    if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
        echo "$KUBEBUILDER_ASSETS"
        return
    fi
    local dir="$cache_root/envtest/kubernetes-$kubernetes_version-etcd-$etcd_version"
    if [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; then
        echo "$dir"
        return
    fi
    need_go
    log "building kube-apiserver $kubernetes_version and etcd $etcd_version into $dir (a few minutes, once)"
    local started=$SECONDS minor=${kubernetes_version#v1.}
    minor=${minor%%.*}
    local stamp="k8s.io/component-base/version"
    local ldflags="-s -w -X $stamp.gitVersion=$kubernetes_version -X $stamp.gitMajor=1 -X $stamp.gitMinor=$minor"
    ldflags+=" -X $stamp.buildDate=1970-01-01T00:00:00Z"
    mkdir -p "$dir.partial"
    (
        cd "$here"
        export CGO_ENABLED=0 GOFLAGS=-mod=mod
        go build -trimpath -tags providerless -ldflags "$ldflags" -o "$dir.partial/kube-apiserver" \
            k8s.io/kubernetes/cmd/kube-apiserver
        go build -trimpath -ldflags "-s -w" -o "$dir.partial/etcd" ./etcd
    )
    rm -rf "$dir" && mv "$dir.partial" "$dir"
    log "built in $((SECONDS - started)) s"
    echo "$dir"
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
    if [[ -x "$dir/kubelet" && -x "$dir/kube-controller-manager" && -x "$dir/kube-scheduler" ]]; then
        echo "$dir"
        return
    fi
    need_go
    log "building kubelet, kube-controller-manager and kube-scheduler $kubernetes_version into $dir (minutes, once)"
    local started=$SECONDS
    mkdir -p "$dir.partial"
    build_kubernetes "$dir.partial" kubelet kube-controller-manager kube-scheduler
    rm -rf "$dir" && mv "$dir.partial" "$dir"
    log "built in $((SECONDS - started)) s"
    echo "$dir"
}

# The pod sandbox's pause process, from the Kubernetes module's own source: no image registry needed.
pause_binary() {
    local dir="$cache_root/envtest/pause-$kubernetes_version"
    if [[ ! -x "$dir/pause" ]]; then
        need_go
        local module
        module=$(cd "$here" && GOFLAGS=-mod=mod go mod download -json k8s.io/kubernetes | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
        mkdir -p "$dir"
        gcc -Os -static -DVERSION="$kubernetes_version" -o "$dir/pause.partial" "$module/build/pause/linux/pause.c"
        mv "$dir/pause.partial" "$dir/pause"
    fi
    echo "$dir/pause"
}

helm_binary() {
    if command -v helm >/dev/null && helm version --short 2>/dev/null | grep -q '^v3\.'; then
        command -v helm
        return
    fi
    local dir="$cache_root/helm/$helm_version-kube1.$helm_kube_minor"
    if [[ ! -x "$dir/helm" ]]; then
        need_go
        log "building helm $helm_version into $dir"
        mkdir -p "$dir"
        local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
        # As helm's own Makefile does; otherwise `helm template` assumes Kubernetes 1.20.
        local package
        for package in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
            ldflags+=" -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$helm_kube_minor"
        done
        CGO_ENABLED=0 GOBIN="$dir" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$helm_version"
    fi
    echo "$dir/helm"
}

seaweedfs_binary() {
    local module="$here/../seaweedfs" version
    version=$(awk '$1 == "require" && $2 == "github.com/seaweedfs/seaweedfs" {print $3}' "$module/go.mod")
    local dir="$cache_root/seaweedfs/$version"
    if [[ ! -x "$dir/weed" ]]; then
        need_go
        log "building SeaweedFS $version into $dir (minutes, once)"
        local started=$SECONDS
        mkdir -p "$dir"
        (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" \
            -o "$dir/weed.partial" github.com/seaweedfs/seaweedfs/weed)
        mv "$dir/weed.partial" "$dir/weed"
        log "built in $((SECONDS - started)) s"
    fi
    echo "$dir/weed"
}

fake_gcs_server_version=v1.56.1

fake_gcs_server_binary() {
    local dir="$cache_root/fake-gcs-server/$fake_gcs_server_version"
    if [[ ! -x "$dir/fake-gcs-server" ]]; then
        need_go
        log "building fake-gcs-server $fake_gcs_server_version into $dir (a minute or two, once)"
        local started=$SECONDS
        mkdir -p "$dir"
        CGO_ENABLED=0 GOBIN="$dir" GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" \
            "github.com/fsouza/fake-gcs-server@$fake_gcs_server_version"
        log "built in $((SECONDS - started)) s"
    fi
    echo "$dir/fake-gcs-server"
}

azurite_binary() {
    local module="$here/../azurite" version
    version=$(sed -n 's/^ *"azurite": "\(.*\)"$/\1/p' "$module/package.json")
    local dir="$cache_root/azurite/$version"
    if [[ ! -x "$dir/node_modules/.bin/azurite-blob" ]]; then
        command -v npm >/dev/null || { log "Node.js and npm are required for Azurite (see README, Prerequisites)"; exit 1; }
        log "installing Azurite $version into $dir (a minute, once)"
        local started=$SECONDS
        rm -rf "$dir.partial" && mkdir -p "$dir.partial"
        cp "$module/package.json" "$module/package-lock.json" "$dir.partial/"
        # The lock pins every package; no install script is needed to run the emulator.
        (cd "$dir.partial" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
        rm -rf "$dir" && mv "$dir.partial" "$dir"
        log "installed in $((SECONDS - started)) s"
    fi
    echo "$dir/node_modules/.bin/azurite-blob"
}

case "${1:-}" in
    control-plane) control_plane ;;
    helm) helm_binary ;;
    node) node_binaries ;;
    pause) pause_binary ;;
    seaweedfs) seaweedfs_binary ;;
    fake-gcs-server) fake_gcs_server_binary ;;
    azurite) azurite_binary ;;
    *) echo "usage: $0 control-plane|helm|node|pause|seaweedfs|fake-gcs-server|azurite" >&2; exit 2 ;;
esac
