"""ci/crd_to_jsonschema.py: the strictness rules of the CRD schema conversion."""

from __future__ import annotations

import importlib.util
import sys

import jsonschema
from chart_support import REPO

_spec = importlib.util.spec_from_file_location("crd_to_jsonschema", REPO / "ci" / "crd_to_jsonschema.py")
assert _spec
assert _spec.loader
crd_to_jsonschema = importlib.util.module_from_spec(_spec)
sys.modules["crd_to_jsonschema"] = crd_to_jsonschema
_spec.loader.exec_module(crd_to_jsonschema)

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "nullable": True},
                                    "free": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                        "properties": {"known": {"type": "string"}},
                                    },
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
                                    "default": {"type": "object", "default": {"properties": {"x": 1}}},
                                },
                            },
                        },
                    }
                },
            },
            {"name": "v2alpha1", "served": False},
        ],
    },
}


def _validator() -> jsonschema.Draft7Validator:
    ((path, schema),) = crd_to_jsonschema.crd_schemas(CRD)
    assert str(path) == "example.com/widget_v1.json"
    return jsonschema.Draft7Validator(schema)


def _valid(obj: dict) -> bool:
    return _validator().is_valid(obj)


def test_unknown_fields_are_refused_unless_preserved() -> None:
    base = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert _valid({**base, "spec": {"size": 1, "free": {"anything": [1]}, "labels": {"a": "b"}}})
    assert not _valid({**base, "spec": {"sise": 1}})
    assert not _valid({**base, "extra": 1})
    assert _valid({**base, "spec": {"size": None, "mode": None}})
    assert not _valid({**base, "spec": {"mode": "c"}})
    assert not _valid({**base, "spec": {"labels": {"a": 1}}})


def test_root_pins_api_version_and_kind() -> None:
    assert not _valid({"apiVersion": "example.com/v2", "kind": "Widget"})
    assert not _valid({"apiVersion": "example.com/v1", "kind": "Gadget"})
    assert not _valid({"kind": "Widget"})


def test_defaults_are_values_not_schemas() -> None:
    ((_, schema),) = crd_to_jsonschema.crd_schemas(CRD)
    assert schema["properties"]["spec"]["properties"]["default"]["default"] == {"properties": {"x": 1}}
