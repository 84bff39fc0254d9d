"""skaffold.yaml: valid v4beta13 for the base config and every profile, and consistent with the repository."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from .rendering import REPO, SCHEMAS, by_kind, json_patch, render

SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
PROFILES = {p["name"]: p for p in SKAFFOLD.get("profiles", [])}


@pytest.fixture(scope="module")
def validator():
    path = SCHEMAS / "skaffold-v4beta13.json"
    assert path.exists(), f"{path}: the skaffold schema must sit in ../shared/schemas beside the repository"
    schema = json.loads(path.read_text())
    return jsonschema.Draft7Validator(schema)


def effective(profile: str | None) -> dict:
    """The config skaffold runs with a profile active: its patches applied, its own fields merged on top."""
    config = {k: v for k, v in SKAFFOLD.items() if k != "profiles"}
    if profile is None:
        return config
    p = PROFILES[profile]
    config = json_patch(config, p.get("patches", []))
    for key in ("build", "deploy", "manifests", "portForward", "test", "verify"):
        if key in p:
            config[key] = p[key]
    return config


def errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_skaffold_yaml_validates(validator):
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta13"
    assert errors(validator, SKAFFOLD) == []


def test_dev_and_gpu_profiles_exist_and_validate_once_applied(validator):
    assert {"dev", "gpu"} <= set(PROFILES)
    for name in PROFILES:
        assert errors(validator, effective(name)) == [], name


def test_schema_rejects_a_misspelt_field(validator):
    bad = json_patch(SKAFFOLD, [{"op": "add", "path": "/deploy/helm/releases/0/chartpath", "value": "x"}])
    assert errors(validator, bad)


def test_build_matches_the_dockerfile():
    text = (REPO / "Dockerfile").read_text()
    declared = set(re.findall(r"^ARG (\w+)", text, re.M))
    for name in [None, *PROFILES]:
        (artifact,) = effective(name)["build"]["artifacts"]
        assert (REPO / artifact.get("context", ".") / artifact["docker"]["dockerfile"]).exists()
        assert set(artifact["docker"].get("buildArgs", {})) <= declared
    cpu = effective(None)["build"]["artifacts"][0]["docker"]["buildArgs"]["TORCH_VARIANT"]
    gpu = effective("gpu")["build"]["artifacts"][0]["docker"]["buildArgs"]["TORCH_VARIANT"]
    assert (cpu, gpu[:2]) == ("cpu", "cu")
    assert effective("dev")["build"]["local"]["push"] is False


@pytest.mark.parametrize("profile", [None, "dev", "gpu"])
def test_helm_release_renders_with_the_profile_values(chart, profile):
    config = effective(profile)
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]) == REPO / "charts" / "mofi"
    values: dict = {}
    for path in release["valuesFiles"]:
        layer = yaml.safe_load((REPO / path).read_text()) or {}
        values = _deep_merge(values, layer)
    # skaffold fills these from the built image; any string will do for rendering.
    image_repo = config["build"]["artifacts"][0]["image"]
    assert release["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{image_repo}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{image_repo}}}}}",
    }
    values = _deep_merge(values, {"image": {"repository": "registry.local/mofi", "tag": "abc123"}})
    objects = render(chart, values)
    services = by_kind(objects, "Service")
    for forward in config.get("portForward", []):
        svc = services[forward["resourceName"]]
        assert forward["port"] in [p["port"] for p in svc["spec"]["ports"]]
        assert forward["namespace"] == release["namespace"]
    if profile == "gpu":
        scorer = by_kind(objects, "Deployment")["mofi-scorer"]["spec"]["template"]["spec"]["containers"][0]
        assert scorer["resources"]["limits"]["nvidia.com/gpu"] == 1


def _deep_merge(base: dict, layer: dict) -> dict:
    out = dict(base)
    for key, value in layer.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
