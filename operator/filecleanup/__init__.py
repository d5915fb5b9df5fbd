"""filecleanup: a Kubernetes operator that deletes the storage keys listed in FileCleanup resources."""
