"""Generate the chart's ``settings`` values block and ``values.schema.json`` from ``mofi.settings``.

Why generated: every setting has one spelling everywhere (``settings.<section>.<field>`` in Helm,
``MOFI_<SECTION>_<FIELD>`` in the pod). Deriving the values block, its types and its documentation
from the dataclasses means a new or renamed setting cannot silently miss the chart; the deploy tests
run :func:`check` and fail when the committed files are stale.

What is left out of ``settings``: the ``stack`` section (the local loopback stack, meaningless in a
cluster) and the credentials in :data:`SECRET_FIELDS`, which reach pods only from a Secret. A setting
derived from the stack (the Kafka and S3 endpoints) therefore needs a cluster default and the schema
requires it non-empty; other derived settings (checkpoint URIs) appear with their derived value. Each
field's constraints (``minimum``, ``maximum``, ``enum``) become part of its schema.

Run ``python charts/generate_settings.py`` to rewrite the files, ``--check`` to only compare.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from mofi.settings import CREDENTIALS, LOCAL_ONLY_SECTIONS, Settings, constraints, derivation

__all__ = [
    "CHART_DIR",
    "CLUSTER_DEFAULTS",
    "EXCLUDED_SECTIONS",
    "SECRET_FIELDS",
    "chart_settings",
    "render_settings_block",
    "build_schema",
    "generate",
    "check",
    "main",
]

CHART_DIR = Path(__file__).resolve().parent / "mofi"
VALUES = CHART_DIR / "values.yaml"
SCHEMA = CHART_DIR / "values.schema.json"
BEGIN = "# BEGIN GENERATED settings (charts/generate_settings.py)"
END = "# END GENERATED settings"

EXCLUDED_SECTIONS = LOCAL_ONLY_SECTIONS

# (section, field) -> key name under `credentials.keys` in values.yaml.
SECRET_FIELDS: dict[tuple[str, str], str] = {key: c.value_key for key, c in CREDENTIALS.items()}

# Where a pod differs from a laptop: bind all interfaces, expose metrics, reach the external
# endpoints by their in-cluster names, keep scratch data under the chart's work directory.
CLUSTER_DEFAULTS: dict[tuple[str, str], Any] = {
    ("kafka", "bootstrap_servers"): "kafka:9092",
    ("kafka", "replication_factor"): 3,
    ("kafka", "min_insync_replicas"): 2,
    ("s3", "endpoint"): "minio:9000",
    ("milvus", "uri"): "http://milvus:19530",
    ("data", "cache_dir"): "/var/lib/mofi/cache",
    ("data", "build_dir"): "/var/lib/mofi/data",
    ("ner", "kb_path"): "/var/lib/mofi/kb/kb.jsonl",
    ("grpc", "host"): "0.0.0.0",
    ("grpc", "metrics_port"): 9090,
}

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclasses.dataclass(frozen=True)
class ChartSetting:
    """One setting as the chart sees it: where it lives, its type, default and meaning."""

    section: str
    name: str
    type: type
    default: Any
    doc: str
    schema: dict[str, Any]  # JSON Schema keywords beyond the type: the field's constraints


@dataclasses.dataclass(frozen=True)
class ChartSection:
    name: str
    doc: str
    fields: tuple[ChartSetting, ...]


def chart_settings() -> list[ChartSection]:
    """The settings sections and fields that go into the chart, with cluster defaults applied."""
    unknown = [k for k in CLUSTER_DEFAULTS if k in SECRET_FIELDS]
    if unknown:
        raise ValueError(f"cluster defaults for credentials: {unknown}")
    settings = Settings()
    seen: set[tuple[str, str]] = set()
    sections = []
    for sec in dataclasses.fields(settings):
        if sec.name in EXCLUDED_SECTIONS:
            continue
        obj = getattr(settings, sec.name)
        hints = typing.get_type_hints(type(obj))
        fields = []
        for f in dataclasses.fields(obj):
            key = (sec.name, f.name)
            seen.add(key)
            if key in SECRET_FIELDS:
                continue
            typ = hints[f.name]
            if typ not in _JSON_TYPES:
                raise TypeError(f"{sec.name}.{f.name}: type {typ!r} has no Helm value form")
            schema = constraints(f)
            rule = derivation(f)
            if rule is not None and rule[0] in EXCLUDED_SECTIONS:
                if key not in CLUSTER_DEFAULTS:
                    raise ValueError(
                        f"{sec.name}.{f.name} follows the local {rule[0]} section: give it a cluster default"
                    )
                schema["minLength"] = 1
            default = CLUSTER_DEFAULTS.get(key, getattr(obj, f.name))
            if type(default) is not typ and not (typ is float and type(default) is int):
                raise TypeError(f"cluster default for {sec.name}.{f.name} is not a {typ.__name__}")
            fields.append(ChartSetting(sec.name, f.name, typ, default, f.metadata.get("doc", ""), schema))
        sections.append(ChartSection(sec.name, (type(obj).__doc__ or "").strip(), tuple(fields)))
    stale = (set(CLUSTER_DEFAULTS) | set(SECRET_FIELDS)) - seen
    if stale:
        raise ValueError(f"no such settings (rename in charts/generate_settings.py): {sorted(stale)}")
    return sections


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid, unambiguous YAML scalar
    return repr(value)


def render_settings_block(sections: list[ChartSection]) -> str:
    """The YAML text between the BEGIN/END markers of values.yaml, one comment per setting."""
    lines = [
        BEGIN,
        "# Every key becomes MOFI_<SECTION>_<FIELD> in the ConfigMap all workloads load (see `mofi config show`).",
        "settings:",
    ]
    for sec in sections:
        lines.append(f"  # {sec.doc}")
        lines.append(f"  {sec.name}:")
        for s in sec.fields:
            lines.append(f"    # {s.doc}")
            lines.append(f"    {s.name}: {_yaml_scalar(s.default)}")
    lines.append(END)
    return "\n".join(lines)


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    return out


_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_MAP = {"type": "object"}
_LIST = {"type": "array", "items": {"type": "object"}}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POS_INT = {"type": "integer", "minimum": 1}
#: A Kubernetes quantity: a number, or a decimal with an SI or binary suffix (500m, 2Gi, 1.5).
_QUANTITY = {
    "oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"},
    ]
}


def _component_schema() -> dict[str, Any]:
    resources = _obj(
        {
            "requests": {"type": "object", "additionalProperties": _QUANTITY},
            "limits": {"type": "object", "additionalProperties": _QUANTITY},
        }
    )
    autoscaling = _obj(
        {
            "enabled": _BOOL,
            "minReplicas": _POS_INT,
            "maxReplicas": _POS_INT,
            "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
        },
        ["enabled", "minReplicas", "maxReplicas", "targetCPUUtilizationPercentage"],
    )
    pdb = _obj(
        {
            "enabled": _BOOL,
            "maxUnavailable": {"type": ["integer", "string", "null"], "pattern": "^[0-9]+%$", "minimum": 0},
            "minAvailable": {"type": ["integer", "string", "null"], "pattern": "^[0-9]+%$", "minimum": 0},
        },
        ["enabled"],
    )
    return _obj(
        {
            "enabled": _BOOL,
            "command": {"enum": ["serve", "stage"], "description": "serve: gRPC service; stage: Kafka stage."},
            "target": {"enum": ["ner", "scorer", "writer", "embedder", "indexer"]},
            "grpcHealthService": {
                "type": "string",
                "minLength": 1,
                "description": "gRPC health service name the readiness probe asks for.",
            },
            "knowledgeBase": {"type": "boolean", "description": "Mount the knowledge base (NER)."},
            "metrics": {
                "type": "boolean",
                "description": "The process serves Prometheus metrics on settings.grpc.metrics_port.",
            },
            "replicas": {"type": "integer", "minimum": 0},
            "resources": resources,
            "autoscaling": autoscaling,
            "podDisruptionBudget": pdb,
            "nodeSelector": _STR_MAP,
            "tolerations": _LIST,
            "affinity": _MAP,
            "topologySpreadConstraints": _LIST,
            "podAnnotations": _STR_MAP,
            "lifecycle": _obj({"preStop": _MAP, "postStart": _MAP}),
            "extraEnv": _LIST,
            "headlessService": {
                "type": "boolean",
                "description": "Also a headless Service (<name>-headless) for client-side load balancing.",
            },
            "keda": _obj(
                {
                    "enabled": _BOOL,
                    "minReplicas": {"type": "integer", "minimum": 0},
                    "maxReplicas": _POS_INT,
                    "lagThreshold": _POS_INT,
                    "pollingInterval": _POS_INT,
                    "cooldownPeriod": _POS_INT,
                    "authenticationRef": {"type": "string", "minLength": 1},
                },
                ["enabled", "minReplicas", "maxReplicas", "lagThreshold"],
                description="Scale a Kafka stage on its consumer lag with a KEDA ScaledObject (replaces the HPA).",
            ),
        },
        ["enabled", "command", "target", "metrics", "replicas", "resources", "autoscaling", "podDisruptionBudget"],
        # A gRPC service must name the health service its readiness probe checks.
        **{"if": {"properties": {"command": {"const": "serve"}}}, "then": {"required": ["grpcHealthService"]}},
    )


def _probe() -> dict[str, Any]:
    return _obj(
        {"periodSeconds": _POS_INT, "failureThreshold": _POS_INT, "timeoutSeconds": _POS_INT},
        ["periodSeconds", "failureThreshold", "timeoutSeconds"],
    )


def _settings_schema(sections: list[ChartSection]) -> dict[str, Any]:
    props = {}
    for sec in sections:
        fields = {
            s.name: {"type": _JSON_TYPES[s.type], **s.schema, "description": s.doc, "default": s.default}
            for s in sec.fields
        }
        props[sec.name] = _obj(fields, description=sec.doc)
    return _obj(props, description="mofi.settings as MOFI_* variables; credentials are not settable here.")


def build_schema(sections: list[ChartSection]) -> dict[str, Any]:
    """values.schema.json: hand-written structure for the chart, generated types for settings."""
    service_account = _obj({"create": _BOOL, "name": _STR, "annotations": _STR_MAP})
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "mofi chart values",
        **_obj(
            {
                "nameOverride": _STR,
                "fullnameOverride": _STR,
                "image": _obj(
                    {
                        "repository": {"type": "string", "minLength": 1},
                        "tag": _STR,
                        "digest": {"type": "string", "pattern": "^(|sha256:[0-9a-f]{64})$"},
                        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                    },
                    ["repository", "pullPolicy"],
                ),
                "imagePullSecrets": _LIST,
                "credentials": _obj(
                    {
                        "existingSecret": {"type": "string", "minLength": 1},
                        "keys": _obj(
                            {k: {"type": "string", "minLength": 1} for k in SECRET_FIELDS.values()},
                            list(SECRET_FIELDS.values()),
                        ),
                    },
                    ["existingSecret", "keys"],
                ),
                "components": {
                    "type": "object",
                    "propertyNames": {"pattern": "^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$"},
                    "additionalProperties": _component_schema(),
                },
                "knowledgeBase": _obj(
                    {
                        "mountPath": {"type": "string", "pattern": "^/"},
                        "s3Uri": {"type": "string", "pattern": "^s3://[^/]+/.+"},
                        "volume": _MAP,
                    },
                    ["mountPath", "s3Uri", "volume"],
                ),
                "probes": _obj(
                    {"startup": _probe(), "readiness": _probe(), "liveness": _probe()},
                    ["startup", "readiness", "liveness"],
                ),
                "terminationGracePeriodSeconds": _POS_INT,
                "scratch": _obj(
                    {"tmpSizeLimit": _STR, "workDir": {"type": "string", "pattern": "^/"}, "workSizeLimit": _STR},
                    ["tmpSizeLimit", "workDir", "workSizeLimit"],
                ),
                "podAnnotations": _STR_MAP,
                "podLabels": _STR_MAP,
                "extraVolumes": _LIST,
                "extraVolumeMounts": _LIST,
                "priorityClassName": _STR,
                "podSecurityContext": _MAP,
                "securityContext": _MAP,
                "serviceAccount": service_account,
                "pipeline": _obj(
                    {
                        "namespace": {"type": "string", "pattern": "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$"},
                        "serviceAccount": service_account,
                        "rbac": _obj(
                            {
                                "create": _BOOL,
                                "extraSubjects": _LIST,
                                "launcherSecrets": {"type": "array", "items": {"type": "string", "minLength": 1}},
                                "submitters": _LIST,
                            }
                        ),
                    }
                ),
                "networkPolicy": _obj(
                    {
                        "enabled": _BOOL,
                        "grpcFrom": _LIST,
                        "metricsFrom": _LIST,
                        "egress": _obj({"restrict": _BOOL, "rules": _LIST}),
                    }
                ),
                "metrics": _obj(
                    {
                        "serviceMonitor": _obj(
                            {
                                "enabled": _BOOL,
                                "skipCapabilityCheck": _BOOL,
                                "interval": _STR,
                                "scrapeTimeout": _STR,
                                "labels": _STR_MAP,
                            }
                        ),
                    }
                ),
                "settings": _settings_schema(sections),
            },
            ["image", "credentials", "components", "settings"],
        ),
    }


def _values_text(current: str, block: str) -> str:
    head, sep, rest = current.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"{VALUES}: markers {BEGIN!r} ... {END!r} not found")
    return head + block + tail


def generate() -> dict[Path, str]:
    """The generated files' full contents, by path."""
    sections = chart_settings()
    return {
        VALUES: _values_text(VALUES.read_text(), render_settings_block(sections)),
        SCHEMA: json.dumps(build_schema(sections), indent=2) + "\n",
    }


def check() -> list[Path]:
    """The generated files whose committed contents differ from a fresh generation."""
    return [path for path, text in generate().items() if path.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        for path in stale:
            print(f"stale: {path} (run python charts/generate_settings.py)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generate().items():
        path.write_text(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
