"""Validate a backup location: static rules first, then live checks against AWS within a time bound.

Order of the report (stable, see ``domain.checks``): the static checks, then ``assume-role``,
``external-id-required``, ``bucket-region``, the six S3 actions, the six EC2 actions and ``kms``. Live checks
run in a worker thread while the caller waits at most ``validation_timeout_seconds``; whatever has not
finished by then is reported failed with a timeout message, so a validation never hangs on a dead endpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from datetime import UTC, datetime

from stowage import errors
from stowage.aws import endpoints, probes
from stowage.aws.broker import CredentialBroker
from stowage.aws.clients import TemporaryCredentials
from stowage.aws.identity import IdentityResolver
from stowage.config import Settings
from stowage.domain import naming, policies
from stowage.domain.checks import LIVE_CHECK_IDS, CheckResult, ValidationReport
from stowage.domain.locations import LocationSpec, StaticCredentials, StsCredentials, role_session_name
from stowage.domain.regions import partition_for_region
from stowage.services.metrics import Metrics

_ROLE_CHECK_IDS = ("assume-role", "external-id-required")
_ACCOUNT_PLACEHOLDER = "<control plane account ID>"


class _Collector:
    """Live check results as they arrive, from any thread; ``close`` freezes it at the deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, CheckResult] = {}
        self._closed = False

    def add(self, result: CheckResult) -> None:
        with self._lock:
            if not self._closed:
                self._results[result.id] = result

    def close(self) -> dict[str, CheckResult]:
        with self._lock:
            self._closed = True
            return dict(self._results)


