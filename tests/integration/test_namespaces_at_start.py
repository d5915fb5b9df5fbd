"""No watched namespace is missed: Kopf lists the namespaces at start and then watches them from a
listing of its own whose items it ignores, so a namespace created between the two would be watched
only after a restart. The operator lists them again now and then (controller/namespaces.py)."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kopf._cogs.structs import references
from kubernetes.aio import client
from kubernetes.aio import config as aio_config

from filecleanup.controller.namespaces import add_missed
from tests.cleanups import album_keys, create_cleanup, wait_for_phase
from tests.integration.conftest import operator_config
from tests.kube import Kube
from tools.devkit.processes import OperatorProcess
from tools.devkit.storages import StorageProcess

NAMESPACES = 50


@pytest.fixture
async def api(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    api = await aio_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    async with api:
        yield api


async def test_a_matching_namespace_kopf_has_not_seen_is_added_to_what_it_watches(
    kube: Kube, api: client.ApiClient
) -> None:
    """Held at the point of the race: Kopf's insights hold one namespace of two that match."""
    run = secrets.token_hex(3)
    seen, missed = kube.create_namespace(f"seen-{run}"), kube.create_namespace(f"missed-{run}")
    kube.create_namespace(f"other-{run}")
    insights = references.Insights()
    insights.namespaces.add(references.NamespaceName(seen))
    notified = asyncio.Event()

    async def watch_revisions() -> None:
        async with insights.revised:
            await insights.revised.wait()
            notified.set()

    waiting = asyncio.create_task(watch_revisions())
    await asyncio.sleep(0)
    assert await add_missed(api, [f"seen-{run}*", f"missed-{run}*"], insights) == {missed}
    await asyncio.wait_for(notified.wait(), 10)  # Kopf's orchestrator is told, as by its observer
    await waiting
    assert insights.namespaces == {seen, missed}
    assert await add_missed(api, [f"seen-{run}*", f"missed-{run}*"], insights) == set()


def test_objects_in_namespaces_created_while_the_operator_starts_are_all_processed(
    crd: None, kube: Kube, kubeconfig: Path, storage: StorageProcess, tmp_path: Path
) -> None:
    run = secrets.token_hex(3)
    operator = OperatorProcess(tmp_path, kubeconfig, operator_config(storage), [f"burst-{run}-*"])
    created: list[str] = []

    def create_while_starting() -> None:
        for n in range(NAMESPACES):
            namespace = kube.create_namespace(f"burst-{run}-{n:02d}")
            create_cleanup(kube, namespace, "album", album_keys(namespace, 3))
            created.append(namespace)

    creating = threading.Thread(target=create_while_starting)
    creating.start()
    operator.start()
    try:
        creating.join(timeout=120)
        assert len(created) == NAMESPACES
        for namespace in created:
            assert wait_for_phase(kube, namespace, "album", "Succeeded", timeout=60)["status"]["deleted"] == 3
    finally:
        operator.stop()
