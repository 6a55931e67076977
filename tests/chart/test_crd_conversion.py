"""ci/crd_to_jsonschema.py: the strictness rules of the CRD schema conversion.

The converter is build tooling (ci/crd-schemas.sh runs it as a command), so it is run here the same
way: the CRD below written to a file, converted into a temporary directory, the schema read back.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from wp_devsupport.repo import REPO

CONVERTER = REPO / "ci" / "crd_to_jsonschema.py"

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


@functools.cache
def _converted() -> tuple[str, str]:
    """(the converter's output line, the schema file's text) of CRD, converted once."""
    with tempfile.TemporaryDirectory(prefix="crd-conversion-") as tmp:
        crd_file, out_dir = Path(tmp) / "widget-crd.yaml", Path(tmp) / "schemas"
        crd_file.write_text(yaml.safe_dump(CRD), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, str(CONVERTER), str(out_dir), str(crd_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        (written,) = result.stdout.splitlines()
        return written, (out_dir / written).read_text(encoding="utf-8")


def _schema() -> dict[str, Any]:
    written, text = _converted()
    assert written == "example.com/widget_v1.json"
    schema: dict[str, Any] = json.loads(text)
    return schema


def _validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_schema())


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
    schema = _schema()
    assert schema["properties"]["spec"]["properties"]["default"]["default"] == {"properties": {"x": 1}}
