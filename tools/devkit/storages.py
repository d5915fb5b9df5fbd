"""Sample storages for the demo and the tests, one per backend: the reference HTTP storage server,
moto's S3 server, SeaweedFS (a real S3-compatible store), fake-gcs-server, Azurite (all real processes
on loopback) and a plain directory. Each can be seeded with
files, asked which still exist, and describes itself as an operator storage configuration."""

from __future__ import annotations

import base64
import email.utils
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from filecleanup.storage.azureblob import API_VERSION, shared_key_signature
from tools.devkit.examples import STORAGE_SERVER
from tools.devkit.processes import stop_process, wait_until_healthy
from tools.envtest.controlplane import OBTAIN_SCRIPT, free_port
from tools.envtest.polling import eventually

T = TypeVar("T")

# Any namespace, any key: the tests' and demo's storages are their own. A real configuration names
# namespaces and a prefix (see docs/operating.md, the security policy).
OPEN_POLICY = {"allowedNamespaces": "*", "keyPrefix": ""}
S3_BUCKET = "photos"
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "filecleanup-test"  # moto accepts any credentials; these open nothing real
S3_SECRET_KEY = "filecleanup-test-secret"  # noqa: S105  (moto accepts any)


# Azurite's one account and its key, as Microsoft documents them for development: they open nothing real.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


# How long a storage server may take to start: loading its data (fake-gcs-server reads every preloaded
# file first) on a machine busy with other work. The wait ends at once if its process exits.
STARTUP_SECONDS = 300


