"""Registry configuration: embedded defaults < YAML file < ``MESH_*`` environment < flags.

Every setting has a working default, so ``mesh serve`` needs no file at all.
See docs/configuration.md for the full list.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh.errors import MeshError
from mesh.spiffeid import TrustDomain

ENV_PREFIX = "MESH_"
#: Most serving processes `mesh serve --workers` runs.
MAX_WORKERS = 64


class ConfigError(MeshError):
    """A setting is missing, malformed or out of range."""


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path(".mesh")
    # TLS without client certificates: registration, the trust bundle, health.
    listen: str = "127.0.0.1:8443"
    # Mutual TLS (client certificate required): every authenticated call.
    # Empty: the listen host with the listen port + 1 (0 stays 0: any free port).
    mtls_listen: str = ""
    # Empty: SQLite at <data_dir>/registry.db.
    database_url: str = ""
    trust_domain: str = "mesh.local"
    # Empty: no metrics endpoint.
    metrics_listen: str = ""
    log_format: str = "console"  # "console" | "json"
    log_level: str = "info"
    # SQLite WAL synchronous mode: NORMAL survives a process kill (not a power loss).
    sqlite_synchronous: str = "NORMAL"
    # Environment variable holding the CA key passphrase; empty means unencrypted keys.
    ca_passphrase_env: str = ""
    x509_svid_ttl_seconds: int = 3600
    jwt_svid_default_ttl_seconds: int = 300
    jwt_svid_max_ttl_seconds: int = 3600
    challenge_ttl_seconds: int = 300
    join_token_default_ttl_seconds: int = 600
    join_token_max_ttl_seconds: int = 7 * 24 * 3600
    # The serving certificate is re-issued when less than a third of its life remains.
    serving_cert_ttl_seconds: int = 7 * 24 * 3600
    # Threads for the store and for CPU-bound crypto (CSR checks, signing).
    worker_threads: int = 8
    # Serving processes sharing the ports and the data directory (see
    # registry.workers); one process serves on one core at most.
    workers: int = 1
    # Extra DNS names / IPs for the serving certificate (beyond the listen host, localhost).
    extra_hosts: tuple[str, ...] = field(default=())
    grace_seconds: float = 5.0
    # Trust: how often the scheduler recomputes due agents, and the policy file
    # (empty: the built-in default policy, see docs/trust.md).
    trust_recompute_interval_seconds: float = 60.0
    trust_policy_file: str = ""
    # Events older than this are pruned hourly (0 keeps every event).
    event_retention_seconds: int = 7 * 24 * 3600
    # Replicas (PostgreSQL): the environment variable holding the replica key that
    # seals the CA, challenge key and operator key shared through the database.
    replica_key_env: str = "MESH_REPLICA_KEY"
    # Health checks of the database (NOT_SERVING while it is unreachable).
    health_check_interval_seconds: float = 1.0
    # PostgreSQL connections per replica: a pool of this many, plus up to the overflow
    # under bursts, plus two dedicated ones (leader lock, LISTEN). Keep
    # replicas x (pool + overflow + 2) below the server's max_connections.
    database_pool_size: int = 10
    database_max_overflow: int = 20

    @property
    def effective_mtls_listen(self) -> str:
        if self.mtls_listen:
            return self.mtls_listen
        host, port = split_host_port(self.listen, "listen")
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{port + 1 if port else 0}"

    @property
    def listen_host(self) -> str:
        return split_host_port(self.listen, "listen")[0]

    @property
    def listen_port(self) -> int:
        return split_host_port(self.listen, "listen")[1]

    def serving_hosts(self) -> list[str]:
        """Names the serving certificate must carry (the listen host first)."""
        mtls_host = split_host_port(self.effective_mtls_listen, "mtls_listen")[0]
        hosts = [self.listen_host, mtls_host, "localhost", "127.0.0.1", *self.extra_hosts]
        out: list[str] = []
        for host in hosts:
            if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a bind-all address is not a name
                continue
            if host not in out:
                out.append(host)
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def split_host_port(value: str, name: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name} {value!r} is not HOST:PORT", hint="e.g. 127.0.0.1:8443")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{name} {value!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} {value!r}: port must be 0..65535")
    return host, port


def _coerce(name: str, value: Any) -> Any:
    kind = _FIELDS[name].type
    try:
        if kind == "Path":
            return Path(str(value)).expanduser()
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind == "float":
            return float(value)
        if kind == "tuple[str, ...]":
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name}: {value!r} is not a valid {kind}") from None


def load_config(
    file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration from the layers, later ones winning; validate it."""
    values: dict[str, Any] = {}
    if file is not None:
        try:
            document = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise ConfigError(f"config file {file} must be a mapping of settings")
        for key, value in document.items():
            name = str(key).replace("-", "_")
            if name not in _FIELDS:
                raise ConfigError(
                    f"config file {file}: unknown setting {key!r}",
                    hint=f"known settings: {', '.join(sorted(_FIELDS))}",
                )
            values[name] = _coerce(name, value)
    environ = os.environ if env is None else env
    for name in _FIELDS:
        text = environ.get(ENV_PREFIX + name.upper())
        if text is not None and text != "":
            values[name] = _coerce(name, text)
    for name, value in (overrides or {}).items():
        if value is not None:
            if name not in _FIELDS:
                raise ConfigError(f"unknown setting {name!r}")
            values[name] = _coerce(name, value)
    config = Config(**values)
    validate(config)
    return config


