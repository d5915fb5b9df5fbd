"""Layer api. Operator configuration: a YAML file named by ``FILECLEANUP_CONFIG``, validated once at startup.

A bad file stops the operator with a message that names the offending field.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from filecleanup.api.keys import key_problem
from filecleanup.api.wording import plural

CONFIG_ENV = "FILECLEANUP_CONFIG"


YEAR = 31_536_000


class ConfigError(Exception):
    """The configuration file is missing or invalid; the message says where and why."""


class StrictModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


NamespaceName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class StoragePolicy(StrictModel):
    """Who may delete what with this storage's credentials. Whoever may create a FileCleanup in an
    allowed namespace may delete the keys under that namespace's prefix, and nothing else."""

    allowed_namespaces: Literal["*"] | Annotated[list[NamespaceName], Field(min_length=1)]
    # Every key of an object must start with this; "{namespace}" stands for the object's namespace.
    # "" allows any key. A prefix is whole path segments: it is empty or ends with "/", so that
    # "tenants/team/" can never match "tenants/team-b/...".
    key_prefix: str

    @model_validator(mode="after")
    def _whole_segments_and_a_bare_namespace(self) -> Self:
        try:
            parts = list(string.Formatter().parse(self.key_prefix))
        except ValueError as error:
            raise ValueError(f"keyPrefix {self.key_prefix!r}: {error}") from error
        for _, name, spec, conversion in parts:
            if name is None:
                continue
            if name != "namespace" or spec or conversion:
                # "{namespace:.1}" would give "alpha" and "apple" the same prefix.
                written = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
                raise ValueError(f"keyPrefix may only use a bare {{namespace}}, not {{{written}}}")
        if self.key_prefix and not self.key_prefix.endswith("/"):
            raise ValueError(
                f"keyPrefix {self.key_prefix!r} must be empty or end with '/' (whole path segments)"
            )
        problem = key_problem(self.key_prefix.format(namespace="ns") + "x") if self.key_prefix else None
        if problem is not None:
            raise ValueError(f"keyPrefix {self.key_prefix!r}: {problem}")
        return self

    def allows(self, namespace: str) -> bool:
        return self.allowed_namespaces == "*" or namespace in self.allowed_namespaces

    def prefix_for(self, namespace: str) -> str:
        return self.key_prefix.format(namespace=namespace)


class RateLimit(StrictModel):
    """Token buckets in front of a storage, shared by every object on it: at most this many calls and
    keys a second (each bucket holds one second's worth, for a burst after an idle spell)."""

    calls_per_second: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    keys_per_second: Annotated[float, Field(gt=0, le=100_000_000)] | None = None


class AdaptiveConcurrency(StrictModel):
    """The storage's in-flight limit moves between minRequests and maxConcurrentRequests: cut on
    throttling (429, 503, S3 SlowDown), grown back one by one while calls succeed (storage/limits.py)."""

    # A cold start begins here and ramps up; at most maxConcurrentRequests.
    initial_requests: Annotated[int, Field(ge=1, le=1024)] = 2
    min_requests: Annotated[int, Field(ge=1, le=1024)] = 1
    # Still throttled at minRequests this long, with no call succeeding: the storage is unavailable
    # (its objects wait in Backoff, without spending retries).
    unavailable_after_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0


ErrorCode = Annotated[str, Field(min_length=1, max_length=64)]


class Erasure(StrictModel):
    """How long the storage keeps data it confirmed as deleted recoverable (a soft delete, a trash, a
    garbage collector's wait): when a deletion becomes an erasure. 0: at once."""

    recoverable_for_seconds: Annotated[int, Field(ge=0, le=10 * YEAR)]
    note: Annotated[str, Field(max_length=200)] = ""


GCS_XML_API_HOST = "storage.googleapis.com"
GCS_SOFT_DELETE = Erasure(
    recoverable_for_seconds=7 * 86_400, note="Google Cloud Storage soft delete, its default retention"
)


