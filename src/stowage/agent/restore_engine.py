"""The agent's restore engine: a backup in Velero's layout back into a cluster, or a preview of what that would do.

Integrity first: the tarball is streamed to a temporary file while its SHA-256 is computed and compared with
the backup's manifest (a backup without one, written by Velero, is accepted with a warning). Items are read
from the plain ``resources/<resource>[.<group>]/{cluster|namespaces/<ns>}/<name>.json`` paths; the
``-preferredversion`` copies hold the same bytes and are ignored (Velero's default restore does the same).

Semantics follow Velero's restore (``pkg/restore/restore.go``): its order (``PRIORITIES``, the rest
alphabetically, admission webhooks last), its non-restorable resources, ``resetMetadataAndStatus`` (which
also drops ``ownerReferences``: the owners get new uids, and the garbage collector would delete children
pointing at the old ones), its restore labels, its PV rules (a PV without a snapshot whose reclaim policy is
Delete is left to be provisioned again, and its PVC unbound), Services without their cluster IPs and
auto-assigned NodePorts, and namespace mapping of namespaces, PV claimRefs and RoleBinding subjects.

Each tier is created with bounded parallelism (one POST per item; a GET only when the item exists, or first
for the few items whose creation has a side effect: PVs restored from snapshots and Services that keep their
NodePorts). A preview (``dryRun``) makes the same decisions from GETs and server-side dry-run PATCHes and
writes nothing to the cluster or EC2; its plan maps item by item onto the real restore's results:
create → created, update → updated, skip → skipped, conflict → failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from kubernetes.client import ApiClient  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

from stowage import errors
from stowage.agent import kube
from stowage.agent.volumes import ebs_volume, pv_zone, velero_snapshot_pv_name
from stowage.aws import snapshots
from stowage.aws.errors import translate
from stowage.domain import velero
from stowage.domain.backups import MANIFEST_SUFFIX, ClusterResourceMode
from stowage.domain.restores import (
    ExistingResourcePolicy,
    ItemAction,
    ItemResult,
    RestoreOutcome,
    RestorePhase,
    RestoreRequest,
)

CRDS = "customresourcedefinitions.apiextensions.k8s.io"
# Velero's default priorities (server flag --restore-resource-priorities), as the issue orders them.
PRIORITIES = (
    CRDS,
    "namespaces",
    "storageclasses.storage.k8s.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "secrets",
    "configmaps",
    "serviceaccounts",
    "clusterroles.rbac.authorization.k8s.io",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "roles.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "limitranges",
    "pods",
    "replicasets.apps",
)
# Webhooks last: restored earlier, a webhook whose service is not back yet would refuse everything after it.
LAST = (
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
)
# Velero's nonRestorableResources: node-bound, per-cluster or Velero's own bookkeeping.
NON_RESTORABLE = frozenset(
    {
        "nodes",
        "events",
        "events.events.k8s.io",
        "backups.velero.io",
        "restores.velero.io",
        "resticrepositories.velero.io",
        "backuprepositories.velero.io",
        "csinodes.storage.k8s.io",
        "volumeattachments.storage.k8s.io",
    }
)
# Server-populated metadata (Velero's resetMetadata plus managedFields, which the apiserver rewrites anyway).
STRIPPED_METADATA = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "generateName",
)
BACKUP_LABEL = "velero.io/backup-name"
RESTORE_LABEL = "velero.io/restore-name"
PV_BIND_ANNOTATIONS = ("pv.kubernetes.io/bind-completed", "pv.kubernetes.io/bound-by-controller")
PVC_RESET_ANNOTATIONS = (*PV_BIND_ANNOTATIONS, "volume.kubernetes.io/selected-node")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
WORKERS = 16
ITEM_BATCH = 500
PROGRESS_INTERVAL = 1.0
ESTABLISHED_TIMEOUT = 60.0
MAX_RESULT_MESSAGES = 10000
DOWNLOAD_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class RestoreJob:
    """One restore (or preview) to run, as the control plane handed it out."""

    restore_name: str
    restore_uid: str
    backup_name: str
    backup_prefix: str
    restore_prefix: str
    bucket: str
    request: RestoreRequest
    region: str


class Cancelled(Exception):
    """The control plane asked the agent to stop this restore."""


class Refused(Exception):
    """The restore cannot run at all; the message says why and what to do."""

    def __init__(self, message: str, problem: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problem = problem


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def problem(code: str, message: str, remedy: str) -> dict[str, str]:
    """One problem found ahead by a preview."""
    return {"code": code, "message": message, "remedy": remedy}


# -- pure transformations ---------------------------------------------------------------------------------
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def explicit_node_ports(service: Mapping[str, Any]) -> set[int]:
    """NodePorts the user set in ``kubectl apply``'s last-applied configuration (Velero keeps those)."""
    text = _dict(_dict(service.get("metadata")).get("annotations")).get(LAST_APPLIED)
    if not text:
        return set()
    try:
        applied = json.loads(text)
    except ValueError:
        return set()
    ports = _dict(_dict(applied).get("spec")).get("ports") or ()
    return {int(p["nodePort"]) for p in ports if isinstance(p, dict) and p.get("nodePort")}


def strip_server_fields(obj: dict[str, Any], *, preserve_node_ports: bool) -> dict[str, Any]:
    """Remove what the apiserver populates (in place): metadata, status, Services' IPs and auto NodePorts."""
    metadata = _dict(obj.get("metadata"))
    for key in STRIPPED_METADATA:
        metadata.pop(key, None)
    obj.pop("status", None)
    if obj.get("kind") == "Service" and isinstance(obj.get("spec"), dict):
        spec = obj["spec"]
        if spec.get("clusterIP") != "None":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if not preserve_node_ports:
            keep = explicit_node_ports(obj)
            for port in spec.get("ports") or ():
                if isinstance(port, dict) and port.get("nodePort") and int(port["nodePort"]) not in keep:
                    port.pop("nodePort")
            spec.pop("healthCheckNodePort", None)
    return obj


def comparable(obj: Mapping[str, Any], *, preserve_node_ports: bool) -> dict[str, Any]:
    """An object as compared for "exists, same": server fields and Velero's restore labels left out."""
    copy: dict[str, Any] = json.loads(json.dumps(obj))
    strip_server_fields(copy, preserve_node_ports=preserve_node_ports)
    metadata = _dict(copy.get("metadata"))
    labels = _dict(metadata.get("labels"))
    for key in (BACKUP_LABEL, RESTORE_LABEL):
        labels.pop(key, None)
    if "labels" in metadata and not labels:
        metadata.pop("labels")
    return copy


