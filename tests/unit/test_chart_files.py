"""The chart's own files that restate something kept elsewhere: they must not drift from it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from filecleanup.api.config import StoragePolicy
from filecleanup.api.metrics import Metrics
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


def split_outside_code_and_parentheses(cell: str) -> list[str]:
    """`a`, `b` (c, d), e -> ["`a`", "`b` (c, d)", "e"]: commas inside `code` or (...) do not split."""
    items, current, in_code, depth = [], "", False, 0
    for char in cell:
        if char == "`":
            in_code = not in_code
        elif not in_code and char in "()":
            depth += 1 if char == "(" else -1
        if char == "," and not in_code and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += char
    return [*items, current.strip()]


def documented_values() -> list[tuple[list[str], list[str]]]:
    """The chart README's values table: each row's value paths (`.name` after `a.b` is `a.name`) and
    its defaults, one for each path, or one for them all."""
    readme = (CHART / "README.md").read_text()
    section = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = []
    for row in rows:
        value_cell, default_cell, _meaning = row.strip("|").split(" | ")
        paths = [item.strip("`") for item in split_outside_code_and_parentheses(value_cell.strip())]
        parent = paths[0].rpartition(".")[0]
        paths = [f"{parent}{path}" if path.startswith(".") else path for path in paths]
        table.append((paths, split_outside_code_and_parentheses(default_cell.strip())))
    return table


MISSING = object()


def value_at(values: object, path: str) -> object:
    for part in path.split("."):
        if not isinstance(values, dict) or part not in values:
            return MISSING
        values = values[part]
    return values


def in_schema(schema: dict[str, Any], path: str) -> bool:
    """Whether the values schema takes this value: a property, an entry of a map (a storage), or one
    in any of its alternatives (the storage types)."""
    if not path:
        return True
    part, _, rest = path.partition(".")
    if part in schema.get("properties", {}):
        return in_schema(schema["properties"][part], rest)
    if isinstance(schema.get("additionalProperties"), dict):
        return in_schema(schema["additionalProperties"], rest)
    return any(in_schema(alternative, path) for alternative in schema.get("oneOf", []))


def test_chart_readme_documents_every_value_with_its_default() -> None:
    """Each default the chart's README gives is a `literal` (equal to values.yaml's), "empty" (an
    empty string, list or map) or "unset" (not in values.yaml, though the schema takes it); whatever
    follows it in parentheses explains it. Every top-level value is there."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    table = documented_values()
    assert table
    problems = []
    for paths, given in table:
        defaults = given * len(paths) if len(given) == 1 else given
        if len(defaults) != len(paths):
            problems.append(f"{paths}: {len(defaults)} defaults for {len(paths)} values")
            continue
        for path, default in zip(paths, defaults, strict=True):
            actual = value_at(values, path)
            literal = re.match(r"`([^`]+)`", default)
            if not in_schema(schema, path):
                problems.append(f"{path}: not a value of the chart")
            elif literal:
                if actual is MISSING or actual != yaml.safe_load(literal[1]):
                    shown = "not in values.yaml" if actual is MISSING else repr(actual)
                    problems.append(f"{path}: the README says {literal[0]}, values.yaml {shown}")
            elif default.startswith("empty"):
                if actual not in ("", [], {}):
                    problems.append(f"{path}: the README says empty, values.yaml {actual!r}")
            elif default.startswith("unset"):
                if actual is not MISSING:
                    problems.append(f"{path}: the README says unset, values.yaml {actual!r}")
            else:
                problems.append(f"{path}: {default!r} is neither a `literal`, empty nor unset")
    documented = {path.split(".")[0] for paths, _ in table for path in paths}
    problems += [f"{name}: not in the README's values table" for name in values if name not in documented]
    assert not problems, "\n".join(problems)


def exported_series() -> set[str]:
    """The series names the operator's metrics are scraped as."""
    suffixes = {"counter": ["_total"], "info": ["_info"], "histogram": ["_bucket", "_sum", "_count"]}
    return {
        f"{family.name}{suffix}"
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, [""])
    }


def test_grafana_dashboard_queries_only_metrics_the_operator_exports() -> None:
    dashboard = json.loads((CHART / "files" / "dashboards" / "filecleanup-operator.json").read_text())
    assert dashboard["uid"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    targets = [target for panel in panels for target in panel["targets"]]
    assert targets
    queries = [target["expr"] for target in targets] + [variables["namespace"]["definition"]]
    queried = {name for query in queries for name in re.findall(r"\bfilecleanup_[a-z_]+", query)}
    assert queried, queries
    assert queried <= exported_series(), queried - exported_series()
    # Whatever Prometheus the viewer picks, and the installation's namespace alone.
    assert {panel["datasource"]["uid"] for panel in panels + targets} == {"${datasource}"}
    assert all('namespace="$namespace"' in target["expr"] for target in targets)
