from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest

from filecleanup.api.config import (
    CONFIG_ENV,
    AzureBlobStorageConfig,
    ConfigError,
    FilesystemStorageConfig,
    GcsStorageConfig,
    HttpStorageConfig,
    RetentionConfig,
    S3StorageConfig,
    load_config,
)

VALID = """
defaultStorage: photos
storages:
  photos:
    type: http
    url: http://storage.photos.svc:8080/delete
    connectTimeoutSeconds: 2
    readTimeoutSeconds: 30
    maxConcurrentRequests: 8
    policy: {allowedNamespaces: [photos, albums], keyPrefix: "{namespace}/"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    photos = config.storages["photos"]
    assert isinstance(photos, HttpStorageConfig)
    assert config.default_storage == "photos"
    assert str(photos.url) == "http://storage.photos.svc:8080/delete"
    assert (photos.connect_timeout_seconds, photos.read_timeout_seconds) == (2, 30)
    assert photos.token_file is None
    assert config.chunks_in_flight_per_object is None  # the storage's maxConcurrentRequests
    assert photos.policy.allows("albums")
    assert not photos.policy.allows("default")
    assert photos.policy.prefix_for("albums") == "albums/"


def test_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, VALID)))
    assert load_config().default_storage == "photos"


def test_missing_environment_variable_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    with pytest.raises(ConfigError, match=CONFIG_ENV):
        load_config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID.replace("defaultStorage: photos", "defaultStorage: videos"), "defaultStorage 'videos'"),
        (VALID.replace("http://storage", "ftp://storage"), "storages.photos.http.url"),
        (VALID.replace("http://storage", "http://user:secret@storage"), "credentials"),
        (VALID.replace("readTimeoutSeconds: 30", "readTimeoutSeconds: 0"), "readTimeoutSeconds"),
        (VALID.replace("maxConcurrentRequests: 8", "maxConcurrentRequests: 8\n    colour: red"), "colour"),
        (
            VALID.replace('keyPrefix: "{namespace}/"', 'keyPrefix: "{album}/"'),
            "may only use a bare {namespace}, not {album}",
        ),
        (
            VALID.replace('keyPrefix: "{namespace}/"', 'keyPrefix: "tenants/{namespace:.1}/"'),
            "may only use a bare {namespace}, not {namespace:.1}",
        ),
        (
            VALID.replace('keyPrefix: "{namespace}/"', 'keyPrefix: "tenants/{namespace!r}/"'),
            "may only use a bare {namespace}, not {namespace!r}",
        ),
        (
            VALID.replace('keyPrefix: "{namespace}/"', 'keyPrefix: "tenants/{namespace}"'),
            "must be empty or end with '/'",
        ),
        (VALID.replace('keyPrefix: "{namespace}/"', 'keyPrefix: "tenants/../{namespace}/"'), "'..' path"),
        (VALID.replace('keyPrefix: "{namespace}/"', 'keyPrefix: "/{namespace}/"'), "must not start with '/'"),
        (VALID.replace('keyPrefix: "{namespace}/"', 'keyPrefix: "{namespace/"'), "keyPrefix '{namespace/'"),
        (VALID.replace("allowedNamespaces: [photos, albums]", "allowedNamespaces: []"), "allowedNamespaces"),
        (
            VALID.replace("allowedNamespaces: [photos, albums]", "allowedNamespaces: [Bad_NS]"),
            "allowedNamespaces",
        ),
        (
            VALID.replace(
                '    policy: {allowedNamespaces: [photos, albums], keyPrefix: "{namespace}/"}\n', ""
            ),
            "policy",
        ),
        (VALID.replace("type: http", "type: carrier-pigeon"), "storages.photos"),
        (
            VALID + "    tokenFile: /nonexistent/token\n",
            "tokenFile: Value error, /nonexistent/token is not a readable file",
        ),
        ("storages: {}\ndefaultStorage: x\n", "storages"),
        ("defaultStorage: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_unreadable_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "absent.yaml")


def test_s3_and_filesystem_storages(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    config = load_config(
        write(
            tmp_path,
            f"""
