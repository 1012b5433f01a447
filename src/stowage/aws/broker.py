"""The STS credential broker: assume customer roles with the control plane's own identity.

Modelled on aws-vault's ``CachedSessionProvider``: credentials are cached per (role, External ID, session
policy), refreshed a configurable window before they expire, and concurrent callers of one key share a single
``AssumeRole`` call (single flight). All STS calls of the process pass one token bucket so a burst of
validations or agents cannot trip STS throttling. Errors are translated once, here, into ``CloudError``s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stowage import errors
from stowage.aws import clients
from stowage.aws.clients import TemporaryCredentials
from stowage.aws.errors import translate
from stowage.config import Settings
from stowage.domain.regions import REGION_PARTITION

CacheKey = tuple[str, str | None, str | None]
# Beyond this many keys, expired entries are dropped so deleted locations do not pile up forever.
_CACHE_SOFT_LIMIT = 1024
# A region STS always has, for region codes that only S3-compatible storage uses.
_FALLBACK_REGION = "us-east-1"


class TokenBucket:
    """A thread-safe token bucket: ``rate`` tokens a second, bursts up to ``capacity``."""

    def __init__(self, rate: float, capacity: float | None = None, *, clock: Callable[[], float] = time.monotonic):
        self._rate = rate
        self._capacity = capacity if capacity is not None else max(1.0, rate)
        self._tokens = self._capacity
        self._clock = clock
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is available; returns the seconds waited."""
        if self._rate <= 0:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                # Sleep outside the lock for the time the missing fraction of a token takes to refill.
                delay = (1 - self._tokens) / self._rate
            time.sleep(delay)
            waited += delay


@dataclass
class _Entry:
    credentials: TemporaryCredentials | None = None
    pending: Future[TemporaryCredentials] | None = field(default=None, repr=False)


class CredentialBroker:
    """Hands out temporary credentials for customer roles; thread-safe, one per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        on_sts_call: Callable[[str, float], None] | None = None,
    ) -> None:
        self._settings = settings
        # Told (result, seconds) after every AssumeRole: the metrics, without aws/ importing services/.
        self._on_sts_call = on_sts_call
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[CacheKey, _Entry] = {}
        self._bucket = TokenBucket(settings.sts_calls_per_second)
        self._calls = 0
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._clients_lock = threading.Lock()

    @property
    def sts_calls(self) -> int:
        """How many ``AssumeRole`` calls this broker has made (for tests and benchmarks)."""
        with self._lock:
            return self._calls

    # -- cached credentials ------------------------------------------------------------------------------
    def credentials(
        self,
        *,
        role_arn: str,
        external_id: str | None,
        session_name: str,
        region: str,
        session_policy: str | None = None,
    ) -> TemporaryCredentials:
        """Cached credentials for a role; refreshed near expiry; one STS call for concurrent callers."""
        key: CacheKey = (role_arn, external_id, session_policy)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                self._evict_expired()
                entry = self._cache[key] = _Entry()
            if entry.credentials is not None and self._fresh(entry.credentials):
                return entry.credentials
            pending = entry.pending
            leader = pending is None
            if pending is None:
                pending = entry.pending = Future()
        if not leader:
            # Another thread is already asking STS for this key: wait for its answer (or its error).
            return pending.result()
        try:
            fresh = self.assume_once(
                role_arn=role_arn,
                external_id=external_id,
                session_name=session_name,
                region=region,
                session_policy=session_policy,
            )
        except BaseException as exc:
            with self._lock:
                entry.pending = None
            pending.set_exception(exc)
            raise
        with self._lock:
            entry.credentials = fresh
            entry.pending = None
        pending.set_result(fresh)
        return fresh

    def invalidate(self, role_arn: str | None = None) -> None:
        """Forget cached credentials (of one role, or all), for example after its trust policy changed."""
        with self._lock:
            for key in [k for k in self._cache if role_arn is None or k[0] == role_arn]:
                if self._cache[key].pending is None:
                    del self._cache[key]

    def _fresh(self, creds: TemporaryCredentials) -> bool:
        if creds.expiration_epoch is None:
            return True
        return self._clock() < creds.expiration_epoch - self._settings.effective_refresh_seconds

    def _evict_expired(self) -> None:
        if len(self._cache) < _CACHE_SOFT_LIMIT:
            return
        now = self._clock()
        for key, entry in list(self._cache.items()):
            creds = entry.credentials
            if entry.pending is None and (creds is None or (creds.expiration_epoch or now + 1) <= now):
                del self._cache[key]

    # -- direct STS calls --------------------------------------------------------------------------------
    def assume_once(
        self,
        *,
        role_arn: str,
        external_id: str | None,
        session_name: str,
        region: str,
        session_policy: str | None = None,
        duration_seconds: int | None = None,
    ) -> TemporaryCredentials:
        """One ``AssumeRole`` call, never cached (validation must see the trust policy as it is now)."""
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": duration_seconds or self._settings.effective_sts_duration,
        }
        if external_id is not None:
            kwargs["ExternalId"] = external_id
        if session_policy is not None:
            kwargs["Policy"] = session_policy
        response = self._call_assume_role(region, kwargs)
        raw = response["Credentials"]
        expiration = raw.get("Expiration")
        return TemporaryCredentials(
            access_key_id=str(raw["AccessKeyId"]),
            secret_access_key=str(raw["SecretAccessKey"]),
            session_token=str(raw["SessionToken"]),
            expiration_epoch=expiration.timestamp() if expiration is not None else None,
        )

    def try_assume_without_external_id(self, role_arn: str, session_name: str, region: str) -> bool:
        """True when the role can be assumed WITHOUT an External ID (the confused-deputy hole)."""
        try:
            self.assume_once(role_arn=role_arn, external_id=None, session_name=session_name, region=region)
        except errors.CloudAccessDenied:
            return False
        # The credentials are dropped unused: only the fact that STS handed them out matters.
        return True

    def _call_assume_role(self, region: str, kwargs: dict[str, Any]) -> Any:
        started = time.monotonic()
        self._bucket.acquire()
        with self._lock:
            self._calls += 1
        sts = self._sts_client(region)
        try:
            response = sts.assume_role(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            cloud = translate(exc, operation="sts:AssumeRole")
            if self._on_sts_call is not None:
                self._on_sts_call(cloud.code, time.monotonic() - started)
            if isinstance(cloud, errors.CloudCredentialsMissing):
                # The chain may find credentials later (an instance role attached after start): rebuild then.
                with self._clients_lock:
                    self._clients.clear()
            raise cloud from exc
        if self._on_sts_call is not None:
            self._on_sts_call("ok", time.monotonic() - started)
        return response

    def _sts_client(self, region: str) -> Any:
        """A cached STS client for the regional endpoint of ``region`` (unless an endpoint is configured)."""
        sts_region = region if region in REGION_PARTITION else _FALLBACK_REGION
        override = clients.endpoint_override("sts")
        endpoint = None if override else clients.regional_sts_endpoint(sts_region)
        key = (sts_region, override)
        with self._clients_lock:
            # boto3 sessions are not thread-safe, so clients are built under the lock; clients themselves are.
            cached = self._clients.get(key)
            if cached is None:
                cached = self._clients[key] = clients.client("sts", region=sts_region, endpoint_url=endpoint)
            return cached
