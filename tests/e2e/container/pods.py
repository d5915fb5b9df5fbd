"""A rendered pod spec run as a container with `docker run`, the way a kubelet would run it.

Every setting comes from the spec, none is restated by hand: the user and groups, runAsNonRoot checked
against the image, the read-only root, dropped capabilities, no-new-privileges, the memory limit, the
command, args and env (with the downward API), the volumes (ConfigMap, Secret, emptyDir, and a host
directory standing in for a PersistentVolumeClaim), and the ServiceAccount's token, CA and namespace at
the in-cluster path. The container joins the sandbox's network namespace, as a pod's containers join
their sandbox's.

A container run cannot show what only a kubelet does: its probes and restarts, token rotation through
the TokenRequest API, and eviction; docs/development.md lists them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

Manifest = dict[str, Any]

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The ``mask`` a kubelet ORs into the files of a read-only volume when the pod has an fsGroup.
READ_ONLY_GROUP_MASK = 0o440
QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class UnsupportedPodSpec(Exception):  # noqa: N818  (the spec asks for what this runner cannot do)
    """The spec uses a field this runner does not translate: better to stop than to run it differently."""


def quantity_bytes(quantity: str) -> int:
    match = QUANTITY.match(quantity)
    if match is None:
        raise UnsupportedPodSpec(f"quantity {quantity!r}")
    return int(match[1]) * UNITS[match[2]]


@dataclass
class Cluster:
    """What the cluster gives a pod: its API server, namespace, token and the objects its volumes name."""

    api_host: str
    api_port: int
    ca_certificate: Path
    namespace: str
    tokens: dict[str, str]  # ServiceAccount name -> a token from the TokenRequest API
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, bytes]] = field(default_factory=dict)
    claims: dict[str, Path] = field(default_factory=dict)  # PersistentVolumeClaim name -> host directory
    pod_ip: str = "127.0.0.1"


@dataclass
class Pod:
    name: str
    spec: Manifest
    cluster: Cluster
    files: Path  # where the volumes' files are written
    network: str  # `docker run --network` value: the sandbox
    image: str = ""

    def container(self) -> Manifest:
        containers: list[Manifest] = self.spec["containers"]
        if len(containers) != 1:
            raise UnsupportedPodSpec(f"{len(containers)} containers")
        return containers[0]

    def probe_url(self, probe: str = "livenessProbe") -> str:
        """The URL the kubelet's HTTP probe would ask, on the sandbox's loopback."""
        container = self.container()
        http = container[probe]["httpGet"]
        port = http["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
        return f"http://127.0.0.1:{port}{http['path']}"

    def port(self, name: str) -> int:
        return int(next(p["containerPort"] for p in self.container()["ports"] if p["name"] == name))

    def grace_seconds(self) -> int:
        return int(self.spec.get("terminationGracePeriodSeconds", 30))

    def run_command(self) -> list[str]:
        container = self.container()
        image = self.image or container["image"]
        command = ["docker", "run", "--detach", "--name", self.name, "--network", self.network]
        command += ["--label", "filecleanup.dev/e2e=true", "--stop-timeout", str(self.grace_seconds())]
        command += self._security(container, image)
        command += self._resources(container)
        command += self._env(container)
        command += self._volumes(container)
        entrypoint: list[str] = container.get("command") or []
        if entrypoint:
            command += ["--entrypoint", entrypoint[0]]
        return [*command, image, *entrypoint[1:], *container.get("args", [])]

    def _security(self, container: Manifest, image: str) -> list[str]:
        pod_context: Manifest = self.spec.get("securityContext") or {}
        context: Manifest = {**pod_context, **(container.get("securityContext") or {})}
        known = {
            "runAsNonRoot",
            "runAsUser",
            "runAsGroup",
            "fsGroup",
            "seccompProfile",
            "allowPrivilegeEscalation",
            "readOnlyRootFilesystem",
            "capabilities",
        }
        if set(context) - known:
            raise UnsupportedPodSpec(f"securityContext fields {sorted(set(context) - known)}")
        user = context.get("runAsUser")
        image_user = image_config(image)["User"] or "0"
        effective = str(user) if user is not None else image_user.split(":")[0]
        if context.get("runAsNonRoot") and (not effective.isdigit() or int(effective) == 0):
            # The kubelet's check: it refuses to start a container that would run as root, or as a
            # user name it cannot verify.
            raise UnsupportedPodSpec(f"runAsNonRoot, but the container would run as user {effective!r}")
        args: list[str] = []
        if user is not None:
            group = context.get("runAsGroup")
            args += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if context.get("fsGroup") is not None:
            args += ["--group-add", str(context["fsGroup"])]
        seccomp = (context.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":  # docker applies its default profile unless told otherwise
            raise UnsupportedPodSpec(f"seccompProfile {seccomp}")
        if context.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if context.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        capabilities = context.get("capabilities") or {}
        args += [arg for cap in capabilities.get("drop", []) for arg in ("--cap-drop", cap)]
        args += [arg for cap in capabilities.get("add", []) for arg in ("--cap-add", cap)]
        return args

    def _resources(self, container: Manifest) -> list[str]:
        limits = (container.get("resources") or {}).get("limits") or {}
        args: list[str] = []
        if "memory" in limits:
            memory = quantity_bytes(str(limits["memory"]))
            args += ["--memory", str(memory), "--memory-swap", str(memory)]
        if "cpu" in limits:
            cpu = str(limits["cpu"])
            args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
        return args

    def _env(self, container: Manifest) -> list[str]:
        # What the kubelet adds for the `kubernetes` Service: in-cluster configuration reads these.
        env = {
            "KUBERNETES_SERVICE_HOST": self.cluster.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.cluster.api_port),
        }
        fields = {
            "metadata.name": self.name,
            "metadata.namespace": self.cluster.namespace,
            "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "status.podIP": self.cluster.pod_ip,
        }
        for variable in container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = variable["value"]
                continue
            path = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if path not in fields:
                raise UnsupportedPodSpec(f"env {variable['name']}: {variable.get('valueFrom')}")
            env[variable["name"]] = fields[path]
        return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]

    def _volumes(self, container: Manifest) -> list[str]:
        volumes = {volume["name"]: volume for volume in self.spec.get("volumes", [])}
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        args: list[str] = []
        if self.spec.get("automountServiceAccountToken", True):
            args += self._mount_files(
                "serviceaccount",
                SERVICE_ACCOUNT_DIR,
                {
                    "token": self.cluster.tokens[self.spec.get("serviceAccountName", "default")].encode(),
                    "ca.crt": self.cluster.ca_certificate.read_bytes(),
                    "namespace": self.cluster.namespace.encode(),
                },
                0o644,
                fs_group,
            )
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            read_only = ",ro" if mount.get("readOnly") else ""
            if "configMap" in volume:
                text = self.cluster.config_maps[volume["configMap"]["name"]]
                files = {key: value.encode() for key, value in text.items()}
                args += self._mount_files(mount["name"], mount["mountPath"], files, 0o644, fs_group)
            elif "secret" in volume:
                secret = volume["secret"]
                data = self.cluster.secrets[secret["secretName"]]
                items = secret.get("items") or [{"key": key, "path": key} for key in data]
                files = {item["path"]: data[item["key"]] for item in items}
                mode = int(secret.get("defaultMode", 0o644))
                args += self._mount_files(mount["name"], mount["mountPath"], files, mode, fs_group)
            elif "emptyDir" in volume:
                limit = volume["emptyDir"].get("sizeLimit")
                size = f",size={quantity_bytes(str(limit))}" if limit else ""
                args += ["--tmpfs", f"{mount['mountPath']}:rw,nosuid,nodev,mode=1777{size}"]
            elif "persistentVolumeClaim" in volume:
                directory = self.cluster.claims[volume["persistentVolumeClaim"]["claimName"]]
                if fs_group is not None:
                    grant_group(directory, int(fs_group))
                args += ["--volume", f"{directory}:{mount['mountPath']}{read_only}"]
            else:
                raise UnsupportedPodSpec(f"volume {volume}")
        return args

    def _mount_files(
        self, volume: str, path: str, files: dict[str, bytes], mode: int, fs_group: int | None
    ) -> list[str]:
        directory = self.files / self.name / volume
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        for name, content in files.items():
            target = directory / name
            target.write_bytes(content)
            if fs_group is not None:
                os.chown(target, 0, int(fs_group))
                target.chmod(mode | READ_ONLY_GROUP_MASK)
            else:
                target.chmod(mode)
        directory.chmod(0o755)
        return ["--volume", f"{directory}:{path}:ro"]


def grant_group(directory: Path, gid: int) -> None:
    """What a kubelet does to a volume for the pod's fsGroup: the group owns it and may write it."""
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, -1, gid)
        path.chmod(path.stat().st_mode | (0o2070 if path.is_dir() else 0o060))


