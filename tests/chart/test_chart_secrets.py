"""Secrets: no Secret's value in a pod spec, the chart-managed Redis password (given, kept or generated)
and the checksum that rolls the pods when it changes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest

from wp_devsupport.chart import (
    ALL_SCENARIOS,
    FULLNAME,
    all_containers,
    default_values,
    find,
    find_all,
    load_documents,
    pod_specs,
    render_chart,
    render_chart_text,
    render_scenario,
    with_values,
)


def _secret_literals(objects: list[dict[str, Any]]) -> set[str]:
    literals = set()
    for obj in find_all(objects, "Secret"):
        literals |= {base64.b64decode(v).decode() for v in obj.get("data", {}).values()}
        literals |= set(obj.get("stringData", {}).values())
    return {s for s in literals if s}


class TestPodSpecs:
    @pytest.mark.parametrize("scenario", ALL_SCENARIOS)
    def test_no_secret_literal_in_pod_specs(self, scenario: str) -> None:
        objects = render_scenario(scenario)
        secrets = _secret_literals(objects)
        for where, spec in pod_specs(objects):
            text = json.dumps(spec)
            for secret in secrets:
                assert secret not in text, f"{where} contains a Secret's value"
            for ctr in all_containers(spec):
                for item in ctr.get("env", []):
                    if item["name"].endswith("_FILE"):
                        assert item.get("value", "/").startswith("/"), f"{where}/{ctr['name']}: {item['name']}"
                    elif re.search(r"PASSWORD|SECRET|TOKEN|AUTH", item["name"]):
                        assert "value" not in item, f"{where}/{ctr['name']}: {item['name']} is a literal"

    def test_a_password_from_values_only_lands_in_the_secret(self) -> None:
        password = "s3cr3t-value-from-values"
        objects = render_chart(with_values({"redis": {**default_values()["redis"], "password": password}}))
        holders = [
            o
            for o in objects
            if password in json.dumps(o) or base64.b64encode(password.encode()).decode() in json.dumps(o)
        ]
        assert [(o["kind"], o["metadata"]["name"]) for o in holders] == [("Secret", f"{FULLNAME}-redis")]


class TestManagedSecret:
    def test_password_is_generated(self) -> None:
        first = find(render_scenario("defaults"), "Secret")
        again = find(render_chart(default_values()), "Secret")
        password = base64.b64decode(again["data"]["redis-password"]).decode()
        assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
        assert again["data"] != first["data"], "helm template has no cluster to look the old password up in"

    def test_deleted_with_the_release_unless_kept(self) -> None:
        first = find(render_scenario("defaults"), "Secret")
        assert first["metadata"].get("annotations") is None, "deleted with the release by default"
        kept = find(render_scenario("embedded-redis"), "Secret")
        assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


class TestChecksum:
    @staticmethod
    def checksums(extra_redis: dict[str, Any]) -> list[str]:
        objects = render_chart(with_values({"redis": {**default_values()["redis"], **extra_redis}}))
        return [
            d["spec"]["template"]["metadata"]["annotations"]["checksum/redis-secret"]
            for d in find_all(objects, "Deployment")
        ]

    def test_follows_the_secret(self) -> None:
        checksums = self.checksums
        one, same, other = (
            checksums({"password": "one"}),
            checksums({"password": "one"}),
            checksums({"password": "two"}),
        )
        assert one == same
        assert one[0] != other[0]
        existing = checksums({"existingSecret": "redis"})
        assert existing != one
        assert existing != checksums({"existingSecret": "redis-2"})
        for digest in (*one, *other, *existing):
            assert re.fullmatch(r"[0-9a-f]{64}", digest)
            assert digest not in (hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two").hexdigest())

    def test_covers_the_secret_rendered_in_the_same_run(self) -> None:
        """The generated password is computed once per render: the checksum hashes the very Secret that
        is installed (the chart's checksum is sha256 of Helm's toJson of these parts)."""
        text = render_chart_text(default_values())
        (secret_doc,) = [
            d for d in text.split("\n---\n") if "# Source: wp-k8s-service/templates/redis-secret.yaml" in d
        ]
        secret_text = secret_doc.split("\n", 1)[1]
        objects = load_documents(text)
        checksum = find(objects, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
        candidates = set()
        for managed in (secret_text, "\n" + secret_text, "\n" + secret_text.rstrip("\n"), secret_text.rstrip("\n")):
            parts = {
                "ca": "",
                "caKey": "ca.crt",
                "key": "redis-password",
                "managed": managed,
                "secret": f"{FULLNAME}-redis",
            }
            encoded = json.dumps(parts, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
            candidates.add(hashlib.sha256(encoded.encode()).hexdigest())
        assert checksum["checksum/redis-secret"] in candidates