class Verify(StrictModel):
    """Re-checks of a Succeeded object's keys at these ages (seconds after it finished), with a dry
    run's existence checks: a key found again is counted, named and deleted again."""

    after_seconds: Annotated[list[Annotated[int, Field(ge=1, le=YEAR)]], Field(min_length=1, max_length=5)]

    @model_validator(mode="after")
    def _ascending(self) -> Self:
        if any(
            later <= earlier
            for earlier, later in zip(self.after_seconds, self.after_seconds[1:], strict=False)
        ):
            raise ValueError(f"verify.afterSeconds {self.after_seconds} must be ascending")
        return self


class StorageBase(StrictModel):
    policy: StoragePolicy
    # Unset: a Succeeded object's keys are not looked for again.
    verify: Verify | None = None
    # Unset: the backend's default (erasure_horizon), where it has one.
    erasure: Erasure | None = None
    max_concurrent_requests: Annotated[int, Field(ge=1, le=1024)] = 8
    rate_limit: RateLimit | None = None
    adaptive_concurrency: AdaptiveConcurrency = AdaptiveConcurrency()
    # Per-key error codes to treat as permanent (not retried) or transient (retried), over the
    # backend's defaults (storage/errors.py).
    permanent_errors: list[ErrorCode] = []
    transient_errors: list[ErrorCode] = []

    def erasure_horizon(self) -> Erasure | None:
        """The erasure as declared, else the backend's default; None: not known (docs/storage.md's table)."""
        return self.erasure

    def holds_objects(self) -> bool:
        """Whether it keeps whole objects (manifests, reports, receipts) besides deleting keys."""
        return True

    @model_validator(mode="after")
    def _one_class_per_code(self) -> Self:
        both = sorted(set(self.permanent_errors) & set(self.transient_errors))
        if both:
            raise ValueError(f"error codes {both} are both permanentErrors and transientErrors")
        return self

    @model_validator(mode="after")
    def _minimum_within_the_cap(self) -> Self:
        if self.adaptive_concurrency.min_requests > self.max_concurrent_requests:
            raise ValueError(
                f"adaptiveConcurrency.minRequests {self.adaptive_concurrency.min_requests} is more than "
                f"maxConcurrentRequests {self.max_concurrent_requests}"
            )
        return self


def _readable(path: Path) -> Path:
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not a readable file")
    return path


# A file mounted from a Secret: checked at startup, so that a wrong mount stops the operator at once.
ReadableFile = Annotated[Path, AfterValidator(_readable)]


class RemoteStorageBase(StorageBase):
    """A storage reached over the network: separate connect and read timeouts, a cap on calls."""

    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 2.0
    read_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Credentials (a bearer token, an S3 session token) over plain http:// travel in cleartext; only
    # for traffic that never leaves a trusted network (a pod-to-pod mesh, a test).
    allow_plain_http: bool = False


class HttpStorageConfig(RemoteStorageBase):
    """A storage behind our HTTP contract (docs/design.md): ``POST url`` with ``{"keys": [...]}``."""

    type: Literal["http"]
    url: AnyHttpUrl
    token_file: ReadableFile | None = None
    # Where the storage serves and accepts whole objects (GET with Range, PUT), for manifests: the
    # key is appended to this URL. Unset: this storage holds no manifests.
    objects_url: AnyHttpUrl | None = None
    # Where a dry run asks which keys exist: ``POST`` with ``{"keys": [...]}``, answered
    # ``{"existing": [...], "missing": [...]}``. Never the delete URL. Unset: a dry run on this storage
    # reports every key as unknown.
    dry_run_url: AnyHttpUrl | None = None

    def holds_objects(self) -> bool:
        return self.objects_url is not None

    @model_validator(mode="after")
    def _no_credentials_in_url_or_in_cleartext(self) -> Self:
        if self.dry_run_url is not None and str(self.dry_run_url) == str(self.url):
            # A storage that ignored the question would take it as a delete.
            raise ValueError("dryRunUrl must not be the delete url")
        # The token goes with every call, to each of these URLs.
        urls = {"url": self.url, "objectsUrl": self.objects_url, "dryRunUrl": self.dry_run_url}
        for field, url in urls.items():
            if url is None:
                continue
            # A URL ends up in logs and error messages; a token belongs in tokenFile.
            if url.username or url.password:
                raise ValueError(f"{field} must not carry credentials; put a bearer token in tokenFile")
            if self.token_file is not None and url.scheme == "http" and not self.allow_plain_http:
                raise ValueError(
                    f"a tokenFile over a plain http:// {field} sends the bearer token in cleartext; use "
                    "https://, or set allowPlainHttp: true for traffic that never leaves a trusted network"
                )
        return self


