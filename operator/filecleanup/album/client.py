"""Layer album. The album-service side: submit an album's keys as FileCleanup objects, idempotently, and
follow them.

    client = await FileCleanupClient.connect()
    names = await client.submit("42", keys, namespace="photos")     # creating twice is fine
    print((await client.status("42", namespace="photos")).phase)

Object names derive from the album (``album-42``, or ``album-42-0`` ... when the keys need several
objects), so a retried submission finds the objects it created before. ``SyncFileCleanupClient`` offers
the same calls without ``await``::

    with SyncFileCleanupClient.connect(kubeconfig="~/.kube/config", context="prod") as client:
        names = client.submit("42", keys, namespace="photos")
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

from kubernetes.aio import client as k8s
from pydantic import ValidationError

from filecleanup.api import kube
from filecleanup.api.models import (
    ALBUM_DELETED_AT_ANNOTATION,
    ALBUM_LABEL,
    API_VERSION,
    GROUP,
    KIND,
    MAX_KEYS,
    PLURAL,
    VERSION,
    ConditionType,
    FileCleanupStatus,
    Phase,
    Reason,
)
from filecleanup.storage.base import ObjectStore

PART_LABEL = f"{GROUP}/part"
PARTS_LABEL = f"{GROUP}/parts"
# etcd stores about 1.5 MiB per object; leave room for the status (its worst case is about 145 KB:
# every key failed, errors interleaved) and metadata. Measured: 10,000 keys of 130 characters fit with
# it, 140 do not (docs/benchmarks.md, "Object size limits").
MAX_OBJECT_KEY_BYTES = 1_300_000
_KEY_OVERHEAD_BYTES = 4  # quotes, comma and space around each key in the stored JSON
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_NAME_SAFE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
CONFLICT = 409
CREATES_IN_FLIGHT = 4  # an album's parts created at once (submit)


class SubmitConflict(Exception):  # noqa: N818  (a conflict, not an error of the caller's code)
    """An object of the album exists with other keys: resubmitting would not be idempotent."""


def split_keys(
    keys: Iterable[str], max_keys: int = MAX_KEYS, max_bytes: int = MAX_OBJECT_KEY_BYTES
) -> list[list[str]]:
    """Distinct keys, in order, in as few parts as fit one object each (by count and by size)."""
    parts: list[list[str]] = [[]]
    size = 0
    for key in dict.fromkeys(keys):
        cost = len(key.encode()) + _KEY_OVERHEAD_BYTES
        if len(parts[-1]) >= max_keys or (parts[-1] and size + cost > max_bytes):
            parts.append([])
            size = 0
        parts[-1].append(key)
        size += cost
    return [part for part in parts if part]


def album_label(album_id: str) -> str:
    if not _LABEL_VALUE.match(album_id):
        raise ValueError(
            f"album id {album_id!r} must be 1 to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return album_id


def object_names(album_id: str, parts: int) -> list[str]:
    """``album-<id>`` or ``album-<id>-<part>``; an id that is not a DNS label gets a hash to stay unique."""
    album_label(album_id)
    slug = album_id
    if not _NAME_SAFE.match(album_id):
        cleaned = re.sub(r"[^a-z0-9-]+", "-", album_id.lower()).strip("-")[:30] or "x"
        slug = f"{cleaned}-{hashlib.sha256(album_id.encode()).hexdigest()[:8]}"
    base = f"album-{slug}"
    return [base] if parts == 1 else [f"{base}-{part}" for part in range(parts)]


def manifest_key(keys: Sequence[str]) -> str:
    """Where an album's key manifest goes: beside its keys (in their common directory, so under the
    storage policy's prefix too), named after its content, so that a repeated submission finds it."""
    common: list[str] | None = None
    for key in keys:
        parts = key.split("/")[:-1]
        if common is None:
            common = parts
        else:
            same = next((i for i, (a, b) in enumerate(zip(common, parts, strict=False)) if a != b), None)
            common = common[: min(len(common), len(parts)) if same is None else same]
    directory = "/".join(common or [])
    name = f".filecleanup-manifest-{hashlib.sha256(manifest_bytes(keys)).hexdigest()[:16]}.txt"
    return f"{directory}/{name}" if directory else name


def manifest_bytes(keys: Iterable[str]) -> bytes:
    return "".join(f"{key}\n" for key in keys).encode()


