"""The chart's commands and gRPC probes against the real CLI registry and the real server scaffolding."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mofi.settings import load_settings
from mofi.stack import free_port
from mofi_platform.services.cli import SERVERS, STAGES
from mofi_platform.services.common.server import serve

from .rendering import by_kind, load_values, render


def test_every_deployment_runs_a_registered_service_or_stage(chart):
    registry = {"serve": SERVERS, "stage": STAGES}
    for name, dep in by_kind(render(chart, load_values("everything")), "Deployment").items():
        command, target = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        assert target in registry[command], f"{name}: `mofi {command} {target}` does not exist"


def check(port: int, service: str) -> int:
    """What the kubelet's native gRPC probe does: grpc.health.v1.Health/Check on the pod's port."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.mark.parametrize("component, section", [("ner", "ner"), ("scorer", "scorer"), ("embedder", "embedder")])
def test_probes_pass_against_a_server_started_from_the_pods_settings(chart, component, section):
    port = free_port()
    objects = render(chart, {"settings": {section: {"port": port}, "grpc": {"metrics_port": 0}}})
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    settings = load_settings(env=cm["data"])  # exactly what the pod's `mofi` process reads
    container = by_kind(objects, "Deployment")[f"mofi-{component}"]["spec"]["template"]["spec"]["containers"][0]
    readiness, liveness = container["readinessProbe"]["grpc"], container["livenessProbe"]["grpc"]
    server = serve([], [readiness["service"]], getattr(settings, section).port, settings.grpc)
    try:
        assert server.port == readiness["port"] == liveness["port"] == port
        assert check(readiness["port"], readiness["service"]) == health_pb2.HealthCheckResponse.SERVING
        assert check(liveness["port"], liveness.get("service", "")) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:  # a misnamed probe would never pass
            check(port, readiness["service"] + "X")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop(0)
