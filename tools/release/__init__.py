"""Releases: the version rule and its CHANGELOG section (versioning.py), and the build of every artifact
from a stamped copy of the tree (build.py, run by `make release`)."""
