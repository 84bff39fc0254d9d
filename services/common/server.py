"""Start a gRPC server the way every MOFI service runs: health, reflection, limits, metrics, drain.

Why shared: Kubernetes probes use grpc.health.v1, TLS and the bearer token (``grpc.tls_*``,
``grpc.auth_token``, :mod:`mofi_platform.services.common.auth`) apply to every server alike, operators
use reflection (grpcurl), Prometheus scrapes the same metric names from every service, and a rolling
update must not cut in-flight calls: :meth:`RunningServer.stop` first reports NOT_SERVING, then lets
in-flight calls finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mofi.settings import GrpcSettings
from mofi_platform.services.common.auth import TokenInterceptor, server_credentials
from mofi_platform.services.common.metrics import MetricsInterceptor, start_metrics_server

__all__ = ["serve", "RunningServer", "grpc_options"]

log = logging.getLogger(__name__)


def grpc_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """Channel/server options for the message size cap (clients use the same ones)."""
    return [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: list[str]

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first (load balancers stop routing), then drain in-flight calls for ``grace`` s."""
        for name in ["", *self.service_names]:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace).wait()

    def wait(self) -> None:
        self.server.wait_for_termination()


def serve(
    servicers: Sequence[tuple[Callable[[Any, grpc.Server], None], Any]],
    service_names: Sequence[str],
    port: int,
    grpc_cfg: GrpcSettings,
) -> RunningServer:
    """Register ``(add_XServicer_to_server, servicer)`` pairs and start; ``port=0`` picks a free one."""
    interceptors: list[grpc.ServerInterceptor] = [MetricsInterceptor()]
    if grpc_cfg.auth_token:  # first: a call without the token is counted (UNAUTHENTICATED) and goes no further
        interceptors.append(TokenInterceptor(grpc_cfg.auth_token))
    credentials = server_credentials(grpc_cfg)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=grpc_cfg.max_workers),
        interceptors=interceptors,
        options=grpc_options(grpc_cfg.max_message_bytes),
    )
    for add, servicer in servicers:
        add(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{grpc_cfg.host}:{port}"
    bound = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"cannot bind gRPC server to {grpc_cfg.host}:{port}")
    server.start()
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    start_metrics_server(grpc_cfg.metrics_port)
    security = ("TLS" if credentials else "plaintext") + (", token" if grpc_cfg.auth_token else "")
    log.info("gRPC %s on %s:%d (%s)", ", ".join(names), grpc_cfg.host, bound, security)
    return RunningServer(server, bound, health_servicer, names)
