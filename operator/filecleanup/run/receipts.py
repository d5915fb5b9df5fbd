"""Layer run. Writes a finished object's erasure receipt (decide/receipts.py) to the receipts storage,
before the status that says the object finished: an object whose receipt is not written does not
finish, it waits as for a storage outage and writes it again."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from filecleanup.api import redaction
from filecleanup.api.config import OperatorConfig, ReceiptsConfig
from filecleanup.api.models import FileCleanupSpec, FileCleanupStatus, ReceiptPlace
from filecleanup.decide import receipts
from filecleanup.run.context import ObjectContext
from filecleanup.storage import Storage, StorageUnavailable
from filecleanup.storage.errors import ObjectError


class ReceiptWriter:
    def __init__(self, config: ReceiptsConfig, storages: Mapping[str, Storage]) -> None:
        self._config = config
        self._storages = storages
        self._secret = config.key_file.read_bytes().strip()
        redaction.register(self._secret.decode(errors="replace"))

    @classmethod
    def configured(cls, config: OperatorConfig, storages: Mapping[str, Storage]) -> ReceiptWriter | None:
        return None if config.receipts is None else cls(config.receipts, storages)

    def _places(self) -> list[str]:
        return [self._config.storage] if self._config.storage else list(self._storages)

    def protected_prefix(self, storage: str) -> str | None:
        """The prefix no object may delete under on ``storage``: where the receipts are."""
        return self._config.prefix if storage in self._places() else None

    async def write(
        self,
        context: ObjectContext,
        spec: FileCleanupSpec,
        status: FileCleanupStatus,
        *,
        storage: str,
        recoverable_seconds: int | None,
    ) -> ReceiptPlace:
        """Write the receipt of the object's final ``status``; where it went. A storage that does not
        take it raises StorageUnavailable, with why, and the object waits."""
        subject = receipts.Subject(context.namespace, context.name, context.uid, context.album)
        place = self._config.storage or storage
        key = receipts.receipt_key(self._config.prefix, subject)
        if key is None:  # an album label that makes no key: filed without it
            key = receipts.receipt_key(self._config.prefix, dataclasses.replace(subject, album=None))
        assert key is not None  # noqa: S101  (a namespace, a name and a UID always make a key)
        document = receipts.receipt(
            subject, spec, status, storage=storage, recoverable_seconds=recoverable_seconds
        )
        try:
            await self._storages[place].write(key, receipts.sign(document, self._secret))
        except (ObjectError, StorageUnavailable) as error:
            raise StorageUnavailable(
                f"the erasure receipt could not be written to {place!r}: {error}"
            ) from error
        return ReceiptPlace(storage=place, key=key)
