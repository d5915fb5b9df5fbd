"""The examples' modules, loaded from their files: examples/storage-server/storage_server.py and
examples/album-service/album_service.py are scripts in directories that are not packages (their names
hold a hyphen), run as they are documented (``python examples/storage-server/storage_server.py``,
``uvicorn album_service:app --app-dir examples/album-service``). Tests that call into them import them
from here, by path, with nothing added to sys.path:

    from tools.devkit.examples import storage_server

mypy reads the same files as the top-level modules ``storage_server`` and ``album_service`` (the
``mypy_path`` of pyproject.toml), so the names below are typed as those modules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

EXAMPLES = Path(__file__).parents[2] / "examples"
STORAGE_SERVER = EXAMPLES / "storage-server" / "storage_server.py"
ALBUM_SERVICE_DIR = EXAMPLES / "album-service"
ALBUM_SERVICE = ALBUM_SERVICE_DIR / "album_service.py"

__all__ = ["ALBUM_SERVICE", "ALBUM_SERVICE_DIR", "STORAGE_SERVER", "album_service", "storage_server"]


def load(path: Path) -> ModuleType:
    """The module in ``path``, executed once under its file's stem (in sys.modules, as dataclasses and
    pickling need, but not on sys.path)."""
    name = path.stem
    if (loaded := sys.modules.get(name)) is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


if TYPE_CHECKING:
    import album_service
    import storage_server
else:

    def __getattr__(name: str) -> ModuleType:
        """Each example loaded when first imported from here, not with this module."""
        paths = {"storage_server": STORAGE_SERVER, "album_service": ALBUM_SERVICE}
        if name not in paths:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return load(paths[name])
