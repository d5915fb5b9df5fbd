"""filecleanup-operator: deletes the storage keys listed in FileCleanup resources."""

__version__ = "0.1.0"
