"""charts/mofi: strict lint, Kubernetes 1.31 strict validation of every object, and what the objects promise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

from .rendering import CHART, KUBE_VERSION, VALUE_FILES, by_kind, load_values, render

# Kinds whose schema ships with their operator, not with Kubernetes.
CRD_GROUPS = {"monitoring.coreos.com/v1", "keda.sh/v1alpha1"}


def pod_specs(objects):
    return {name: d["spec"]["template"]["spec"] for name, d in by_kind(objects, "Deployment").items()}


@pytest.mark.parametrize("value_set", sorted(VALUE_FILES))
def test_lint_strict(value_set):
    report = helm_python.lint(
        CHART, load_values(value_set), strict=True, kube_version=f"v{KUBE_VERSION}", namespace="mofi"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


def test_lint_reports_bad_values():
    report = helm_python.lint(
        CHART, {"settings": {"s3": {"secret_key": "x"}}}, strict=True, kube_version=f"v{KUBE_VERSION}"
    )
    errors = [m["error"] for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert errors and all("additional properties 'secret_key' not allowed" in e for e in errors), errors


def test_every_object_validates_strictly_for_kubernetes_1_31(chart, tmp_path):
    """`kubernetes-validate --strict -k 1.31.0` over every object of every value set; CRDs only warn."""
    files, expected = [], 0
    for value_set in sorted(VALUE_FILES):
        objects = render(chart, load_values(value_set))
        assert by_kind(objects, "Deployment") and by_kind(objects, "ConfigMap")
        expected += sum(o["apiVersion"] not in CRD_GROUPS for o in objects)
        path = tmp_path / f"{value_set}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        files.append(str(path))
    cli = shutil.which("kubernetes-validate") or str(Path(sys.executable).with_name("kubernetes-validate"))
    done = subprocess.run([cli, "--strict", "-k", KUBE_VERSION, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout
    passed = [ln for ln in done.stdout.splitlines() if ln.startswith("INFO") and "passed" in ln]
    assert len(passed) == expected
    warnings = [ln for ln in done.stdout.splitlines() if ln.startswith("WARN")]
    assert all("ServiceMonitor" in ln or "ScaledObject" in ln for ln in warnings), warnings


def test_strict_validation_catches_a_misspelt_field(chart):
    """The validator really is strict: the check above would catch a template typo."""
    dep = next(iter(by_kind(render(chart), "Deployment").values()))
    dep["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)


def test_default_release_runs_the_four_services_and_their_stages(chart):
    objects = render(chart)
    commands = {name: c["containers"][0]["args"] for name, c in pod_specs(objects).items()}
    assert commands == {
        "mofi-ner": ["serve", "ner"],
        "mofi-ner-stage": ["stage", "ner"],
        "mofi-scorer": ["serve", "scorer"],
        "mofi-scorer-stage": ["stage", "scorer"],
        "mofi-writer": ["stage", "writer"],
        "mofi-embedder": ["serve", "embedder"],
    }
    assert "mofi-indexer" in pod_specs(render(chart, load_values("everything")))


@pytest.mark.parametrize("value_set", ["default", "everything", "gpu"])
def test_pods_are_hardened(chart, value_set):
    for name, spec in pod_specs(render(chart, load_values(value_set))).items():
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], name
            assert container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]


def test_services_have_native_grpc_probes_on_their_settings_port(chart):
    values = load_values("everything")
    values["settings"] = {**values["settings"], "ner": {"port": 6001}, "embedder": {"port": 6003}}
    objects = render(chart, values)
    specs = pod_specs(objects)
    expected = {
        "mofi-ner": (6001, "mofi.v1.EntityExtractor"),
        "mofi-scorer": (50052, "mofi.v1.ClipScorer"),
        "mofi-embedder": (6003, "mofi.v1.Search"),  # serves before a model is loaded (vector queries)
    }
    services = by_kind(objects, "Service")
    for name, (port, health) in expected.items():
        c = specs[name]["containers"][0]
        assert {p["name"]: p["containerPort"] for p in c["ports"]}["grpc"] == port
        assert c["readinessProbe"]["grpc"] == {"port": port, "service": health}
        assert c["startupProbe"]["grpc"] == {"port": port, "service": health}
        assert c["livenessProbe"]["grpc"] == {"port": port}  # overall server health, service ""
        svc_ports = {p["name"]: p for p in services[name]["spec"]["ports"]}
        assert svc_ports["grpc"]["port"] == port and svc_ports["grpc"]["appProtocol"] == "grpc"
    policy = by_kind(objects, "NetworkPolicy")["mofi"]
    grpc_rule = policy["spec"]["ingress"][0]
    assert sorted(p["port"] for p in grpc_rule["ports"]) == [6001, 6003, 50052]


def test_stages_expose_metrics_when_a_metrics_port_is_set(chart):
    default = render(chart)
    for name in ("mofi-ner-stage", "mofi-scorer-stage", "mofi-writer"):  # every stage serves /metrics and /healthz
        c = pod_specs(default)[name]["containers"][0]
        assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("metrics", 9090)]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}  # the loop turns
        assert c["startupProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert "readinessProbe" not in c
        assert [p["name"] for p in by_kind(default, "Service")[name]["spec"]["ports"]] == ["metrics"]
    objects = render(chart, load_values("everything"))
    for name in ("mofi-writer", "mofi-indexer"):
        c = pod_specs(objects)[name]["containers"][0]
        assert [p["name"] for p in c["ports"]] == ["metrics"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}  # the loop turns
        assert "readinessProbe" not in c
        assert [p["name"] for p in by_kind(objects, "Service")[name]["spec"]["ports"]] == ["metrics"]
    minimal = render(chart, load_values("minimal"))  # metrics_port 0: no stage exposes a port
    assert not by_kind(minimal, "Service")
    assert all("ports" not in spec["containers"][0] for spec in pod_specs(minimal).values())


def test_services_serve_metrics_next_to_grpc(chart):
    objects = render(chart)
    ports = {p["name"]: p["containerPort"] for p in pod_specs(objects)["mofi-ner"]["containers"][0]["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9090}
    ingress = by_kind(objects, "NetworkPolicy")["mofi"]["spec"]["ingress"]
    assert [p["port"] for p in ingress[1]["ports"]] == [9090]


def test_autoscaled_deployments_leave_replicas_to_the_hpa(chart):
    objects = render(chart)
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    for name, dep in by_kind(objects, "Deployment").items():
        assert ("replicas" in dep["spec"]) == (name not in hpas), name
    assert hpas["mofi-scorer"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mofi-scorer",
    }
    assert "mofi-writer" not in hpas


def test_disruption_budgets_select_their_component(chart):
    objects = render(chart, load_values("everything"))
    pdbs = by_kind(objects, "PodDisruptionBudget")
    deployments = by_kind(objects, "Deployment")
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"] == deployments[name]["spec"]["selector"]
    assert pdbs["mofi-embedder"]["spec"] == {"minAvailable": 1, "selector": pdbs["mofi-embedder"]["spec"]["selector"]}
    assert pdbs["mofi-ner"]["spec"]["maxUnavailable"] == 1


def _allowed(rules, group, resource, verb, name=None):
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and (name is None or name in r.get("resourceNames", [name]))
        and (name is not None or "resourceNames" not in r)
        for r in rules
    )


def test_pipeline_role_can_run_torchx_volcano_jobs_and_roll_only_the_embedder(chart):
    objects = render(chart, load_values("default"))
    roles, bindings = by_kind(objects, "Role"), by_kind(objects, "RoleBinding")
    assert {r["metadata"]["namespace"] for r in roles.values()} == {"mofi"}
    rules = roles["mofi-pipeline"]["rules"]
    for verb in ("create", "get", "list", "watch", "delete"):
        assert _allowed(rules, "batch.volcano.sh", "jobs", verb)
    assert _allowed(rules, "batch.volcano.sh", "jobs/status", "update")
    assert _allowed(rules, "", "pods/log", "get") and _allowed(rules, "", "pods", "watch")
    # what the KFP v2 launcher and the Argo executor of every step need
    assert _allowed(rules, "argoproj.io", "workflowtaskresults", "create")
    assert _allowed(rules, "argoproj.io", "workflowtaskresults", "patch")
    assert _allowed(rules, "", "configmaps", "get", "kfp-launcher")
    assert not _allowed(rules, "", "configmaps", "get", "anything-else")
    assert _allowed(rules, "", "secrets", "get", "mlpipeline-minio-artifact")
    assert not _allowed(rules, "", "secrets", "get", "mofi-credentials")
    roll = roles["mofi-pipeline-roll"]["rules"]
    assert _allowed(roll, "apps", "deployments", "patch", "mofi-embedder")
    assert not _allowed(roll, "apps", "deployments", "patch", "mofi-ner")
    assert not _allowed(rules, "apps", "deployments", "patch", "mofi-embedder")
    for name in ("mofi-pipeline", "mofi-pipeline-roll"):
        assert bindings[name]["subjects"] == [{"kind": "ServiceAccount", "name": "mofi-pipeline", "namespace": "mofi"}]
    assert "mofi-pipeline-submit" not in roles


def test_pipeline_objects_go_where_kfp_runs_the_steps(chart):
    """Standalone KFP runs steps in `kubeflow`: the account, its Role and the settings go there; the roll Role
    stays beside the embedder; submitters may `use` the account."""
    objects = render(chart, load_values("everything"))
    where = {(o["kind"], o["metadata"]["name"]): o["metadata"]["namespace"] for o in objects}
    assert where[("ServiceAccount", "mofi-pipeline")] == "kubeflow"
    assert where[("Role", "mofi-pipeline")] == where[("RoleBinding", "mofi-pipeline")] == "kubeflow"
    assert where[("Role", "mofi-pipeline-roll")] == where[("RoleBinding", "mofi-pipeline-roll")] == "mofi"
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "mofi-settings"]
    assert sorted(m["metadata"]["namespace"] for m in maps) == ["kubeflow", "mofi"]
    assert maps[0]["data"] == maps[1]["data"]
    binding = by_kind(objects, "RoleBinding")["mofi-pipeline-roll"]
    assert {(s["name"], s["namespace"]) for s in binding["subjects"]} == {
        ("mofi-pipeline", "kubeflow"),
        ("default-editor", "kubeflow-user-example-com"),
    }
    submit = by_kind(objects, "Role")["mofi-pipeline-submit"]
    assert submit["metadata"]["namespace"] == "kubeflow"
    assert _allowed(submit["rules"], "", "serviceaccounts", "use", "mofi-pipeline")
    assert by_kind(objects, "RoleBinding")["mofi-pipeline-submit"]["subjects"][0]["name"] == "alice@example.com"


def test_network_policy_restricts_egress_only_when_asked(chart):
    open_policy = by_kind(render(chart), "NetworkPolicy")["mofi"]["spec"]
    assert open_policy["policyTypes"] == ["Ingress"]
    closed = by_kind(render(chart, load_values("everything")), "NetworkPolicy")["mofi"]["spec"]
    assert closed["policyTypes"] == ["Ingress", "Egress"]
    assert {p["port"] for p in closed["egress"][0]["ports"]} == {53}
    assert closed["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_service_monitor_needs_the_crd_or_an_explicit_skip(chart):
    values = load_values("everything")
    assert "mofi" in by_kind(render(chart, values), "ServiceMonitor")
    values["metrics"]["serviceMonitor"]["skipCapabilityCheck"] = False
    assert not by_kind(render(chart, values), "ServiceMonitor")  # offline render: no CRD visible
    monitor = by_kind(render(chart, load_values("everything")), "ServiceMonitor")["mofi"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_knowledge_base_is_fetched_or_mounted(chart):
    fetched = pod_specs(render(chart))["mofi-ner"]
    (init,) = fetched["initContainers"]
    assert init["command"][-5:] == ["ner", "fetch", "s3://mofi-corpus/kb/kb.jsonl", "--to", "/var/lib/mofi/kb/kb.jsonl"]
    assert {"name": "knowledge-base", "emptyDir": {}} in fetched["volumes"]
    mounted = pod_specs(render(chart, load_values("everything")))["mofi-ner"]
    assert "initContainers" not in mounted
    assert {"name": "knowledge-base", "persistentVolumeClaim": {"claimName": "mofi-kb", "readOnly": True}} in mounted[
        "volumes"
    ]
    assert "initContainers" in pod_specs(render(chart))["mofi-scorer-stage"]  # the scorer reads the vector table
    assert "initContainers" not in pod_specs(render(chart))["mofi-writer"]


def test_image_reference_and_config_checksum(chart):
    spec = pod_specs(render(chart, load_values("everything")))["mofi-embedder"]
    assert spec["containers"][0]["image"] == ("registry.example.com/ml/mofi:0.1.0@sha256:" + "0123456789abcdef" * 4)
    assert pod_specs(render(chart))["mofi-ner"]["containers"][0]["image"] == "mofi:0.1.0"

    def checksum(values):
        dep = by_kind(render(chart, values), "Deployment")["mofi-writer"]
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/settings"]

    assert checksum({}) != checksum({"settings": {"writer": {"shard_size": 64}}})


@pytest.mark.parametrize(
    "values, message",
    [
        ({"terminationGracePeriodSeconds": 10}, "must exceed settings.grpc.grace_s"),
        ({"settings": {"ner": {"kb_path": "/data/kb.jsonl"}}}, "must lie inside knowledgeBase.mountPath"),
        (
            {"components": {"writer": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}},
            "minReplicas exceeds maxReplicas",
        ),
        ({"components": {"writer": {"command": "serve"}}}, "grpcHealthService"),
        ({"components": {"writer": {"command": "serve", "grpcHealthService": "x"}}}, "settings.writer has no port"),
        (
            {
                "metrics": {"serviceMonitor": {"enabled": True, "skipCapabilityCheck": True}},
                "settings": {"grpc": {"metrics_port": 0}},
            },
            "metrics_port > 0",
        ),
        ({"credentials": {"existingSecret": ""}}, "existingSecret"),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(chart, values, message):
    with pytest.raises(helm_python.HelmError, match=message):
        render(chart, values)


def test_readiness_probes_ask_for_services_the_protos_define(chart):
    """Probe service names are the full names servers register with grpc.health (package.Service)."""
    from mofi.v1 import embedder_pb2, ner_pb2, scorer_pb2

    defined = {s.full_name for m in (ner_pb2, scorer_pb2, embedder_pb2) for s in m.DESCRIPTOR.services_by_name.values()}
    asked = {
        c["containers"][0]["readinessProbe"]["grpc"]["service"]
        for c in pod_specs(render(chart)).values()
        if "readinessProbe" in c["containers"][0]
    }
    assert asked == {"mofi.v1.EntityExtractor", "mofi.v1.ClipScorer", "mofi.v1.Search"}
    assert asked <= defined


def test_extension_points_reach_the_pods(chart):
    objects = render(chart, load_values("everything"))
    deployments = by_kind(objects, "Deployment")
    embedder = deployments["mofi-embedder"]["spec"]["template"]
    assert embedder["metadata"]["annotations"]["example.com/scrape-profile"] == "grpc"
    assert embedder["metadata"]["annotations"]["example.com/team"] == "ml"  # the global ones stay
    assert embedder["spec"]["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert embedder["spec"]["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    for name, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        assert {"name": "kafka-ca", "secret": {"secretName": "my-cluster-cluster-ca-cert"}} in spec["volumes"], name
        for container in spec["containers"] + spec.get("initContainers", []):
            assert any(m["mountPath"] == "/etc/mofi/kafka-ca" for m in container["volumeMounts"]), name


def test_min_available_replaces_the_default_max_unavailable(chart):
    pdbs = by_kind(render(chart, load_values("everything")), "PodDisruptionBudget")
    assert pdbs["mofi-embedder"]["spec"] == {
        "minAvailable": 1,
        "selector": pdbs["mofi-embedder"]["spec"]["selector"],
    }
    assert pdbs["mofi-ner"]["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdbs["mofi-ner"]["spec"]


def test_headless_service_for_client_side_load_balancing(chart):
    services = by_kind(render(chart, load_values("everything")), "Service")
    headless = services["mofi-embedder-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["ports"] == [
        {"name": "grpc", "port": 50053, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
    ]
    assert headless["spec"]["selector"] == services["mofi-embedder"]["spec"]["selector"]
    assert "mofi-ner-headless" not in services and services["mofi-embedder"]["spec"]["type"] == "ClusterIP"


def test_keda_scales_a_stage_on_its_consumer_lag_instead_of_cpu(chart):
    objects = render(chart, load_values("everything"))
    (scaled,) = by_kind(objects, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"] == {"name": "mofi-ner-stage"}
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["authenticationRef"] == {"name": "kafka-scram"}
    assert trigger["metadata"] == {
        "bootstrapServers": "my-cluster-kafka-bootstrap.kafka:9093",
        "consumerGroup": "mofi-ner",  # <group_prefix>-<stage>, as services/common/stage.py names it
        "topic": "mofi.pairs.v1",  # the NER stage's input
        "lagThreshold": "200",
        "offsetResetPolicy": "earliest",
    }
    assert scaled["spec"]["maxReplicaCount"] == 4  # capped at settings.kafka.partitions
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    assert "mofi-ner-stage" not in hpas and "mofi-ner" in hpas


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"components": {"ner": {"keda": {"enabled": True, "minReplicas": 1, "maxReplicas": 2, "lagThreshold": 5}}}},
            "only Kafka stages",
        ),
        ({"components": {"embedder": {"resources": {"requests": {"cpu": "two"}}}}}, "cpu"),
        (
            {"components": {"embedder": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": "50 percent"}}}},
            "maxUnavailable",
        ),
        ({"components": {"embedder": {"lifecycle": {"preStpo": {}}}}}, "preStpo"),
        ({"settings": {"milvus": {"index_type": "HNSWX"}}}, "index_type"),
        ({"settings": {"embedder": {"port": 70000}}}, "port"),
    ],
)
def test_bad_extension_values_are_refused(chart, values, message):
    with pytest.raises(Exception, match=message):
        render(chart, values)
