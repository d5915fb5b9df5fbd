"""Layer storage. Storage backends behind one small interface: delete a chunk of keys in one call. This
package's top level holds only the interface (storage/base.py) and its errors (storage/errors.py, one
tree); storage/opening.py opens the configured backends, so that what needs the interface alone loads no
backend."""

from __future__ import annotations

from filecleanup.storage.base import Backend, ChunkResult, Storage
from filecleanup.storage.errors import StorageUnavailable

__all__ = ["Backend", "ChunkResult", "Storage", "StorageUnavailable"]
