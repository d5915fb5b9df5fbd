"""Layer api. The operator's own Kubernetes client (kubernetes.aio) for status checkpoints and TTL deletes.

Kopf keeps its own connection for watching and events; this one writes our status through the
status subresource, with a merge patch, at the moments the reconciler chooses.
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes.aio import client, config
from pydantic import ValidationError

from filecleanup.api.models import GROUP, PLURAL, VERSION, FileCleanupSpec, FileCleanupStatus

MERGE_PATCH = "application/merge-patch+json"
NOT_FOUND = 404
# A status write that hangs would hold the object's run (and a shutdown) for ever.
WRITE_TIMEOUT_SECONDS = 30.0


class ObjectGone(Exception):  # noqa: N818  (an event: the object was deleted while it was handled)
    """The object no longer exists; its run ends quietly."""


class StatusSuperseded(Exception):  # noqa: N818  (an event: another writer's status is newer)
    """Someone else wrote the object's status since this run last saw it (a replica that took over
    while this one was stopped, a hand edit): this run's status is stale and is not written."""


class ApiUnreachable(Exception):  # noqa: N818  (a state of the API server, as StorageUnavailable is)
    """A status write the API server did not take for a reason that may pass (the connection refused,
    reset or timed out; a 5xx; a 429): the run keeps its progress and writes again."""


MAX_ERROR_MESSAGE = 500


