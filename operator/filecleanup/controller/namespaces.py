"""Layer controller. The watched namespaces, listed again now and then, so that none is missed.

Kopf (1.45) lists the namespaces once at start, then starts a watch of namespaces that lists them again
and ignores what that second listing returns. A namespace created between the two listings is in
neither: its objects would wait, unnoticed, until the operator restarts. This task lists the
namespaces every ``RELIST_SECONDS`` and adds any matching one that Kopf has not seen to the insights
Kopf serves (the ones handed to ``kopf.operator``), as Kopf's own observer would have. The insights
have no public name in Kopf: the lock pins the version this is written against."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from http import HTTPStatus

from kopf._cogs.structs import references
from kubernetes.aio import client

from filecleanup.api import kube

logger = logging.getLogger(__name__)

RELIST_SECONDS = 10.0
LIST_TIMEOUT_SECONDS = 30.0


def matching(names: Collection[str], patterns: Collection[str]) -> set[str]:
    """The names that any of ``patterns`` matches, as Kopf matches them (globs, ``!`` negations)."""
    return {
        name
        for name in names
        if any(references.match_namespace(references.NamespaceName(name), pattern) for pattern in patterns)
    }


async def add_missed(
    api: client.ApiClient, patterns: Collection[str], insights: references.Insights
) -> set[str]:
    """One listing: the matching namespaces Kopf has not seen, now added to its insights."""
    listed = await client.CoreV1Api(api).list_namespace(_request_timeout=LIST_TIMEOUT_SECONDS)
    live = [
        str(item.metadata.name)
        for item in listed.items
        if item.metadata is not None and item.metadata.name and item.metadata.deletion_timestamp is None
    ]
    missed = matching(live, patterns) - {str(name) for name in insights.namespaces if name is not None}
    if missed:
        async with insights.revised:
            insights.namespaces.update(references.NamespaceName(name) for name in missed)
            insights.revised.notify_all()
        logger.info("Watching namespaces created while the operator started: %s", ", ".join(sorted(missed)))
    return missed


async def relist(
    api: client.ApiClient,
    patterns: Collection[str],
    insights: references.Insights,
    interval: float = RELIST_SECONDS,
) -> None:
    """Every ``interval``, once Kopf has listed the namespaces itself: :func:`add_missed`. A listing
    the API server could not serve is tried again at the next interval. Without the permission to
    list namespaces (the chart's namespaced scope, exact names only), Kopf watches the names as given,
    with no listing to miss one: the task ends."""
    await insights.ready_namespaces.wait()
    while True:
        await asyncio.sleep(interval)
        try:
            await add_missed(api, patterns, insights)
        except client.ApiException as error:
            if error.status == HTTPStatus.FORBIDDEN:
                logger.debug("No permission to list namespaces: the watched names are taken as given")
                return
            level = logging.DEBUG if kube.is_api_outage(error) else logging.WARNING
            logger.log(level, "Could not list namespaces: %s", kube.describe_api_error(error))
        except Exception as error:
            if not kube.is_api_outage(error):
                raise
            logger.debug("Could not list namespaces: %s", error)