class S3StorageConfig(RemoteStorageBase):
    """An S3-compatible bucket, through DeleteObjects (at most 1,000 keys per call)."""

    type: Literal["s3"]
    bucket: Annotated[str, Field(min_length=3, max_length=63)]
    region: str = "us-east-1"
    # Unset: AWS. Set: MinIO, Ceph RGW, Google Cloud Storage's XML API, ...
    endpoint: AnyHttpUrl | None = None
    # auto: path style with a custom endpoint, virtual-hosted style on AWS.
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    key_prefix: str = ""
    # A shared credentials file mounted from a Secret; unset: the standard AWS chain (environment,
    # shared files, web identity / IRSA, container and instance metadata).
    credentials_file: ReadableFile | None = None
    profile: str | None = None
    # On a versioned bucket: list and delete every version of each key (delete markers included).
    # Without it, a key that only got a delete marker counts as failed: its data remains.
    delete_all_versions: bool = False
    # Object Lock: delete versions under a GOVERNANCE-mode retention too (the credentials need
    # s3:BypassGovernanceRetention). Never the default; COMPLIANCE retention and legal holds still hold.
    bypass_governance_retention: bool = False

    def erasure_horizon(self) -> Erasure | None:
        """AWS: at once (a key whose data versions remain on a versioned bucket is failed, not
        deleted). GCS's XML API: its soft delete. Another endpoint keeps its own (MinIO none, Ceph
        RGW its garbage collector's wait, SeaweedFS until vacuum): not known unless declared."""
        if self.erasure is not None:
            return self.erasure
        if self.endpoint is None:
            return Erasure(recoverable_for_seconds=0, note="S3: no version of a deleted key remains")
        if self.endpoint.host == GCS_XML_API_HOST:
            return GCS_SOFT_DELETE
        return None

    @model_validator(mode="after")
    def _no_credentials_in_cleartext(self) -> Self:
        if self.endpoint is not None and self.endpoint.scheme == "http" and not self.allow_plain_http:
            raise ValueError(
                "a plain http:// endpoint sends the request headers (an STS session token among them) in "
                "cleartext; use https://, or set allowPlainHttp: true for traffic that never leaves a "
                "trusted network"
            )
        return self


class GcsStorageConfig(RemoteStorageBase):
    """A Google Cloud Storage bucket through its JSON API: batch deletes of 100 (storage/gcs.py)."""

    type: Literal["gcs"]
    bucket: Annotated[str, Field(min_length=3, max_length=222)]
    # Unset: Google's. Set: an emulator (fake-gcs-server), or a private endpoint.
    endpoint: AnyHttpUrl = AnyHttpUrl("https://storage.googleapis.com")
    key_prefix: str = ""
    # adc: Application Default Credentials (Workload Identity, GOOGLE_APPLICATION_CREDENTIALS, the
    # metadata server); none: no credentials, for an emulator only.
    auth: Literal["adc", "none"] = "adc"
    # A service account key or external-account file mounted from a Secret: this storage's own
    # credentials, before Application Default Credentials.
    credentials_file: ReadableFile | None = None

    def erasure_horizon(self) -> Erasure | None:
        """GCS keeps a deleted object for the bucket's soft-delete retention: 7 days unless set."""
        return self.erasure or GCS_SOFT_DELETE

    @model_validator(mode="after")
    def _no_token_in_cleartext(self) -> Self:
        if self.endpoint.scheme == "http" and not self.allow_plain_http:
            raise ValueError(
                "a plain http:// endpoint sends the access token in cleartext; use https://, or set "
                "allowPlainHttp: true for an emulator on a trusted network"
            )
        return self


