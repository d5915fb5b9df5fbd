from __future__ import annotations

import asyncio
import datetime
import io
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.aio.client import ApiException

from filecleanup.album.cli import duration, read_keys, table
from filecleanup.album.client import (
    CREATES_IN_FLIGHT,
    MAX_OBJECT_KEY_BYTES,
    PARTS_LABEL,
    AlbumStatus,
    FileCleanupClient,
    ObjectSummary,
    Undone,
    _same_request,
    album_label,
    manifest_bytes,
    manifest_key,
    manifests,
    object_names,
    split_keys,
)
from filecleanup.api.models import ALBUM_LABEL


def keys(count: int, prefix: str = "albums/1") -> list[str]:
    return [f"{prefix}/photo-{i:06d}.jpg" for i in range(count)]


def test_the_status_table_says_dry_run_instead_of_a_progress() -> None:
    real = ObjectSummary("album-1", "ns", "1", "Succeeded", 4, 4, 0, 0, 0, "photos")
    dry = ObjectSummary("album-1-dry", "ns", "1", "Checked", 4, 0, 0, 0, 0, "photos", dry_run=True)
    rows = [line.split() for line in table([real, dry], with_namespace=False).splitlines()]
    assert [row[3] for row in rows] == ["PROGRESS", "100%", "dry-run"]


def test_a_dry_run_of_the_same_keys_is_not_the_same_request() -> None:
    """Else a real submit would find the album's dry run, take it for itself, and delete nothing."""
    (wanted,) = manifests("42", ["albums/42/a.jpg"])
    existing = {**wanted, "spec": {**wanted["spec"], "dryRun": True}}
    assert _same_request({**wanted, "spec": {**wanted["spec"], "dryRun": False}}, wanted)
    assert not _same_request(existing, wanted)


def test_a_grace_period_is_an_instant_in_utc_and_a_resubmission_keeps_the_first() -> None:
    paris = datetime.timezone(datetime.timedelta(hours=1))
    (wanted,) = manifests(
        "42", ["albums/42/a.jpg"], start_after=datetime.datetime(2027, 1, 1, 13, 0, 5, 9, paris)
    )
    assert wanted["spec"]["startAfter"] == "2027-01-01T12:00:05Z"
    (again,) = manifests("42", ["albums/42/a.jpg"], start_after=datetime.datetime(2027, 2, 1, tzinfo=paris))
    assert _same_request(wanted, again)
    with pytest.raises(ValueError, match="must carry its time zone"):
        manifests("42", ["albums/42/a.jpg"], start_after=datetime.datetime(2027, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("10m", 600.0), ("1h", 3600.0), ("7d", 604_800.0)]
)
def test_a_grace_period_is_given_as_kubectl_gives_durations_or_in_days(text: str, seconds: float) -> None:
    assert duration(text) == seconds


class TestSplit:
    def test_twenty_five_thousand_keys_make_three_objects(self) -> None:
        parts = split_keys(keys(25_000))
        assert [len(part) for part in parts] == [10_000, 10_000, 5_000]
        assert [key for part in parts for key in part] == keys(25_000)

    def test_duplicates_are_dropped_before_splitting(self) -> None:
        assert split_keys(["a", "b", "a", "c", "b"], max_keys=2) == [["a", "b"], ["c"]]

    def test_size_limit_splits_long_keys_before_the_count_limit(self) -> None:
        long_keys = ["k" * 1000 + str(i) for i in range(3000)]
        parts = split_keys(long_keys)
        assert len(parts) == 3
        assert all(sum(len(key) + 4 for key in part) <= MAX_OBJECT_KEY_BYTES for part in parts)

    def test_no_keys_make_no_parts(self) -> None:
        assert split_keys([]) == []


class TestNames:
    def test_one_part_is_named_after_the_album(self) -> None:
        assert object_names("42", 1) == ["album-42"]

    def test_several_parts_are_numbered(self) -> None:
        assert object_names("42", 3) == ["album-42-0", "album-42-1", "album-42-2"]

    @pytest.mark.parametrize(("first", "second"), [("Album_1", "album-1"), ("a.b", "a-b")])
    def test_ids_that_are_not_dns_labels_get_a_hash_so_they_cannot_collide(
        self, first: str, second: str
    ) -> None:
        assert object_names(first, 1) != object_names(second, 1)
        assert object_names(first, 1) == object_names(first, 1)

    @pytest.mark.parametrize("bad", ["", "-x", "a/b", "x" * 64, "é"])
    def test_album_ids_must_fit_a_label(self, bad: str) -> None:
        with pytest.raises(ValueError, match="album id"):
            album_label(bad)

    def test_manifests_carry_labels_and_options(self) -> None:
        (first, second) = manifests("7", keys(15_000), storage="videos", ttl_seconds_after_finished=60)
        assert first["metadata"]["name"] == "album-7-0"
        assert first["metadata"]["labels"] == {
            ALBUM_LABEL: "7",
            "filecleanup.dev/part": "0",
            PARTS_LABEL: "2",
        }
        assert first["spec"]["storage"] == "videos"
        assert second["spec"]["ttlSecondsAfterFinished"] == 60
        assert len(second["spec"]["keys"]) == 5_000

    def test_an_album_without_keys_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no keys"):
            manifests("7", [])

    def test_with_a_key_manifest_one_small_object_points_to_it(self) -> None:
        (only,) = manifests("7", keys(25_000), storage="videos", manifest="albums/1/m.txt")
        assert only["metadata"]["name"] == "album-7"
        assert only["spec"] == {"manifest": {"key": "albums/1/m.txt"}, "storage": "videos"}