def obtained(what: str) -> str:
    """The path of a binary that tools/envtest/obtain.sh builds (or installs) once and caches."""
    found = subprocess.run([str(OBTAIN_SCRIPT), what], check=True, stdout=subprocess.PIPE, text=True)
    return found.stdout.strip().splitlines()[-1]


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

    def start(self, *, detached: bool = False) -> None:
        """``detached``: in a session of its own, to outlive whoever started it (``make dev``)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, str(STORAGE_SERVER)),
                    *("--root", str(self.root), "--host", self.host, "--port", str(self.port)),
                    *(("--token-file", str(self.token_file)) if self.token_file else ()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=detached,
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

    def stats(self, *, summary: bool = False) -> dict[str, Any]:
        """Everything the server saw; with ``summary`` only its counts (small, however many keys)."""
        reply = httpx.get(f"{self.base}/_admin/stats", params={"summary": "1"} if summary else {}, timeout=5)
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats


# An operator whose calls may wait at a gate reads the storage's replies with this timeout at least:
# a held call must stay in flight, not time out and fail, whatever the test waits for meanwhile.
HELD_READ_TIMEOUT_SECONDS = 300


class Gate:
    """The reference server's gate (``Faults.holds``), worked by a test: the operator's delete calls
    wait at the storage from a chosen one on, and the test lets them through, one at a time or all at
    once. A test so sees a round at the point it chose (a checkpoint, a suspension, the calls sent
    before a stop), however fast or slow the machine. Each setting keeps the other ``faults`` given.

    The calls are counted since the storage's reset; "answered" means the server is done with them.
    The operator must wait for a held call (``HELD_READ_TIMEOUT_SECONDS``).
    """

    def __init__(self, storage: StorageProcess, **faults: Any) -> None:
        self.storage = storage
        self.faults = faults
        self.through = 0  # the calls let through: every later one waits at the gate

    def close(self, after: int = 0) -> None:
        """Let the first ``after`` calls through, and hold every later one."""
        self.through = after
        self.storage.fault(hold_from_call=after + 1, **self.faults)

    def let_through(self, calls: int = 1) -> None:
        """Let the next ``calls`` calls through (held now, or still to come), in the order they came."""
        self.close(self.through + calls)

    def let_keys_through(self, keys: list[str]) -> None:
        """Let the calls carrying any of ``keys`` through, whatever their number; hold the others."""
        self.storage.fault(hold_from_call=self.through + 1, pass_keys=keys, **self.faults)

    def open(self) -> None:
        """Hold nothing more: the calls held go on."""
        self.storage.fault(**self.faults)

    def counts(self) -> dict[str, int]:
        """The storage's counts now: ``calls``, ``in_flight``, ``held`` (its stats' summary)."""
        counts: dict[str, int] = self.storage.stats(summary=True)
        return counts

    def wait(
        self, what: str, probe: Callable[[dict[str, int]], bool], timeout: float = 60.0
    ) -> dict[str, int]:
        """The storage's counts once ``probe`` holds of them."""

        def counts() -> dict[str, int] | None:
            found = self.counts()
            return found if probe(found) else None

        return eventually(what, counts, timeout=timeout, interval=0.02)

    def wait_held(self, held: int | None = None, timeout: float = 60.0) -> dict[str, int]:
        """Wait until every call let through has been answered and the next ones wait at the gate:
        ``held`` of them, or at least one; the storage's counts then."""

        def still(counts: dict[str, int]) -> bool:
            answered = counts["calls"] - counts["in_flight"]
            waiting = counts["held"] >= 1 if held is None else counts["held"] == held
            return answered == self.through and counts["in_flight"] == counts["held"] and waiting

        what = f"{self.through} calls answered and {held or 'the next'} held"
        return self.wait(what, still, timeout)

    def step_until(self, what: str, done: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Let the held calls through one at a time, each answered before the next goes, until
        ``done()`` returns something (returned). Only a call already held is let through: every call
        the storage saw was let through by then, and the round holds still at the gate if it goes on."""

        def step() -> T | None:
            found = done()
            if found:
                return found
            counts = self.counts()
            if counts["held"] and counts["calls"] - counts["in_flight"] == self.through:
                self.let_through()
            return None

        return eventually(what, step, timeout=timeout, interval=0.02)


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


class SeaweedProcess:
    """SeaweedFS (``weed mini``: master, volume, filer and S3 gateway in one process) on loopback, every
    port a free one, with one bucket: a real S3-compatible store, built from its Go module
    (tools/envtest/obtain.sh seaweedfs). ``object_lock`` makes the bucket with Object Lock (and so
    versioning) on. It knows one identity, the tests' credentials, with every right (Admin: it may
    bypass a GOVERNANCE retention when a call asks to), and refuses any other."""

    def __init__(self, workdir: Path, *, object_lock: bool = False, key_prefix: str = "") -> None:
        self.workdir = workdir
        self.object_lock = object_lock
        self.key_prefix = key_prefix
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "seaweedfs.log"
        self.credentials_file = workdir / "aws-credentials"
        self.credentials_file.write_text(
            f"[default]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._client: Any = None

    def start(self) -> None:
        weed = obtained("seaweedfs")
        data = self.workdir / "seaweedfs-data"
        data.mkdir(exist_ok=True)
        identities = self.workdir / "seaweedfs-s3.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tests",
                            "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
                "admin.port",
                "admin.port.grpc",
            )
        }
        flags = [f"-{name}={port}" for name, port in ports.items()]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    weed,
                    "mini",
                    f"-dir={data}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    f"-s3.port={self.port}",
                    *flags,
                    "-admin.ui=false",
                    "-admin.port.legacy=0",
                    "-webdav=false",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    f"-filer.localSocket={self.workdir / 'filer.sock'}",
                    f"-s3.localSocket={self.workdir / 's3.sock'}",
                    f"-s3.config={identities}",
                ],
                stdout=log,
                stderr=log,
            )

        def bucket_made() -> bool | None:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited ({self.process.returncode}); see {self.log}")
            try:
                self.client().create_bucket(Bucket=S3_BUCKET, ObjectLockEnabledForBucket=self.object_lock)
            except Exception as error:  # noqa: BLE001  (not up yet: connection refused, or a 5xx while it starts)
                code = getattr(error, "response", {}).get("Error", {}).get("Code")
                return True if code == "BucketAlreadyOwnedByYou" else None  # started again on its data
            return True

        eventually("SeaweedFS to make its bucket", bucket_made, timeout=STARTUP_SECONDS, interval=0.5)

    def stop(self) -> None:
        stop_process(self.process)

    def client(self) -> Any:  # botocore builds the S3 methods at run time
        if self._client is None:
            import botocore.session  # noqa: PLC0415  (only the S3 samples need it)
            from botocore.config import Config  # noqa: PLC0415

            self._client = botocore.session.get_session().create_client(
                "s3",
                region_name=S3_REGION,
                endpoint_url=self.endpoint,
                aws_access_key_id=S3_ACCESS_KEY,
                aws_secret_access_key=S3_SECRET_KEY,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            )
        return self._client

    def seed(self, keys: list[str]) -> None:
        s3 = self.client()
        for key in keys:
            s3.put_object(Bucket=S3_BUCKET, Key=self.key_prefix + key, Body=b"photo")

    def versions(self, key: str) -> list[str]:
        """Every version of ``key`` still kept (data versions and delete markers)."""
        full = self.key_prefix + key
        listed = self.client().list_object_versions(Bucket=S3_BUCKET, Prefix=full)
        return [
            item["VersionId"]
            for item in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
            if item["Key"] == full
        ]

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
            "allowPlainHttp": True,  # loopback
            "keyPrefix": self.key_prefix,
            "credentialsFile": str(self.credentials_file),
            "deleteAllVersions": self.object_lock,  # a locked bucket is versioned: only this deletes its data
            "policy": OPEN_POLICY,
        }


class FakeGcsProcess:
    """fake-gcs-server (Google Cloud Storage's JSON API, built from its Go module: tools/envtest/obtain.sh
    fake-gcs-server) on loopback, in memory, with one bucket. It takes no credentials."""

    def __init__(self, workdir: Path, key_prefix: str = "", preload: list[str] | None = None) -> None:
        """``preload``: keys the server starts with, loaded from files (uploading many keys one at a
        time is slow on it)."""
        self.key_prefix = key_prefix
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "fake-gcs-server.log"
        self.data = workdir / "fake-gcs-data"
        self.preload = preload or []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = obtained("fake-gcs-server")
        Directory(self.data / S3_BUCKET).seed([self.key_prefix + key for key in self.preload])
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port)),
                    *("-backend", "memory", "-data", str(self.data)),
                ],
                stdout=log,
                stderr=log,
            )

        def bucket_made() -> bool | None:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited ({self.process.returncode}); see {self.log}")
            try:
                made = httpx.post(f"{self.endpoint}/storage/v1/b", json={"name": S3_BUCKET}, timeout=30)
            except httpx.TransportError:
                return None
            return True if made.status_code in {HTTPStatus.OK, HTTPStatus.CONFLICT} else None

        eventually("fake-gcs-server to make its bucket", bucket_made, timeout=STARTUP_SECONDS, interval=0.2)

    def stop(self) -> None:
        stop_process(self.process)

    def seed(self, keys: list[str]) -> None:
        with httpx.Client(timeout=10) as client:
            for key in keys:
                client.post(
                    f"{self.endpoint}/upload/storage/v1/b/{S3_BUCKET}/o",
                    params={"uploadType": "media", "name": self.key_prefix + key},
                    content=b"photo",
                ).raise_for_status()

    def exists(self, key: str) -> bool:
        name = quote(self.key_prefix + key, safe="")
        found = httpx.get(f"{self.endpoint}/storage/v1/b/{S3_BUCKET}/o/{name}", timeout=5)
        return found.status_code == HTTPStatus.OK

    def operator_storage(self) -> dict[str, Any]:
        return {
            "type": "gcs",
            "bucket": S3_BUCKET,
            "endpoint": self.endpoint,
            "auth": "none",  # an emulator's
            "allowPlainHttp": True,  # loopback
            "keyPrefix": self.key_prefix,
            "policy": OPEN_POLICY,
        }


class AzuriteProcess:
    """Azurite's Blob service (Microsoft's Azure Storage emulator, installed from npm:
    tools/envtest/obtain.sh azurite) on loopback, in memory, with one container. It knows one account,
    ``devstoreaccount1``, and takes only requests signed with its key (SharedKey), which the operator
    reads from a file, as it would from a mounted Secret."""

    def __init__(self, workdir: Path, key_prefix: str = "") -> None:
        self.workdir = workdir
        self.key_prefix = key_prefix
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"
        self.log = workdir / "azurite.log"
        self.key_file = workdir / "azure-account-key"
        self.key_file.write_text(AZURITE_KEY + "\n")
        self.process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client

    def start(self) -> None:
        azurite = obtained("azurite")
        self._client = httpx.Client(timeout=10)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(azurite, "--blobHost", "127.0.0.1", "--blobPort", str(self.port)),
                    *("--inMemoryPersistence", "--disableTelemetry", "--silent"),
                ],
                cwd=self.workdir,  # where Azurite keeps its settings
                stdout=log,
                stderr=log,
            )

        def container_made() -> bool | None:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"Azurite exited ({self.process.returncode}); see {self.log}")
            try:
                made = self.call("PUT", f"/{S3_BUCKET}", {"restype": "container"})
            except httpx.TransportError:
                return None
            return True if made.status_code in {HTTPStatus.CREATED, HTTPStatus.CONFLICT} else None

        eventually("Azurite to make its container", container_made, timeout=STARTUP_SECONDS, interval=0.2)

    def stop(self) -> None:
        stop_process(self.process)
        self._client.close()

    def call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
    ) -> httpx.Response:
        """A request to the account (``path`` encoded, below the account's name), signed with its key."""
        query = dict(query or {})
        full_path = f"/{AZURITE_ACCOUNT}{path}"
        signed = {
            "x-ms-date": email.utils.formatdate(usegmt=True),
            "x-ms-version": API_VERSION,
            **({"content-length": str(len(content))} if method == "PUT" else {}),
            **(headers or {}),
        }
        signature = shared_key_signature(
            base64.b64decode(AZURITE_KEY), AZURITE_ACCOUNT, method, full_path, query=query, headers=signed
        )
        signed["authorization"] = f"SharedKey {AZURITE_ACCOUNT}:{signature}"
        return self._client.request(
            method, f"http://127.0.0.1:{self.port}{full_path}", params=query, headers=signed, content=content
        )

    def _blob(self, key: str) -> str:
        return f"/{S3_BUCKET}/{quote(self.key_prefix + key)}"

    def seed(self, keys: list[str]) -> None:
        def put(key: str) -> None:
            made = self.call(
                "PUT", self._blob(key), headers={"x-ms-blob-type": "BlockBlob"}, content=b"photo"
            )
            made.raise_for_status()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(put, keys))

    def snapshot(self, key: str) -> None:
        """A snapshot of the blob: a copy of its data, kept as long as the snapshot is."""
        self.call("PUT", self._blob(key), {"comp": "snapshot"}).raise_for_status()

    def exists(self, key: str) -> bool:
        return self.call("HEAD", self._blob(key)).status_code == HTTPStatus.OK

    def operator_storage(self) -> dict[str, Any]:
        return {
            "type": "azureblob",
            "account": AZURITE_ACCOUNT,
            "container": S3_BUCKET,
            "endpoint": self.endpoint,
            "auth": "sharedKey",
            "accountKeyFile": str(self.key_file),
            "allowPlainHttp": True,  # loopback
            "keyPrefix": self.key_prefix,
            "policy": OPEN_POLICY,
        }
