"""The chart's settings: generated from mofi.settings, delivered as MOFI_* env, credentials only from a Secret."""

from __future__ import annotations

import dataclasses

import helm_python
import pytest

from mofi.settings import CREDENTIALS, Settings, WriterSettings, constraints, env_name, iter_fields, load_settings

from .rendering import NAMESPACE, by_kind, load_generator, load_values, render

GEN = load_generator()


def configmap_env(objects) -> dict[str, str]:
    """The settings ConfigMap of the release namespace (a copy may sit where pipeline steps run)."""
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["namespace"] == NAMESPACE]
    return cm["data"]


def test_generated_values_and_schema_are_fresh():
    assert GEN.check() == [], "run: python charts/generate_settings.py"


def test_every_setting_is_a_chart_value_except_stack_and_credentials(chart):
    values = chart.values["settings"]
    expected = {
        (s, f)
        for s, f, _, _ in iter_fields(Settings())
        if s not in GEN.EXCLUDED_SECTIONS and (s, f) not in GEN.SECRET_FIELDS
    }
    assert {(s, f) for s, fields in values.items() for f in fields} == expected
    schema = chart.schema["properties"]["settings"]["properties"]
    assert {(s, f) for s, sec in schema.items() for f in sec["properties"]} == expected


@pytest.mark.parametrize("value_set", ["default", "everything", "gpu"])
def test_configmap_round_trips_through_the_settings_loader(chart, value_set):
    """What a pod's `mofi` reads back equals the chart values (types, big ints, bools, floats)."""
    values = load_values(value_set)
    merged = chart.merge_values(values)["settings"]
    env = configmap_env(render(chart, values))
    loaded = load_settings(env=env)
    for section, fields in merged.items():
        for name, value in fields.items():
            assert getattr(getattr(loaded, section), name) == value, f"{section}.{name}"
            assert env_name(section, name) in env
    assert loaded.grpc.max_message_bytes == merged["grpc"]["max_message_bytes"] >= 32 * 1024 * 1024


def test_cluster_defaults_differ_from_laptop_defaults_where_pods_need_it(chart):
    env = configmap_env(render(chart))
    assert env["MOFI_GRPC_HOST"] == "0.0.0.0"  # loopback would make probes and Services fail
    assert int(env["MOFI_GRPC_METRICS_PORT"]) > 0
    assert not env["MOFI_DATA_BUILD_DIR"].startswith(".")  # the image's root filesystem is read-only


def test_credentials_come_only_from_the_secret(chart):
    objects = render(chart, load_values("everything"))
    secret_envs = {env_name(*key) for key in GEN.SECRET_FIELDS}
    assert not secret_envs & set(configmap_env(objects))
    deployments = by_kind(objects, "Deployment")
    assert deployments
    for dep in deployments.values():
        spec = dep["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
            assert set(refs) == secret_envs, container["name"]
            assert {r["name"] for r in refs.values()} == {"mofi-prod-credentials"}
            assert refs["MOFI_S3_SECRET_KEY"]["key"] == "secret"
            assert refs["MOFI_MILVUS_TOKEN"].get("optional") is True
            for (section, field), credential in CREDENTIALS.items():
                assert refs[env_name(section, field)].get("optional", False) is credential.optional
            assert not any("value" in e and e["name"] in secret_envs for e in container["env"])


@pytest.mark.parametrize(
    "bad",
    [
        {"settings": {"s3": {"secret_key": "plain-text"}}},
        {"settings": {"milvus": {"token": "t"}}},
        {"settings": {"kafka": {"bootstrap_server": "typo:9092"}}},
        {"settings": {"kafka": {"partitions": "four"}}},
        {"settings": {"s3": {"secure": "yes"}}},
        {"settings": {"stack": {"kafka_port": 1}}},
    ],
)
def test_schema_rejects_credentials_typos_and_wrong_types(chart, bad):
    with pytest.raises(helm_python.HelmError):
        chart.render(values=bad, name="mofi", namespace="mofi")


def test_generator_refuses_cluster_defaults_for_missing_settings(monkeypatch):
    monkeypatch.setitem(GEN.CLUSTER_DEFAULTS, ("kafka", "no_such_field"), "x")
    with pytest.raises(ValueError, match="no_such_field"):
        GEN.chart_settings()


def test_generator_refuses_mistyped_cluster_defaults(monkeypatch):
    monkeypatch.setitem(GEN.CLUSTER_DEFAULTS, ("grpc", "metrics_port"), "9090")
    with pytest.raises(TypeError, match="metrics_port"):
        GEN.chart_settings()


def test_generator_notices_a_new_setting(monkeypatch):
    """A field added to a settings dataclass makes the committed chart files stale."""

    @dataclasses.dataclass
    class Grown(WriterSettings):
        compression: str = dataclasses.field(default="zstd", metadata={"doc": "Shard compression."})

    @dataclasses.dataclass
    class GrownSettings(Settings):
        writer: Grown = dataclasses.field(default_factory=Grown)

    monkeypatch.setattr(GEN, "Settings", GrownSettings)
    assert set(GEN.check()) == {GEN.VALUES, GEN.SCHEMA}
    writer = {s.name: s for s in GEN.chart_settings()}["writer"]
    assert "compression" in {f.name for f in writer.fields}


@pytest.mark.parametrize(
    "bad",
    [
        {"settings": {"kafka": {"bootstrap_servers": ""}}},  # no local stack in a cluster: endpoints are explicit
        {"settings": {"s3": {"endpoint": ""}}},
        {"settings": {"kafka": {"partitions": 0}}},
        {"settings": {"milvus": {"index_type": "IVF"}}},
        {"settings": {"training": {"recipe": "selfsupervised"}}},
        {"settings": {"ner": {"port": 70000}}},
        {"settings": {"scorer": {"threshold": 1.5}}},
    ],
)
def test_schema_enforces_the_settings_constraints(chart, bad):
    with pytest.raises(helm_python.HelmError):
        chart.render(values=bad, name="mofi", namespace="mofi")


def test_schema_constraints_come_from_the_settings_fields(chart):
    schema = chart.schema["properties"]["settings"]["properties"]
    for section in dataclasses.fields(Settings):
        if section.name in GEN.EXCLUDED_SECTIONS:
            continue
        for f in dataclasses.fields(getattr(Settings(), section.name)):
            if (section.name, f.name) in GEN.SECRET_FIELDS:
                continue
            prop = schema[section.name]["properties"][f.name]
            assert {k: prop[k] for k in constraints(f)} == constraints(f), f"{section.name}.{f.name}"
    assert schema["milvus"]["properties"]["index_type"]["enum"][0] == "FLAT"


def test_generator_refuses_a_stack_derived_setting_without_a_cluster_default(monkeypatch):
    monkeypatch.delitem(GEN.CLUSTER_DEFAULTS, ("s3", "endpoint"))
    with pytest.raises(ValueError, match="s3.endpoint"):
        GEN.chart_settings()
