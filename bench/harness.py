"""The benchmarks' harness: a control plane with an audit log (to count writes), the reference storage
server at a fixed latency, operator processes, objects created in bulk, and what a process costs (CPU,
RSS). Scenarios (scenarios.py) use it; run.py runs them and report.py prints the table."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config

from filecleanup.album.client import file_cleanup
from filecleanup.api.config import HttpStorageConfig
from filecleanup.api.metrics import Metrics
from filecleanup.api.models import GROUP, PLURAL, VERSION
from filecleanup.storage.base import ConcurrencyLimited
from filecleanup.storage.http import HttpStorage
from filecleanup.storage.limits import Limiter
from tools.devkit.gates import OPEN_GATE
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import OPEN_POLICY, StorageProcess
from tools.envtest.controlplane import ApiServerOptions, ControlPlane, obtain_binaries
from tools.envtest.polling import eventually

REPOSITORY = Path(__file__).resolve().parents[1]
CRD = REPOSITORY / "crds" / "filecleanup.dev_filecleanups.yaml"
LATENCY = 0.020
MAX_CONCURRENT_REQUESTS = 8
CHUNK = 100
CREATE_THREADS = 16
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Metadata",
            "verbs": ["create", "update", "patch", "delete"],
            "resources": [
                {"group": GROUP, "resources": ["filecleanups", "filecleanups/status"]},
                {"group": "", "resources": ["events"]},
            ],
        },
        {"level": "None"},
    ],
}


def keys_for(prefix: str, count: int) -> list[str]:
    return [f"{prefix}/albums/{i // 1000:03d}/photo-{i:06d}-" + "x" * 60 + ".jpg" for i in range(count)]


class Bench:
    def __init__(
        self,
        workdir: Path,
        *,
        quick: bool,
        crd: Path = CRD,
        operator_env: dict[str, str] | None = None,
    ) -> None:
        """``crd`` and ``operator_env`` run another version of the operator (the same-run baseline)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.quick = quick
        self.operator_env = operator_env
        self.audit_log = workdir / "audit.log"
        policy = workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        audit = (
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-maxsize=0",
        )
        self.plane = ControlPlane(workdir / "plane", ApiServerOptions(extra_flags=audit))
        self.plane.start(obtain_binaries())
        self.api = config.new_client_from_config(config_file=str(self.plane.kubeconfig))  # type: ignore[no-untyped-call]
        self.objects = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        extensions = client.ApiextensionsV1Api(self.api)
        extensions.create_custom_resource_definition(yaml.safe_load(crd.read_text()))
        eventually("CRD established", lambda: self._established(extensions), timeout=30)
        self.storage = StorageProcess(workdir / "storage")
        self.storage.start()
        self.storage_config = {
            **self.storage.operator_storage(),
            "maxConcurrentRequests": MAX_CONCURRENT_REQUESTS,
            "readTimeoutSeconds": 30,
        }

    def close(self) -> None:
        self.storage.stop()
        self.api.close()
        self.plane.stop()

    @staticmethod
    def _established(extensions: client.ApiextensionsV1Api) -> bool:
        crd = extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        conditions = (crd.status.conditions if crd.status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    def operator(self, name: str, namespaces: list[str]) -> OperatorProcess:
        """The operator on its defaults, but for the storage."""
        workdir = self.workdir / name
        workdir.mkdir()
        operator_config = {"defaultStorage": "photos", "storages": {"photos": self.storage_config}}
        return OperatorProcess(
            workdir,
            self.plane.kubeconfig,
            operator_config,
            namespaces,
            self.operator_env,
            report_key=self.operator_env is None,
        )

    @property
    def apiserver_pid(self) -> int:
        state = self.plane.load_state()
        assert state is not None
        return state.apiserver_pid

    def namespace(self, name: str) -> str:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    def create(self, namespace: str, name: str, keys: list[str], **extra: Any) -> float:
        """Create the object (``metadata=`` adds to its metadata, the rest to its spec); the wall-clock
        time the API server had accepted it."""
        metadata = extra.pop("metadata", {})
        body = file_cleanup(name, keys=keys, **extra)
        body["metadata"].update(metadata)
        self.objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        return time.time()

    def create_many(self, namespace: str, bodies: Iterable[tuple[str, list[str]]]) -> dict[str, float]:
        with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
            return dict(pool.map(lambda item: (item[0], self.create(namespace, item[0], item[1])), bodies))

    def phases(self, namespace: str) -> list[str]:
        listed = cast(
            "dict[str, Any]", self.objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        )
        return [(item.get("status") or {}).get("phase", "") for item in listed["items"]]

    def wait_succeeded(self, namespace: str, count: int, timeout: float) -> None:
        """Until ``count`` objects in ``namespace`` are Succeeded and labelled so (the operator's last
        write). A metadata-only list by label: listing the objects whole again and again would load
        the API server the benchmark measures."""

        def done() -> bool:
            listed = self.objects.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                label_selector=f"{GROUP}/phase=Succeeded",
                _headers={"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"},
            )
            return len(cast("dict[str, Any]", listed).get("items") or []) >= count  # null when none

        eventually(f"{count} objects to succeed", done, timeout=timeout, interval=0.1)

    def last_completion(self, namespace: str) -> float:
        """The latest completionTime in ``namespace``, as a Unix time."""
        listed = cast(
            "dict[str, Any]", self.objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        )
        return max(
            datetime.datetime.fromisoformat(item["status"]["completionTime"]).timestamp()
            for item in listed["items"]
        )

    def audit_lines(self) -> int:
        return len(self.audit_log.read_text().splitlines())

    def status_visible_at(self, namespace: str, since_line: int = 0) -> dict[str, float]:
        """When each object's last status write had been stored: from then on a reader sees it."""
        visible: dict[str, float] = {}
        for line in self.audit_log.read_text().splitlines()[since_line:]:
            entry = json.loads(line)
            ref = entry.get("objectRef", {})
            if (ref.get("namespace"), ref.get("subresource"), entry.get("stage")) == (
                namespace,
                "status",
                "ResponseComplete",
            ):
                when = datetime.datetime.fromisoformat(entry["stageTimestamp"]).timestamp()
                visible[ref["name"]] = max(visible.get(ref["name"], when), when)
        return visible

    def writes(self, namespace: str, since_line: int = 0) -> dict[str, int]:
        """The operator's writes in ``namespace`` according to the audit log (creates by the bench are
        not the operator's)."""
        counted = {"object": 0, "status": 0, "events": 0}
        for line in self.audit_log.read_text().splitlines()[since_line:]:
            entry = json.loads(line)
            ref = entry.get("objectRef", {})
            if ref.get("namespace") != namespace or entry.get("stage") != "ResponseComplete":
                continue
            if ref.get("resource") == "events":
                counted["events"] += entry["verb"] == "create"
            elif entry["verb"] != "create":
                counted["status" if ref.get("subresource") == "status" else "object"] += 1
        return counted


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(pid)


async def direct_seconds(url: str, keys: list[str], *, concurrent: bool) -> float:
    """The storage's own limit: the operator's client code calling it with the same concurrency, or one
    chunk after the other as in the sequential loop."""
    storage_config = HttpStorageConfig.model_validate({"type": "http", "url": url, "policy": OPEN_POLICY})
    storage = ConcurrencyLimited(
        HttpStorage("photos", storage_config), Limiter(MAX_CONCURRENT_REQUESTS), Metrics()
    )
    chunks = [keys[at : at + CHUNK] for at in range(0, len(keys), CHUNK)]
    started = time.perf_counter()
    if concurrent:
        await asyncio.gather(*(storage.delete(chunk, gate=OPEN_GATE) for chunk in chunks))
    else:
        for chunk in chunks:
            await storage.delete(chunk, gate=OPEN_GATE)
    elapsed = time.perf_counter() - started
    await storage.aclose()
    return elapsed
