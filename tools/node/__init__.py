"""A one-node cluster: ``tools/node/node.sh`` runs ``python -m tools.node.node``."""
