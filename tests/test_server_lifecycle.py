"""`mesh serve` as a process, configuration layers, metrics, certificate renewal, logs."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from _cluster import free_port_pair
from cryptography import x509
from fixtures_registry import RunningRegistry
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.v1 import agents_pb2, svid_pb2
from registry.config import Config, ConfigError, load_config
from registry.logs import redact
from registry.status import RpcError, status_for
from registry.store.errors import NotFound, StoreUnavailable


def test_config_layers(tmp_path: Path) -> None:
    assert load_config(env={}) == Config()
    file = tmp_path / "registry.yaml"
    file.write_text("listen: 127.0.0.1:9000\ntrust_domain: file.example\nworker_threads: 3\n")
    env = {"MESH_TRUST_DOMAIN": "env.example", "MESH_EXTRA_HOSTS": "a.example, 10.0.0.1"}
    config = load_config(file, env=env, overrides={"listen": "127.0.0.1:9100", "data_dir": None})
    assert config.listen == "127.0.0.1:9100"  # flag beats file
    assert config.trust_domain == "env.example"  # environment beats file
    assert config.worker_threads == 3  # file beats default
    assert config.extra_hosts == ("a.example", "10.0.0.1")
    assert config.effective_mtls_listen == "127.0.0.1:9101"
    assert "a.example" in config.serving_hosts() and "localhost" in config.serving_hosts()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("listen: nope\n", "HOST:PORT"),
        ("bogus: 1\n", "unknown setting"),
        ("trust_domain: 'Not A Domain'\n", "trust_domain"),
        ("worker_threads: -1\n", "positive"),
        ("- a\n- b\n", "mapping"),
        ("log_format: xml\n", "log_format"),
        ("listen: 127.0.0.1:99999\n", "port"),
    ],
)
def test_config_errors_are_named(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(file, env={})
    assert needle in str(err.value)


def test_mesh_serve_process(tmp_path: Path) -> None:
    port = free_port_pair()
    data = tmp_path / "data"
    mesh = Path(sys.executable).with_name("mesh")
    env = {**os.environ, "MESH_LOG_LEVEL": "warning", "MESH_TRUST_DOMAIN": "proc.example"}
    proc = subprocess.Popen(
        [str(mesh), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}",
         "--log-format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (data / "operator" / "operator.pem").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        bundle = (data / "bundle.pem").read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=bundle)
        with grpc.secure_channel(f"localhost:{port}", creds) as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert (data.stat().st_mode & 0o777) == 0o700
        assert (data / "registry.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_metrics_endpoint(tmp_path: Path) -> None:
    port = free_port_pair()
    config = Config(
        data_dir=tmp_path / "data", listen="127.0.0.1:0", trust_domain="metrics.example",
        metrics_listen=f"127.0.0.1:{port}", log_level="warning",
    )
    running = RunningRegistry(config)
    running.start()
    try:
        running.svids(running.anonymous()).GetTrustBundle(svid_pb2.GetTrustBundleRequest())
        with pytest.raises(grpc.RpcError):
            running.agents(running.anonymous()).ListAgents(agents_pb2.ListAgentsRequest())
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        text = body.decode()
        assert 'mesh_rpc_total{code="OK",method="/mesh.v1.SVIDService/GetTrustBundle"}' in text
        assert 'code="UNAUTHENTICATED",method="/mesh.v1.AgentService/ListAgents"' in text
        assert "mesh_rpc_duration_seconds_bucket" in text
        assert "mesh_serving_certificate_expiry_timestamp_seconds" in text
        # The store's group commits, read at the scrape.
        store = running.server.store
        assert store is not None
        groups = store.group_stats.groups
        assert f"mesh_store_group_commits_total {float(groups)}" in text
        assert "mesh_store_group_calls_total" in text
        assert "mesh_store_group_largest_calls" in text
    finally:
        running.stop()


def _served_serial(address: str, bundle_path: Path) -> int:
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(bundle_path))
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_serving_certificate_is_renewed_in_place(registry: RunningRegistry) -> None:
    before = _served_serial(registry.address, registry.server.bundle_path)
    registry.server._issue_serving_certificate()
    after = _served_serial(registry.address, registry.server.bundle_path)
    assert before != after
    # Existing and new channels keep working.
    reply = registry.svids(registry.anonymous()).GetTrustBundle(svid_pb2.GetTrustBundleRequest())
    assert reply.trust_domain == registry.config.trust_domain


def test_status_mapping_and_log_redaction() -> None:
    assert status_for(RpcError(grpc.StatusCode.NOT_FOUND, "x")) == (grpc.StatusCode.NOT_FOUND, "x")
    assert status_for(NotFound("gone"))[0] == grpc.StatusCode.NOT_FOUND  # type: ignore[index]
    assert status_for(StoreUnavailable("down"))[0] == (  # type: ignore[index]
        grpc.StatusCode.UNAVAILABLE
    )
    assert status_for(ZeroDivisionError()) is None  # a bug: logged, answered INTERNAL
    long = status_for(RpcError(grpc.StatusCode.INVALID_ARGUMENT, "y" * 5000))
    assert long is not None and len(long[1]) <= 1024
    event = redact(None, "info", {"event": "x", "private_key": "k", "join_token": "t", "kid": "i"})
    assert event == {"event": "x", "private_key": "[redacted]", "join_token": "[redacted]",
                     "kid": "i"}


def test_reflection_lists_the_services(registry: RunningRegistry) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(registry.anonymous())
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {
        "mesh.v1.RegistrationService",
        "mesh.v1.SVIDService",
        "mesh.v1.AgentService",
        "mesh.v1.JoinTokenService",
        "grpc.health.v1.Health",
    } <= names


def test_expired_challenges_are_purged(registry: RunningRegistry) -> None:
    from datetime import UTC, datetime, timedelta

    nonce = "ab" * 32
    with registry.store.transaction() as tx:
        tx.challenges.create(
            nonce=nonce,
            purpose="register",
            trust_domain=registry.config.trust_domain,
            expires_at=datetime.now(UTC) + timedelta(milliseconds=300),
        )
    time.sleep(0.4)
    registry.server._purge_challenges()
    with registry.store.read() as view:
        assert view.challenges.find(nonce) is None
