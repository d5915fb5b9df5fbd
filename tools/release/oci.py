"""An image archive that is both an OCI image layout and a `docker load` archive, made from `docker save`'s
output: what Docker 25 and later write themselves, which an older engine (Debian bookworm's 20.10) does
not. Every blob is stored once under blobs/sha256/, named by its digest; index.json and oci-layout make
it an OCI layout (skopeo, crane, containerd, syft read it), and docker's manifest.json points at the
same blobs, so `docker load` of any version takes it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"  # docker save's layers are uncompressed
INDEX = "application/vnd.oci.image.index.v1+json"


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "size": len(blob),
    }


def _add(archive: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, 0o644
    archive.addfile(info, io.BytesIO(data))


def docker_save_to_oci(saved: Path, out: Path, image: str, mtime: int) -> None:
    """Rewrite the `docker save` archive ``saved`` of the one image ``image`` (repository:tag) as ``out``."""
    repository, _, tag = image.rpartition(":")
    with tarfile.open(saved) as source:

        def read(name: str) -> bytes:
            member = source.extractfile(name)
            if member is None:
                raise ValueError(f"{saved}: {name} is not a file")
            return member.read()

        (saved_manifest,) = json.loads(read("manifest.json"))
        config = read(saved_manifest["Config"])
        layers = [read(name) for name in saved_manifest["Layers"]]

    config_descriptor = _descriptor(CONFIG, config)
    layer_descriptors = [_descriptor(LAYER, layer) for layer in layers]
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    if diff_ids != [descriptor["digest"] for descriptor in layer_descriptors]:
        raise ValueError(f"{saved}: the layers are not those the image's configuration names")
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": MANIFEST, "config": config_descriptor, "layers": layer_descriptors},
        separators=(",", ":"),
    ).encode()
    manifest_descriptor = _descriptor(MANIFEST, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                **manifest_descriptor,
                "annotations": {"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": image},
            }
        ],
    }

    def blob_path(descriptor: dict[str, Any]) -> str:
        return "blobs/sha256/" + str(descriptor["digest"]).removeprefix("sha256:")

    docker_manifest = [
        {
            "Config": blob_path(config_descriptor),
            "RepoTags": [f"{repository}:{tag}"],
            "Layers": [blob_path(descriptor) for descriptor in layer_descriptors],
        }
    ]
    written: set[str] = set()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as archive:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            archive.addfile(info)
        blobs = [(config_descriptor, config), (manifest_descriptor, manifest)]
        blobs += zip(layer_descriptors, layers, strict=True)
        for descriptor, blob in blobs:
            if (path := blob_path(descriptor)) not in written:  # an empty layer may repeat
                written.add(path)
                _add(archive, path, blob, mtime)
        _add(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', mtime)
        _add(archive, "index.json", json.dumps(index).encode(), mtime)
        _add(archive, "manifest.json", json.dumps(docker_manifest).encode(), mtime)
