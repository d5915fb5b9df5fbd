#!/usr/bin/env bash
# Builds the operator image on a machine without an image registry, with Debian's Docker engine.
#
#   tools/image/image.sh build IMAGE   build the Dockerfile as IMAGE (starts the engine if none answers)
#   tools/image/image.sh engine-up     start dockerd if no engine answers; print nothing else
#   tools/image/image.sh engine-down   stop the dockerd this script started (by its PID), if any
#   tools/image/image.sh pause IMAGE   make the pod-sandbox image IMAGE from a static pause binary
#
# The engine: Debian's dockerd on the default socket, with no bridge, no iptables rules and no IP
# forwarding, so it never touches the machine's network; builds use the host network.
# The base: PYTHON_IMAGE (default: the Dockerfile's, the official python image) when the engine has it
# or can pull it; otherwise a stand-in built once from Debian's packages with debootstrap
# (filecleanup/python-standin:bookworm), since no image registry may be reachable.
# pip inside the build trusts the machine's CA bundle (registries may sit behind a TLS-inspecting proxy):
# the bundle goes into the build stage only, never into the final image.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repository=$(cd "$here/../.." && pwd)
cache_root=${FILECLEANUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/filecleanup}
engine_dir="$cache_root/engine"
standin=filecleanup/python-standin:bookworm
ca_bundle=${FILECLEANUP_CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}

log() { echo "image.sh: $*" >&2; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

engine_up() {
    engine_answers && return
    command -v dockerd >/dev/null || {
        log "no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)"
        exit 1
    }
    mkdir -p "$engine_dir"
    log "starting dockerd (no bridge, no iptables; log: $engine_dir/dockerd.log)"
    # setsid: the daemon outlives this script; its PID is recorded so that engine-down stops only it.
    setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --pidfile "$engine_dir/dockerd.pid" >"$engine_dir/dockerd.log" 2>&1 </dev/null &
    local waited=0
    until engine_answers; do
        sleep 1
        waited=$((waited + 1))
        if ((waited > 60)); then
            log "dockerd did not answer within 60 s:"
            tail -20 "$engine_dir/dockerd.log" >&2
            exit 1
        fi
    done
    touch "$engine_dir/started-here"
}

engine_down() {
    [[ -f "$engine_dir/started-here" && -f "$engine_dir/dockerd.pid" ]] || return 0
    local pid
    pid=$(cat "$engine_dir/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd (PID $pid)"
        kill "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$engine_dir/started-here"
}

# The Debian mirror the machine's apt uses (deb822 or one-line sources).
debian_mirror() {
    local mirror
    mirror=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [[ -n "$mirror" ]] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    echo "${mirror:-http://deb.debian.org/debian}"
}

standin_base() {
    if docker image inspect "$standin" >/dev/null 2>&1; then
        return
    fi
    command -v debootstrap >/dev/null || {
        log "debootstrap is needed for the stand-in base image (Debian: apt-get install debootstrap)"
        exit 1
    }
    local rootfs tarball="$cache_root/image/python-standin-bookworm.tar"
    if [[ ! -s "$tarball" ]]; then
        mkdir -p "$cache_root/image"
        rootfs=$(mktemp -d)
        log "building the stand-in base from Debian's packages (about a minute, once)"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
            "$(debian_mirror)" >"$cache_root/image/debootstrap.log" 2>&1 || {
            tail -20 "$cache_root/image/debootstrap.log" >&2
            exit 1
        }
        # As the official image has it; and no package caches, docs or apt lists in the base.
        ln -sf python3 "$rootfs/usr/bin/python"
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
        tar -C "$rootfs" -cf "$tarball.partial" .
        mv "$tarball.partial" "$tarball"
        rm -rf "$rootfs"
    fi
    docker import "$tarball" "$standin" >/dev/null
}

# The base to build on: the requested one when the engine has it or can pull it, else the stand-in.
base_image() {
    local wanted=${PYTHON_IMAGE:-$(awk -F= '/^ARG PYTHON_IMAGE=/ {print $2; exit}' "$repository/Dockerfile")}
    if docker image inspect "$wanted" >/dev/null 2>&1 || timeout 60 docker pull -q "$wanted" >/dev/null 2>&1; then
        echo "$wanted"
        return
    fi
    log "$wanted cannot be pulled here; building on the stand-in $standin"
    standin_base
    echo "$standin"
}

build() {
    local image=$1 base context_ca="$repository/.build/pip-ca.crt"
    engine_up
    base=$(base_image)
    mkdir -p "$repository/.build"
    if [[ -s "$ca_bundle" ]]; then cp "$ca_bundle" "$context_ca"; else : >"$context_ca"; fi
    log "building $image on $base"
    local started=$SECONDS
    # The classic builder: BuildKit would pull its frontend image from a registry.
    # FILECLEANUP_IMAGE_VERSION and _REVISION (make release): the image's version and revision labels.
    DOCKER_BUILDKIT=0 docker build --quiet --network host --build-arg "PYTHON_IMAGE=$base" \
        --build-arg "VERSION=${FILECLEANUP_IMAGE_VERSION:-dev}" \
        --build-arg "REVISION=${FILECLEANUP_IMAGE_REVISION:-}" -t "$image" "$repository" >/dev/null
    log "built $image in $((SECONDS - started)) s: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

# A FROM-scratch image holding only the pause binary that obtain.sh compiles from Kubernetes' source.
pause_image() {
    local image=$1 binary rootfs
    engine_up
    docker image inspect "$image" >/dev/null 2>&1 && return
    binary=$("$repository/tools/envtest/obtain.sh" pause)
    rootfs=$(mktemp -d)
    install -m 0755 "$binary" "$rootfs/pause"
    tar -C "$rootfs" -c pause | docker import --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' - "$image" >/dev/null
    rm -rf "$rootfs"
}

case "${1:-}" in
    build) build "${2:?usage: $0 build IMAGE}" ;;
    pause) pause_image "${2:?usage: $0 pause IMAGE}" ;;
    engine-up) engine_up ;;
    engine-down) engine_down ;;
    *) echo "usage: $0 build IMAGE | pause IMAGE | engine-up | engine-down" >&2; exit 2 ;;
esac
