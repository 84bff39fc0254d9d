"""Optional TLS (and mutual TLS) and bearer-token authentication for gRPC servers and the project's clients.

Why here: every server (NER, scorer, embedder) is started by :func:`mofi_platform.services.common.server.serve`
and every client of ours opens its channel with :func:`open_channel`, so one set of settings
(``grpc.tls_*``, ``grpc.auth_token``) secures both ends alike. Health checks stay open: the kubelet's
native gRPC probes send no token (TLS still applies to them).
"""

from __future__ import annotations

import hmac
from pathlib import Path

import grpc

from mofi.settings import GrpcSettings

__all__ = ["TokenInterceptor", "server_credentials", "open_channel", "AUTH_HEADER", "EXEMPT_PREFIX"]

AUTH_HEADER = "authorization"
EXEMPT_PREFIX = "/grpc.health.v1.Health/"


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise OSError(f"grpc.{what}: cannot read {path}: {e.strerror}") from None


def server_credentials(cfg: GrpcSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from ``grpc.tls_cert_file``/``tls_key_file`` (and the client CA for mTLS); None: plaintext."""
    if not cfg.tls_cert_file and not cfg.tls_key_file:
        if cfg.tls_client_auth:
            raise ValueError("grpc.tls_client_auth needs grpc.tls_cert_file and grpc.tls_key_file")
        return None
    if not (cfg.tls_cert_file and cfg.tls_key_file):
        raise ValueError("grpc.tls_cert_file and grpc.tls_key_file go together")
    if cfg.tls_client_auth and not cfg.tls_ca_file:
        raise ValueError("grpc.tls_client_auth needs grpc.tls_ca_file (the CA of client certificates)")
    pair = (_read(cfg.tls_key_file, "tls_key_file"), _read(cfg.tls_cert_file, "tls_cert_file"))
    ca = _read(cfg.tls_ca_file, "tls_ca_file") if cfg.tls_client_auth else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=cfg.tls_client_auth)


def _abort(code: grpc.StatusCode, details: str):
    def behavior(request_or_iterator, context):
        context.abort(code, details)

    return behavior


class TokenInterceptor(grpc.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` (or with another token) as UNAUTHENTICATED."""

    def __init__(self, token: str):
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(EXEMPT_PREFIX):
            return handler
        sent = dict(handler_call_details.invocation_metadata or ()).get(AUTH_HEADER)
        if sent is not None and hmac.compare_digest(str(sent).encode(), self._expected):
            return handler
        why = "missing bearer token: send metadata 'authorization: Bearer <grpc.auth_token>'"
        if sent is not None:
            why = "invalid bearer token in 'authorization' metadata"
        deny = _abort(grpc.StatusCode.UNAUTHENTICATED, why)
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # fmt: skip
    """Adds the bearer token to every call's metadata."""

    def __init__(self, token: str):
        self._header = (AUTH_HEADER, f"Bearer {token}")

    def _with_token(self, details):
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)


def open_channel(address: str, cfg: GrpcSettings, options: list[tuple[str, int]] | None = None) -> grpc.Channel:
    """A channel to one of our servers: TLS when ``grpc.tls_ca_file`` is set (with this process's certificate
    for mutual TLS when ``tls_cert_file`` is), the bearer token on every call when ``grpc.auth_token`` is."""
    if cfg.tls_ca_file:
        own = (
            (_read(cfg.tls_key_file, "tls_key_file"), _read(cfg.tls_cert_file, "tls_cert_file"))
            if cfg.tls_cert_file and cfg.tls_key_file
            else (None, None)
        )
        creds = grpc.ssl_channel_credentials(_read(cfg.tls_ca_file, "tls_ca_file"), own[0], own[1])
        channel = grpc.secure_channel(address, creds, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    if cfg.auth_token:
        channel = grpc.intercept_channel(channel, _Bearer(cfg.auth_token))
    return channel
