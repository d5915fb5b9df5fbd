"""Test and demo helpers that ship with the operator: a reference storage server."""