def file_cleanup(
    name: str,
    *,
    keys: Sequence[str] = (),
    manifest: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """One FileCleanup object: its keys, or the key of a manifest in the storage, and any other spec
    fields by their API names (``chunkSize=50``, ``ttlSecondsAfterFinished=60``)."""
    if isinstance(keys, str):  # a str is a Sequence[str] too: its characters would become the keys
        raise TypeError("keys must be a list of storage keys, not a string")
    listed: dict[str, Any] = {"manifest": {"key": manifest}} if manifest is not None else {"keys": list(keys)}
    metadata: dict[str, Any] = {
        "name": name,
        **({"labels": labels} if labels else {}),
        **({"annotations": annotations} if annotations else {}),
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {**listed, **spec}}


def manifests(
    album_id: str,
    keys: Iterable[str],
    *,
    storage: str | None = None,
    ttl_seconds_after_finished: int | None = None,
    manifest: str | None = None,
    start_after: datetime.datetime | None = None,
    deleted_at: datetime.datetime | None = None,
) -> list[dict[str, Any]]:
    """The album's FileCleanup objects: its keys split over as few as fit, or one object pointing to
    the key manifest ``manifest`` (already in the storage). With ``start_after`` (aware), nothing is
    sent before then: the album's deletion can be undone until that time (``undo``). ``deleted_at``
    (aware): when the album was deleted, from which the erasure deadline counts (else the objects'
    creation)."""
    album_label(album_id)
    parts = split_keys(keys)
    if not parts:
        raise ValueError(f"album {album_id!r}: no keys to delete")
    if manifest is not None:
        parts = [[]]
    names = object_names(album_id, len(parts))
    result = []
    options: dict[str, Any] = {}
    if storage is not None:
        options["storage"] = storage
    if ttl_seconds_after_finished is not None:
        options["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    if start_after is not None:
        options["startAfter"] = _rfc3339("start_after", start_after)
    annotations = {ALBUM_DELETED_AT_ANNOTATION: _rfc3339("deleted_at", deleted_at)} if deleted_at else None
    for part, (name, part_keys) in enumerate(zip(names, parts, strict=True)):
        labels = {ALBUM_LABEL: album_label(album_id), PART_LABEL: str(part), PARTS_LABEL: str(len(parts))}
        result.append(
            file_cleanup(
                name,
                keys=part_keys,
                manifest=None if part_keys else manifest,
                labels=labels,
                annotations=annotations,
                **options,
            )
        )
    return result


def _rfc3339(name: str, moment: datetime.datetime) -> str:
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must carry its time zone (a bare time names no instant)")
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ObjectSummary:
    name: str
    namespace: str
    album: str | None
    phase: str
    total: int
    deleted: int
    failed: int
    retries: int  # of the current drive: a redrive starts a fresh budget
    redrives: int
    storage: str | None
    dry_run: bool = False  # spec.dryRun: nothing is deleted, status.dryRun has the counts

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> ObjectSummary:
        status = obj.get("status") or {}
        metadata = obj["metadata"]
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            album=(metadata.get("labels") or {}).get(ALBUM_LABEL),
            phase=status.get("phase", Phase.PENDING.value),
            total=status.get("total", 0),
            deleted=status.get("deleted", 0),
            failed=status.get("failed", 0),
            retries=status.get("retries", 0),
            redrives=status.get("redrives", 0),
            storage=status.get("storage") or obj["spec"].get("storage"),
            dry_run=bool(obj["spec"].get("dryRun")),
        )


@dataclass(frozen=True)
class AlbumStatus:
    album: str
    objects: list[ObjectSummary]
    parts: int

    @property
    def phase(self) -> str:
        """Failed if any part failed, Succeeded (Checked, for a dry run) when every part did, else the
        least advanced phase."""
        phases = {summary.phase for summary in self.objects}
        if not self.objects:
            return "NotFound"
        if Phase.FAILED.value in phases:
            return Phase.FAILED.value
        for done in (Phase.SUCCEEDED, Phase.CHECKED):
            if phases == {done.value} and len(self.objects) == self.parts:
                return done.value
        for phase in (Phase.BACKOFF, Phase.IN_PROGRESS):
            if phase.value in phases:
                return phase.value
        return Phase.PENDING.value

    @property
    def total(self) -> int:
        return sum(summary.total for summary in self.objects)

    @property
    def deleted(self) -> int:
        return sum(summary.deleted for summary in self.objects)

    @property
    def failed(self) -> int:
        return sum(summary.failed for summary in self.objects)


class FileCleanupClient:
    def __init__(self, api: k8s.ApiClient) -> None:
        self._api = api
        self._objects = k8s.CustomObjectsApi(api)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> FileCleanupClient:
        """Without arguments: in a pod, its service account; elsewhere the kubeconfig as kubectl finds it
        (KUBECONFIG, else ~/.kube/config) and its current context. With ``kubeconfig`` (a file) or
        ``context``, that file and context, as the CLI's --kubeconfig and --context."""
        if kubeconfig is None and context is None:
            return cls(await kube.connect())
        api, _ = await kube.connect_as_kubectl(kubeconfig, context)
        return cls(api)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._api.close()  # type: ignore[no-untyped-call]

    async def submit(
        self,
        album_id: str,
        keys: Iterable[str],
        *,
        namespace: str = "default",
        storage: str | None = None,
        ttl_seconds_after_finished: int | None = None,
        manifest_store: ObjectStore | None = None,
        start_after: datetime.datetime | None = None,
        deleted_at: datetime.datetime | None = None,
    ) -> list[str]:
        """Create the album's FileCleanups; the names of all of them. An identical object that already
        exists counts as created; one with other keys raises :class:`SubmitConflict`.

        With ``start_after``, nothing is sent before that time, and :meth:`undo` cancels the objects
        until then. A repeated submission keeps the first one's time. ``deleted_at``: when the album was
        deleted (the erasure deadline's start; else the objects' creation).

        With a ``manifest_store`` (the storage the keys are in), an album too big for one object is
        written there as a key manifest first, and one small object points to it."""
        distinct = list(dict.fromkeys(keys))
        manifest = None
        if manifest_store is not None and len(split_keys(distinct)) > 1:
            manifest = manifest_key(distinct)
            await manifest_store.write(manifest, manifest_bytes(distinct))
        wanted = manifests(
            album_id,
            distinct,
            storage=storage,
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            manifest=manifest,
            start_after=start_after,
            deleted_at=deleted_at,
        )
        # Several at once, so that the operator starts on the first while the API server stores the
        # others; a few only, so that an album of many parts does not crowd other clients out.
        turns = asyncio.Semaphore(CREATES_IN_FLIGHT)

        async def create(manifest_object: dict[str, Any]) -> str:
            async with turns:
                return await self._create(album_id, namespace, manifest_object)

        outcomes = await asyncio.gather(*map(create, wanted), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # the first failure, in the parts' order; the others were created
        return [str(name) for name in outcomes]

    async def _create(self, album_id: str, namespace: str, manifest_object: dict[str, Any]) -> str:
        """Create one part; an identical one that exists counts as created."""
        name = str(manifest_object["metadata"]["name"])
        try:
            await self._objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, manifest_object
            )
        except k8s.ApiException as error:
            if error.status != CONFLICT:
                raise
            existing = await self.get(name, namespace=namespace)
            if not _same_request(existing, manifest_object):
                message = f"{namespace}/{name} exists with other keys or settings than album {album_id!r}"
                raise SubmitConflict(message) from error
        return name

    async def status(self, album_id: str, *, namespace: str = "default") -> AlbumStatus:
        objects = await self.list_cleanups(namespace=namespace, album_id=album_id)
        parts = max((int(_labels(obj).get(PARTS_LABEL, "1")) for obj in objects), default=0)
        return AlbumStatus(album_id, [ObjectSummary.from_object(obj) for obj in objects], parts)

    async def list_cleanups(
        self, *, namespace: str | None = None, album_id: str | None = None
    ) -> list[dict[str, Any]]:
        """FileCleanups in ``namespace`` (all namespaces if None), optionally only one album's."""
        selector = f"{ALBUM_LABEL}={album_label(album_id)}" if album_id is not None else None
        if namespace is None:
            found = await self._objects.list_cluster_custom_object(
                GROUP, VERSION, PLURAL, label_selector=selector
            )
        else:
            found = await self._objects.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, label_selector=selector
            )
        items: list[dict[str, Any]] = cast("dict[str, Any]", found)["items"]
        return sorted(items, key=lambda obj: (obj["metadata"]["namespace"], obj["metadata"]["name"]))

    async def retry(self, name: str, *, namespace: str = "default") -> str:
        """Redrive a Failed object: its failed keys get a fresh retry budget. Returns the nonce set."""
        obj = await self.get(name, namespace=namespace)
        phase = (obj.get("status") or {}).get("phase")
        if phase != Phase.FAILED.value:
            raise ValueError(
                f"{namespace}/{name} is {phase or 'not started'}; only a Failed FileCleanup can be retried"
            )
        nonce = uuid.uuid4().hex
        await self._objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"spec": {"retryNonce": nonce}},
            _content_type=kube.MERGE_PATCH,
        )
        return nonce

    async def undo(self, name: str, *, namespace: str = "default") -> Undone:
        """Delete an object that is waiting for its start (spec.startAfter) and has sent nothing; what it
        kept. The delete is conditional on the version read: the operator writes the end of the wait
        before its first call, so an object that started meanwhile is not deleted (ValueError)."""
        for _ in range(UNDO_ATTEMPTS):
            obj = await self.get(name, namespace=namespace)
            waiting = _waiting_for_start(obj)
            if waiting is None:
                status = obj.get("status") or {}
                phase, deleted, total = (
                    status.get("phase", "Pending"),
                    status.get("deleted", 0),
                    status.get("total", 0),
                )
                raise ValueError(
                    f"{namespace}/{name} is not waiting for its start (phase {phase}, {deleted} of {total} "
                    "keys deleted): nothing was undone"
                )
            metadata = obj["metadata"]
            preconditions = k8s.V1Preconditions(
                resource_version=metadata["resourceVersion"], uid=metadata["uid"]
            )
            try:
                await self._objects.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    body=k8s.V1DeleteOptions(preconditions=preconditions),
                )
            except k8s.ApiException as error:
                if error.status != CONFLICT:
                    raise
                continue  # changed meanwhile (the operator's bookkeeping, or its start): look again
            spec = obj["spec"]
            manifest = (spec.get("manifest") or {}).get("key")
            return Undone(name, namespace, waiting, len(spec.get("keys") or []), manifest)
        raise ValueError(
            f"{namespace}/{name} kept changing while it was undone; nothing was undone, try again"
        )

    async def get(self, name: str, *, namespace: str = "default") -> dict[str, Any]:
        obj = await self._objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return cast("dict[str, Any]", obj)


