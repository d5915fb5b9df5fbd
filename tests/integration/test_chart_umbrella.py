"""The chart as a subchart: an umbrella chart that depends on it renders, lints and installs. Helm hands
every subchart the umbrella's `global` values (an empty map when none are set), so the chart's schema,
which refuses unknown keys, must accept them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.commands import Cli, set_flags
from tests.kube import Kube

ROOT = Path(__file__).parents[2]
CHART = ROOT / "charts" / "filecleanup-operator"
SUBCHART = yaml.safe_load((CHART / "Chart.yaml").read_text())

WITHOUT_GLOBALS: dict[str, str] = {}
WITH_GLOBALS = {"global.imageRegistry": "registry.example.internal", "global.labels.team": "photos"}


@pytest.fixture(scope="module")
def cli(helm: Path, kubeconfig: Path, crd: None) -> Cli:
    return Cli(helm, kubeconfig)


@pytest.fixture(scope="module")
def umbrella(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chart that depends on this one from the working tree, as a platform team's would."""
    chart = tmp_path_factory.mktemp("umbrella")
    dependency = {"name": SUBCHART["name"], "version": SUBCHART["version"], "repository": f"file://{CHART}"}
    umbrella_chart = {
        "apiVersion": "v2",
        "name": "platform",
        "description": "An umbrella chart for the tests",
        "version": "1.0.0",
        "icon": "https://example.invalid/icon.png",  # helm lint --strict asks for one
        "dependencies": [dependency],
    }
    (chart / "Chart.yaml").write_text(yaml.safe_dump(umbrella_chart))
    # The subchart's values go under its name; crds off: the suite's CRD is already there.
    (chart / "values.yaml").write_text(yaml.safe_dump({SUBCHART["name"]: {"crds": {"enabled": False}}}))
    cli.helm("dependency", "update", str(chart))
    assert list((chart / "charts").glob(f"{SUBCHART['name']}-*.tgz"))
    return chart


@pytest.mark.parametrize("values", [WITHOUT_GLOBALS, WITH_GLOBALS], ids=["no-globals", "globals"])
def test_umbrella_chart_lints_and_renders_the_operator(
    cli: Cli, umbrella: Path, values: dict[str, str]
) -> None:
    linted = cli.helm("lint", "--strict", str(umbrella), *set_flags(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout

    rendered = cli.helm("template", "platform", str(umbrella), *set_flags(values)).stdout
    documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == "platform-filecleanup-operator"
    assert "CustomResourceDefinition" not in {doc["kind"] for doc in documents}  # the umbrella's value


def test_umbrella_chart_installs(cli: Cli, kube: Kube, umbrella: Path) -> None:
    namespace = kube.create_namespace("platform")
    try:
        cli.helm("install", "platform", str(umbrella), "-n", namespace, *set_flags(WITH_GLOBALS))
        deployment = json.loads(
            cli.kubectl(
                "get", "deployment", "platform-filecleanup-operator", "-n", namespace, "-o", "json"
            ).stdout
        )
        assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == "platform"
    finally:
        cli.helm("uninstall", "platform", "-n", namespace, check=False)
