"""Sample storages for the demo and the tests, one per backend: the reference HTTP storage server,
moto's S3 server (both real processes on loopback) and a plain directory. Each can be seeded with
files, asked which still exist, and describes itself as an operator storage configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import httpx

from controlplane import free_port
from tests.support.processes import stop_process, wait_until_healthy

STORAGE_SERVER = Path(__file__).parents[2] / "examples" / "storage-server" / "storage_server.py"
# Any namespace, any key: the tests' and demo's storages are their own. A real configuration names
# namespaces and a prefix (see the README, Operating).
OPEN_POLICY = {"allowedNamespaces": "*", "keyPrefix": ""}
S3_BUCKET = "photos"
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "filecleanup-test"  # moto accepts any credentials; these open nothing real
S3_SECRET_KEY = "filecleanup-test-secret"


class SampleStorage(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def seed(self, keys: list[str]) -> None: ...

    def exists(self, key: str) -> bool: ...

    def operator_storage(self) -> dict[str, Any]: ...


class Directory:
    """Files under ``root``, one per key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def seed(self, keys: list[str]) -> None:
        for key in keys:
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"photo")

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()


MARKER_FILE = ".filecleanup-volume"


class DirectoryStorage(Directory):
    """The filesystem backend's volume: nothing to start. It is a directory, not a mount point, so it
    carries a marker file that the operator checks instead."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        (self.root / MARKER_FILE).touch()

    def start(self) -> None:
        """A directory is always there."""

    def stop(self) -> None:
        """A directory is always there."""

    def operator_storage(self) -> dict[str, Any]:
        return {
            "type": "filesystem",
            "root": str(self.root.resolve()),
            "pruneEmptyDirs": True,
            "requireMountpoint": False,
            "markerFile": MARKER_FILE,
            "policy": OPEN_POLICY,
        }


class StorageProcess(Directory):
    """The reference storage server; stop() and start() keep its port and its files."""

    def __init__(self, workdir: Path, token_file: Path | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(workdir / "storage-root")
        self.token_file = token_file
        self.log = workdir / "storage.log"
        self.host = host
        self.port = free_port()
        self.base = f"http://{host}:{self.port}"
        self.url = f"{self.base}/delete"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, str(STORAGE_SERVER)),
                    *("--root", str(self.root), "--host", self.host, "--port", str(self.port)),
                    *(("--token-file", str(self.token_file)) if self.token_file else ()),
                ],
                stdout=log,
                stderr=log,
            )
        wait_until_healthy(f"{self.base}/healthz", self.process, self.log)

    def stop(self) -> None:
        stop_process(self.process)

    def operator_storage(self) -> dict[str, Any]:
        # Loopback (or the test node's own network): a token may travel in cleartext here.
        return {
            "type": "http",
            "url": self.url,
            "objectsUrl": f"{self.base}/objects/",
            "policy": OPEN_POLICY,
            "allowPlainHttp": True,
        }

    def fault(self, **faults: Any) -> None:
        httpx.post(f"{self.base}/_admin/faults", json=faults, timeout=5).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.base}/_admin/reset", timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        reply = httpx.get(f"{self.base}/_admin/stats", timeout=5)
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats


class MotoProcess:
    """moto's S3 server with one bucket; the operator reads its credentials from a shared credentials
    file, as it would from a mounted Secret."""

    def __init__(self, workdir: Path, key_prefix: str = "", host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.endpoint = f"http://{host}:{self.port}"
        self.key_prefix = key_prefix
        self.log = workdir / "moto.log"
        self.credentials_file = workdir / "aws-credentials"
        self.credentials_file.write_text(
            f"[default]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=log,
            )
        wait_until_healthy(f"{self.endpoint}/moto-api/", self.process, self.log)
        self.client().create_bucket(Bucket=S3_BUCKET)

    def stop(self) -> None:
        stop_process(self.process)

    def client(self) -> Any:  # botocore builds the S3 methods at run time
        if self._client is None:
            import botocore.session  # noqa: PLC0415  (only the S3 sample needs it)

            self._client = botocore.session.get_session().create_client(
                "s3",
                region_name=S3_REGION,
                endpoint_url=self.endpoint,
                aws_access_key_id=S3_ACCESS_KEY,
                aws_secret_access_key=S3_SECRET_KEY,
            )
        return self._client

    def seed(self, keys: list[str]) -> None:
        s3 = self.client()
        for key in keys:
            s3.put_object(Bucket=S3_BUCKET, Key=self.key_prefix + key, Body=b"photo")

    def exists(self, key: str) -> bool:
        full = self.key_prefix + key
        listed = self.client().list_objects_v2(Bucket=S3_BUCKET, Prefix=full)
        return any(item["Key"] == full for item in listed.get("Contents", []))

    def operator_storage(self) -> dict[str, Any]:
        return {
            "type": "s3",
            "bucket": S3_BUCKET,
            "region": S3_REGION,
            "endpoint": self.endpoint,
            "allowPlainHttp": True,  # moto on loopback (or the test node's own network)
            "keyPrefix": self.key_prefix,
            "credentialsFile": str(self.credentials_file),
            "policy": OPEN_POLICY,
        }
