"""A single-node Kubernetes cluster for the end-to-end tests: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, containerd and a kubelet, so that `helm install` makes a real
Deployment, ReplicaSet and Pod, and a kubelet runs it: probes, projected ServiceAccount tokens, the
downward API, runAsNonRoot, grace periods and restarts.

Run through ``tools/node/node.sh``, which makes the network namespace this runs in: every server
listens in it, and nothing reaches the machine's network. The Kubernetes binaries are built from the
pinned module (``obtain.sh control-plane`` and ``obtain.sh node``); containerd and runc are Debian's
(package ``docker.io``). Images come from the local Docker engine through ``docker save``: there is no
registry.

    python -m tools.node.node up --dir DIR --image IMAGE [--image IMAGE ...]
    python -m tools.node.node down --dir DIR

What this node needs that a production node does not, each for its reason:

- The node's address and the ``kubernetes`` Service's ClusterIP are addresses on the namespace's
  loopback, and kube-apiserver listens on 443 on every address there: pods reach the API server at its
  ClusterIP with no kube-proxy.
- The pod network is a CNI bridge inside the namespace, with the node as every pod's gateway: pods get
  their own network namespace and address as in production, so the chart needs no hostNetwork; but
  there is no kube-proxy and no DNS (the addresses above stand in for both).
- runc is wrapped to raise a negative ``oomScoreAdj`` to 0: these machines lack CAP_SYS_RESOURCE, and
  the kubelet asks -998 for every pod sandbox.
- The node runs in a mount namespace of its own, where the three kernel settings the kubelet would
  otherwise rewrite for the whole machine (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops)
  read as it wants them; its volume mounts also vanish with its processes.
- cgroup v1 is allowed (``failCgroupV1: false``), with the cgroupfs driver and no QoS cgroups.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from tools.envtest.controlplane import (
    ApiServerOptions,
    ControlPlane,
    free_port,
    obtain_binaries,
    stop_pid,
)
from tools.envtest.polling import eventually

OBTAIN_SCRIPT = Path(__file__).parents[1] / "envtest" / "obtain.sh"
NODE_NAME = "filecleanup-node"
NODE_IP = "10.250.0.1"
SERVICE_IP = "10.0.0.1"  # the first address of --service-cluster-ip-range: the kubernetes Service
API_PORT = 443
POD_SUBNET = "10.88.0.0/16"
CNI_PLUGINS = "/usr/lib/cni"  # Debian's containernetworking-plugins
READY_TIMEOUT_SECONDS = 180.0
# What the kubelet would write into these global kernel settings; see the module docstring.
KERNEL_SETTINGS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


@dataclass
class NodeState:
    """The node's processes, recorded as each starts: a start that fails half-way is still undone."""

    controller_manager_pid: int | None = None
    scheduler_pid: int | None = None
    containerd_pid: int | None = None
    kubelet_pid: int | None = None


