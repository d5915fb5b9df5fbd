"""The demo: ``python -m tools.demo.demo`` (make demo, make demo-helm)."""
