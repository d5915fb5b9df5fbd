"""filecleanup-operator: deletes the storage keys listed in FileCleanup resources. Its layers, from the
top: controller and album, run, decide, storage, api (docs/design.md)."""

# The tree's version: a release's is stamped here in the copy `make release` builds from (a git tag's,
# docs/versioning.md), so the wheel, the image, the CLI's --version and the metrics all say it.
__version__ = "0.0.0.dev0"
