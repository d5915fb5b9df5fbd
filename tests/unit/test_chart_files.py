"""The chart's own files that restate something kept elsewhere: they must not drift from it."""

from __future__ import annotations

from pathlib import Path

import yaml

from filecleanup.api.config import StoragePolicy
from filecleanup.api.models import API_VERSION, KIND, FileCleanupSpec

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


def test_artifact_hub_crds_and_example_match_the_api() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    annotations = chart["annotations"]
    assert all(isinstance(value, str) for value in annotations.values())  # Artifact Hub takes strings
    crd = yaml.safe_load((ROOT / "crds" / "filecleanup.dev_filecleanups.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    (listed,) = yaml.safe_load(annotations["artifacthub.io/crds"])
    assert (listed["kind"], listed["version"], listed["name"]) == (
        KIND,
        version["name"],
        crd["metadata"]["name"],
    )

    (example,) = yaml.safe_load(annotations["artifacthub.io/crdsExamples"])
    assert (example["apiVersion"], example["kind"]) == (API_VERSION, KIND)
    spec = FileCleanupSpec.model_validate(example["spec"])
    # The model ignores unknown fields; the API server would prune them: none may be there.
    assert set(example["spec"]) <= set(
        version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    )
    # It works with the chart's defaults: the default storage's policy allows it.
    values = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    policy = StoragePolicy.model_validate(values["storages"][values["defaultStorage"]]["policy"])
    namespace = example["metadata"]["namespace"]
    assert policy.allows(namespace)
    assert all(key.startswith(policy.prefix_for(namespace)) for key in spec.keys)