def describe_api_error(error: client.ApiException) -> str:
    """The status and, where the API server said why, its message (which names the field at fault)."""
    text = f"{error.status} {error.reason}"
    try:
        message = json.loads(error.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{text}: {message[:MAX_ERROR_MESSAGE]}" if isinstance(message, str) and message else text


def is_api_outage(error: BaseException) -> bool:
    """Whether an error of the Kubernetes client is the API server's trouble (it may pass), not a
    request the server refused for good."""
    if isinstance(error, ApiUnreachable):
        return True
    if isinstance(error, client.ApiException):
        return (
            not error.status
            or error.status == HTTPStatus.TOO_MANY_REQUESTS
            or error.status >= HTTPStatus.INTERNAL_SERVER_ERROR
        )
    return isinstance(error, (OSError, aiohttp.ClientError, TimeoutError))


async def connect() -> client.ApiClient:
    """The operator's client, found as Kopf finds its own (their watches and our writes must reach the
    same cluster): in a pod, the service account; elsewhere, the kubeconfig as kubectl finds it."""
    in_cluster = _in_cluster()
    if in_cluster is not None:
        return in_cluster
    api, _ = await connect_as_kubectl()
    return api


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_KUBECONFIG = "~/.kube/config"


def _pod_namespace() -> str:
    namespace = IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else ""
    return namespace or "default"


def _in_cluster() -> client.ApiClient | None:
    """The pod's service account, or None outside a pod."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        return None
    return client.ApiClient(configuration)


def kubeconfig_files(kubeconfig: str | None) -> list[str]:
    """The kubeconfig files kubectl would read: ``kubeconfig`` (the --kubeconfig flag), which must
    exist; else those of KUBECONFIG (a list, as PATH is) that exist; else ~/.kube/config if it exists."""
    if kubeconfig:
        if not Path(kubeconfig).expanduser().is_file():
            raise config.ConfigException(f"kubeconfig {kubeconfig}: no such file")
        return [str(Path(kubeconfig).expanduser())]
    listed = [path for path in os.environ.get("KUBECONFIG", "").split(os.pathsep) if path]
    found = (Path(path).expanduser() for path in listed or [DEFAULT_KUBECONFIG])
    return list(dict.fromkeys(str(path) for path in found if path.is_file()))


async def connect_as_kubectl(
    kubeconfig: str | None = None, context: str | None = None
) -> tuple[client.ApiClient, str]:
    """A client as kubectl would make it, and its default namespace. In kubectl's order: the kubeconfig
    ``kubeconfig`` (the --kubeconfig flag), else the files KUBECONFIG lists, else ~/.kube/config, with
    ``context`` or the current context, and that context's namespace; only where these hold no
    configuration at all (and no context is asked for), in a pod, the service account and the pod's
    namespace."""
    files, contexts, current = _read_kubeconfigs(kubeconfig_files(kubeconfig))
    if not files and context is None and (in_cluster := _in_cluster()) is not None:
        return in_cluster, _pod_namespace()
    if not files:
        listed = os.environ.get("KUBECONFIG")
        where = kubeconfig or (f"KUBECONFIG={listed}" if listed else DEFAULT_KUBECONFIG)
        pod = "" if context else ", and not in a pod"
        raise config.ConfigException(
            f"no kubeconfig found (looked for {where}){pod}: set KUBECONFIG or give --kubeconfig"
        )
    name = context or current
    if name is None:
        where = ", ".join(files)
        raise config.ConfigException(f"no current context in the kubeconfig ({where}): give --context")
    if name not in contexts:
        raise config.ConfigException(f"context {name!r} not found in the kubeconfig")
    # The client merges the files as kubectl does for clusters and users: the first file to name one wins.
    merged = os.pathsep.join(files)
    api = await config.new_client_from_config(config_file=merged, context=name)  # type: ignore[no-untyped-call]
    return api, contexts[name].get("namespace") or "default"


def _read_kubeconfigs(files: list[str]) -> tuple[list[str], dict[str, dict[str, Any]], str | None]:
    """Of the kubeconfig files, those that hold a configuration (kubectl reads an empty one as none),
    their contexts by name, and the current one, merged as kubectl merges them: the first file to name
    a context, or to set the current one, wins."""
    holding: list[str] = []
    contexts: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for path in files:
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            if not document:
                continue
            for item in document.get("contexts") or []:
                contexts.setdefault(str(item["name"]), dict(item.get("context") or {}))
            current = current or document.get("current-context") or None
        except (yaml.YAMLError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
            raise config.ConfigException(f"kubeconfig {path}: not a kubeconfig ({error})") from error
        holding.append(path)
    return holding, contexts, current


async def serves_filecleanups(api: client.ApiClient) -> bool:
    """Whether the API server serves the FileCleanup kind (discovery needs no RBAC)."""
    try:
        resources = await client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    except client.ApiException as error:
        if error.status == NOT_FOUND:
            return False
        raise
    return any(resource.name == PLURAL for resource in resources.resources)


def status_patch(status: FileCleanupStatus) -> dict[str, Any]:
    # Absent fields are sent as null so that the merge patch removes what no longer applies.
    return {"status": status.model_dump(mode="json", by_alias=True)}


CONFLICT = 409
KOPF_STATUS_FIELD = "kopf"  # Kopf's own progress, written by Kopf around the handler: not ours to fence


def our_status(status: Any) -> Any:
    """A status as this operator writes it: without Kopf's field."""
    if not isinstance(status, dict):
        return status
    return {key: value for key, value in status.items() if key != KOPF_STATUS_FIELD}


class ObjectStatusSink:
    """Writes one object's status; raises :class:`ObjectGone` when the object was deleted meanwhile,
    :class:`ApiUnreachable` when the API server could not take the write for now.

    Every write is fenced: it carries the ``resourceVersion`` it was computed from (a precondition the
    API server checks), so a writer that is not current (a leader that was paused past its Lease while
    another replica took over) cannot move the status back. On a conflict the object is read again:
    if only its metadata or spec changed, the write goes again on the new version; if its status is no
    longer the one this run last saw, :class:`StatusSuperseded` is raised, and nothing is written."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        *,
        resource_version: str | None = None,
        status: Any = None,
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._namespace = namespace
        self._name = name
        self._resource_version = resource_version  # of the object as the run last saw it
        self._status_seen = our_status(status or {})

    async def write(self, status: FileCleanupStatus) -> FileCleanupSpec | None:
        """Write the status; the reply is the whole object, whose spec is returned as the model (None
        if it is not a valid one: the reply is input like any other)."""
        try:
            try:
                stored = await self._patch(status)
            except client.ApiException as error:
                if error.status != CONFLICT:
                    raise
                await self._reread()
                stored = await self._patch(status)
        except client.ApiException as error:
            if error.status == NOT_FOUND:
                raise ObjectGone(f"{self._namespace}/{self._name}") from error
            if error.status == CONFLICT:
                raise StatusSuperseded(
                    f"{self._namespace}/{self._name}: {describe_api_error(error)}"
                ) from error
            if is_api_outage(error):
                raise ApiUnreachable(describe_api_error(error)) from error
            raise
        except (OSError, aiohttp.ClientError, TimeoutError) as error:
            raise ApiUnreachable(f"{type(error).__name__}: {error}"[:MAX_ERROR_MESSAGE]) from error
        if not isinstance(stored, dict):
            return None
        self._resource_version = (stored.get("metadata") or {}).get("resourceVersion")
        self._status_seen = our_status(stored.get("status") or {})
        try:
            return FileCleanupSpec.model_validate(stored.get("spec"))
        except ValidationError:
            return None

    async def _patch(self, status: FileCleanupStatus) -> Any:
        body = status_patch(status)
        if self._resource_version is not None:
            body["metadata"] = {"resourceVersion": self._resource_version}
        return await self._objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self._namespace,
            PLURAL,
            self._name,
            body,
            _content_type=MERGE_PATCH,
            _request_timeout=WRITE_TIMEOUT_SECONDS,
        )

    async def _reread(self) -> None:
        """After a conflict: the object's new version, if its status is still the one last seen."""
        current = await self._objects.get_namespaced_custom_object_status(
            GROUP, VERSION, self._namespace, PLURAL, self._name, _request_timeout=WRITE_TIMEOUT_SECONDS
        )
        current = current if isinstance(current, dict) else {}
        if our_status(current.get("status") or {}) != self._status_seen:
            raise StatusSuperseded(
                f"{self._namespace}/{self._name}: its status was written by someone else since this run "
                "last saw it"
            )
        self._resource_version = (current.get("metadata") or {}).get("resourceVersion")