class TestManifestKey:
    def test_the_manifest_goes_in_the_keys_common_directory(self) -> None:
        assert manifest_key(["t/a/albums/1/x.jpg", "t/a/albums/1/y/z.jpg"]).startswith("t/a/albums/1/.")
        assert manifest_key(["t/a/1.jpg", "t/b/2.jpg"]).startswith("t/.")
        assert manifest_key(["t/abc/1.jpg", "t/abd/2.jpg"]).startswith("t/.")  # whole segments only
        assert "/" not in manifest_key(["a/1.jpg", "b/2.jpg"])

    def test_the_name_follows_the_content(self) -> None:
        assert manifest_key(keys(3)) == manifest_key(keys(3))
        assert manifest_key(keys(3)) != manifest_key(keys(4))

    @given(st.lists(st.from_regex(r"[a-c]{1,2}(/[a-c]{1,2}){0,3}", fullmatch=True), min_size=1))
    def test_the_manifest_is_under_every_keys_directory(self, listed: list[str]) -> None:
        directory = manifest_key(listed).rpartition("/")[0]
        assert all(key.startswith(f"{directory}/") for key in listed) if directory else True
        assert manifest_key(listed) not in listed

    def test_its_bytes_are_the_keys_one_per_line(self) -> None:
        assert manifest_bytes(["a b", "c\u2028d"]) == "a b\nc\u2028d\n".encode()


def summary(name: str, phase: str, total: int = 10, deleted: int = 0, failed: int = 0) -> ObjectSummary:
    return ObjectSummary(name, "ns", "42", phase, total, deleted, failed, 0, 0, "photos")


class TestAlbumStatus:
    @pytest.mark.parametrize(
        ("phases", "parts", "expected"),
        [
            ([], 0, "NotFound"),
            (["Succeeded", "Succeeded"], 2, "Succeeded"),
            (["Checked", "Checked"], 2, "Checked"),  # a dry run's parts
            (["Succeeded"], 2, "Pending"),  # a part is not there yet
            (["Succeeded", "Failed"], 2, "Failed"),
            (["Succeeded", "Backoff", "InProgress"], 3, "Backoff"),
            (["Succeeded", "InProgress"], 2, "InProgress"),
            (["Pending", "Succeeded"], 2, "Pending"),
        ],
    )
    def test_phase_of_the_album(self, phases: list[str], parts: int, expected: str) -> None:
        album = AlbumStatus("42", [summary(f"p{i}", phase) for i, phase in enumerate(phases)], parts)
        assert album.phase == expected

    def test_counts_add_up(self) -> None:
        album = AlbumStatus("42", [summary("a", "Succeeded", 10, 10), summary("b", "Failed", 5, 3, 2)], 2)
        assert (album.total, album.deleted, album.failed) == (15, 13, 2)


TRICKY = [
    "a/trailing-space ",
    "a/line\u2028separator",
    "a/next\u0085line",
    " a/leading-space",
    "a/tab\tinside",
]