UNDO_ATTEMPTS = 5


@dataclass(frozen=True)
class Undone:
    """An object deleted before it sent anything: its keys are all still in the storage."""

    name: str
    namespace: str
    start_after: str  # when it would have started
    keys: int  # its own keys (0 with a manifest)
    manifest: str | None  # the manifest's key, whose keys are all kept too


def _waiting_for_start(obj: dict[str, Any]) -> str | None:
    """The object's spec.startAfter while its status says it waits for it (phase Pending, reason
    GracePeriod, for the current spec); else None, a status that does not parse included."""
    start_after = (obj.get("spec") or {}).get("startAfter")
    try:
        status = FileCleanupStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        return None
    progressing = status.condition(ConditionType.PROGRESSING)
    waiting = (
        status.phase == Phase.PENDING
        and progressing is not None
        and progressing.reason == Reason.GRACE_PERIOD
        and status.observed_generation == obj["metadata"].get("generation")
    )
    return start_after if waiting and isinstance(start_after, str) else None


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = obj["metadata"].get("labels") or {}
    return labels


def _same_request(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """The same keys, storage, TTL, album and kind of run: the API server's defaults for other fields do
    not matter. A dry run of the same keys is not the same request: it deletes nothing."""
    fields = ("keys", "manifest", "storage", "ttlSecondsAfterFinished")
    return (
        all(existing["spec"].get(field) == wanted["spec"].get(field) for field in fields)
        and bool(existing["spec"].get("dryRun")) == bool(wanted["spec"].get("dryRun"))
        and _labels(existing).get(ALBUM_LABEL) == _labels(wanted).get(ALBUM_LABEL)
    )


class SyncFileCleanupClient:
    """:class:`FileCleanupClient` for code without an event loop; one private loop serves every call.

    It connects as it is made, as :meth:`FileCleanupClient.connect` does, from the same arguments: the
    Kubernetes client it wraps belongs to that private loop, so it cannot be handed one made elsewhere."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self._runner = asyncio.Runner()
        try:
            self._client = self._runner.run(FileCleanupClient.connect(kubeconfig, context))
        except BaseException:
            self._runner.close()  # no loop left open behind a connection that failed
            raise

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> SyncFileCleanupClient:
        """:meth:`FileCleanupClient.connect`, without ``await``: ``with SyncFileCleanupClient.connect() as
        client: ...``."""
        return cls(kubeconfig, context)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()

    def submit(self, album_id: str, keys: Sequence[str], **options: Any) -> list[str]:
        return self._runner.run(self._client.submit(album_id, keys, **options))

    def status(self, album_id: str, *, namespace: str = "default") -> AlbumStatus:
        return self._runner.run(self._client.status(album_id, namespace=namespace))

    def retry(self, name: str, *, namespace: str = "default") -> str:
        return self._runner.run(self._client.retry(name, namespace=namespace))

    def undo(self, name: str, *, namespace: str = "default") -> Undone:
        return self._runner.run(self._client.undo(name, namespace=namespace))

    def get(self, name: str, *, namespace: str = "default") -> dict[str, Any]:
        return self._runner.run(self._client.get(name, namespace=namespace))

    def list_cleanups(
        self, *, namespace: str | None = None, album_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self._runner.run(self._client.list_cleanups(namespace=namespace, album_id=album_id))