def image_config(image: str) -> Manifest:
    output = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config}}", image],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    config: Manifest = json.loads(output)
    return config


class RunningPod:
    """One run of a pod's container; stop() is the kubelet's SIGTERM and grace period."""

    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        subprocess.run(["docker", "rm", "--force", pod.name], check=False, capture_output=True)
        subprocess.run(pod.run_command(), check=True, capture_output=True, text=True)

    def wait_healthy(self, timeout: float = 60.0) -> float:
        """Seconds until the liveness endpoint answered 200."""
        started = time.monotonic()
        url = self.pod.probe_url()
        while time.monotonic() - started < timeout:
            if not self.running():
                raise AssertionError(f"{self.pod.name} exited:\n{self.logs()[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=2).status_code == httpx.codes.OK:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{url} not healthy after {timeout:.0f} s:\n{self.logs()[-4000:]}")

    def running(self) -> bool:
        return self.state()["Running"] is True

    def state(self) -> Manifest:
        output = subprocess.run(
            ["docker", "inspect", "--format", "{{json .State}}", self.pod.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        state: Manifest = json.loads(output)
        return state

    def wait_exit(self, timeout: float) -> int:
        result = subprocess.run(
            ["timeout", str(timeout), "docker", "wait", self.pod.name],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"{self.pod.name} still running after {timeout:.0f} s")
        return int(result.stdout.strip())

    def stop(self) -> tuple[float, int]:
        """SIGTERM, then SIGKILL after the pod's grace period: (seconds to exit, exit code)."""
        started = time.monotonic()
        subprocess.run(["docker", "stop", self.pod.name], check=True, capture_output=True)
        return time.monotonic() - started, int(self.state()["ExitCode"])

    def logs(self) -> str:
        result = subprocess.run(
            ["docker", "logs", self.pod.name], capture_output=True, text=True, check=False
        )
        return result.stdout + result.stderr

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.pod.name], check=False, capture_output=True)