class Node:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.plane = ControlPlane(
            self.workdir / "plane",
            ApiServerOptions(
                bind_address="0.0.0.0",  # noqa: S104  (every address of the node's own namespace)
                advertise_address=NODE_IP,
                port=API_PORT,
                service_account_admission=True,
                extra_flags=(
                    # `kubectl logs` and `exec` reach the kubelet at the node's address, as an admin.
                    "--kubelet-preferred-address-types=InternalIP",
                    f"--kubelet-client-certificate={self.workdir / 'plane' / 'pki' / 'admin.crt'}",
                    f"--kubelet-client-key={self.workdir / 'plane' / 'pki' / 'admin.key'}",
                ),
            ),
        )
        self.kubeconfig = self.plane.kubeconfig
        self.state_file = self.workdir / "node-state.json"
        self.containerd_socket = self.workdir / "containerd" / "containerd.sock"

    def load_state(self) -> NodeState | None:
        try:
            return NodeState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def up(self, images: list[str]) -> None:
        if Path("/proc/self/ns/mnt").readlink() == Path(f"/proc/{os.getppid()}/ns/mnt").readlink():
            raise SystemExit("node.py runs in a private mount namespace: use tools/node/node.sh up")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._pin_kernel_settings()
        node_binaries = obtain("node")
        self.plane.start(obtain_binaries())
        pki = self.plane.pki
        kubeconfig = str(self.kubeconfig)
        state = NodeState()
        self._save(state)
        state.controller_manager_pid = self._spawn(
            "kube-controller-manager",
            [
                str(node_binaries / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        ).pid
        self._save(state)
        state.scheduler_pid = self._spawn(
            "kube-scheduler",
            [
                str(node_binaries / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        ).pid
        self._save(state)
        containerd = self._start_containerd(images)
        state.containerd_pid = containerd.pid
        self._save(state)
        self._load_images(containerd, images)
        kubelet = self._start_kubelet(node_binaries)
        state.kubelet_pid = kubelet.pid
        self._save(state)
        self._wait_until_ready(kubelet.pid, containerd.pid)

    def _save(self, state: NodeState) -> None:
        self.state_file.write_text(json.dumps(asdict(state)) + "\n")

    def _pin_kernel_settings(self) -> None:
        pinned = self.workdir / "kernel"
        pinned.mkdir(exist_ok=True)
        for setting, value in KERNEL_SETTINGS.items():
            source = pinned / setting.replace("/", ".")
            source.write_text(f"{value}\n")
            subprocess.run(["mount", "--bind", str(source), f"/proc/sys/{setting}"], check=True)

    def _start_containerd(self, images: list[str]) -> subprocess.Popen[bytes]:
        root = self.workdir / "containerd"
        (root / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        # The pod network: a bridge inside the node's namespace, with the node as every pod's gateway.
        # Pods reach the node's addresses (the API server at the kubernetes Service's ClusterIP, the
        # storages at the node's address) through it; nothing routes beyond the namespace.
        bridge = {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": str(root / "cni" / "ipam"),
            },
        }
        (root / "cni" / "net.d" / "10-pods.conflist").write_text(
            json.dumps({"cniVersion": "0.4.0", "name": "pods", "plugins": [bridge]})
        )
        wrapper = root / "runc-wrapper"
        wrapper.write_text(RUNC_WRAPPER.format(python=sys.executable, runc=shutil.which("runc")))
        wrapper.chmod(0o755)
        sandbox_image = next(image for image in images if "/pause:" in image)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (root / "config.toml").write_text(
            f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{root / "containerd-ttrpc.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
[{cri}]
  sandbox_image = "{normalised(sandbox_image)}"
  enable_selinux = false
  # Pod network namespaces under the state directory, not the machine's /var/run/netns.
  netns_mounts_under_state_dir = true
[{cri}.cni]
  bin_dir = "{CNI_PLUGINS}"
  conf_dir = "{root / "cni" / "net.d"}"
[{cri}.containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{wrapper}"
  SystemdCgroup = false
"""
        )
        return self._spawn("containerd", ["containerd", "--config", str(root / "config.toml")])

    def _load_images(self, containerd: subprocess.Popen[bytes], images: list[str]) -> None:
        wait_for(lambda: self._ctr("version").returncode == 0, "containerd", containerd)
        for image in images:
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            imported = subprocess.run(
                ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "images", "import", "-"],
                stdin=save.stdout,
                capture_output=True,
                check=False,
            )
            if save.wait() != 0 or imported.returncode != 0:
                raise RuntimeError(f"cannot load {image} into containerd: {imported.stderr.decode()}")

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
            capture_output=True,
            check=False,
        )

    def _start_kubelet(self, node_binaries: Path) -> subprocess.Popen[bytes]:
        root = self.workdir / "kubelet"
        root.mkdir(exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # these machines mount cgroup v1
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "address": NODE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": str(self.workdir / "pod-logs"),
            "imageGCHighThresholdPercent": 100,  # the images were loaded by hand: never collect them
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        return self._spawn(
            "kubelet",
            [
                str(node_binaries / "kubelet"),
                f"--config={root / 'config.yaml'}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--node-ip={NODE_IP}",
                f"--hostname-override={NODE_NAME}",
            ],
        )

    def _wait_until_ready(self, kubelet: int, containerd: int) -> None:
        def ready() -> bool:
            if not alive(kubelet):
                raise RuntimeError(f"kubelet exited; see {self.workdir / 'kubelet.log'}")
            result = subprocess.run(
                ["kubectl", "--kubeconfig", str(self.kubeconfig), "get", "node", NODE_NAME, "-o", "json"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                return False
            node = json.loads(result.stdout)
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
            taints = node["spec"].get("taints") or []
            return conditions.get("Ready") == "True" and not taints

        for pid, name in ((kubelet, "kubelet"), (containerd, "containerd")):
            if not alive(pid):
                raise RuntimeError(f"{name} exited; see {self.workdir / (name + '.log')}")
        try:
            eventually("the node to be Ready", ready, timeout=READY_TIMEOUT_SECONDS, interval=1)
        except TimeoutError as error:
            raise RuntimeError(
                f"node not Ready within {READY_TIMEOUT_SECONDS:.0f} s; see {self.workdir}"
            ) from error

    def down(self) -> None:
        state = self.load_state()
        if state is not None:
            if state.kubelet_pid is not None:
                stop_pid(state.kubelet_pid)
            if state.containerd_pid is not None:
                containers = self._remove_containers()
                stop_pid(state.containerd_pid)
                self._kill_shims()
                remove_cgroups(containers)
            for pid in (state.scheduler_pid, state.controller_manager_pid):
                if pid is not None:
                    stop_pid(pid)
            self.state_file.unlink(missing_ok=True)
        self.plane.stop()

    def _remove_containers(self) -> list[str]:
        """Kill and delete every container of the node; their IDs."""
        containers = self._ctr("containers", "list", "--quiet").stdout.decode().split()
        tasks = self._ctr("tasks", "list", "--quiet").stdout.decode().split()
        for task in tasks:
            self._ctr("tasks", "kill", "--signal", "SIGKILL", task)
        for task in tasks:
            for _ in range(50):
                if self._ctr("tasks", "delete", task).returncode == 0:
                    break
                time.sleep(0.1)
        for container in containers:
            self._ctr("containers", "delete", container)
        return containers

    def _kill_shims(self) -> None:
        """containerd's shims outlive containerd: stop the ones that served this node."""
        for process in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                command = (process / "cmdline").read_bytes().split(b"\0")
                if (
                    command[0].endswith(b"containerd-shim-runc-v2")
                    and str(self.containerd_socket).encode() in command
                ):
                    stop_pid(int(process.name))

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )


# runc, with a pod sandbox's negative oom_score_adj raised to 0: without CAP_SYS_RESOURCE the kernel
# refuses to lower it, and runc fails with "can't get final child's PID from pipe".
RUNC_WRAPPER = """#!{python}
import json, os, sys
args = sys.argv[1:]
if "--bundle" in args:
    config_path = os.path.join(args[args.index("--bundle") + 1], "config.json")
    with open(config_path) as file:
        config = json.load(file)
    if config.get("process", {{}}).get("oomScoreAdj", 0) < 0:
        config["process"]["oomScoreAdj"] = 0
        with open(config_path, "w") as file:
            json.dump(config, file)
os.execv("{runc}", ["runc", *args])
"""


def remove_cgroups(containers: list[str]) -> None:
    """The containers' cgroups, which runc made under containerd's namespace on the machine's cgroup
    hierarchy (cgroup v1, one per controller); then their parent, if nothing else uses it."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        parent = controller / "k8s.io"
        for container in containers:
            with contextlib.suppress(OSError):
                (parent / container).rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def normalised(image: str) -> str:
    """The name containerd stores a Docker Hub-style image under."""
    first = image.split("/", maxsplit=1)[0]
    return image if "." in first or ":" in first or first == "localhost" else f"docker.io/{image}"


def obtain(what: str) -> Path:
    output = subprocess.run([str(OBTAIN_SCRIPT), what], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(output.strip().splitlines()[-1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(
    check: Callable[[], bool], what: str, process: subprocess.Popen[bytes], timeout: float = 30.0
) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} did not start: it exited with {process.returncode}")
        return check()

    eventually(what, ready, timeout=timeout, interval=0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, required=True, help="state, logs and kubeconfig")
    parser.add_argument("--image", action="append", default=[], help="an image to load into the node")
    args = parser.parse_args(argv)
    node = Node(args.dir)
    if args.command == "down":
        node.down()
        return 0
    started = time.monotonic()
    try:
        node.up(args.image)
    except BaseException:
        node.down()
        raise
    print(f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f} s; KUBECONFIG={node.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
