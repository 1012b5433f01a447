"""Endpoint safety (SSRF): a location's S3 URL never makes the control plane connect to metadata or link-local
addresses, nor (unless ``STOWAGE_ALLOW_PRIVATE_ENDPOINTS=true``) to loopback and private ones.

Names are resolved for real (``localhost`` is in this machine's /etc/hosts; there is no other DNS offline).
Only answers no resolver here can give (an IPv6 metadata address, a rebinding name) come from a patched
``socket.getaddrinfo``. Every refused case also proves that no connection reached the listener.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from stowage.aws import clients, endpoints
from stowage.aws.broker import CredentialBroker
from stowage.aws.errors import translate
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain import endpoints as rules
from stowage.domain.checks import LIVE_CHECK_IDS, CheckStatus
from stowage.domain.locations import LocationSpec, Provider, StaticCredentials
from stowage.domain.naming import check_s3_url
from stowage.services.validation import LocationValidator
from tests.support.aws_accounts import AwsAccounts
from tests.support.servers import StowageServer

SETTING = "STOWAGE_ALLOW_PRIVATE_ENDPOINTS"
BASE = "/api/v1/projects/default/backup-locations"
LIST_BUCKETS = b'<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>'


# --------------------------------------------------------------------------------------- the rules themselves
@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", rules.AddressKind.METADATA),
        ("169.254.170.2", rules.AddressKind.METADATA),
        ("fd00:ec2::254", rules.AddressKind.METADATA),
        ("::ffff:169.254.169.254", rules.AddressKind.METADATA),
        ("64:ff9b::a9fe:a9fe", rules.AddressKind.METADATA),
        ("2002:a9fe:a9fe::", rules.AddressKind.METADATA),
        ("169.254.1.1", rules.AddressKind.LINK_LOCAL),
        ("fe80::1", rules.AddressKind.LINK_LOCAL),
        ("febf::1", rules.AddressKind.LINK_LOCAL),
        ("::ffff:169.254.1.1", rules.AddressKind.LINK_LOCAL),
    ],
)
def test_metadata_and_link_local_are_refused_whatever_the_setting(address: str, kind: rules.AddressKind) -> None:
    for allow in (False, True):
        verdict = rules.judge(address, allow_private=allow)
        assert verdict.kind is kind and not verdict.allowed and verdict.always_refused


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", rules.AddressKind.LOOPBACK),
        ("127.255.0.9", rules.AddressKind.LOOPBACK),
        ("::1", rules.AddressKind.LOOPBACK),
        ("::ffff:127.0.0.1", rules.AddressKind.LOOPBACK),
        ("10.20.30.40", rules.AddressKind.PRIVATE),
        ("172.16.0.1", rules.AddressKind.PRIVATE),
        ("172.31.255.254", rules.AddressKind.PRIVATE),
        ("192.168.0.10", rules.AddressKind.PRIVATE),
        ("::ffff:10.0.0.1", rules.AddressKind.PRIVATE),
        ("fc00::1", rules.AddressKind.PRIVATE),
        ("fd12:3456::1", rules.AddressKind.PRIVATE),
        ("100.64.0.1", rules.AddressKind.SHARED),
        ("100.127.255.254", rules.AddressKind.SHARED),
        ("0.0.0.0", rules.AddressKind.UNSPECIFIED),
        ("::", rules.AddressKind.UNSPECIFIED),
        ("198.18.0.1", rules.AddressKind.NON_PUBLIC),
        ("2001:db8::1", rules.AddressKind.NON_PUBLIC),
    ],
)
def test_private_ranges_follow_the_setting(address: str, kind: rules.AddressKind) -> None:
    refused = rules.judge(address, allow_private=False)
    assert refused.kind is kind and not refused.allowed and not refused.always_refused
    assert rules.judge(address, allow_private=True).allowed


@pytest.mark.parametrize("address", ["52.216.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2600:1f18::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert rules.judge(address, allow_private=False).allowed


def test_refusal_messages_name_the_address_why_and_the_setting() -> None:
    private = rules.refusal_message("minio.corp", rules.judge("10.1.2.3", allow_private=False))
    assert "minio.corp (resolves to 10.1.2.3)" in private and "private 10.0.0.0/8" in private
    assert f"{SETTING}=true" in private
    metadata = rules.refusal_message("169.254.169.254", rules.judge("169.254.169.254", allow_private=True))
    assert "instance metadata" in metadata and "never" in metadata and "resolves" not in metadata


def test_static_check_refuses_literal_metadata_urls_and_leaves_private_ones_to_the_setting() -> None:
    for url in ("http://169.254.169.254/", "https://[fd00:ec2::254]:443", "http://[::ffff:169.254.169.254]/"):
        result = check_s3_url(url, force_path_style=True, provider=Provider.S3_COMPATIBLE)
        assert result.status is CheckStatus.FAILED and "metadata" in result.message, url
    private = check_s3_url("https://10.0.0.5:9000", force_path_style=True, provider=Provider.S3_COMPATIBLE)
    assert private.status is CheckStatus.PASSED


# ------------------------------------------------------------------------------------ resolution, for real
def test_localhost_resolves_to_loopback_and_is_refused_without_the_setting() -> None:
    with pytest.raises(endpoints.EndpointRefused) as caught:
        endpoints.check_host("localhost", 80, allow_private=False)
    message = caught.value.message
    assert "localhost (resolves to 127.0.0.1)" in message and "loopback" in message and f"{SETTING}=true" in message
    endpoints.check_host("localhost", 80, allow_private=True)


def test_unresolvable_names_are_not_refused() -> None:
    # They cannot be connected to either; the probes then report the endpoint as unreachable.
    endpoints.check_host("no-such-host.invalid", 443, allow_private=False)


def test_virtual_hosted_bucket_name_is_resolved_too(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["storage.test"] = ["52.216.1.1"]
    fake_dns["evil.storage.test"] = ["169.254.169.254"]
    endpoints.check_location_url("https://storage.test", bucket="evil", force_path_style=True, allow_private=False)
    with pytest.raises(endpoints.EndpointRefused, match=r"evil\.storage\.test"):
        endpoints.check_location_url("https://storage.test", bucket="evil", force_path_style=False, allow_private=True)


def test_a_name_with_an_ipv6_metadata_answer_is_refused_even_when_private_is_allowed(
    fake_dns: dict[str, list[str]],
) -> None:
    fake_dns["imds6.test"] = ["2600:1f18::1", "fd00:ec2::254"]
    with pytest.raises(endpoints.EndpointRefused) as caught:
        endpoints.check_host("imds6.test", 80, allow_private=True)
    assert "imds6.test (resolves to fd00:ec2::254)" in caught.value.message
    assert caught.value.verdict.always_refused


# --------------------------------------------------------------------------------- the guarded connection
class _Listener:
    """A plain HTTP server answering ListBuckets; counts the requests that reached it."""

    def __init__(self, host: str) -> None:
        hits = self.hits = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits[0] += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(LIST_BUCKETS)))
                self.end_headers()
                self.wfile.write(LIST_BUCKETS)

            def log_message(self, *_: Any) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_cls = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        self.server = server_cls((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    served = _Listener("127.0.0.1")
    yield served
    served.close()


@pytest.fixture
def listener6() -> Iterator[_Listener]:
    served = _Listener("::1")
    yield served
    served.close()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names under .test answer what the test puts here; everything else resolves for real."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".test"):
            if host not in answers:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            out = []
            for address in answers[host]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr: tuple[Any, ...] = (address, int(port), 0, 0) if ":" in address else (address, int(port))
                out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def _s3(url: str, *, allow_private: bool | None) -> Any:
    creds = clients.TemporaryCredentials("AKIDEXAMPLE", "secret", None)
    return clients.client(
        "s3",
        credentials=creds,
        region="us-east-1",
        endpoint_url=url,
        force_path_style=True,
        allow_private=allow_private,
    )


def _refusal(call: Any) -> endpoints.EndpointRefused:
    with pytest.raises((BotoCoreError, ClientError)) as caught:
        call()
    refused = translate(caught.value)
    assert isinstance(refused, endpoints.EndpointRefused), caught.value
    return refused


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_guarded_client_refuses_loopback_before_connecting(listener: _Listener, host: str) -> None:
    refused = _refusal(_s3(f"http://{host}:{listener.port}", allow_private=False).list_buckets)
    assert "127.0.0.1" in refused.message and f"{SETTING}=true" in refused.message
    assert listener.hits == [0]
    # The same endpoint with the setting on, and an unguarded (admin-configured) client, reach it.
    assert _s3(f"http://{host}:{listener.port}", allow_private=True).list_buckets()["Buckets"] == []
    assert _s3(f"http://{host}:{listener.port}", allow_private=None).list_buckets()["Buckets"] == []
    assert listener.hits == [2]


def test_guarded_client_on_ipv6_loopback(listener6: _Listener) -> None:
    url = f"http://[::1]:{listener6.port}"
    refused = _refusal(_s3(url, allow_private=False).list_buckets)
    assert "loopback ::1" in refused.message and listener6.hits == [0]
    assert _s3(url, allow_private=True).list_buckets()["Buckets"] == []
    assert listener6.hits == [1]


def test_dns_rebinding_is_caught_at_connection_time(listener: _Listener, fake_dns: dict[str, list[str]]) -> None:
    """The name passes the check, then answers the metadata address when the client connects: refused."""
    fake_dns["rebind.test"] = ["127.0.0.1"]
    url = f"http://rebind.test:{listener.port}"
    endpoints.check_location_url(url, bucket="b", force_path_style=True, allow_private=True)
    s3 = _s3(url, allow_private=True)
    assert s3.list_buckets()["Buckets"] == [] and listener.hits == [1]
    fake_dns["rebind.test"] = ["169.254.169.254"]
    fresh = _s3(url, allow_private=True)  # a new connection, as after a dropped keep-alive
    refused = _refusal(fresh.list_buckets)
    assert "rebind.test (resolves to 169.254.169.254)" in refused.message
    assert listener.hits == [1]


# ------------------------------------------------------------------------------------------- validation
def _validator(allow_private: bool) -> LocationValidator:
    settings = Settings(validation_timeout_seconds=10, allow_private_endpoints=allow_private)
    return LocationValidator(settings=settings, broker=CredentialBroker(settings), identity=IdentityResolver())


def _spec(url: str) -> LocationSpec:
    return LocationSpec(
        name="on-prem",
        provider=Provider.S3_COMPATIBLE,
        bucket="backups",
        region="us-east-1",
        s3_url=url,
        force_path_style=True,
        credentials=StaticCredentials("storage-user", "storage-secret"),
    )


@pytest.mark.parametrize("live", [True, False])
def test_validation_fails_s3_url_and_sends_nothing(listener: _Listener, live: bool) -> None:
    report = _validator(False).validate(
        _spec(f"http://localhost:{listener.port}"), project_name="acme", external_id="x", live=live
    )
    checks = {c.id: c for c in report.checks}
    assert not report.ok and checks["s3-url"].status is CheckStatus.FAILED
    assert "127.0.0.1" in checks["s3-url"].message and SETTING in checks["s3-url"].remedy
    assert all(checks[i].status is CheckStatus.SKIPPED for i in LIVE_CHECK_IDS)
    assert listener.hits == [0]


def test_validation_with_the_setting_reaches_the_endpoint(listener: _Listener) -> None:
    report = _validator(True).validate(_spec(f"http://localhost:{listener.port}"), project_name="acme", external_id="x")
    checks = {c.id: c for c in report.checks}
    assert checks["s3-url"].status is not CheckStatus.FAILED
    assert listener.hits[0] > 0  # the probes ran (this listener is no S3, so they fail, but not refused)


# ------------------------------------------------------------------------------------------ a live server
@pytest.fixture
def bucket_keys(aws: AwsAccounts) -> tuple[str, str]:
    aws.create_bucket("ssrf-backups", "us-east-1")
    return aws.create_user_keys("storage-user", bucket="ssrf-backups", include_ec2=False)


def _location(name: str, url: str, keys: tuple[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "s3-compatible",
        "bucket": "ssrf-backups",
        "region": "us-east-1",
        "s3Url": url,
        "forcePathStyle": True,
        "credentials": {"type": "static", "accessKeyId": keys[0], "secretAccessKey": keys[1]},
    }


def _by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


def test_live_server_without_the_setting_refuses_the_emulator(
    server_factory: Any, aws: AwsAccounts, bucket_keys: tuple[str, str]
) -> None:
    # ministack listens on 127.0.0.1; "localhost" reaches it by name.
    url = aws.endpoint.replace("127.0.0.1", "localhost")
    srv: StowageServer = server_factory(extra_env={**aws.control_plane_env(), SETTING: "false"})
    with srv.client() as http:
        validated = http.post(f"{BASE}/validate", json=_location("onprem", url, bucket_keys))
        created = http.post(BASE, json=_location("onprem", url, bucket_keys))
        metadata = http.post(BASE, json=_location("imds", "http://169.254.169.254", bucket_keys))
    assert validated.status_code == 200, validated.text
    s3_url = _by_id(validated.json())["s3-url"]
    assert s3_url["status"] == "failed" and "localhost (resolves to 127.0.0.1)" in s3_url["message"]
    assert f"{SETTING}=true" in s3_url["remedy"]
    assert created.status_code == 422 and created.json()["code"] == "validation_failed"
    assert _by_id(created.json()["details"]["report"])["s3-url"]["status"] == "failed"
    assert metadata.status_code == 422
    assert "instance metadata" in _by_id(metadata.json()["details"]["report"])["s3-url"]["message"]
    assert aws.object_keys("ssrf-backups") == []


def test_live_server_with_the_setting_validates_the_emulator_but_never_metadata(
    server_factory: Any, aws: AwsAccounts, bucket_keys: tuple[str, str]
) -> None:
    url = aws.endpoint.replace("127.0.0.1", "localhost")
    srv: StowageServer = server_factory(extra_env={**aws.control_plane_env(), SETTING: "true"})
    with srv.client() as http:
        created = http.post(BASE, json=_location("onprem", url, bucket_keys))
        metadata = http.post(f"{BASE}/validate", json=_location("imds", "http://169.254.169.254:80", bucket_keys))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "Available"
    report = metadata.json()
    assert metadata.status_code == 200 and not report["ok"]
    assert "never" in _by_id(report)["s3-url"]["message"]