defaultStorage: bucket
storages:
  bucket: {{type: s3, bucket: photos, endpoint: "https://minio.storage.svc:9000", keyPrefix: "tenants/a/",
            credentialsFile: {credentials}, policy: {{allowedNamespaces: "*", keyPrefix: ""}}}}
  volume: {{type: filesystem, root: /data/photos, pruneEmptyDirs: true,
            policy: {{allowedNamespaces: "*", keyPrefix: ""}}}}
""",
        )
    )
    bucket, volume = config.storages["bucket"], config.storages["volume"]
    assert isinstance(bucket, S3StorageConfig)
    assert (bucket.bucket, bucket.key_prefix, bucket.addressing_style, bucket.region) == (
        "photos",
        "tenants/a/",
        "auto",
        "us-east-1",
    )
    assert isinstance(volume, FilesystemStorageConfig)
    assert volume.prune_empty_dirs


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("{type: filesystem, root: data/photos}", "root data/photos must be an absolute path"),
        ("{type: s3}", "storages.photos.s3.bucket"),
        ("{type: s3, bucket: bkt, addressingStyle: sideways}", "addressingStyle"),
        (
            "{type: s3, bucket: bkt, credentialsFile: /nonexistent}",
            "credentialsFile: Value error, /nonexistent is not a readable file",
        ),
        (
            "{type: http, url: 'http://storage.svc/delete', tokenFile: /etc/hostname}",
            "sends the bearer token in cleartext; use https://, or set allowPlainHttp",
        ),
        (
            (
                "{type: http, url: 'https://storage.svc/delete', objectsUrl: 'http://storage.svc/o/', "
                "tokenFile: /etc/hostname}"
            ),
            "plain http:// objectsUrl sends the bearer token in cleartext",
        ),
        (
            (
                "{type: http, url: 'https://storage.svc/delete', dryRunUrl: 'http://storage.svc/exists', "
                "tokenFile: /etc/hostname}"
            ),
            "plain http:// dryRunUrl sends the bearer token in cleartext",
        ),
        ("{type: http, url: 'https://u:p@storage.svc/delete'}", "url must not carry credentials"),
        (
            "{type: http, url: 'https://storage.svc/delete', objectsUrl: 'https://u:p@storage.svc/o/'}",
            "objectsUrl must not carry credentials",
        ),
        ("{type: s3, bucket: bkt, endpoint: 'http://minio.svc:9000'}", "session token among them"),
        ("{type: filesystem, root: /data, markerFile: ../escape}", "markerFile"),
    ],
)
def test_invalid_storages(tmp_path: Path, storage: str, message: str) -> None:
    storage = storage.replace("}", ", policy: {allowedNamespaces: '*', keyPrefix: ''}}")
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, f"defaultStorage: photos\nstorages:\n  photos: {storage}\n"))


CHART_SCHEMA = Path(__file__).parents[2] / "charts/filecleanup-operator/values.schema.json"
# The chart takes credentials as Secret references and mounts them where the config's files are.
CHART_ONLY = {
    "tokenSecret": "tokenFile",
    "credentialsSecret": "credentialsFile",
    "accountKeySecret": "accountKeyFile",
    "volume": None,
}


StorageModel = (
    HttpStorageConfig | S3StorageConfig | GcsStorageConfig | AzureBlobStorageConfig | FilesystemStorageConfig
)


@pytest.mark.parametrize(
    "model",
    [HttpStorageConfig, S3StorageConfig, GcsStorageConfig, AzureBlobStorageConfig, FilesystemStorageConfig],
)
def test_the_charts_storage_schema_knows_every_configuration_field(model: type[StorageModel]) -> None:
    schema = json.loads(CHART_SCHEMA.read_text())
    choices = schema["properties"]["config"]["properties"]["storages"]["additionalProperties"]["oneOf"]
    (kind,) = typing.get_args(model.model_fields["type"].annotation)
    (chart,) = [choice for choice in choices if choice["properties"]["type"] == {"const": kind}]
    rendered = {CHART_ONLY.get(name, name) for name in chart["properties"]} - {None}
    assert rendered == {field.alias or name for name, field in model.model_fields.items()}


def test_the_charts_retention_schema_knows_every_configuration_field() -> None:
    schema = json.loads(CHART_SCHEMA.read_text())
    chart = schema["properties"]["config"]["properties"]["retention"]["properties"]
    assert set(chart) == {field.alias for field in RetentionConfig.model_fields.values()}
