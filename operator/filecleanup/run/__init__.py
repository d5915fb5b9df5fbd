"""Layer run. The I/O loop for one object: the reconciler carries out plan's decision; a deletion is
one ObjectRun (object_run) over a key source (sources: an object's own keys; manifest_keys: a
manifest, read and reported on by manifests), whose rounds send the chunks (rounds); a dry run checks;
context is how a run reports back. It imports api, storage and decide."""