def validate(config: Config) -> None:
    split_host_port(config.listen, "listen")
    if split_host_port(config.listen, "listen")[1] == 65535 and not config.mtls_listen:
        raise ConfigError("listen port 65535 leaves no port for mtls_listen; set mtls_listen")
    split_host_port(config.effective_mtls_listen, "mtls_listen")
    if config.metrics_listen:
        split_host_port(config.metrics_listen, "metrics_listen")
    try:
        TrustDomain.parse(config.trust_domain)
    except MeshError as exc:
        raise ConfigError(f"trust_domain: {exc}") from None
    if config.log_format not in ("console", "json"):
        raise ConfigError("log_format must be 'console' or 'json'")
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level must be debug, info, warning or error")
    if config.sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigError("sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA")
    positive = (
        "x509_svid_ttl_seconds",
        "jwt_svid_default_ttl_seconds",
        "jwt_svid_max_ttl_seconds",
        "challenge_ttl_seconds",
        "join_token_default_ttl_seconds",
        "join_token_max_ttl_seconds",
        "serving_cert_ttl_seconds",
        "worker_threads",
        "database_pool_size",
        "health_check_interval_seconds",
    )
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
    if not 1 <= config.workers <= MAX_WORKERS:
        raise ConfigError(f"workers must be between 1 and {MAX_WORKERS}, got {config.workers}")
    if config.workers > 1:
        for name, address in (("listen", config.listen),
                              ("mtls_listen", config.effective_mtls_listen)):
            if split_host_port(address, name)[1] == 0:
                raise ConfigError(
                    f"{name} port 0 with workers={config.workers}: the workers share the "
                    "ports, so each must be fixed",
                    hint=f"give {name} a port number, e.g. 127.0.0.1:8443",
                )
    if config.database_max_overflow < 0:
        raise ConfigError("database_max_overflow must be 0 or positive")
    if config.trust_recompute_interval_seconds <= 0:
        raise ConfigError("trust_recompute_interval_seconds must be positive")
    if config.event_retention_seconds < 0:
        raise ConfigError("event_retention_seconds must be 0 (keep all) or positive")
    if config.jwt_svid_default_ttl_seconds > config.jwt_svid_max_ttl_seconds:
        raise ConfigError("jwt_svid_default_ttl_seconds exceeds jwt_svid_max_ttl_seconds")
    if config.join_token_default_ttl_seconds > config.join_token_max_ttl_seconds:
        raise ConfigError("join_token_default_ttl_seconds exceeds join_token_max_ttl_seconds")
    if config.serving_cert_ttl_seconds < 3600:
        raise ConfigError("serving_cert_ttl_seconds must be at least 3600")
    for host in config.extra_hosts:
        _check_host(host)


def _check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.split(".")
    if not host or len(host) > 253 or not all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() for label in labels
    ):
        raise ConfigError(f"extra_hosts: {host!r} is not a DNS name or IP address")
