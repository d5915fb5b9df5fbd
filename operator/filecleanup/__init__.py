"""filecleanup-operator: deletes the storage keys listed in FileCleanup resources. Its layers, from the
top: controller and album, run, decide, storage, api (docs/design.md)."""

__version__ = "0.1.0"
