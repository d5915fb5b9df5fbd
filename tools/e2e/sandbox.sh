#!/usr/bin/env bash
# Runs a command inside a private network namespace, held by a pause container the way a pod sandbox
# holds a pod's network, with the pod's address 10.250.0.1 on its loopback. Every server the command starts listens in that namespace only; containers
# join it with `docker run --network container:$FILECLEANUP_SANDBOX`. Nothing reaches the machine's
# network, and the namespace goes away with the pause container when the command ends.
#
#   tools/e2e/sandbox.sh COMMAND [ARG...]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repository=$(cd "$here/../.." && pwd)
kubernetes_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$repository/tools/envtest/go.mod")
pause_image="filecleanup/pause:$kubernetes_version"
sandbox="filecleanup-sandbox-$$"

"$repository/tools/image/image.sh" pause "$pause_image"
docker run --detach --name "$sandbox" --network none --read-only --cap-drop ALL \
    --security-opt no-new-privileges "$pause_image" >/dev/null
trap 'docker rm --force "$sandbox" >/dev/null' EXIT
pid=$(docker inspect --format '{{.State.Pid}}' "$sandbox")
# An address besides loopback, as a pod has one: the API server does not proxy to loopback endpoints.
nsenter --net="/proc/$pid/ns/net" -- ip addr add 10.250.0.1/32 dev lo
export FILECLEANUP_SANDBOX="$sandbox"
set +e
nsenter --net="/proc/$pid/ns/net" -- "$@"
status=$?
set -e
exit "$status"