AZURE_SOFT_DELETE = Erasure(
    recoverable_for_seconds=7 * 86_400,
    note="Azure Blob soft delete, on for 7 days in a new account; declare erasure for the account's own",
)


class AzureBlobStorageConfig(RemoteStorageBase):
    """An Azure Blob Storage container: Blob Batch deletes of 256 (storage/azureblob.py)."""

    type: Literal["azureblob"]
    account: Annotated[str, Field(pattern=r"^[a-z0-9]{3,24}$")]
    container: Annotated[
        str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9]|-[a-z0-9])+$")
    ]
    # Unset: https://<account>.blob.core.windows.net. Set: Azurite (its URL ends with the account's
    # name), a sovereign cloud, a private endpoint.
    endpoint: AnyHttpUrl | None = None
    key_prefix: str = ""
    # entraId: Microsoft Entra ID tokens (AKS workload identity, a managed identity, the environment)
    # through azure-identity; sharedKey: the account key in accountKeyFile, mounted from a Secret.
    auth: Literal["entraId", "sharedKey"] = "entraId"
    account_key_file: ReadableFile | None = None
    # A blob with snapshots is deleted with them; without this, such a blob fails (SnapshotsPresent)
    # and keeps its data.
    delete_snapshots: bool = False

    def blob_endpoint(self) -> str:
        return str(self.endpoint or f"https://{self.account}.blob.core.windows.net").rstrip("/")

    def erasure_horizon(self) -> Erasure | None:
        """Azure keeps a deleted blob for the account's soft-delete retention: 7 days unless declared."""
        return self.erasure or AZURE_SOFT_DELETE

    @model_validator(mode="after")
    def _credentials_as_declared(self) -> Self:
        if self.auth == "sharedKey" and self.account_key_file is None:
            raise ValueError("auth: sharedKey needs accountKeyFile (the account key, mounted from a Secret)")
        if self.auth == "entraId" and self.account_key_file is not None:
            raise ValueError("accountKeyFile is only read with auth: sharedKey")
        if self.endpoint is not None and self.endpoint.scheme == "http" and not self.allow_plain_http:
            raise ValueError(
                "a plain http:// endpoint sends the credentials in cleartext; use https://, or set "
                "allowPlainHttp: true for an emulator on a trusted network"
            )
        return self


class FilesystemStorageConfig(StorageBase):
    """Files on a mounted volume (NFS, a PVC); keys are paths relative to ``root``."""

    type: Literal["filesystem"]
    root: Path
    prune_empty_dirs: bool = False
    max_concurrent_requests: Annotated[int, Field(ge=1, le=64)] = 4
    # A missing file counts as deleted, so the root must be the volume, not an empty directory where
    # the volume should have been mounted: it must be a mount point, and hold markerFile if one is set.
    require_mountpoint: bool = True
    marker_file: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\x00]+$")] | None = None

    def erasure_horizon(self) -> Erasure:
        """Unlinked files are gone from the volume at once; its snapshots and backups are its own."""
        return self.erasure or Erasure(recoverable_for_seconds=0, note="unlinked from the volume")

    @model_validator(mode="after")
    def _root_is_absolute(self) -> Self:
        if not self.root.is_absolute():
            raise ValueError(f"root {self.root} must be an absolute path")
        return self


StorageConfig = Annotated[
    HttpStorageConfig | S3StorageConfig | GcsStorageConfig | AzureBlobStorageConfig | FilesystemStorageConfig,
    Field(discriminator="type"),
]


class RetentionConfig(StrictModel):
    """How long finished objects stay: etcd is shared by every workload, and a FileCleanup holds its
    keys. null keeps them for ever."""

    # Succeeded objects without their own ttlSecondsAfterFinished: long enough for whoever waits on one
    # to see it finish; the record that lasts is its Completed event, log line and metrics.
    succeeded_seconds: Annotated[int | None, Field(ge=0, le=YEAR)] = 600
    # Failed objects, the dead letters: long enough for a person to look and redrive.
    failed_seconds: Annotated[int | None, Field(ge=0, le=YEAR)] = 7 * 86_400
    # How often the finished objects are counted and the expired ones deleted.
    sweep_interval_seconds: Annotated[float, Field(ge=1, le=3600)] = 10.0


