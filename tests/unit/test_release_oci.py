"""The release's image archive: `docker save`'s output rewritten as an OCI image layout that docker's
manifest.json also describes, every blob once and named by its digest."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tools.release.oci import docker_save_to_oci


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def layer_tar(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as layer:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        layer.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def saved_archive(path: Path, layers: list[bytes], diff_ids: list[str] | None = None) -> bytes:
    """What `docker save` of one image writes: manifest.json, the config, a directory per layer."""
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids or [digest(x) for x in layers]},
        }
    ).encode()
    files = {f"{hashlib.sha256(config).hexdigest()}.json": config}
    for number, layer in enumerate(layers):
        files[f"layer{number}/layer.tar"] = layer
    files["manifest.json"] = json.dumps(
        [
            {
                "Config": f"{hashlib.sha256(config).hexdigest()}.json",
                "RepoTags": ["example/app:1.0.0"],
                "Layers": [f"layer{number}/layer.tar" for number in range(len(layers))],
            }
        ]
    ).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return config


def test_the_archive_is_an_oci_layout_and_a_docker_one(tmp_path: Path) -> None:
    layers = [layer_tar("a", b"one"), layer_tar("b", b"two"), layer_tar("a", b"one")]  # a repeated layer
    config = saved_archive(tmp_path / "saved.tar", layers)
    docker_save_to_oci(tmp_path / "saved.tar", tmp_path / "oci.tar", "example/app:1.0.0", 1_700_000_000)

    with tarfile.open(tmp_path / "oci.tar") as archive:
        names = archive.getnames()
        files = {
            member.name: archive.extractfile(member) for member in archive.getmembers() if member.isfile()
        }
        read = {name: handle.read() for name, handle in files.items() if handle is not None}
    assert len(names) == len(set(names))  # each blob once
    assert all(
        name.removeprefix("blobs/sha256/") == hashlib.sha256(data).hexdigest()
        for name, data in read.items()
        if name.startswith("blobs/")
    )
    assert json.loads(read["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}

    (entry,) = json.loads(read["index.json"])["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1.0.0"
    manifest_blob = read["blobs/sha256/" + entry["digest"].removeprefix("sha256:")]
    assert (entry["size"], entry["digest"]) == (len(manifest_blob), digest(manifest_blob))
    manifest = json.loads(manifest_blob)
    assert manifest["config"]["digest"] == digest(config)
    assert [layer["digest"] for layer in manifest["layers"]] == [digest(layer) for layer in layers]

    (loaded,) = json.loads(read["manifest.json"])  # what docker load reads
    assert loaded["RepoTags"] == ["example/app:1.0.0"]
    assert read[loaded["Config"]] == config
    assert [read[path] for path in loaded["Layers"]] == layers


def test_layers_that_are_not_the_configs_are_refused(tmp_path: Path) -> None:
    saved_archive(tmp_path / "saved.tar", [layer_tar("a", b"one")], diff_ids=[digest(b"other")])
    with pytest.raises(ValueError, match="not those the image's configuration names"):
        docker_save_to_oci(tmp_path / "saved.tar", tmp_path / "oci.tar", "example/app:1.0.0", 0)
