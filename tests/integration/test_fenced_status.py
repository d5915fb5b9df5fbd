"""Status writes are fenced against the real API server: each carries the resourceVersion it was
computed from. A writer that is not current (a leader paused past its Lease while another replica
took over) cannot move the status back; a change elsewhere in the object (a label, the spec) is not a
conflict the run has to stop for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes.aio import client
from kubernetes.aio import config as aio_config

from filecleanup.api.kube import ObjectStatusSink, StatusSuperseded
from filecleanup.api.models import API_VERSION, KIND, FileCleanupStatus, Phase
from tests.cleanups import create_cleanup, get_cleanup
from tests.kube import Kube


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    api = await aio_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    async with api:
        yield api


def progress(deleted: int) -> FileCleanupStatus:
    return FileCleanupStatus(phase=Phase.IN_PROGRESS, total=10, deleted=deleted)


async def test_a_stale_writer_cannot_move_the_status_back(
    crd: None, kube: Kube, api: client.ApiClient
) -> None:
    namespace = kube.create_namespace("fence")  # watched by no operator: the test is the only writer
    created = create_cleanup(kube, namespace, "fenced", [f"{namespace}/a.jpg"])
    seen = created["metadata"]["resourceVersion"]
    current = ObjectStatusSink(api, namespace, "fenced", resource_version=seen, status={})
    stale = ObjectStatusSink(api, namespace, "fenced", resource_version=seen, status={})

    await current.write(progress(6))
    with pytest.raises(StatusSuperseded):
        await stale.write(progress(2))  # computed before the other's write: refused, not written
    assert get_cleanup(kube, namespace, "fenced")["status"]["deleted"] == 6

    # A label (Kopf's closing patch, the sweeper) or a spec edit is no conflict for the current writer.
    kube.patch(API_VERSION, KIND, "fenced", {"metadata": {"labels": {"x": "y"}}}, namespace=namespace)
    await current.write(progress(9))
    assert get_cleanup(kube, namespace, "fenced")["status"]["deleted"] == 9
    with pytest.raises(StatusSuperseded):
        await stale.write(progress(10))
    assert get_cleanup(kube, namespace, "fenced")["status"]["deleted"] == 9