class TestKeysFile:
    """Keys reach the API exactly as written in the file: a changed key deletes the wrong file."""

    def test_lines_split_at_line_feeds_only(self, tmp_path: Path) -> None:
        keys_file = tmp_path / "keys.txt"
        keys_file.write_bytes("\n".join(TRICKY).encode() + b"\n")
        assert read_keys(keys_file) == TRICKY

    def test_windows_line_ends_and_empty_lines_are_dropped_nothing_else(self, tmp_path: Path) -> None:
        keys_file = tmp_path / "keys.txt"
        keys_file.write_bytes(b"a/1.jpg\r\n\r\n\na/2.jpg \r\nb/3.jpg")
        assert read_keys(keys_file) == ["a/1.jpg", "a/2.jpg ", "b/3.jpg"]

    def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_key(self, tmp_path: Path) -> None:
        """Notepad and Excel's "CSV UTF-8" start a file with one. Kept, the first key would name no file:
        the storage would answer that it is gone, and the real file would stay."""
        keys_file = tmp_path / "keys.txt"
        keys_file.write_bytes(b"\xef\xbb\xbfa/1.jpg\r\na/2.jpg\r\n")
        assert read_keys(keys_file) == ["a/1.jpg", "a/2.jpg"]
        keys_file.write_bytes("\ufeff\ufeffa/1.jpg\na/\ufeff2.jpg\n".encode())
        assert read_keys(keys_file) == ["\ufeffa/1.jpg", "a/\ufeff2.jpg"]  # only the file's first mark

    def test_a_byte_order_mark_on_standard_input_too(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbfa/1.jpg\n")))
        assert read_keys(Path("-")) == ["a/1.jpg"]

    def test_a_file_that_is_not_utf8_is_refused(self, tmp_path: Path) -> None:
        keys_file = tmp_path / "keys.txt"
        keys_file.write_bytes(b"a/\xff.jpg\n")
        with pytest.raises(ValueError, match="not UTF-8 at byte 2"):
            read_keys(keys_file)

    @given(
        st.lists(
            st.text(min_size=1).filter(lambda key: "\n" not in key and not key.endswith("\r")), max_size=8
        ).filter(lambda keys: not keys or not keys[0].startswith("\ufeff"))  # a byte order mark, dropped
    )
    def test_any_keys_round_trip_through_a_file_and_the_manifests(self, keys: list[str]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            keys_file = Path(directory) / "keys.txt"
            keys_file.write_bytes("\n".join(keys).encode())
            read = read_keys(keys_file)
        assert read == keys
        if keys:
            assert [key for part in manifests("1", read) for key in part["spec"]["keys"]] == list(
                dict.fromkeys(keys)
            )


class FakeObjects:
    """The CustomObjectsApi seam of FileCleanupClient.undo (a fake: the real API server cannot be held
    between the client's read and its delete). GETs answer ``reads`` in turn, the last one again and
    again; a DELETE conflicts unless its precondition names ``current``, the newest version."""

    def __init__(self, reads: list[dict[str, object]], current: str) -> None:
        self.reads = reads
        self.current = current
        self.deleted: list[str] = []

    async def get_namespaced_custom_object(self, *_: object) -> dict[str, object]:
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]

    async def delete_namespaced_custom_object(self, *_: object, body: Any) -> None:
        if body.preconditions.resource_version != self.current:
            raise ApiException(status=409, reason="Conflict")
        self.deleted.append(self.current)


def stored(version: str, phase: str, reason: str, **status: object) -> dict[str, object]:
    condition = {"type": "Progressing", "status": "True", "reason": reason, "message": "m"}
    condition["lastTransitionTime"] = "2026-12-01T00:00:00Z"
    return {
        "metadata": {"name": "album-1", "uid": "u", "resourceVersion": version, "generation": 1},
        "spec": {"keys": ["a/1", "a/2"], "startAfter": "2026-12-31T00:00:00Z"},
        "status": {"phase": phase, "observedGeneration": 1, "conditions": [condition], **status},
    }


async def undo_with(objects: FakeObjects) -> Undone:
    client = FileCleanupClient.__new__(FileCleanupClient)
    client._objects = objects  # type: ignore[assignment]
    return await client.undo("album-1", namespace="photos")


WAITING = stored("7", "Pending", "GracePeriod")


async def test_undo_deletes_at_the_version_that_showed_the_wait() -> None:
    objects = FakeObjects([WAITING], current="7")
    assert await undo_with(objects) == Undone("album-1", "photos", "2026-12-31T00:00:00Z", 2, None)
    assert objects.deleted == ["7"]


async def test_undo_of_an_object_that_started_meanwhile_deletes_nothing() -> None:
    """The operator writes the wait's end before its first call: the delete, conditional on the version
    that showed the wait, conflicts, and the object read again has started."""
    started = stored("8", "InProgress", "Deleting", total=2, deleted=1)
    objects = FakeObjects([WAITING, started], current="8")
    with pytest.raises(ValueError, match=r"is not waiting for its start \(phase InProgress, 1 of 2 keys"):
        await undo_with(objects)
    assert objects.deleted == []


async def test_undo_gives_up_on_an_object_that_keeps_changing() -> None:
    objects = FakeObjects([WAITING], current="9")
    with pytest.raises(ValueError, match="kept changing while it was undone; nothing was undone"):
        await undo_with(objects)
    assert objects.deleted == []


class CreatingObjects:
    """The CustomObjectsApi seam of FileCleanupClient.submit: each create waits until the test has seen
    as many creates in flight as the client may send at once, so that a sequential client never gets
    there (the test then fails on its timeout instead of racing one)."""

    def __init__(self, in_flight_wanted: int) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.created: list[str] = []
        self.enough = asyncio.Event()
        self.in_flight_wanted = in_flight_wanted

    async def create_namespaced_custom_object(self, *args: Any) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= self.in_flight_wanted:
            self.enough.set()
        await self.enough.wait()
        self.created.append(args[-1]["metadata"]["name"])
        self.in_flight -= 1


async def test_an_albums_parts_are_created_a_few_at_a_time_and_named_in_order() -> None:
    objects = CreatingObjects(in_flight_wanted=CREATES_IN_FLIGHT)
    client = FileCleanupClient.__new__(FileCleanupClient)
    client._objects = objects  # type: ignore[assignment]
    parts = 2 * CREATES_IN_FLIGHT + 1
    album = keys(parts * 10_000 - 5)
    names = await asyncio.wait_for(client.submit("7", album, namespace="photos"), timeout=30)
    assert len(names) == parts
    assert names == [manifest["metadata"]["name"] for manifest in manifests("7", album)]
    assert objects.most_in_flight == CREATES_IN_FLIGHT
    assert sorted(objects.created) == sorted(names)
