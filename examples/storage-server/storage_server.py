"""A reference HTTP storage server with fault injection, for the demo, tests and benchmarks.

It implements the operator's HTTP storage contract (docs/storage.md, "The HTTP storage API") over files
in a directory:

    POST /delete  {"keys": [...]}  ->  200 {"deleted": [...], "errors": [{"key", "message", "code"?}]}
    POST /exists  {"keys": [...]}  ->  200 {"existing": [...], "missing": [...], "forbidden": [...]}
                                       (a dry run's question, the storage's dryRunUrl; deletes nothing)
    GET /objects/KEY (Range and If-Match honoured, an ETag given), PUT /objects/KEY: whole objects,
    for manifests

A key is a path relative to ``--root``; a missing file counts as deleted. Faults are switched on
through ``POST /_admin/faults`` (see :class:`Faults`), and ``GET /_admin/stats`` tells what happened.
It can throttle as S3 does (503 SlowDown past a number of calls a second). Besides honest
failures, it can be hostile, as a storage we do not control may be: huge or trickled
replies, a bad encoding, absurd headers, keys that were not requested, lies, bodies that are not JSON.

    python examples/storage-server/storage_server.py --root DIR --port 8080 [--token-file F]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path

from aiohttp import web


@dataclass
class Faults:
    """What the server does wrong, consumed call by call."""

    statuses: list[int] = field(default_factory=list)  # answer the next calls with these, deleting nothing
    retry_after: str | None = None  # Retry-After header sent with those statuses
    hang_calls: int = 0  # the next N calls wait hang_seconds before answering
    hang_seconds: float = 0.0
    latency_seconds: float = 0.0  # every delete call waits this long
    read_latency_seconds: float = 0.0  # every object read (GET /objects) waits this long
    fail_keys: dict[str, int] = field(default_factory=dict)  # key -> failures left (-1: always)
    fail_codes: dict[str, str] = field(default_factory=dict)  # key -> the code of its injected error
    broken_replies: int = 0  # the next N calls answer 200 with a body that breaks the contract
    # Hostile: each holds for every call until the faults are reset.
    huge_reply_bytes: int = 0  # a 200 whose body is this large (and never ends in valid JSON)
    huge_reply_undeclared: bool = False  # ...sent chunked, without a Content-Length
    trickle_seconds: float = 0.0  # the reply's bytes come one per this many seconds
    bad_encoding: bool = False  # "Content-Encoding: gzip" on a body that is not gzip
    huge_header_bytes: int = 0  # a reply header this long
    unrequested_keys: list[str] = field(default_factory=list)  # listed as deleted too, never requested
    lie: bool = False  # every requested key listed as deleted; nothing is deleted
    not_json: bool = False  # a 200 whose body is an HTML page
    # Throttling, as S3 protects a prefix: past this many delete calls arriving in any one second
    # (refused ones included), answer 503 SlowDown, deleting nothing. 0: no limit.
    throttle_calls_per_second: int = 0
    # False: admit exactly that many calls in any one second, counting only the calls admitted (a
    # storage that meters what it serves), instead of every call that arrived.
    throttle_counts_refused: bool = True
    throttle_retry_after: str | None = None  # Retry-After header sent with a SlowDown
    # A gate for tests: the delete call numbered this (counting from 1 since the last reset) and every
    # later one wait before they do anything. 0: none. See :meth:`holds`.
    hold_from_call: int = 0
    pass_keys: list[str] = field(default_factory=list)  # a call carrying one of these is never held
    pass_clients: list[str] = field(default_factory=list)  # a call from one of these addresses neither

    def holds(self, number: int, keys: list[str], client: str | None) -> bool:
        """Whether the gate holds the delete call numbered ``number``, which carries ``keys`` and came
        from the address ``client``.

        A held call looks again each time the faults are set: it goes on once they hold it no more. So
        setting them without ``hold_from_call`` lets every held call go; raising it by K lets exactly
        the next K calls through, in the order they came; and ``pass_keys`` lets the call carrying one
        of those keys go before the others (a test chooses which call is answered first).
        ``pass_clients`` lets one client work on while every other one waits (a replica that is
        stopping, say, while its successor's calls are held).
        """
        if not self.hold_from_call or number < self.hold_from_call or client in self.pass_clients:
            return False
        return set(self.pass_keys).isdisjoint(keys)


@dataclass
class Stats:
    calls: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    requested: dict[str, int] = field(default_factory=dict)  # key -> times it was sent
    removed_files: int = 0
    chunk_sizes: list[int] = field(default_factory=list)
    first_requested_at: dict[str, float] = field(default_factory=dict)  # key -> wall-clock time, first call
    # Per call: wall-clock start and end, and its first key (which names the object in the benchmarks):
    # calls in flight over time, and when each object's first call started and its last one ended.
    call_times: list[tuple[float, float, str]] = field(default_factory=list)
    throttled: int = 0  # delete calls refused with 503 SlowDown
    held: int = 0  # delete calls waiting at the gate now (Faults.holds); counted in in_flight too
    exists_calls: int = 0  # POST /exists calls served
    exists_keys: int = 0  # keys asked about in them

    def summary(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "in_flight": self.in_flight,
            "held": self.held,
            "peak_in_flight": self.peak_in_flight,
            "keys_requested": sum(self.requested.values()),
            "distinct_keys": len(self.requested),
            "removed_files": self.removed_files,
            "throttled": self.throttled,
            "exists_calls": self.exists_calls,
        }


@dataclass
class ServerState:
    root: Path
    token: str | None
    faults: Faults = field(default_factory=Faults)
    stats: Stats = field(default_factory=Stats)
    arrivals: collections.deque[float] = field(default_factory=collections.deque)  # the last second's
    # Set, and replaced by a new one, each time the faults are set: the calls held look again.
    faults_set: asyncio.Event = field(default_factory=asyncio.Event)

    def overloaded(self, now: float) -> bool:
        """Whether a delete call arriving now is one too many for the last second (sliding window)."""
        while self.arrivals and self.arrivals[0] <= now - 1.0:
            self.arrivals.popleft()
        over = len(self.arrivals) >= self.faults.throttle_calls_per_second
        if self.faults.throttle_counts_refused or not over:
            self.arrivals.append(now)
        return over

    def set_faults(self, faults: Faults) -> None:
        """New faults, in place of all the old ones; the calls held look at them (Faults.holds)."""
        self.faults = faults
        waking, self.faults_set = self.faults_set, asyncio.Event()
        waking.set()

    async def gate(self, stats: Stats, number: int, keys: list[str], client: str | None) -> None:
        """Wait while the faults hold the delete call numbered ``number`` (Faults.holds)."""
        if not self.faults.holds(number, keys, client):
            return
        stats.held += 1
        try:
            while self.faults.holds(number, keys, client):
                await self.faults_set.wait()
        finally:
            stats.held -= 1


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


STATE = web.AppKey("state", ServerState)


def _remove(root: Path, keys: list[str]) -> tuple[list[str], list[dict[str, str]], int]:
    # String paths, no resolve(): this runs for every key of every call, and benchmarks measure it.
    # (It is the reference server's own files; the operator's filesystem backend is the guarded one.)
    base = str(root)
    deleted: list[str] = []
    errors: list[dict[str, str]] = []
    removed = 0
    for key in keys:
        path = os.path.normpath(os.path.join(base, key))  # noqa: PTH118  (str paths: see above)
        if not path.startswith(base + os.sep):
            errors.append({"key": key, "message": "key escapes the storage root"})
            continue
        try:
            os.unlink(path)  # noqa: PTH108
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as error:
            errors.append({"key": key, "message": error.strerror or str(error)})
            continue
        deleted.append(key)
    return deleted, errors, removed


async def huge_reply(request: web.Request, size: int, *, declared: bool) -> web.StreamResponse:
    """A 200 of ``size`` bytes that starts like a reply and never becomes one; nothing was deleted."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if declared:
        response.content_length = size
    await response.prepare(request)
    piece = b'{"deleted": [' + b" " * (64 * 1024 - 13)
    sent = 0
    while sent < size:
        chunk = piece[: size - sent]
        await response.write(chunk)
        sent += len(chunk)
    return response


async def present(request: web.Request, faults: Faults, payload: dict[str, object]) -> web.StreamResponse:
    """The reply, honest or as the hostile faults would mangle it."""
    body = b"<html><body>502 Bad Gateway</body></html>" if faults.not_json else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if faults.bad_encoding:
        headers["Content-Encoding"] = "gzip"
    if faults.huge_header_bytes:
        headers["X-Padding"] = "x" * faults.huge_header_bytes
    if not faults.trickle_seconds:
        return web.Response(body=body, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    for byte in body:
        await response.write(bytes([byte]))
        await asyncio.sleep(faults.trickle_seconds)
    return response


def refused(state: ServerState, request: web.Request) -> web.Response | None:
    """A delete call refused before it is read: wrong credentials, or one call too many (S3's 503
    SlowDown). Nothing is deleted."""
    if state.token is not None and request.headers.get("Authorization") != f"Bearer {state.token}":
        return web.json_response({"error": "unauthorized"}, status=HTTPStatus.UNAUTHORIZED)
    if not state.faults.throttle_calls_per_second or not state.overloaded(time.monotonic()):
        return None
    state.stats.throttled += 1
    headers = {"Content-Type": "application/xml"}
    if state.faults.throttle_retry_after:
        headers["Retry-After"] = state.faults.throttle_retry_after
    return web.Response(body=SLOW_DOWN, status=HTTPStatus.SERVICE_UNAVAILABLE, headers=headers)


async def delete(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    refusal = refused(state, request)
    if refusal is not None:
        return refusal
    body = await request.json()
    keys: list[str] = body["keys"]
    stats = state.stats
    stats.calls += 1
    stats.chunk_sizes.append(len(keys))
    now = time.time()
    for key in keys:
        stats.requested[key] = stats.requested.get(key, 0) + 1
        stats.first_requested_at.setdefault(key, now)
    stats.in_flight += 1
    stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
    try:
        await state.gate(stats, stats.calls, keys, request.remote)
        faults = state.faults  # as set when the call was let through
        if faults.statuses:
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return web.json_response({"error": "injected"}, status=faults.statuses.pop(0), headers=headers)
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        if faults.hang_calls:
            faults.hang_calls -= 1
            await asyncio.sleep(faults.hang_seconds)
        if faults.broken_replies:
            faults.broken_replies -= 1
            return web.json_response({"removed": keys})
        if faults.huge_reply_bytes:
            declared = not faults.huge_reply_undeclared
            return await huge_reply(request, faults.huge_reply_bytes, declared=declared)
        if faults.lie:
            return await present(request, faults, {"deleted": keys, "errors": []})
        injected = [key for key in keys if faults.fail_keys.get(key, 0)]
        for key in injected:
            if faults.fail_keys[key] > 0:
                faults.fail_keys[key] -= 1
        wanted = [key for key in keys if key not in injected]
        deleted, errors, removed = await asyncio.to_thread(_remove, state.root, wanted)
        stats.removed_files += removed
        errors.extend(
            {"key": key, "message": "injected failure"}
            | ({"code": faults.fail_codes[key]} if key in faults.fail_codes else {})
            for key in injected
        )
        return await present(
            request, faults, {"deleted": [*deleted, *faults.unrequested_keys], "errors": errors}
        )
    finally:
        stats.in_flight -= 1
        stats.call_times.append((now, time.time(), keys[0] if keys else ""))


def _existence(root: Path, keys: list[str]) -> dict[str, list[str]]:
    """Which keys name a file (or a link) under ``root``; a key outside it, or one the server may not
    look at, is forbidden. Nothing is touched."""
    base = str(root)
    found: dict[str, list[str]] = {"existing": [], "missing": [], "forbidden": []}
    for key in keys:
        path = os.path.normpath(os.path.join(base, key))  # noqa: PTH118  (as _remove)
        if not path.startswith(base + os.sep):
            found["forbidden"].append(key)
            continue
        try:
            os.lstat(path)
        except FileNotFoundError:
            found["missing"].append(key)
        except PermissionError:
            found["forbidden"].append(key)
        else:
            found["existing"].append(key)
    return found


async def exists(request: web.Request) -> web.Response:
    """``POST /exists``: the dry-run extension of the contract. A separate URL from /delete, so that
    a storage that does not know it can never take the question for a delete."""
    state = request.app[STATE]
    refusal = refused(state, request)
    if refusal is not None:
        return refusal
    keys: list[str] = (await request.json())["keys"]
    state.stats.exists_calls += 1
    state.stats.exists_keys += len(keys)
    return web.json_response(await asyncio.to_thread(_existence, state.root, keys))


def _object_path(state: ServerState, key: str) -> Path | None:
    path = Path(os.path.normpath(os.path.join(str(state.root), key)))  # noqa: PTH118
    return path if str(path).startswith(str(state.root) + os.sep) else None


async def get_object(request: web.Request) -> web.StreamResponse:
    """``GET /objects/{key}``, with a ``Range: bytes=a-b`` honoured: a manifest, a part at a time."""
    state = request.app[STATE]
    if state.token is not None and request.headers.get("Authorization") != f"Bearer {state.token}":
        return web.json_response({"error": "unauthorized"}, status=HTTPStatus.UNAUTHORIZED)
    path = _object_path(state, request.match_info["key"])
    if path is None or not path.is_file():
        return web.json_response({"error": "no such object"}, status=HTTPStatus.NOT_FOUND)
    if state.faults.read_latency_seconds:
        await asyncio.sleep(state.faults.read_latency_seconds)
    info = path.stat()
    size = info.st_size
    etag = f'"{info.st_ino:x}-{size:x}-{info.st_mtime_ns:x}"'  # a new version, a new ETag
    if request.headers.get("If-Match", etag) != etag:
        return web.Response(status=HTTPStatus.PRECONDITION_FAILED)
    ranges = request.http_range
    start = ranges.start or 0
    stop = size if ranges.stop is None else min(ranges.stop, size)
    if start >= size and size:
        return web.Response(status=HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
    with path.open("rb") as file:
        file.seek(start)
        data = file.read(max(0, stop - start))
    status = HTTPStatus.PARTIAL_CONTENT if "Range" in request.headers else HTTPStatus.OK
    return web.Response(body=data, status=status, headers={"ETag": etag})


async def put_object(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.token is not None and request.headers.get("Authorization") != f"Bearer {state.token}":
        return web.json_response({"error": "unauthorized"}, status=HTTPStatus.UNAUTHORIZED)
    path = _object_path(state, request.match_info["key"])
    if path is None:
        return web.json_response({"error": "key escapes the storage root"}, status=HTTPStatus.BAD_REQUEST)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(await request.read())
    return web.Response(status=HTTPStatus.CREATED)


async def set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.set_faults(Faults(**await request.json()))
    return web.json_response(asdict(state.faults))


async def get_stats(request: web.Request) -> web.Response:
    """Everything, or with ``?summary=1`` only the counts (small, however many keys were sent)."""
    stats = request.app[STATE].stats
    return web.json_response(stats.summary() if request.query.get("summary") else asdict(stats))


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.stats = Stats()
    state.set_faults(Faults())  # the calls held go on
    state.arrivals.clear()
    return web.json_response({})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_app(root: Path, token: str | None = None) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE] = ServerState(root=root.resolve(), token=token)
    app.router.add_post("/delete", delete)
    app.router.add_post("/exists", exists)
    app.router.add_get("/objects/{key:.+}", get_object)
    app.router.add_put("/objects/{key:.+}", put_object)
    app.router.add_post("/_admin/faults", set_faults)
    app.router.add_get("/_admin/stats", get_stats)
    app.router.add_post("/_admin/reset", reset)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="directory holding the files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token-file", type=Path, help="require this bearer token")
    args = parser.parse_args(argv)
    token = args.token_file.read_text().strip() if args.token_file else None
    args.root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(make_app(args.root, token), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