class LocationValidator:
    """Runs a location's checks: the static rules, then (when ``live``) assume-role and live probes."""

    def __init__(
        self,
        *,
        settings: Settings,
        broker: CredentialBroker,
        identity: IdentityResolver,
        clock: Callable[[], datetime] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._broker = broker
        self._identity = identity
        self._clock = clock or (lambda: datetime.now(UTC))
        self._clients = probes.ClientPool(
            timeout=settings.validation_timeout_seconds, allow_private=settings.allow_private_endpoints
        )

    def validate(
        self, spec: LocationSpec, *, project_name: str, external_id: str, live: bool = True
    ) -> ValidationReport:
        """Validate ``spec`` for a project; never raises for what AWS answers, never outlives the timeout."""
        started = time.monotonic()
        static = naming.static_checks(spec, now=self._clock())
        if not any(c.is_failure for c in static):
            # Before any credentials are used, and even when the live checks are skipped: a saved location
            # must never point the control plane at a forbidden address.
            static = self._endpoint_safety(spec, static, deadline=started + self._settings.validation_timeout_seconds)
        if not live:
            live_results = [_skip(i, "Live validation skipped.") for i in LIVE_CHECK_IDS]
        elif any(c.is_failure for c in static):
            live_results = [_skip(i, "Not checked: fix the errors above first.") for i in LIVE_CHECK_IDS]
        else:
            live_results = self._live(spec, project_name=project_name, external_id=external_id, started=started)
        seconds = time.monotonic() - started
        report = ValidationReport.of([*static, *live_results], int(seconds * 1000))
        self._metrics.validation_finished(
            ok=report.ok, seconds=seconds, failed_checks=[c.id for c in report.failures()]
        )
        return report

    def _endpoint_safety(self, spec: LocationSpec, static: list[CheckResult], *, deadline: float) -> list[CheckResult]:
        """The static checks with ``s3-url`` failed when the S3 URL resolves to a forbidden address."""
        url = (spec.s3_url or "").strip()
        if not url:
            return static
        outcome: list[BaseException] = []

        def check() -> None:
            try:
                endpoints.check_location_url(
                    url,
                    bucket=spec.bucket,
                    force_path_style=spec.force_path_style,
                    allow_private=self._settings.allow_private_endpoints,
                )
            except endpoints.EndpointRefused as exc:
                outcome.append(exc)

        # DNS has no timeout of its own: a resolver that hangs must not hold the validation past its bound.
        worker = threading.Thread(target=check, name="stowage-endpoint-check", daemon=True)
        worker.start()
        worker.join(timeout=max(0.1, deadline - time.monotonic()))
        if not outcome or not isinstance(outcome[0], endpoints.EndpointRefused):
            return static  # allowed, unresolvable or still resolving: every connection is checked again anyway
        refused = outcome[0]
        if refused.verdict.always_refused:
            fix = "Use your storage's own address: metadata and link-local addresses are never allowed."
        else:
            fix = (
                "Use the storage's public address, or (administrators, for storage on a private network) start "
                "the control plane with STOWAGE_ALLOW_PRIVATE_ENDPOINTS=true."
            )
        failed = CheckResult.failed("s3-url", refused.message, fix)
        return [failed if c.id == "s3-url" else c for c in static]

    # -- live part ---------------------------------------------------------------------------------------
    def _live(self, spec: LocationSpec, *, project_name: str, external_id: str, started: float) -> list[CheckResult]:
        limit = self._settings.validation_timeout_seconds
        deadline = started + limit
        collector = _Collector()
        unfinished = f"Validation timed out after {limit:g} s before this check finished."
        fix = (
            "Check that the control plane can reach STS and the storage endpoint (network, proxy, firewall) and "
            "validate again; STOWAGE_VALIDATION_TIMEOUT_SECONDS raises the limit."
        )
        # Not a ``with`` block: on timeout the workers may still sit in a socket read, and waiting for them is
        # exactly what must not happen. They finish on their own (botocore timeouts) and still clean up.
        pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="stowage-validate")
        try:
            flow = pool.submit(self._live_flow, spec, project_name, external_id, collector, pool, deadline)
            flow.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            pass
        except Exception as exc:  # noqa: BLE001 - a bug in a probe must become failed checks, not a 500
            unfinished = f"Validation stopped unexpectedly ({_describe(exc)}) before this check finished."
            fix = "Validate again; if it keeps happening, report it with the server log."
        finally:
            pool.shutdown(wait=False)
        done = collector.close()
        return [
            done.get(check_id) or CheckResult.failed(check_id, unfinished, fix, action=_action_of(check_id))
            for check_id in LIVE_CHECK_IDS
        ]

    def _live_flow(
        self,
        spec: LocationSpec,
        project_name: str,
        external_id: str,
        collector: _Collector,
        pool: ThreadPoolExecutor,
        deadline: float,
    ) -> None:
        remaining = max(0.5, deadline - time.monotonic())
        if isinstance(spec.credentials, StaticCredentials):
            for check_id in _ROLE_CHECK_IDS:
                collector.add(_skip(check_id, "Uses static keys: no role to assume."))
            static = TemporaryCredentials.from_static(spec.credentials)
            with self._clients.lease(spec, static) as leased:
                probes.run_probes(
                    static, spec, timeout=remaining, on_result=collector.add, client_factory=leased.client
                )
            return
        role_arn = spec.credentials.role_arn
        assumed: Future[TemporaryCredentials] = Future()
        # The probe clients are leased (or built) while STS answers; signing waits for ``assumed``. That takes
        # client set-up off the critical path of a validation that is only a few round trips long.
        with self._clients.lease(spec, assumed.result) as probe_clients:
            warming = pool.submit(probe_clients.warm)
            credentials, without = self._assume(spec, project_name, external_id, collector, pool)
            if credentials is None:
                assumed.set_exception(errors.CloudError("The role could not be assumed."))
                for check_id in probes.PROBE_CHECK_IDS:
                    collector.add(_skip(check_id, "Not checked: the role could not be assumed (see assume-role)."))
            else:
                assumed.set_result(credentials)
                # A client that failed to build is built (and reported) again by the probe run itself.
                warming.exception()
                probes.run_probes(
                    credentials,
                    spec,
                    principal_arn=role_arn,
                    timeout=max(0.5, deadline - time.monotonic()),
                    on_result=collector.add,
                    client_factory=probe_clients.client,
                )
        # The attempt without External ID ran alongside everything else; it is usually long done by now. Only
        # a real deadline may leave it unreported (then it shows as timed out, which is the truth).
        futures_wait([without], timeout=max(0.0, deadline - time.monotonic()))
        if without.done():
            collector.add(
                self._external_id_result(spec, without, assumed=credentials is not None, external_id=external_id)
            )

    def _assume(
        self,
        spec: LocationSpec,
        project_name: str,
        external_id: str,
        collector: _Collector,
        pool: ThreadPoolExecutor,
    ) -> tuple[TemporaryCredentials | None, Future[bool]]:
        """assume-role now, and the attempt without External ID sent in the same round trip (still running)."""
        assert isinstance(spec.credentials, StsCredentials)
        role_arn = spec.credentials.role_arn
        session = role_session_name(project_name, spec.name)
        # The attempt without External ID is independent of the real one: send both at once.
        without: Future[bool] = pool.submit(self._broker.try_assume_without_external_id, role_arn, session, spec.region)
        credentials: TemporaryCredentials | None = None
        try:
            credentials = self._broker.assume_once(
                role_arn=role_arn, external_id=external_id, session_name=session, region=spec.region
            )
        except errors.CloudError as exc:
            collector.add(self._assume_failed(spec, exc, external_id))
        else:
            collector.add(
                CheckResult.passed(
                    "assume-role",
                    f"Assumed {role_arn} with this project's External ID (session {session}).",
                    action="sts:AssumeRole",
                )
            )

        return credentials, without

    def _assume_failed(self, spec: LocationSpec, exc: errors.CloudError, external_id: str) -> CheckResult:
        assert isinstance(spec.credentials, StsCredentials)
        role_arn = spec.credentials.role_arn
        if isinstance(exc, errors.CloudAccessDenied):
            account = self._control_plane_account()
            trust = policies.trust_policy(
                platform_account_id=account or _ACCOUNT_PLACEHOLDER,
                external_id=external_id,
                partition=partition_for_region(spec.region),
            )
            principal = policies.account_root_arn(account or _ACCOUNT_PLACEHOLDER, partition_for_region(spec.region))
            message = (
                f"Could not assume {role_arn}: {exc.message}. AWS gives the same answer for three different "
                "causes: (1) the role ARN is wrong or the role does not exist; (2) the role's trust policy does "
                f"not name the control plane's account ({principal}) as principal; (3) the trust policy's "
                "sts:ExternalId condition is missing or does not match this project's External ID "
                f"({external_id})."
            )
            remedy = (
                f"Check the role ARN, then set the trust policy of {role_arn} to exactly:\n{policies.render(trust)}"
            )
            return CheckResult.failed("assume-role", message, remedy, action="sts:AssumeRole")
        if isinstance(exc, errors.CloudCredentialsMissing):
            fix = (
                "Give the control plane an AWS identity (instance or pod role, or AWS credentials in its "
                "environment); the STS method needs it."
            )
            return CheckResult.failed(
                "assume-role",
                f"The control plane has no usable AWS credentials: {exc.message}",
                fix,
                action="sts:AssumeRole",
            )
        if isinstance(exc, errors.CloudEndpointError):
            fix = "Check the control plane's network access to STS (and any AWS_ENDPOINT_URL setting)."
            return CheckResult.failed(
                "assume-role", f"Could not reach STS: {exc.message}", fix, action="sts:AssumeRole"
            )
        if isinstance(exc, errors.CloudThrottled):
            fix = "STS is throttling the control plane: validate again in a minute."
            return CheckResult.failed(
                "assume-role", f"STS throttled the request: {exc.message}", fix, action="sts:AssumeRole"
            )
        fix = (
            "Check the role ARN and the role's maximum session duration (it must be at least "
            f"{self._settings.effective_sts_duration} s, STOWAGE_STS_DURATION_SECONDS)."
        )
        return CheckResult.failed(
            "assume-role", f"Could not assume {role_arn}: {exc.message}", fix, action="sts:AssumeRole"
        )

    def _external_id_result(
        self, spec: LocationSpec, done: Future[bool], *, assumed: bool, external_id: str
    ) -> CheckResult:
        assert isinstance(spec.credentials, StsCredentials)
        role_arn = spec.credentials.role_arn
        try:
            open_without = done.result()
        except errors.CloudError as exc:
            if not assumed:
                return CheckResult.skipped(
                    "external-id-required", "Not checked: the role could not be assumed (see assume-role)."
                )
            return CheckResult.warning(
                "external-id-required",
                f"Could not check whether {role_arn} requires the External ID: {exc.message}",
                "Validate again.",
            )
        if open_without:
            condition = {"Condition": policies.external_id_condition(external_id)}
            message = (
                f"{role_arn} can be assumed WITHOUT the External ID. Anyone who can make the control plane assume "
                "roles (any other project or tenant that names this role ARN) could then reach your bucket: the "
                "confused-deputy problem."
            )
            remedy = (
                "Add this Condition to the trust policy statement that names the control plane's account:\n"
                f"{policies.render(condition)}"
            )
            return CheckResult.failed("external-id-required", message, remedy)
        if not assumed:
            return CheckResult.skipped(
                "external-id-required", "Not checked: the role could not be assumed (see assume-role)."
            )
        return CheckResult.passed(
            "external-id-required", f"{role_arn} refuses to be assumed without this project's External ID."
        )

    def _control_plane_account(self) -> str | None:
        try:
            return self._identity.identity().account_id
        except errors.StsUnavailable:
            return None


def _action_of(check_id: str) -> str:
    """The IAM action a live check is about ('' for checks that are not about one action)."""
    if check_id == "assume-role":
        return "sts:AssumeRole"
    return check_id if ":" in check_id else ""


def _skip(check_id: str, message: str) -> CheckResult:
    return CheckResult.skipped(check_id, message, action=_action_of(check_id))


def _describe(exc: BaseException) -> str:
    """A short, safe description of an unexpected error."""
    if isinstance(exc, errors.StowageError):
        return exc.message
    return type(exc).__name__
