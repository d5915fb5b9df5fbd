"""The I/O loop for one object: the reconciler carries out plan's decision, a round sends the chunks
(rounds), a manifest's run reads its manifest and reports (manifests, manifest_run), a dry run
checks; context is how a run reports back. It imports api, storage and decide."""
