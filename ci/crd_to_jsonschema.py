"""Convert CustomResourceDefinition schemas to strict JSON schemas (one file per kind and version).

Each served version's `openAPIV3Schema` becomes `<out>/<group>/<kind>_<version>.json` (lower case), the
layout kubeconform reads with `-schema-location '<dir>/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'`.
The conversion follows kubectl's validation (and kubeconform's openapi2jsonschema.py), made stricter:

* every object schema that lists `properties` gets `additionalProperties: false`, unless the CRD marks it
  `x-kubernetes-preserve-unknown-fields: true` (those objects really accept anything);
* `nullable: true` becomes a `null` alternative of the type;
* the root pins `apiVersion` to `<group>/<version>` and `kind` to the CRD's kind, and requires both.

`metadata` stays an open object, as in the CRD: the API server validates it as ObjectMeta (the chart tests
check it against the Kubernetes ObjectMeta schema separately).

Usage: python ci/crd_to_jsonschema.py OUT_DIR CRD_FILE... (prints one line per schema written).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "dependencies")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "additionalItems")


def convert(node: Any) -> Any:
    """Return a strict JSON-schema copy of an OpenAPI v3 schema node (input is not modified)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "nullable":
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [convert(sub) for sub in value]
        elif key in _SCHEMA_VALUES:
            out[key] = [convert(sub) for sub in value] if isinstance(value, list) else convert(value)
        else:
            # Annotations and values (description, enum, default, example, x-kubernetes-*) are copied
            # as they are: a `default` that happens to contain "properties" is not a schema.
            out[key] = value
    if node.get("nullable") is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and node.get("x-kubernetes-preserve-unknown-fields") is not True
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas(crd: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """(relative path, JSON schema) for every version of a CRD that carries a schema."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    result = []
    for version in spec.get("versions", []):
        openapi = (version.get("schema") or {}).get("openAPIV3Schema")
        if openapi is None:
            continue
        schema = convert(openapi)
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {**props.get("apiVersion", {"type": "string"}), "enum": [f"{group}/{version['name']}"]}
        props["kind"] = {**props.get("kind", {"type": "string"}), "enum": [kind]}
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
        schema["additionalProperties"] = False
        document = {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": f"{kind} {group}/{version['name']}",
            **schema,
        }
        result.append((Path(group.lower()) / f"{kind.lower()}_{version['name'].lower()}.json", document))
    return result


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(argv[1])
    written = 0
    for name in argv[2:]:
        with open(name) as handle:
            documents = [d for d in yaml.safe_load_all(handle) if isinstance(d, dict)]
        crds = [d for d in documents if d.get("kind") == "CustomResourceDefinition"]
        if not crds:
            print(f"{name}: no CustomResourceDefinition found", file=sys.stderr)
            return 1
        for crd in crds:
            for relative, document in crd_schemas(crd):
                target = out_dir / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
                print(f"{relative}")
                written += 1
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
