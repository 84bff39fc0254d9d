"""gRPC TLS, mutual TLS and bearer tokens through the shared server setup and our channel helper, with real
certificates made here (a CA, a server certificate for 127.0.0.1, a client certificate) and a real server.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mofi.settings import GrpcSettings
from mofi_platform.services.common.auth import open_channel
from mofi_platform.services.common.server import serve

SERVICE = "mofi.test.Secure"
ECHO = f"/{SERVICE}/Echo"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False, server: bool = False):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert, key) -> tuple[str, str]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """Files of a CA, a server certificate for 127.0.0.1 signed by it, a client certificate, and a stranger CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _issue("mofi test CA", ca_key, _name("mofi test CA"), ca_key, ca=True)
    other = _issue("another CA", other_key, _name("another CA"), other_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    files = {}
    files["ca"], _ = _write(d / "ca", ca, ca_key)
    files["other_ca"], _ = _write(d / "other", other, other_key)
    files["server_cert"], files["server_key"] = _write(
        d / "server", _issue("127.0.0.1", server_key, ca.subject, ca_key, server=True), server_key
    )
    files["client_cert"], files["client_key"] = _write(
        d / "client", _issue("mofi client", client_key, ca.subject, ca_key), client_key
    )
    return files


def _start(cfg: GrpcSettings):
    def echo(request: bytes, context):
        return request

    handlers = grpc.method_handlers_generic_handler(SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    return serve([(lambda svc, server: server.add_generic_rpc_handlers((svc,)), handlers)], [SERVICE], 0, cfg)


def _echo(channel: grpc.Channel, data: bytes = b"hi") -> bytes:
    return channel.unary_unary(ECHO)(data, timeout=10)


def _health(channel: grpc.Channel) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status


def test_token_is_required_and_checked_health_stays_open():
    running = _start(GrpcSettings(auth_token="s3cret-token"))
    address = f"127.0.0.1:{running.port}"
    try:
        with grpc.insecure_channel(address) as bare:
            with pytest.raises(grpc.RpcError) as missing:
                _echo(bare)
            assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "missing bearer token" in missing.value.details()
            with pytest.raises(grpc.RpcError) as stream:  # a streaming method is guarded too
                request = reflection_pb2.ServerReflectionRequest(list_services="")
                list(reflection_pb2_grpc.ServerReflectionStub(bare).ServerReflectionInfo(iter([request]), timeout=10))
            assert stream.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert _health(bare) == health_pb2.HealthCheckResponse.SERVING  # the kubelet's probe sends no token
        with open_channel(address, GrpcSettings(auth_token="wrong")) as wrong:
            with pytest.raises(grpc.RpcError) as bad:
                _echo(wrong)
            assert bad.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "invalid bearer token" in bad.value.details()
        with open_channel(address, GrpcSettings(auth_token="s3cret-token")) as good:
            assert _echo(good, b"payload") == b"payload"
    finally:
        running.stop(0)


def test_tls_server_refuses_plaintext_and_serves_verified_clients(pki):
    cfg = GrpcSettings(tls_cert_file=pki["server_cert"], tls_key_file=pki["server_key"], auth_token="tok")
    running = _start(cfg)
    address = f"127.0.0.1:{running.port}"
    try:
        with grpc.insecure_channel(address) as plain:
            with pytest.raises(grpc.RpcError) as refused:
                _health(plain)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with open_channel(address, GrpcSettings(tls_ca_file=pki["other_ca"], auth_token="tok")) as untrusted:
            with pytest.raises(grpc.RpcError) as unverified:  # the client does not trust the server's issuer
                _echo(untrusted)
            assert unverified.value.code() == grpc.StatusCode.UNAVAILABLE
        with open_channel(address, GrpcSettings(tls_ca_file=pki["ca"], auth_token="tok")) as secure:
            assert _echo(secure, b"over tls") == b"over tls"
            assert _health(secure) == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(0)


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki):
    server_cfg = GrpcSettings(
        tls_cert_file=pki["server_cert"], tls_key_file=pki["server_key"], tls_ca_file=pki["ca"], tls_client_auth=True
    )
    running = _start(server_cfg)
    address = f"127.0.0.1:{running.port}"
    client = GrpcSettings(tls_ca_file=pki["ca"])
    try:
        with open_channel(address, client) as anonymous:
            with pytest.raises(grpc.RpcError) as refused:
                _echo(anonymous)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        mtls = replace(client, tls_cert_file=pki["client_cert"], tls_key_file=pki["client_key"])
        with open_channel(address, mtls) as known:
            assert _echo(known, b"mutual") == b"mutual"
    finally:
        running.stop(0)


def test_incomplete_tls_settings_are_refused_with_the_reason(pki):
    with pytest.raises(ValueError, match="tls_key_file go together"):
        _start(GrpcSettings(tls_cert_file=pki["server_cert"]))
    with pytest.raises(ValueError, match="needs grpc.tls_ca_file"):
        _start(GrpcSettings(tls_cert_file=pki["server_cert"], tls_key_file=pki["server_key"], tls_client_auth=True))
    with pytest.raises(OSError, match="tls_cert_file: cannot read"):
        _start(GrpcSettings(tls_cert_file="/nonexistent.crt", tls_key_file=pki["server_key"]))
