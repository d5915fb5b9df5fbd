"""The CRD in crds/ is the schema's one source; the pydantic models must agree with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from filecleanup.api.keys import key_problem
from filecleanup.api.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    FileCleanupSpec,
    FileCleanupStatus,
    Phase,
)

CRD_PATH = Path(__file__).parents[2] / "crds" / "filecleanup.dev_filecleanups.yaml"
LIMITS = ("minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "enum")
KOPF_FIELDS = {"kopf"}  # Kopf's own progress, not ours


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return document


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    properties: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]
    return properties


def resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and drop the null branch of Optional, keeping the outer default."""
    if "$ref" in node:
        return resolve(definitions[node["$ref"].rsplit("/", 1)[1]], definitions) | {
            k: v for k, v in node.items() if k != "$ref"
        }
    branches = [branch for branch in node.get("anyOf", []) if branch.get("type") != "null"]
    if len(branches) == 1:
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if outer.get("default", "absent") is None:
            del outer["default"]  # Optional's None default means "absent" in the CRD
        return resolve(branches[0], definitions) | outer
    return node


def compare(
    crd_node: dict[str, Any],
    model_node: dict[str, Any],
    definitions: dict[str, Any],
    path: str,
    constraints: tuple[str, ...],
) -> None:
    model_node = resolve(model_node, definitions)
    for constraint in constraints:
        assert crd_node.get(constraint) == model_node.get(constraint), f"{path}: {constraint} differs"
    if "items" in crd_node:
        compare(crd_node["items"], model_node["items"], definitions, f"{path}[]", constraints)
    crd_properties = {k: v for k, v in crd_node.get("properties", {}).items() if k not in KOPF_FIELDS}
    if crd_properties or "properties" in model_node:
        assert set(crd_properties) == set(model_node.get("properties", {})), f"{path}: fields differ"
        for name, child in crd_properties.items():
            compare(child, model_node["properties"][name], definitions, f"{path}.{name}", constraints)


# Spec defaults are applied by the API server, so the models must default the same way. Status
# defaults are only how the operator reads a status it has not written yet.
@pytest.mark.parametrize(
    ("field", "model", "constraints"),
    [("spec", FileCleanupSpec, (*LIMITS, "default")), ("status", FileCleanupStatus, LIMITS)],
)
def test_schema_and_model_agree(
    schema: dict[str, Any], field: str, model: type[BaseModel], constraints: tuple[str, ...]
) -> None:
    model_schema = model.model_json_schema(by_alias=True, mode="serialization")
    compare(schema[field], model_schema, model_schema.get("$defs", {}), field, constraints)


def test_required_spec_fields_agree(schema: dict[str, Any]) -> None:
    required = {name for name, field in FileCleanupSpec.model_fields.items() if field.is_required()}
    assert set(schema["spec"].get("required", [])) == {
        FileCleanupSpec.model_fields[name].alias for name in required
    }


def test_names_agree(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert crd["spec"]["names"]["kind"] == KIND
    assert crd["spec"]["names"]["shortNames"] == ["fc"]
    assert [v["name"] for v in crd["spec"]["versions"]] == [VERSION]
    assert f"{GROUP}/{VERSION}" == API_VERSION


def test_phase_enum_agrees(schema: dict[str, Any]) -> None:
    assert schema["status"]["properties"]["phase"]["enum"] == [phase.value for phase in Phase]


def undescribed(node: dict[str, Any], path: str) -> list[str]:
    """The paths under ``node`` whose property (or array item object) has no description."""
    missing = [] if str(node.get("description", "")).strip() else [path]
    for name, child in node.get("properties", {}).items():
        missing += undescribed(child, f"{path}.{name}")
    if "items" in node:
        # An item is described by its array; the fields of an item object are not.
        missing += [item for item in undescribed(node["items"], f"{path}[]") if item != f"{path}[]"]
    return missing


def test_every_field_is_described_for_kubectl_explain(schema: dict[str, Any]) -> None:
    # The API server describes metadata itself and rejects a CRD that says anything about it.
    missing = [
        path for name, node in schema.items() if name != "metadata" for path in undescribed(node, name)
    ]
    assert not missing, f"fields without a description (kubectl explain shows none): {missing}"


SCHEMA_KEYWORDS = {
    "type",
    "description",
    "properties",
    "items",
    "required",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "additionalProperties",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "nullable",
}


def test_every_schema_node_holds_only_schema_keywords(schema: dict[str, Any]) -> None:
    """A flow mapping whose description has a comma (`{type: integer, description: a, b}`) parses into a
    stray keyword, which the API server refuses at apply time: caught here instead."""
    stray: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        stray.extend(f"{path}: {key!r}" for key in node if key not in SCHEMA_KEYWORDS)
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    for name, node in schema.items():
        walk(node, name)
    assert stray == []


KEY_ALPHABET = st.sampled_from(["a", "b", ".", "/", "\x00", "\n", "\x7f", "é", " ", "-"])


@given(st.text(KEY_ALPHABET, max_size=12) | st.text(max_size=12))
def test_the_crds_key_pattern_and_the_operators_key_rules_agree(key: str) -> None:
    """The API server refuses exactly the keys the operator refuses (up to the length limits, which the
    schema sets apart): the one pattern is the rules, segment by segment."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    pattern = spec["properties"]["keys"]["items"]["pattern"]
    assert (re.fullmatch(pattern, key) is not None) == (key_problem(key) is None)
