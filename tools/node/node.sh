#!/usr/bin/env bash
# A single-node cluster in a network namespace of its own (see node.py for what runs in it; run as
# `python -m tools.node.node` from the repository root).
#
#   tools/node/node.sh up DIR [IMAGE...]          make the namespace, start the node, load the images
#   tools/node/node.sh exec DIR CMD...            run CMD in the node's network namespace
#   tools/node/node.sh down DIR                   stop every process by PID, remove the namespace
#   tools/node/node.sh run DIR IMAGE... -- CMD...  up, CMD (with FILECLEANUP_TEST_KUBECONFIG,
#                                                 FILECLEANUP_NODE_IP and FILECLEANUP_NODE_DIR set),
#                                                 then down, whatever CMD did; DIR is removed if
#                                                 CMD succeeded, kept (its logs) if not
#
# The pod sandbox (pause) image is made and loaded too. `exec` runs with KUBECONFIG set to the node's.
#
# The namespace's loopback carries the node's address (10.250.0.1) and the kubernetes Service's
# ClusterIP (10.0.0.1); nothing in it can reach the machine's network.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repository=$(cd "$here/../.." && pwd)
python=${PYTHON:-$repository/.venv/bin/python}
command=${1:?usage: $0 up|exec|down DIR ...}
dir=${2:?usage: $0 $command DIR ...}
shift 2
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
netns="filecleanup-node-$(echo -n "$dir" | sha256sum | cut -c1-8)"
kubernetes_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$repository/tools/envtest/go.mod")
pause_image="filecleanup/pause:$kubernetes_version"

up() {
    if [[ -f "$dir/node-state.json" ]]; then
        echo "node.sh: a node already runs in $dir (node.sh down $dir first)" >&2
        exit 1
    fi
    "$repository/tools/image/image.sh" pause "$pause_image"
    ip netns add "$netns"
    ip -n "$netns" link set lo up
    ip -n "$netns" addr add 10.250.0.1/32 dev lo
    ip -n "$netns" addr add 10.0.0.1/32 dev lo
    echo "$netns" >"$dir/netns"
    local images=(--image "$pause_image") image
    for image in "$@"; do images+=(--image "$image"); done
    # nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup mounts.
    # From the repository root, where `python -m tools.node.node` finds the tools package ($dir is absolute).
    (cd "$repository" && nsenter --net="/var/run/netns/$netns" -- unshare --mount --propagation private -- \
        "$python" -m tools.node.node up --dir "$dir" "${images[@]}") || {
        down
        exit 1
    }
}

down() {
    (cd "$repository" && "$python" -m tools.node.node down --dir "$dir")
    if [[ -e "/var/run/netns/$netns" ]]; then ip netns delete "$netns"; fi
    rm -f "$dir/netns"
}

in_node() {
    KUBECONFIG="$dir/plane/kubeconfig" FILECLEANUP_TEST_KUBECONFIG="$dir/plane/kubeconfig" \
        FILECLEANUP_NODE_IP=10.250.0.1 FILECLEANUP_NODE_DIR="$dir" nsenter --net="/var/run/netns/$netns" -- "$@"
}

case "$command" in
    up) up "$@" ;;
    exec) in_node "$@" ;;
    down) down ;;
    run)
        images=()
        while (($#)) && [[ "$1" != "--" ]]; do images+=("$1"); shift; done
        shift
        up "${images[@]}"
        trap down EXIT
        if in_node "$@"; then
            trap - EXIT
            down
            rm -rf "$dir"  # its etcd and images: hundreds of MB each run
        else
            status=$?
            echo "node.sh: the node's logs are kept in $dir" >&2
            exit "$status"
        fi
        ;;
    *)
        echo "usage: $0 up|exec|down|run DIR ..." >&2
        exit 2
        ;;
esac