def merge_patch(current: Any, desired: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``current`` into ``desired``."""
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return desired
    patch: dict[str, Any] = {}
    for key in current.keys() - desired.keys():
        patch[key] = None
    for key, value in desired.items():
        if key not in current:
            patch[key] = value
        elif current[key] != value:
            patch[key] = merge_patch(current[key], value) if isinstance(value, dict) else value
    return patch


# -- items --------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Item:
    """One object of the backup chosen for the restore."""

    path: velero.ItemPath
    raw: bytes
    obj: dict[str, Any]
    target_namespace: str | None
    target_name: str
    skip_reason: str | None = None
    snapshot: dict[str, Any] | None = None

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion") or "")

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind") or "")

    @property
    def labels(self) -> Mapping[str, str]:
        return _dict(_dict(self.obj.get("metadata")).get("labels"))

    def collection_path(self) -> str:
        """The URL path to POST this item to."""
        api_version = self.api_version
        base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        if self.target_namespace:
            return f"{base}/namespaces/{self.target_namespace}/{self.path.resource}"
        return f"{base}/{self.path.resource}"

    def object_path(self) -> str:
        """The URL path of this item in the destination."""
        return f"{self.collection_path()}/{self.target_name}"

    def result(self, action: ItemAction, reason: str | None = None) -> ItemResult:
        return ItemResult(self.api_version, self.kind, self.target_namespace, self.target_name, action.value, reason)


class _Log:
    """Live log lines to the caller, and the same lines gzip'd for ``restore-<name>-logs.gz``."""

    def __init__(self, sink: Callable[[str, str], None], restore_name: str) -> None:
        self._sink = sink
        self._restore = restore_name
        self._lock = threading.Lock()
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", mtime=0)

    def __call__(self, level: str, message: str) -> None:
        moment = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"time={json.dumps(moment)} level={level} msg={json.dumps(message)} restore=velero/{self._restore}\n"
        with self._lock:
            if not self._gzip.closed:
                self._gzip.write(line.encode())
        with contextlib.suppress(Exception):  # a broken live log must not break the restore
            self._sink(level, message)

    def finish(self) -> bytes:
        with self._lock:
            self._gzip.close()
            self._file.seek(0)
            data = self._file.read()
            self._file.close()
        return data


@dataclass
class _Tally:
    summary: dict[str, int] = field(default_factory=dict)
    resource_list: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[velero.ResultMessage] = field(default_factory=list)
    errors: list[velero.ResultMessage] = field(default_factory=list)
    pending: list[ItemResult] = field(default_factory=list)
    done: int = 0
    restored: int = 0


class _Engine:
    def __init__(
        self,
        job: RestoreJob,
        *,
        api: ApiClient,
        s3: Any,
        ec2: Any | None,
        progress: Callable[[int, int], None],
        log: Callable[[str, str], None],
        items: Callable[[list[ItemResult]], None],
        cancelled: Callable[[], bool],
        workers: int,
    ) -> None:
        self.job = job
        self.request = job.request
        self.dry_run = job.request.dry_run
        self.api = api
        self.s3 = s3
        self.ec2 = ec2
        self._progress = progress
        self.log = _Log(log, job.restore_name)
        self._items = items
        self.cancelled = cancelled
        self.workers = workers
        self.selector = velero.label_selector_object(job.request.label_selector)
        self.preserve = job.request.preserve_node_ports
        self.tally = _Tally()
        self.lock = threading.Lock()
        self.total = 0
        self._last_progress = 0.0
        self.problems: list[dict[str, str]] = []
        self.served: set[str] = set()
        self.restored_crds: set[str] = set()
        self.terminating: set[str] = set()
        self.existing_namespaces: dict[str, dict[str, Any]] = {}
        self.node_port_owners: dict[int, str] = {}
        self.reprovisioned: set[str] = set()
        self.restore_files = velero.RestoreObjects(job.restore_prefix, job.restore_name)

    # -- reporting --------------------------------------------------------------------------------------
    def record(self, item: _Item, result: ItemResult) -> None:
        tally = self.tally
        with self.lock:
            tally.summary[result.action] = tally.summary.get(result.action, 0) + 1
            tally.resource_list.setdefault(f"{item.api_version}/{item.kind}", []).append(
                velero.restore_resource_list_entry(result.namespace, result.name, result.action)
            )
            tally.done += 1
            if result.action in (ItemAction.CREATED, ItemAction.UPDATED):
                tally.restored += 1
            where = f"{item.path.group_resource} {velero.resource_list_entry(result.namespace, result.name)}"
            if result.action in (ItemAction.FAILED, ItemAction.CONFLICT) and len(tally.errors) < MAX_RESULT_MESSAGES:
                tally.errors.append(velero.ResultMessage(f"{where}: {result.reason}", result.namespace, True))
            elif result.reason and "different" in result.reason and len(tally.warnings) < MAX_RESULT_MESSAGES:
                tally.warnings.append(velero.ResultMessage(f"{where}: {result.reason}", result.namespace, True))
            tally.pending.append(result)
            batch = None
            if len(tally.pending) >= ITEM_BATCH:
                batch, tally.pending = tally.pending, []
        if result.action in (ItemAction.FAILED, ItemAction.CONFLICT):
            self.log("error", f"{result.action} {where}: {result.reason}")
        if batch:
            self._send(batch)
        self.progress()

    def _send(self, batch: list[ItemResult]) -> None:
        with contextlib.suppress(Exception):  # reporting is best effort; the completion carries the rest
            self._items(batch)

    def flush(self) -> None:
        with self.lock:
            batch, self.tally.pending = self.tally.pending, []
        if batch:
            self._send(batch)

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        done = self.tally.done if self.dry_run else self.tally.restored
        with contextlib.suppress(Exception):
            self._progress(done, self.total)

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled()

    # -- requests ---------------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = "application/json",
        answer: bool = False,
    ) -> Any:
        """One request with the official client; the parsed answer when asked for (``ApiException`` for non-2xx).

        Bodies are read in full (preloaded) so every connection, error answers included, returns to the pool.
        """
        return self.api.call_api(
            path,
            method,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            response_type="object" if answer else None,
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=kube.REQUEST_TIMEOUT,
        )

    def get(self, path: str) -> dict[str, Any] | None:
        """GET an object; None when it does not exist."""
        try:
            found: dict[str, Any] = self.call("GET", path, answer=True)
            return found
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- reading the backup ------------------------------------------------------------------------------
    def read_object(self, relative: str) -> bytes | None:
        """One object of the backup; None when it does not exist; ``Refused`` when it cannot be read."""
        key = f"{self.job.backup_prefix}/{relative}"
        try:
            return bytes(self.s3.get_object(Bucket=self.job.bucket, Key=key)["Body"].read())
        except Exception as exc:  # botocore errors, translated once here
            cloud = exc if isinstance(exc, errors.CloudError) else translate(exc, operation="s3:GetObject")
            if isinstance(cloud, errors.CloudNotFound):
                return None
            raise self.unreadable(key, cloud) from exc

    def unreadable(self, key: str, cloud: errors.CloudError) -> Refused:
        message = f"The destination cluster's agent cannot read s3://{self.job.bucket}/{key}: {cloud.message}."
        if isinstance(cloud, errors.CloudAccessDenied):
            remedy = (
                "The restore's job credentials may read only the source backup's folder; check that the location's "
                "role grants s3:GetObject on the bucket (and kms:Decrypt for a KMS key), then restore again."
            )
        elif isinstance(cloud, errors.CloudCredentialsExpired | errors.CloudCredentialsMissing):
            remedy = "The agent's job credentials were refused; check that the agent reaches the control plane."
        else:
            remedy = "Check the location's bucket and endpoint from the destination cluster, then restore again."
        return Refused(f"{message} {remedy}", problem("source-unreadable", message, remedy))

    def fetch_tarball(self) -> str:
        """The tarball in a temporary file, its SHA-256 checked against the manifest; returns the file's path."""
        objects = velero.BackupObjects(self.job.backup_prefix, self.job.backup_name)
        raw_manifest = self.read_object(f"{self.job.backup_name}{MANIFEST_SUFFIX}")
        expected: tuple[int, str] | None = None
        if raw_manifest is None:
            message = (
                f"Backup {self.job.backup_name} has no Stowage manifest ({objects.manifest}): it was written by "
                "Velero or another tool, so its tarball's integrity cannot be checked."
            )
            self.log("warning", message)
            self.problems.append(
                problem("no-manifest", message, "Nothing to do for a Velero backup; a Stowage backup always has one.")
            )
        else:
            try:
                expected = velero.manifest_hashes(json.loads(raw_manifest)).get(objects.tarball)
            except ValueError as exc:
                raise Refused(
                    f"The manifest of backup {self.job.backup_name} is not valid JSON ({exc}); the backup may be "
                    "damaged. Verify it with `stowage backups verify`, and restore another backup."
                ) from exc
            if expected is None:
                raise Refused(
                    f"The manifest of backup {self.job.backup_name} does not list {objects.tarball}; the backup may "
                    "be damaged. Verify it with `stowage backups verify`, and restore another backup."
                )
        key = objects.key(objects.tarball)
        try:
            body = self.s3.get_object(Bucket=self.job.bucket, Key=key)["Body"]
        except Exception as exc:
            cloud = exc if isinstance(exc, errors.CloudError) else translate(exc, operation="s3:GetObject")
            if isinstance(cloud, errors.CloudNotFound):
                raise Refused(
                    f"Backup {self.job.backup_name} has no tarball (s3://{self.job.bucket}/{key} does not exist): it "
                    "is incomplete or was partly deleted. Restore another backup."
                ) from exc
            raise self.unreadable(key, cloud) from exc
        digest = hashlib.sha256()
        size = 0
        handle, path = tempfile.mkstemp(prefix="stowage-restore-", suffix=".tar.gz")
        try:
            with os.fdopen(handle, "wb") as out:
                while chunk := body.read(DOWNLOAD_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except Exception as exc:
            os.unlink(path)
            cloud = exc if isinstance(exc, errors.CloudError) else translate(exc, operation="s3:GetObject")
            raise self.unreadable(key, cloud) from exc
        actual = digest.hexdigest()
        if expected is not None and (actual != expected[1] or size != expected[0]):
            os.unlink(path)
            raise Refused(
                f"The tarball s3://{self.job.bucket}/{key} does not match the backup's manifest: expected SHA-256 "
                f"{expected[1]} ({expected[0]} bytes), got {actual} ({size} bytes). The object was changed or "
                "damaged after the backup; nothing was restored. Restore an older backup, and check who may write "
                "to the bucket (`stowage backups verify` checks every object of a backup)."
            )
        self.log("info", f"Read {objects.tarball} ({size} bytes, SHA-256 {actual}).")
        return path

    def read_snapshots(self) -> dict[str, dict[str, Any]]:
        """The backup's EBS snapshots by PV name (from ``-volumesnapshots.json.gz``)."""
        raw = self.read_object(f"{self.job.backup_name}-volumesnapshots.json.gz")
        if not raw:
            return {}
        try:
            entries = json.loads(gzip.decompress(raw)) or []
        except (OSError, ValueError) as exc:
            self.log("warning", f"The backup's volume snapshot list could not be read ({exc}); PVs restore as-is.")
            return {}
        found: dict[str, dict[str, Any]] = {}
        for entry in entries:
            name = velero_snapshot_pv_name(entry) if isinstance(entry, dict) else None
            snapshot_id = _dict(_dict(entry).get("status")).get("providerSnapshotID")
            if name and snapshot_id:
                found[name] = entry
        return found

    def read_items(self, tar_path: str) -> list[_Item]:
        """Every item of the tarball (plain paths only)."""
        found: list[_Item] = []
        mapping = self.request
        for member, raw in _tar_files(tar_path):
            where = velero.parse_item_path(member)
            if where is None:
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                self.log("error", f"{member} is not valid JSON ({exc}); skipped.")
                continue
            if where.group_resource == "namespaces":
                target_ns, name = None, mapping.target_namespace(where.name)
            else:
                target_ns = mapping.target_namespace(where.namespace) if where.namespace else None
                name = where.name
            found.append(_Item(where, raw, obj, target_ns, name))
        return found

    # -- choosing ---------------------------------------------------------------------------------------
    def select(self, items: list[_Item], snapshots_by_pv: Mapping[str, dict[str, Any]]) -> list[_Item]:
        """The items this restore takes, with Velero's filters, modes and skips."""
        request = self.request
        skipped_kinds: dict[str, int] = {}
        namespaced: list[_Item] = []
        cluster: list[_Item] = []
        namespace_items: dict[str, _Item] = {}
        for item in items:
            gr = item.path.group_resource
            if gr in NON_RESTORABLE:
                skipped_kinds[gr] = skipped_kinds.get(gr, 0) + 1
                continue
            if gr == "namespaces":
                namespace_items[item.path.name] = item
            elif item.path.namespace is not None:
                if request.namespace_selected(item.path.namespace) and velero.selector_matches(
                    self.selector, item.labels
                ):
                    namespaced.append(item)
            elif velero.selector_matches(self.selector, item.labels):
                cluster.append(item)
        for gr, count in sorted(skipped_kinds.items()):
            self.log("info", f"Not restoring {count} {gr}: Velero never restores them (node- or cluster-bound).")
        # Namespaces: those holding restored items, and the selected ones the selector matches.
        wanted = {i.path.namespace for i in namespaced if i.path.namespace}
        for name, item in namespace_items.items():
            if request.namespace_selected(name) and velero.selector_matches(self.selector, item.labels):
                wanted.add(name)
        chosen_namespaces: list[_Item] = []
        for name in sorted(wanted):
            namespace = namespace_items.get(name)
            if namespace is None:  # a backup without the Namespace object: create a bare one, as Velero does
                bare = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                path = velero.ItemPath("namespaces", None, name)
                namespace = _Item(path, json.dumps(bare).encode(), bare, None, request.target_namespace(name))
            chosen_namespaces.append(namespace)
        mode = request.cluster_resource_mode
        everything = (
            not request.include_namespaces or "*" in request.include_namespaces
        ) and not request.excluded_namespaces
        if mode == ClusterResourceMode.NEVER:
            cluster = []
        elif mode == ClusterResourceMode.AUTO and not everything:
            pvcs = {
                (i.path.namespace, i.path.name) for i in namespaced if i.path.group_resource == "persistentvolumeclaims"
            }
            volume_names = {
                str(_dict(i.obj.get("spec")).get("volumeName"))
                for i in namespaced
                if i.path.group_resource == "persistentvolumeclaims" and _dict(i.obj.get("spec")).get("volumeName")
            }
            crds = {i.path.group_resource for i in namespaced}

            def related(item: _Item) -> bool:
                if item.path.group_resource == "persistentvolumes":
                    claim = _dict(_dict(item.obj.get("spec")).get("claimRef"))
                    return item.path.name in volume_names or (claim.get("namespace"), claim.get("name")) in pvcs
                return item.path.group_resource == CRDS and item.path.name in crds

            cluster = [i for i in cluster if related(i)]
        chosen = chosen_namespaces + namespaced + cluster
        self.mark_skips(chosen, snapshots_by_pv)
        return chosen

    def mark_skips(self, chosen: list[_Item], snapshots_by_pv: Mapping[str, dict[str, Any]]) -> None:
        """Items taken but deliberately not restored (reported skipped with the reason), and PV decisions."""
        reprovisioned: set[str] = set()
        for item in chosen:
            gr = item.path.group_resource
            obj = item.obj
            if gr == "secrets" and obj.get("type") == SERVICE_ACCOUNT_TOKEN:
                item.skip_reason = "a service-account token: the destination cluster issues its own tokens"
            elif gr == "configmaps" and item.path.name == ROOT_CA_CONFIGMAP:
                item.skip_reason = "the destination cluster publishes its own root CA in every namespace"
            elif gr == "apiservices.apiregistration.k8s.io" and not _dict(obj.get("spec")).get("service"):
                item.skip_reason = "a local APIService, served by the destination's own apiserver"
            elif gr == "persistentvolumes":
                snapshot = snapshots_by_pv.get(item.path.name)
                if snapshot is not None:
                    if self.request.restore_pvs:
                        item.snapshot = snapshot
                    else:
                        item.skip_reason = "the PV's data is in an EBS snapshot and restorePVs is false"
                elif _dict(obj.get("spec")).get("persistentVolumeReclaimPolicy") == "Delete":
                    item.skip_reason = (
                        "no snapshot and reclaim policy Delete: its PVC is provisioned again by its StorageClass "
                        "(restoring it would give two PVs one deletable disk)"
                    )
                    reprovisioned.add(item.path.name)
        self.reprovisioned = reprovisioned

    # -- preparing one item -------------------------------------------------------------------------------
    def body(self, item: _Item) -> dict[str, Any]:
        """The object to create: server fields stripped, namespaces mapped, Velero's restore labels added."""
        obj: dict[str, Any] = json.loads(item.raw)
        strip_server_fields(obj, preserve_node_ports=self.preserve)
        metadata = obj.setdefault("metadata", {})
        if item.target_namespace:
            metadata["namespace"] = item.target_namespace
        else:
            metadata.pop("namespace", None)
        metadata["name"] = item.target_name
        labels = metadata.get("labels") or {}
        labels[BACKUP_LABEL] = self.job.backup_name
        labels[RESTORE_LABEL] = self.job.restore_name
        metadata["labels"] = labels
        spec = _dict(obj.get("spec"))
        kind = item.path.group_resource
        mapping = self.request.namespace_mapping
        if kind == "persistentvolumes":
            claim = spec.get("claimRef")
            if isinstance(claim, dict):
                claim.pop("uid", None)
                claim.pop("resourceVersion", None)
                if claim.get("namespace") in mapping:
                    claim["namespace"] = mapping[claim["namespace"]]
            annotations = _dict(metadata.get("annotations"))
            for key in PV_BIND_ANNOTATIONS:
                annotations.pop(key, None)
        elif kind == "persistentvolumeclaims" and spec.get("volumeName") in self.reprovisioned:
            spec.pop("volumeName", None)
            annotations = _dict(metadata.get("annotations"))
            for key in PVC_RESET_ANNOTATIONS:
                annotations.pop(key, None)
        elif kind in ("rolebindings.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io"):
            for subject in obj.get("subjects") or ():
                if isinstance(subject, dict) and subject.get("namespace") in mapping:
                    subject["namespace"] = mapping[subject["namespace"]]
        elif kind == "pods":
            # Velero's PodAction: the scheduler picks a node again; priority follows priorityClassName.
            spec.pop("nodeName", None)
            spec.pop("priority", None)
        elif kind == "serviceaccounts" and isinstance(obj.get("secrets"), list):
            prefix = f"{item.path.name}-token-"
            obj["secrets"] = [s for s in obj["secrets"] if not str(_dict(s).get("name", "")).startswith(prefix)]
            if not obj["secrets"]:
                obj.pop("secrets")
        return obj

    def kept_node_ports(self, item: _Item) -> set[int]:
        if item.kind != "Service":
            return set()
        ports = {int(p["nodePort"]) for p in _dict(item.obj.get("spec")).get("ports") or () if _dict(p).get("nodePort")}
        return ports if self.preserve else ports & explicit_node_ports(item.obj)

    def blocker(self, item: _Item) -> str | None:
        """Why an item cannot be restored at all (the same answer in a preview and a restore)."""
        namespace = item.target_namespace or (item.target_name if item.path.group_resource == "namespaces" else None)
        if namespace in self.terminating:
            return (
                f"namespace {namespace} is being deleted (Terminating) in the destination cluster; wait until it is "
                "gone, or restore into another namespace with namespaceMapping"
            )
        gr = item.path.group_resource
        if gr not in self.served and gr not in self.restored_crds:
            return (
                f"the destination cluster does not serve {gr} ({item.api_version}, kind {item.kind}); install its "
                "CustomResourceDefinition or API first, or restore its CRD along with it"
            )
        if item.snapshot is not None:
            zone = self.snapshot_zone(item)
            if not zone:
                return "the PV's snapshot names no availability zone, so no volume can be made from it"
            if not zone.startswith(self.job.region):
                return (
                    f"its EBS snapshot is in zone {zone}, outside the destination location's region "
                    f"{self.job.region}; copy the snapshot into {self.job.region} (EC2 CopySnapshot) or restore with "
                    "restorePVs false"
                )
            if self.ec2 is None:
                return (
                    "its data is in an EBS snapshot but the location has volume snapshots switched off (no EC2 "
                    "access); turn them on, or restore with restorePVs false"
                )
        return None

    def snapshot_zone(self, item: _Item) -> str | None:
        spec = _dict(_dict(item.snapshot).get("spec"))
        return str(spec.get("volumeAZ") or "") or pv_zone(item.obj) or None

    # -- the real restore --------------------------------------------------------------------------------
    def restore_item(self, item: _Item) -> None:
        self.check_cancelled()
        if item.skip_reason:
            self.record(item, item.result(ItemAction.SKIPPED, item.skip_reason))
            return
        reason = self.blocker(item)
        if reason:
            self.record(item, item.result(ItemAction.FAILED, reason))
            return
        try:
            body = self.body(item)
            if item.path.group_resource == "namespaces" and item.target_name in self.existing_namespaces:
                self.record(item, self.existing(item, body, self.existing_namespaces[item.target_name]))
                return
            if item.snapshot is not None or self.kept_node_ports(item):
                # Creating these has a side effect (a new EBS volume, a NodePort claim): look first.
                found = self.get(item.object_path())
                if found is not None:
                    self.record(item, self.existing(item, body, found))
                    return
            if item.snapshot is not None:
                failure = self.volume_from_snapshot(item, body)
                if failure:
                    self.record(item, item.result(ItemAction.FAILED, failure))
                    return
            self.record(item, self.create(item, body))
        except ApiException as exc:
            self.record(item, item.result(ItemAction.FAILED, kube.status_message(exc)))

    def create(self, item: _Item, body: dict[str, Any]) -> ItemResult:
        path = item.collection_path()
        delays = [0.5, 1.0, 2.0, 4.0] if item.path.group_resource in self.restored_crds else []
        while True:
            try:
                self.call("POST", path, body)
                return item.result(ItemAction.CREATED)
            except ApiException as exc:
                if exc.status == 409:
                    found = self.get(item.object_path())
                    if found is None:  # deleted meanwhile: the next attempt says what is what
                        return item.result(ItemAction.FAILED, kube.status_message(exc))
                    return self.existing(item, body, found)
                if exc.status == 404 and delays:
                    # A CRD just Established may take a moment to reach the apiserver's handlers.
                    time.sleep(delays.pop(0))
                    continue
                return item.result(ItemAction.FAILED, kube.status_message(exc))

    def existing(self, item: _Item, body: dict[str, Any], found: dict[str, Any]) -> ItemResult:
        """The existing-resource policy for an object that is already there (preview or real)."""
        current = comparable(found, preserve_node_ports=self.preserve)
        desired = comparable(body, preserve_node_ports=self.preserve)
        if current == desired:
            return item.result(ItemAction.SKIP if self.dry_run else ItemAction.SKIPPED, "exists, same")
        if self.request.existing_resource_policy != ExistingResourcePolicy.UPDATE:
            return item.result(ItemAction.SKIP if self.dry_run else ItemAction.SKIPPED, "exists, different")
        stripped: dict[str, Any] = json.loads(json.dumps(found))
        strip_server_fields(stripped, preserve_node_ports=self.preserve)
        # A snapshot PV is compared and patched as backed up: no volume is made for an object that exists.
        patch = merge_patch(stripped, body)
        try:
            self.call(
                "PATCH",
                item.object_path(),
                patch,
                query=[("dryRun", "All")] if self.dry_run else None,
                content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            reason = f"exists, different, and the update was refused: {kube.status_message(exc)}"
            return item.result(ItemAction.CONFLICT if self.dry_run else ItemAction.FAILED, reason)
        return item.result(ItemAction.UPDATE if self.dry_run else ItemAction.UPDATED, "exists, different")

    def volume_from_snapshot(self, item: _Item, body: dict[str, Any]) -> str | None:
        """Make the PV's EBS volume from its snapshot and point the PV at it; the failure's reason, if any."""
        snapshot = _dict(item.snapshot)
        spec = _dict(snapshot.get("spec"))
        snapshot_id = str(_dict(snapshot.get("status")).get("providerSnapshotID"))
        zone = self.snapshot_zone(item)
        assert zone is not None and self.ec2 is not None  # blocker() said so
        iops = spec.get("volumeIOPS")
        try:
            volume_id = snapshots.create_volume_from_snapshot(
                self.ec2,
                snapshot_id,
                zone,
                {snapshots.RESTORE_TAG: self.job.restore_name, snapshots.PV_TAG: item.path.name},
                volume_type=str(spec.get("volumeType") or "") or None,
                iops=int(iops) if iops else None,
            )
        except errors.CloudError as exc:
            made = exc.details.get("volumeId")
            also = f" Volume {made} was made but not tagged." if made else ""
            if isinstance(exc, errors.CloudAccessDenied):
                return (
                    f"EC2 refused to make a volume from snapshot {snapshot_id}: {exc.message}. The location's role "
                    f"needs ec2:CreateVolume and ec2:CreateTags.{also}"
                )
            return f"making a volume from snapshot {snapshot_id} in {zone} failed: {exc.message}.{also}"
        pv_spec = body.setdefault("spec", {})
        volume = ebs_volume(item.obj)
        if volume is not None and volume.source == "csi":
            pv_spec["csi"]["volumeHandle"] = volume_id
        else:
            pv_spec.setdefault("awsElasticBlockStore", {})["volumeID"] = f"aws://{zone}/{volume_id}"
        self.log("info", f"PV {item.path.name}: volume {volume_id} made from snapshot {snapshot_id} in {zone}.")
        return None

    # -- the preview ---------------------------------------------------------------------------------------
    def preview_item(self, item: _Item) -> None:
        self.check_cancelled()
        if item.skip_reason:
            self.record(item, item.result(ItemAction.SKIP, item.skip_reason))
            return
        reason = self.blocker(item)
        if reason:
            self.record(item, item.result(ItemAction.CONFLICT, reason))
            return
        try:
            body = self.body(item)
            gr = item.path.group_resource
            if gr == "namespaces":
                found = self.existing_namespaces.get(item.target_name)
            elif gr not in self.served:  # its CRD comes with the restore: nothing of it can exist yet
                found = None
            elif item.target_namespace and item.target_namespace not in self.existing_namespaces:
                found = None  # its namespace is made by the restore
            else:
                found = self.get(item.object_path())
            if found is not None:
                self.record(item, self.existing(item, body, found))
                return
            clash = sorted(
                f"{port} (Service {self.node_port_owners[port]})"
                for port in self.kept_node_ports(item)
                if port in self.node_port_owners
            )
            if clash:
                self.record(
                    item,
                    item.result(
                        ItemAction.CONFLICT,
                        f"NodePort {', '.join(clash)} already allocated in the destination; restore without "
                        "preserveNodePorts, or free the port",
                    ),
                )
                return
            if item.snapshot is not None and self.ec2 is not None:
                snapshot_id = str(_dict(_dict(item.snapshot).get("status")).get("providerSnapshotID"))
                try:
                    exists = bool(snapshots.describe_snapshots(self.ec2, [snapshot_id]))
                except errors.CloudError as exc:
                    exists = True  # cannot tell: the restore will say
                    self.log("warning", f"DescribeSnapshots of {snapshot_id} failed: {exc.message}")
                if not exists:
                    self.record(
                        item,
                        item.result(
                            ItemAction.CONFLICT,
                            f"its EBS snapshot {snapshot_id} does not exist in {self.job.region}; it was deleted, or "
                            "lives in another account or region",
                        ),
                    )
                    return
            self.record(item, item.result(ItemAction.CREATE))
        except ApiException as exc:
            self.record(item, item.result(ItemAction.CONFLICT, kube.status_message(exc)))

    def problems_ahead(self, chosen: list[_Item]) -> None:
        """What a preview finds before any item: missing CRDs, StorageClasses, CSI drivers, clashes, regions."""
        in_restore: dict[str, set[str]] = {}
        for item in chosen:
            in_restore.setdefault(item.path.group_resource, set()).add(item.path.name)
        missing: dict[str, int] = {}
        for item in chosen:
            gr = item.path.group_resource
            if gr not in self.served and gr not in in_restore.get(CRDS, set()):
                missing[gr] = missing.get(gr, 0) + 1
        for gr, count in sorted(missing.items()):
            self.problems.append(
                problem(
                    "crd-missing",
                    f"{count} item(s) of {gr}: the destination cluster does not serve it and the restore does not "
                    "bring its CustomResourceDefinition.",
                    "Install the CRD (or the operator that brings it) in the destination first, or restore with "
                    "cluster resources Always so the backup's CRD comes along if it holds one.",
                )
            )

        def names(gr: str, path: str) -> set[str]:
            return {str(_dict(o.get("metadata")).get("name")) for o in self.list_all(gr, path)}

        classes = names("storageclasses.storage.k8s.io", "/apis/storage.k8s.io/v1/storageclasses")
        classes |= in_restore.get("storageclasses.storage.k8s.io", set())
        drivers = names("csidrivers.storage.k8s.io", "/apis/storage.k8s.io/v1/csidrivers")
        drivers |= in_restore.get("csidrivers.storage.k8s.io", set())
        wanted_classes: dict[str, list[str]] = {}
        wanted_drivers: dict[str, list[str]] = {}
        for item in chosen:
            if item.skip_reason:
                continue
            spec = _dict(item.obj.get("spec"))
            where = velero.resource_list_entry(item.target_namespace, item.target_name)
            if item.kind in ("PersistentVolumeClaim", "PersistentVolume") and spec.get("storageClassName"):
                wanted_classes.setdefault(str(spec["storageClassName"]), []).append(f"{item.kind} {where}")
            if item.kind == "PersistentVolume" and _dict(spec.get("csi")).get("driver"):
                wanted_drivers.setdefault(str(spec["csi"]["driver"]), []).append(f"PV {where}")
            provisioner = str(item.obj.get("provisioner") or "")
            if item.kind == "StorageClass" and provisioner and not provisioner.startswith("kubernetes.io/"):
                wanted_drivers.setdefault(provisioner, []).append(f"StorageClass {where}")
        for name, users in sorted(wanted_classes.items()):
            if name not in classes:
                self.problems.append(
                    problem(
                        "storageclass-missing",
                        f"StorageClass {name} does not exist in the destination and is not in the restore; used by "
                        f"{', '.join(users[:5])}{' ...' if len(users) > 5 else ''}.",
                        f"Create StorageClass {name} in the destination, or restore it along (cluster resources "
                        "Always); until then its claims stay Pending.",
                    )
                )
        for name, users in sorted(wanted_drivers.items()):
            if name not in drivers:
                self.problems.append(
                    problem(
                        "csidriver-missing",
                        f"CSI driver {name} is not installed in the destination (no CSIDriver object); used by "
                        f"{', '.join(users[:5])}{' ...' if len(users) > 5 else ''}.",
                        f"Install the {name} CSI driver in the destination cluster before using these volumes.",
                    )
                )
        for item in chosen:
            if item.skip_reason:
                continue
            target = velero.resource_list_entry(item.target_namespace, item.target_name)
            for port in sorted(self.kept_node_ports(item)):
                owner = self.node_port_owners.get(port)
                if owner and owner != target:
                    self.problems.append(
                        problem(
                            "nodeport-clash",
                            f"Service {target} keeps NodePort {port}, which Service {owner} already uses in the "
                            "destination.",
                            "Restore without preserveNodePorts (a new port is assigned), or free the port.",
                        )
                    )
            if item.snapshot is not None:
                zone = self.snapshot_zone(item) or "?"
                if not zone.startswith(self.job.region):
                    self.problems.append(
                        problem(
                            "snapshot-other-region",
                            f"PV {item.path.name}'s EBS snapshot is in zone {zone}, outside the destination "
                            f"location's region {self.job.region}.",
                            f"Copy the snapshot into {self.job.region} (EC2 CopySnapshot), or restore with "
                            "restorePVs false.",
                        )
                    )
        for namespace in sorted(self.terminating):
            self.problems.append(
                problem(
                    "namespace-terminating",
                    f"Namespace {namespace} is being deleted (Terminating) in the destination; nothing can be "
                    "restored into it.",
                    "Wait until it is gone, or restore into another namespace with namespaceMapping.",
                )
            )

    def list_all(self, gr: str, path: str) -> list[dict[str, Any]]:
        if gr not in self.served:
            return []
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = kube.list_query(limit=kube.DEFAULT_PAGE_SIZE, continue_token=token)
            page = self.call("GET", path, query=query, answer=True)
            found.extend(page.get("items") or [])
            token = _dict(page.get("metadata")).get("continue") or None
            if not token:
                return found

    # -- the destination ---------------------------------------------------------------------------------
    def look_at_destination(self, chosen: list[_Item]) -> None:
        """Discovery, the target namespaces (one GET each: Terminating ones are found once) and NodePorts."""
        self.served = {r.group_resource for r in kube.discover(self.api)}
        targets = sorted({i.target_name for i in chosen if i.path.group_resource == "namespaces"})
        for namespace in targets:
            found = self.get(f"/api/v1/namespaces/{namespace}")
            if found is None:
                continue
            self.existing_namespaces[namespace] = found
            if _dict(found.get("status")).get("phase") == "Terminating":
                self.terminating.add(namespace)
                self.log("warning", f"Namespace {namespace} is Terminating in the destination; its items fail.")
        if any(self.kept_node_ports(i) for i in chosen):
            for service in self.list_all("services", "/api/v1/services"):
                meta = _dict(service.get("metadata"))
                owner = velero.resource_list_entry(meta.get("namespace"), str(meta.get("name")))
                for port in _dict(service.get("spec")).get("ports") or ():
                    if _dict(port).get("nodePort"):
                        self.node_port_owners[int(port["nodePort"])] = owner

    def wait_established(self, crds: Iterable[_Item]) -> None:
        """Wait until the restored CRDs are Established and their resources are served."""
        deadline = time.monotonic() + ESTABLISHED_TIMEOUT
        for item in crds:
            if item.skip_reason or item.target_name in self.served:
                continue
            while True:
                self.check_cancelled()
                found = self.get(item.object_path())
                conditions = _dict(found.get("status") if found else None).get("conditions") or ()
                if any(_dict(c).get("type") == "Established" and _dict(c).get("status") == "True" for c in conditions):
                    self.restored_crds.add(item.target_name)
                    break
                if found is None or time.monotonic() > deadline:
                    self.log("warning", f"CRD {item.target_name} did not become Established; its resources may fail.")
                    break
                time.sleep(0.2)

    # -- the run ------------------------------------------------------------------------------------------
    def tiers(self, chosen: list[_Item]) -> list[list[_Item]]:
        by_gr: dict[str, list[_Item]] = {}
        for item in chosen:
            by_gr.setdefault(item.path.group_resource, []).append(item)
        tiers = [by_gr.pop(gr) for gr in PRIORITIES if gr in by_gr]
        last = [by_gr.pop(gr) for gr in LAST if gr in by_gr]
        rest = [item for gr in sorted(by_gr) for item in by_gr[gr]]
        return tiers + ([rest] if rest else []) + last

    def run(self) -> RestoreOutcome:
        job = self.job
        request = self.request
        verb = "Previewing the restore of" if self.dry_run else "Restoring"
        self.log(
            "info",
            f"{verb} backup {job.backup_name} from s3://{job.bucket}/{job.backup_prefix}/ as {job.restore_name}.",
        )
        self.log(
            "info",
            f"Namespaces: {', '.join(request.include_namespaces) or '*'}; excluded: "
            f"{', '.join(request.excluded_namespaces) or '-'}; mapping: "
            f"{', '.join(f'{k}->{v}' for k, v in request.namespace_mapping.items()) or '-'}; cluster resources: "
            f"{request.cluster_resource_mode.value}; label selector: {request.label_selector or '-'}; existing: "
            f"{request.existing_resource_policy.value}; restorePVs: {request.restore_pvs}; preserveNodePorts: "
            f"{request.preserve_node_ports}.",
        )
        tar_path: str | None = None
        try:
            self.check_cancelled()
            tar_path = self.fetch_tarball()
            snapshots_by_pv = self.read_snapshots()
            chosen = self.select(self.read_items(tar_path), snapshots_by_pv)
            os.unlink(tar_path)
            tar_path = None
            self.total = len(chosen)
            self.log("info", f"{self.total} items to restore.")
            self.progress(force=True)
            self.look_at_destination(chosen)
            if self.dry_run:
                self.problems_ahead(chosen)
            work = self.preview_item if self.dry_run else self.restore_item
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="restore") as pool:
                for tier in self.tiers(chosen):
                    self.check_cancelled()
                    list(pool.map(work, tier))
                    if tier[0].path.group_resource == CRDS:
                        if self.dry_run:
                            self.restored_crds = {i.target_name for i in tier if not i.skip_reason}
                        else:
                            self.wait_established(tier)
            self.flush()
            self.progress(force=True)
            return self.finish()
        except Refused as exc:
            self.log("error", exc.message)
            if exc.problem:
                self.problems.append(exc.problem)
            return self.end(RestorePhase.FAILED, exc.message)
        except Cancelled:
            self.flush()
            reason = "The restore was cancelled; objects restored so far stay in the cluster."
            self.log("warning", reason)
            return self.end(RestorePhase.FAILED, reason)
        except ApiException as exc:
            self.flush()
            reason = f"The Kubernetes API refused a request of the agent: {kube.status_message(exc)}."
            if exc.status in (401, 403):
                reason += (
                    " Check the agent's credentials and that its ServiceAccount may read and create what it restores."
                )
            elif exc.status == 0 or exc.status >= 500:
                reason += f" Check that the apiserver at {kube.server_url(self.api)} is up and reachable."
            self.log("error", reason)
            return self.end(RestorePhase.FAILED, reason)
        except (OSError, tarfile.TarError, EOFError) as exc:
            self.flush()
            reason = f"The backup's tarball could not be read ({type(exc).__name__}: {exc}); it may be damaged."
            self.log("error", reason)
            return self.end(RestorePhase.FAILED, reason)
        finally:
            if tar_path:
                with contextlib.suppress(OSError):
                    os.unlink(tar_path)

    def finish(self) -> RestoreOutcome:
        summary = self.tally.summary
        failed = summary.get(ItemAction.FAILED.value, 0)
        phase = RestorePhase.PARTIALLY_FAILED if failed else RestorePhase.COMPLETED
        counts = ", ".join(f"{count} {action}" for action, count in sorted(summary.items())) or "nothing"
        self.log("info", f"{'Preview' if self.dry_run else 'Restore'} done: {counts}; phase {phase.value}.")
        return self.end(phase, None)

    def end(self, phase: RestorePhase, reason: str | None) -> RestoreOutcome:
        self.write_files()
        return RestoreOutcome(
            phase=phase,
            failure_reason=reason,
            total_items=self.total,
            items_restored=0 if self.dry_run else self.tally.restored,
            summary=dict(self.tally.summary),
            problems=list(self.problems),
        )

    def write_files(self) -> None:
        """Velero's restore files in the restore's own folder (a failure to write them is only logged)."""
        tally = self.tally
        listing = {key: sorted(entries) for key, entries in sorted(tally.resource_list.items())}
        files = [
            (self.restore_files.results, velero.results_document(tally.warnings, tally.errors)),
            (self.restore_files.resource_list, listing),
        ]
        for relative, document in files:
            self.put(relative, gzip.compress(velero.encode_json(document), mtime=0))
        self.put(self.restore_files.logs, self.log.finish())

    def put(self, relative: str, body: bytes) -> None:
        key = self.restore_files.key(relative)
        try:
            self.s3.put_object(Bucket=self.job.bucket, Key=key, Body=body)
        except Exception as exc:  # noqa: BLE001 - the restore itself is done; say why its record is missing
            cloud = exc if isinstance(exc, errors.CloudError) else translate(exc, operation="s3:PutObject")
            self.log("warning", f"Writing s3://{self.job.bucket}/{key} failed: {cloud.message}.")


def _tar_files(path: str) -> Iterator[tuple[str, bytes]]:
    """The regular files of a gzip'd tar whose item paths interest the restore, as (name, bytes).

    A direct reader of ustar/pax/GNU headers: ``tarfile`` spends about 100 µs on each member, which for a
    backup (two members per item, the plain path and the preferred-version copy) is a sixth of the restore.
    Anything it does not know (sparse files, base-256 sizes) falls back to ``tarfile``.
    """
    try:
        yield from _fast_tar_files(path)
    except _UnusualTar:
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                if member.isreg() and member.name.startswith(velero.RESOURCES_DIR + "/") and _wanted(member.name):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()


class _UnusualTar(Exception):
    """A tar feature the direct reader does not handle (``tarfile`` takes over)."""


def _wanted(name: str) -> bool:
    return velero.PREFERRED_SUFFIX + "/" not in name


def _fast_tar_files(path: str) -> Iterator[tuple[str, bytes]]:
    block = 512
    with gzip.open(path, "rb") as stream:
        long_name: str | None = None
        while True:
            header = stream.read(block)
            if len(header) < block or header == b"\0" * block:
                return
            size_field = header[124:136]
            if size_field[0] & 0x80:
                raise _UnusualTar("base-256 size")
            size = int(size_field.rstrip(b"\0 ").decode() or "0", 8)
            kind = header[156:157]
            data = stream.read(size)
            if len(data) < size:
                raise EOFError("the tarball ends in the middle of a file")
            if size % block:
                stream.read(block - size % block)
            if kind == b"x":  # pax: "<len> path=<name>\n" records
                for record in data.decode("utf-8", "surrogateescape").split("\n"):
                    _, _, field = record.partition(" ")
                    if field.startswith("path="):
                        long_name = field[5:]
                continue
            if kind == b"L":  # GNU long name
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
                continue
            if kind in (b"g", b"5", b"1", b"2"):  # global pax header, directory, links: no item here
                long_name = None
                continue
            if kind not in (b"0", b"\0", b"7"):
                raise _UnusualTar(f"member type {kind!r}")
            if long_name is not None:
                name, long_name = long_name, None
            else:
                name = header[0:100].rstrip(b"\0").decode("utf-8", "surrogateescape")
                prefix = header[345:500].rstrip(b"\0")
                if header[257:262] == b"ustar" and prefix:
                    name = prefix.decode("utf-8", "surrogateescape") + "/" + name
            name = name.removeprefix("./")
            if name.startswith(velero.RESOURCES_DIR + "/") and _wanted(name):
                yield name, data


def _widen_pool(api: ApiClient, workers: int) -> None:
    """Give the client's connection pool room for every worker (urllib3 drops connections beyond its size)."""
    from kubernetes.client import rest

    configuration = api.configuration
    if (configuration.connection_pool_maxsize or 0) >= workers:
        return
    configuration.connection_pool_maxsize = workers
    api.rest_client = rest.RESTClientObject(configuration)


def run_restore(
    job: RestoreJob,
    *,
    api: ApiClient,
    s3: Any,
    ec2: Any | None,
    progress: Callable[[int, int], None],
    log: Callable[[str, str], None],
    items: Callable[[list[ItemResult]], None],
    cancelled: Callable[[], bool],
    workers: int = WORKERS,
) -> RestoreOutcome:
    """Restore a backup into the cluster (or preview it, ``request.dry_run``); item results go to ``items``."""
    _widen_pool(api, workers)
    engine = _Engine(
        job,
        api=api,
        s3=s3,
        ec2=ec2,
        progress=progress,
        log=log,
        items=items,
        cancelled=cancelled,
        workers=workers,
    )
    return engine.run()
