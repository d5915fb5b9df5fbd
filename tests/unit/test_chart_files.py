"""The chart's own files that restate something kept elsewhere: they must not drift from it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "filecleanup-operator"


def test_chart_crds_are_copies_of_crds() -> None:
    sources = {path.name: path for path in (ROOT / "crds").glob("*.yaml")}
    copies = {path.name: path for path in (CHART / "files" / "crds").glob("*.yaml")}
    assert sources
    assert set(copies) == set(sources), "the chart's CRDs differ from crds/: run `make crds`"
    for name, source in sources.items():
        assert not copies[name].is_symlink(), f"{copies[name]} is a symlink: helm warns about it"
        assert copies[name].read_bytes() == source.read_bytes(), (
            f"{copies[name].relative_to(ROOT)} differs from {source.relative_to(ROOT)}: run `make crds`"
        )
