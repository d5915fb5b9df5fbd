"""Development tools: the local control plane, the node, the demo and the helpers they share with the
tests and the benchmarks (devkit). Imported from the repository root (``python -m tools.demo.demo``);
never imports ``tests``."""
