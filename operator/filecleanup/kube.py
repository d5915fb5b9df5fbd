"""The operator's own Kubernetes client (kubernetes.aio) for status checkpoints and TTL deletes.

Kopf keeps its own connection for watching and events; this one writes our status through the
status subresource, with a merge patch, at the moments the reconciler chooses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes.aio import client, config

from filecleanup.models import GROUP, PLURAL, VERSION, FileCleanupStatus

MERGE_PATCH = "application/merge-patch+json"
NOT_FOUND = 404
# A status write that hangs would hold the object's run (and a shutdown) for ever.
WRITE_TIMEOUT_SECONDS = 30.0


class ObjectGone(Exception):  # noqa: N818  (an event: the object was deleted while it was handled)
    """The object no longer exists; its run ends quietly."""


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
    if isinstance(error, client.ApiException):
        return (
            not error.status
            or error.status == HTTPStatus.TOO_MANY_REQUESTS
            or error.status >= HTTPStatus.INTERNAL_SERVER_ERROR
        )
    return isinstance(error, (OSError, aiohttp.ClientError, TimeoutError))


async def connect() -> client.ApiClient:
    """In a pod, the service account; elsewhere, the current kubeconfig (KUBECONFIG)."""
    api, _ = await connect_as_kubectl()
    return api


IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _pod_namespace() -> str:
    namespace = IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else ""
    return namespace or "default"


async def connect_as_kubectl(
    kubeconfig: str | None = None, context: str | None = None
) -> tuple[client.ApiClient, str]:
    """A client as kubectl would make it, and its default namespace: the kubeconfig's (``kubeconfig``,
    else KUBECONFIG, else ~/.kube/config) ``context`` or current context, and that context's namespace;
    in a pod without a kubeconfig given, the service account and the pod's namespace."""
    if kubeconfig is None and context is None:
        try:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            pass
        else:
            return client.ApiClient(configuration), _pod_namespace()
    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    chosen = next((item for item in contexts if item["name"] == context), None) if context else current
    if chosen is None:
        raise config.ConfigException(f"context {context!r} not found in the kubeconfig")
    api = await config.new_client_from_config(config_file=kubeconfig, context=chosen["name"])  # type: ignore[no-untyped-call]
    return api, chosen["context"].get("namespace") or "default"


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


class ObjectStatusSink:
    """Writes one object's status; raises :class:`ObjectGone` when the object was deleted meanwhile."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._namespace = namespace
        self._name = name

    async def write(self, status: FileCleanupStatus) -> Mapping[str, Any] | None:
        """Write the status; the reply is the whole object, whose spec is returned."""
        try:
            stored = await self._objects.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self._namespace,
                PLURAL,
                self._name,
                status_patch(status),
                _content_type=MERGE_PATCH,
                _request_timeout=WRITE_TIMEOUT_SECONDS,
            )
        except client.ApiException as error:
            if error.status == NOT_FOUND:
                raise ObjectGone(f"{self._namespace}/{self._name}") from error
            raise
        spec = stored.get("spec") if isinstance(stored, dict) else None
        return spec if isinstance(spec, dict) else None
