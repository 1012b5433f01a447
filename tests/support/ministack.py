"""A real ministack (AWS emulator, ``AUTH=true``) for tests: a pytest plugin with session-scoped servers.

Register it with ``pytest_plugins = ["tests.support.ministack"]`` (tests/conftest.py) or ``-p
tests.support.ministack``. Fixtures:

* ``ministack`` (session): plain HTTP on a free 127.0.0.1 port, started as ``.venv/bin/ministack`` with
  ``BIND_HOST=127.0.0.1 GATEWAY_PORT=<port> AUTH=true``; stopped by PID at the end of the session.
* ``aws`` (function): resets ``ministack`` (``POST /_ministack/reset``, ~10 ms), points the control plane's
  boto3 chain at it with ``monkeypatch.setenv`` (root keys of account 111111111111) and returns an
  ``AwsAccounts`` helper for buckets, roles and users.
* ``tls_material`` (session): a throw-away CA and a server certificate for 127.0.0.1/localhost, made with
  ``cryptography``.
* ``ministack_tls`` (session) and ``aws_tls`` (function): the same emulator over HTTPS with that certificate.

TLS: ministack's own switch (``USE_SSL=1`` with ``MINISTACK_SSL_CERT``/``MINISTACK_SSL_KEY``) also binds port
443 whenever it can, which as root here it can; a test must not take a machine-wide port. So the TLS server
is started the way ministack's own ``--detach`` mode starts it, ``python -m hypercorn ministack.app:app``, with
hypercorn's ``--certfile``/``--keyfile``: the same application, TLS on the one port asked for, no proxy.

Every server binds 127.0.0.1 only; the IoT MQTT (8883, all interfaces by default) and SFTP listeners are
switched off; S3 data and ministack's PID file live in the test's temp directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.aws_accounts import AwsAccounts
from tests.support.processes import free_port, spawn, stop, wait_until

BIN_DIR = Path(sys.executable).parent


@dataclass(frozen=True)
class TlsMaterial:
    """A CA (its PEM text and file) and the server certificate and key it issued."""

    ca_pem: str
    ca_path: Path
    cert_path: Path
    key_path: Path


def make_tls_material(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsMaterial:
    """Create a self-signed CA and a server certificate for ``hosts`` (IP addresses and DNS names)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stowage Test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    ca_path = directory / "ca.pem"
    cert_path = directory / "server.pem"
    key_path = directory / "server.key"
    ca_path.write_text(ca_pem)
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return TlsMaterial(ca_pem=ca_pem, ca_path=ca_path, cert_path=cert_path, key_path=key_path)


@dataclass
class Ministack:
    """A running ministack: its URL and log; ``reset`` wipes every account's state."""

    url: str
    port: int
    log: Path
    tls: TlsMaterial | None = None
    _proc: Any = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The server's process id (None once stopped)."""
        return self._proc.pid if self._proc is not None else None

    def _http(self) -> httpx.Client:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(self.tls.ca_path)) if self.tls else True
        return httpx.Client(base_url=self.url, timeout=10, verify=verify)

    def healthy(self) -> bool:
        """True when ``GET /_ministack/health`` answers 200."""
        with self._http() as http:
            return http.get("/_ministack/health").status_code == 200

    def reset(self) -> None:
        """Wipe all state (``POST /_ministack/reset``)."""
        with self._http() as http:
            http.post("/_ministack/reset").raise_for_status()

    def accounts(self) -> AwsAccounts:
        """The account helper bound to this server (trusting its CA when it speaks TLS)."""
        return AwsAccounts(self.url, verify=str(self.tls.ca_path) if self.tls else None)

    def stop(self) -> None:
        """Stop the server by its PID."""
        if self._proc is not None:
            stop(self._proc)
            self._proc = None


def start_ministack(tmp: Path, *, tls: TlsMaterial | None = None, timeout: float = 60) -> Ministack:
    """Start ministack with ``AUTH=true`` on a free 127.0.0.1 port (HTTPS when ``tls`` is given)."""
    port = free_port()
    workdir = tmp / f"ministack-{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STOWAGE_", "MINISTACK_"))}
    env.update(
        {
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "AUTH": "true",
            # Off: the IoT MQTT listener binds 0.0.0.0:8883 by default; SFTP is not needed either.
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
            "S3_DATA_DIR": str(workdir / "s3"),
            # ministack writes its PID file under the temp directory: keep it in ours.
            "TMPDIR": str(workdir),
            "LOG_LEVEL": "WARNING",
        }
    )
    log = workdir / "ministack.log"
    if tls is None:
        args = [str(BIN_DIR / "ministack")]
        url = f"http://127.0.0.1:{port}"
    else:
        args = [
            sys.executable,
            "-m",
            "hypercorn",
            "ministack.app:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--certfile",
            str(tls.cert_path),
            "--keyfile",
            str(tls.key_path),
            "--log-level",
            "WARNING",
        ]
        url = f"https://127.0.0.1:{port}"
    proc = spawn(args, env=env, log=log, cwd=workdir)
    server = Ministack(url=url, port=port, log=log, tls=tls, _proc=proc)
    try:
        wait_until(server.healthy, timeout=timeout, what="ministack", proc=proc, log=log)
    except BaseException:
        server.stop()
        raise
    return server


def control_plane_environment(
    monkeypatch: pytest.MonkeyPatch, accounts: AwsAccounts, region: str = "us-east-1"
) -> None:
    """Make this process's boto3 chain the control plane's identity (account 111111111111) at the emulator."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL_") or name in (
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CA_BUNDLE",
        ):
            monkeypatch.delenv(name, raising=False)
    for name, value in accounts.control_plane_env(region).items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def ministack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ministack]:
    """One ministack (HTTP, AUTH=true) for the whole test session."""
    server = start_ministack(tmp_path_factory.mktemp("ministack"))
    yield server
    server.stop()


@pytest.fixture
def aws(ministack: Ministack, monkeypatch: pytest.MonkeyPatch) -> AwsAccounts:
    """A wiped emulator and this process's AWS identity set to the control plane's (account 111111111111)."""
    ministack.reset()
    accounts = ministack.accounts()
    control_plane_environment(monkeypatch, accounts)
    return accounts


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def ministack_tls(tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial) -> Iterator[Ministack]:
    """One ministack over HTTPS (certificate from ``tls_material``) for the whole session."""
    server = start_ministack(tmp_path_factory.mktemp("ministack-tls"), tls=tls_material)
    yield server
    server.stop()


@pytest.fixture
def aws_tls(ministack_tls: Ministack) -> AwsAccounts:
    """The HTTPS emulator, wiped, with an account helper that trusts its CA."""
    ministack_tls.reset()
    return ministack_tls.accounts()
