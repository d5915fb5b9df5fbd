"""A real kube-apiserver + etcd on loopback, envtest style: no kubelet, no containers.

Used by ``make cluster`` / ``make cluster-down`` (``python -m`` from the repository root) and by
the pytest fixture (as ``tools.envtest.controlplane``). The binaries come from ``obtain.sh control-plane``.

    python -m tools.envtest.controlplane up --dir .cluster [--api-port N] [--etcd-port N]
    python -m tools.envtest.controlplane down --dir .cluster
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tools.envtest.polling import eventually

OBTAIN_SCRIPT = Path(__file__).with_name("obtain.sh")
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def obtain_binaries() -> Path:
    output = subprocess.run(
        [str(OBTAIN_SCRIPT), "control-plane"], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(output.strip().splitlines()[-1])


@dataclass(frozen=True)
class ApiServerOptions:
    """Where and how kube-apiserver serves. The defaults are envtest's: loopback only, and no
    ServiceAccount admission, since without a controller-manager no ServiceAccount would exist for a pod.
    A node (tools/node) serves on every address of its own network namespace, on 443."""

    bind_address: str = "127.0.0.1"
    advertise_address: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    service_account_admission: bool = False
    extra_flags: Sequence[str] = field(default_factory=tuple)  # e.g. an audit policy for benchmarks


@dataclass
class ClusterState:
    """What a running control plane needs to be found again, saved as ``state.json``."""

    api_port: int
    etcd_port: int
    etcd_pid: int
    apiserver_pid: int

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def write_pki(pki: Path) -> None:
    """A CA, a serving cert for 127.0.0.1, an admin client cert and service-account keys."""
    pki.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "filecleanup-envtest-ca")])
    ca = _certificate(ca_name, ca_key, None, [(x509.BasicConstraints(ca=True, path_length=None), True)])
    _write_key(pki / "ca.key", ca_key)
    _write_cert(pki / "ca.crt", ca)

    serving_key = _key()
    serving = _certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        serving_key,
        (ca_name, ca_key),
        [
            (
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                    ]
                ),
                False,
            ),
            (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    _write_key(pki / "apiserver.key", serving_key)
    _write_cert(pki / "apiserver.crt", serving)

    admin_key = _key()
    admin = _certificate(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "envtest-admin"),
            ]
        ),
        admin_key,
        (ca_name, ca_key),
        [(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    _write_key(pki / "admin.key", admin_key)
    _write_cert(pki / "admin.crt", admin)

    service_account_key = _key()
    _write_key(pki / "sa.key", service_account_key)
    (pki / "sa.pub").write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def kubeconfig_text(server: str, pki: Path) -> str:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "envtest", "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}
        ],
        "users": [
            {
                "name": "envtest-admin",
                "user": {"client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")},
            }
        ],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "envtest-admin"}}],
        "current-context": "envtest",
    }
    # JSON is valid YAML, and needs no YAML library here.
    return json.dumps(config, indent=2) + "\n"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its state in /proc tells.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    return True


def stop_pid(pid: int) -> None:
    if not alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class ControlPlane:
    """etcd and kube-apiserver with their data, certificates and logs under ``workdir``."""

    def __init__(self, workdir: Path, options: ApiServerOptions | None = None) -> None:
        self.workdir = workdir.resolve()
        self.options = options or ApiServerOptions()
        self.pki = self.workdir / "pki"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.state_file = self.workdir / "state.json"

    def load_state(self) -> ClusterState | None:
        try:
            return ClusterState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def is_running(self) -> bool:
        state = self.load_state()
        return (
            state is not None
            and alive(state.etcd_pid)
            and alive(state.apiserver_pid)
            and self._ready(state.server)
        )

    def start(
        self, binaries: Path, api_port: int | None = None, etcd_port: int | None = None
    ) -> ClusterState:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_pki(self.pki)
        api_port = api_port or self.options.port or free_port()
        etcd_port = etcd_port or free_port()
        etcd_peer_port = free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer_port}"
        data_dir = self.workdir / "etcd-data"
        shutil.rmtree(data_dir, ignore_errors=True)  # every start is a fresh, empty cluster
        etcd = self._spawn(
            "etcd",
            [
                str(binaries / "etcd"),
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        state = ClusterState(api_port=api_port, etcd_port=etcd_port, etcd_pid=etcd.pid, apiserver_pid=0)
        try:
            self._wait(lambda: self._etcd_healthy(etcd_url), "etcd", etcd.pid)
            self._start_apiserver(binaries, state)
        except BaseException:
            self.stop(state)
            raise
        self.kubeconfig.write_text(kubeconfig_text(state.server, self.pki))
        return state

    def stop_apiserver(self) -> None:
        """Stop only the API server, as an outage would; etcd and its data stay."""
        state = self.load_state()
        if state is not None and state.apiserver_pid:
            stop_pid(state.apiserver_pid)
            state.apiserver_pid = 0
            self._save(state)

    def start_apiserver(self, binaries: Path) -> None:
        """Start the API server again on the same port, over the same etcd."""
        state = self.load_state()
        if state is None:
            raise RuntimeError(f"no control plane in {self.workdir}")
        self._start_apiserver(binaries, state)

    def _start_apiserver(self, binaries: Path, state: ClusterState) -> None:
        server = state.server
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(binaries / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{state.etcd_port}",
                f"--bind-address={self.options.bind_address}",
                f"--advertise-address={self.options.advertise_address}",
                f"--secure-port={state.api_port}",
                f"--cert-dir={self.pki}",
                f"--tls-cert-file={self.pki / 'apiserver.crt'}",
                f"--tls-private-key-file={self.pki / 'apiserver.key'}",
                f"--client-ca-file={self.pki / 'ca.crt'}",
                f"--service-account-issuer={server}",
                f"--api-audiences={server}",
                f"--service-account-key-file={self.pki / 'sa.pub'}",
                f"--service-account-signing-key-file={self.pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                *(
                    []
                    if self.options.service_account_admission
                    else ["--disable-admission-plugins=ServiceAccount"]
                ),
                "--allow-privileged=true",
                # The default reconciler refuses a loopback advertise address.
                "--endpoint-reconciler-type=none",
                *self.options.extra_flags,
            ],
        )
        state.apiserver_pid = apiserver.pid
        self._save(state)
        self._wait(lambda: self._ready(server), "kube-apiserver", apiserver.pid)

    def _save(self, state: ClusterState) -> None:
        self.state_file.write_text(json.dumps(asdict(state)) + "\n")

    def stop(self, state: ClusterState | None = None) -> None:
        state = state or self.load_state()
        if state is None:
            return
        for pid in (state.apiserver_pid, state.etcd_pid):
            if pid:
                stop_pid(pid)
        self.state_file.unlink(missing_ok=True)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        with log:
            # A session of its own, so that `make cluster` can return while the servers run on.
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    def _wait(self, check: Callable[[], bool], name: str, pid: int) -> None:
        def ready() -> bool:
            if not alive(pid):
                raise RuntimeError(f"{name} exited during startup; see {self.workdir / (name + '.log')}")
            return check()

        try:
            eventually(name, ready, timeout=STARTUP_TIMEOUT_SECONDS)
        except TimeoutError as error:
            raise RuntimeError(f"{error}; see {self.workdir}") from error

    @staticmethod
    def _etcd_healthy(url: str) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
                return bool(json.load(reply).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _ready(self, server: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        try:
            with urllib.request.urlopen(f"{server}/readyz", timeout=2, context=context) as reply:
                return bool(reply.status == HTTPStatus.OK)
        except (OSError, urllib.error.URLError):
            return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="state, logs and kubeconfig")
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("FILECLEANUP_API_PORT", "0")))
    parser.add_argument("--etcd-port", type=int, default=int(os.environ.get("FILECLEANUP_ETCD_PORT", "0")))
    args = parser.parse_args(argv)
    plane = ControlPlane(args.dir)
    if args.command == "down":
        plane.stop()
        print(f"control plane in {plane.workdir} stopped")
        return 0
    if plane.is_running():
        print(f"control plane already running; KUBECONFIG={plane.kubeconfig}")
        return 0
    plane.stop()  # leftovers of a half-dead cluster
    started = time.monotonic()
    state = plane.start(obtain_binaries(), args.api_port or None, args.etcd_port or None)
    print(
        f"control plane up in {time.monotonic() - started:.1f} s at {state.server}; "
        f"KUBECONFIG={plane.kubeconfig}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