MIN_REPORT_KEY_BYTES = 32


class ReceiptsConfig(StrictModel):
    """Erasure receipts: a signed record of what each finished object deleted, kept in a storage
    after the object is gone (decide/receipts.py)."""

    # Where they go; unset: each object's own storage (every storage must then hold objects).
    storage: str | None = None
    # Below this key prefix; the operator refuses to delete any key under it on that storage.
    prefix: Annotated[str, Field(min_length=2, max_length=256)] = "filecleanup-receipts/"
    # A secret of at least 32 bytes (a mounted Secret) that signs them: `filecleanup receipt verify`
    # checks a receipt with it.
    key_file: ReadableFile

    @model_validator(mode="after")
    def _a_prefix_and_a_secret(self) -> Self:
        if not self.prefix.endswith("/") or key_problem(self.prefix + "receipt.json") is not None:
            raise ValueError(f"receipts.prefix {self.prefix!r} must be a valid key prefix ending in '/'")
        length = len(self.key_file.read_bytes().strip())
        if length < MIN_REPORT_KEY_BYTES:
            raise ValueError(
                f"receipts.keyFile holds {plural(length, 'byte')}; a receipt key needs at least "
                f"{MIN_REPORT_KEY_BYTES}"
            )
        return self


class OperatorConfig(StrictModel):
    default_storage: str
    storages: Annotated[dict[str, StorageConfig], Field(min_length=1)]
    # Unset: the storage's maxConcurrentRequests, which caps the calls across all objects anyway.
    chunks_in_flight_per_object: Annotated[int | None, Field(ge=1, le=64)] = None
    status_interval_seconds: Annotated[float, Field(ge=0, le=60)] = 1.0
    retention: RetentionConfig = RetentionConfig()
    # A secret of at least 32 bytes (a mounted Secret) that signs the failure reports of manifests,
    # which lie where tenants can write. Unset: the operator runs no manifests.
    report_key_file: ReadableFile | None = None
    # Unset: no erasure receipts.
    receipts: ReceiptsConfig | None = None

    @model_validator(mode="after")
    def _report_key_is_a_secret(self) -> Self:
        if self.report_key_file is not None:
            length = len(self.report_key_file.read_bytes().strip())
            if length < MIN_REPORT_KEY_BYTES:
                raise ValueError(
                    f"reportKeyFile holds {plural(length, 'byte')}; a report key needs at least "
                    f"{MIN_REPORT_KEY_BYTES}"
                )
        return self

    @model_validator(mode="after")
    def _receipts_have_a_place(self) -> Self:
        if self.receipts is None:
            return self
        if self.receipts.storage is not None and self.receipts.storage not in self.storages:
            raise ValueError(
                f"receipts.storage {self.receipts.storage!r} is not one of the storages: "
                f"{', '.join(sorted(self.storages))}"
            )
        places = [self.receipts.storage] if self.receipts.storage else sorted(self.storages)
        unable = [name for name in places if not self.storages[name].holds_objects()]
        if unable:
            raise ValueError(
                f"receipts cannot be kept on {', '.join(unable)}: it holds no objects (an http storage needs "
                "objectsUrl); set receipts.storage to one that does"
            )
        return self

    @model_validator(mode="after")
    def _default_storage_exists(self) -> Self:
        if self.default_storage not in self.storages:
            raise ValueError(
                f"defaultStorage {self.default_storage!r} is not one of the storages: "
                f"{', '.join(sorted(self.storages))}"
            )
        return self


def load_config(path: Path | None = None) -> OperatorConfig:
    if path is None:
        configured = os.environ.get(CONFIG_ENV)
        if not configured:
            raise ConfigError(f"set {CONFIG_ENV} to the path of the operator configuration file")
        path = Path(configured)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read configuration {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"configuration {path} is not valid YAML: {error}") from error
    try:
        return OperatorConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigError(f"invalid configuration {path}: {problems}") from error
