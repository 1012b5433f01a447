"""The agent's backup engine: cluster resources into Velero's layout in the location's bucket, streamed.

Semantics are Velero's (``pkg/backup``): every listable resource in its group's preferred version, filtered
by namespaces, resources and a label selector; cluster-scoped resources per ``ClusterResourceMode`` (Always:
all; Never: none; Auto: all when every namespace is backed up, otherwise only the PVs of backed-up PVCs and the
CRDs of backed-up custom resources); the Namespace objects of backed-up namespaces always. Like Velero it
skips CSI VolumeSnapshots/VolumeSnapshotContents, takes each cohabiting resource once (``events`` from the
core group, not ``events.k8s.io`` as well) and skips items labelled ``velero.io/exclude-from-backup=true``.

Pipeline (memory does not grow with the number of objects): a fetcher thread reads list pages (raw bytes,
one page ahead), this thread cuts them into items and tar entries, a compressor thread gzips, an uploader
thread sends multipart parts. Upload order: the tarball, Velero's side files, the manifest, and
``velero-backup.json`` last, once, so an interrupted backup never looks like one.

Where the CPU goes (bench/backup.py): the apiserver and etcd need as much CPU for the lists as the whole
engine does, on the same cores. So pages of resources that need only names, namespaces and labels are cut
without parsing their items (``kube.parse_page``'s light cut; a full parse was most of the engine's CPU),
the item bytes go into the tar without being joined or copied, and the GIL switch interval is lowered while
a backup runs so the fetcher keeps reading while this thread writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from kubernetes.client import ApiClient  # type: ignore[import-untyped]
from kubernetes.client.exceptions import ApiException  # type: ignore[import-untyped]

from stowage import errors
from stowage.agent import kube
from stowage.agent.archive import DEFAULT_LEVEL, MultipartSink, TarGzWriter, UploadFailed, Written
from stowage.agent.kube import ApiResource
from stowage.aws.errors import translate
from stowage.domain import velero
from stowage.domain.backups import (
    BackupOutcome,
    BackupPhase,
    BackupRequest,
    ClusterResourceMode,
    ItemMessage,
    VolumeSnapshotRecord,
)

# Velero leaves these out of every backup (backup_controller.go autoExclude*): CSI snapshot objects are
# intermediate and only the ones made during a backup are Velero's business.
AUTO_EXCLUDED = frozenset({"volumesnapshots.snapshot.storage.k8s.io", "volumesnapshotcontents.snapshot.storage.k8s.io"})
# Resources served by two groups at once; Velero backs up the first one it meets (backup.go).
COHABITING = {
    "deployments": frozenset({"extensions", "apps"}),
    "daemonsets": frozenset({"extensions", "apps"}),
    "replicasets": frozenset({"extensions", "apps"}),
    "networkpolicies": frozenset({"extensions", "networking.k8s.io"}),
    "events": frozenset({"", "events.k8s.io"}),
}
# What Auto keeps of the cluster-scoped resources when only some namespaces are backed up.
RELATED_CLUSTER_RESOURCES = frozenset({"persistentvolumes", "customresourcedefinitions.apiextensions.k8s.io"})
# Items the engine reads beyond name, namespace and labels (claims, volumes, CRD names, namespace phases): their
# pages are parsed in full; every other page may be cut without parsing its items (kube.parse_page's light cut).
NEEDS_OBJECT = RELATED_CLUSTER_RESOURCES | {"persistentvolumeclaims", "namespaces"}
# Labels are parsed only when the exclusion label may be among them.
_EXCLUDE_KEY = f'"{velero.EXCLUDE_LABEL}"'.encode()
PROGRESS_INTERVAL = 1.0
# Messages kept in the outcome (the job report) and in -results.gz; the rest are counted.
MAX_OUTCOME_MESSAGES = 1000
MAX_RESULT_MESSAGES = 10000
FETCH_RETRIES = (0.5, 2.0)
PAGE_QUEUE = 2
# The GIL switch interval while a backup runs. The lister thread reads each TLS record of a page (16 KB at
# most) without the GIL and needs it back for the next; at CPython's default 5 ms a thread busy writing items
# makes it wait that long each time, so pages arrive in bursts instead of while items are written (bench,
# 10,000 objects: 0.41-0.73 s at 5 ms, 0.33-0.50 s at 1 ms).
SWITCH_INTERVAL = 0.001


class _SwitchInterval:
    """``sys.setswitchinterval`` lowered while any backup runs, and put back when the last one ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._saved = 0.0

    @contextlib.contextmanager
    def lowered(self, interval: float) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(interval, self._saved))
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    sys.setswitchinterval(self._saved)


_SWITCH = _SwitchInterval()


@dataclass(frozen=True)
class BackupJob:
    """One backup to run, as the control plane handed it out."""

    backup_name: str
    backup_uid: str
    cluster_prefix: str
    bucket: str
    location_name: str
    request: BackupRequest
    created_at: dt.datetime
    expires_at: dt.datetime
    labels: Mapping[str, str]


class SnapshotResultLike(Protocol):
    """What ``stowage.agent.volumes.SnapshotResult`` offers the engine."""

    @property
    def record(self) -> VolumeSnapshotRecord: ...

    @property
    def velero_snapshot(self) -> dict[str, Any]: ...

    @property
    def volume_info(self) -> dict[str, Any]: ...


class Snapshotter(Protocol):
    """Takes a PV's EBS snapshot (``stowage.agent.volumes.Snapshotter``)."""

    def snapshot(
        self, pv: Mapping[str, Any], *, backup_name: str, labels: Mapping[str, str]
    ) -> SnapshotResultLike | None: ...


class Cancelled(Exception):
    """The control plane asked the agent to stop this backup."""


class KubeUnreachable(Exception):
    """The apiserver could not be reached or answered with a server error, after retries."""


# Where the agent's read-only permissions are granted (deploy/agent/rbac.yaml).
AGENT_CLUSTER_ROLE = "stowage-agent-backup"


class KubeRefused(Exception):
    """The apiserver refused a request the backup cannot do without (``verb`` on ``resource``)."""

    def __init__(self, exc: ApiException, verb: str, resource: ApiResource | None) -> None:
        super().__init__(kube.status_message(exc))
        self.status = int(exc.status or 0)
        self.verb = verb
        self.resource = resource


def _rbac_remedy(verb: str, resource: ApiResource) -> str:
    """How to grant the agent one verb on one resource."""
    group = f" in API group `{resource.group}`" if resource.group else ""
    return (
        f"add `{verb}` on `{resource.resource}`{group} to the agent's ClusterRole ({AGENT_CLUSTER_ROLE} in "
        "deploy/agent/rbac.yaml, or the ClusterRole bound to its ServiceAccount)"
    )


def _refused_reason(exc: KubeRefused) -> str:
    """What the apiserver refused, in its own words, and how to fix it."""
    what = f"{exc.verb} {exc.resource.group_resource}" if exc.resource else exc.verb
    reason = f"The Kubernetes API refused the agent's request to {what}: {exc}."
    if exc.status == 403 and exc.resource is not None:
        return f"{reason} To fix it, {_rbac_remedy(exc.verb, exc.resource)}."
    if exc.status in (401, 403):
        return (
            f"{reason} Check the agent's credentials (its kubeconfig or in-cluster ServiceAccount token) and that "
            "its ServiceAccount is bound to the agent's ClusterRole."
        )
    return reason


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Log:
    """Live log lines to the caller, and the same lines gzip'd into a spooled file for ``-logs.gz``."""

    def __init__(self, sink: Callable[[str, str], None], backup_name: str) -> None:
        self._sink = sink
        self._backup = backup_name
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", mtime=0)

    def __call__(self, level: str, message: str) -> None:
        moment = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"time={json.dumps(moment)} level={level} msg={json.dumps(message)} backup=velero/{self._backup}\n"
        if not self._gzip.closed:  # lines after the log was uploaded still reach the live log
            self._gzip.write(line.encode())
        # A broken live log must not break the backup.
        with contextlib.suppress(Exception):
            self._sink(level, message)

    def finish(self) -> bytes:
        """The gzip'd log."""
        self._gzip.close()
        self._file.seek(0)
        data = self._file.read()
        self._file.close()
        return data


class _ResourceList:
    """``-resource-list.json.gz`` written as items come (grouped by kind: targets are planned kind by kind).

    Velero sorts each kind's entries. Lists served from etcd arrive sorted already; the few that are not (e.g.
    componentstatuses, aggregated APIs) are small. So a kind's entries are held until ``SORT_LIMIT`` and
    sorted; past that they are streamed in arrival order, which keeps memory flat for huge kinds.
    """

    SORT_LIMIT = 10000
    # Past SORT_LIMIT, entries are encoded this many at a time: one json.dumps of a list, not one per entry.
    STREAM_BATCH = 1000
    # Encoded entries are gzip'd in batches: a GzipFile.write per entry cost more than the rest of an item.
    BATCH_BYTES = 64 * 1024

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)  # noqa: SIM115
        self._gzip = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=6, mtime=0)
        self._current: str | None = None
        self._held: list[str] = []
        self._streaming = False
        self._first_entry = True
        self._out: list[bytes] = [b"{"]
        self._out_size = 1

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= self.BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        self._gzip.write(b"".join(self._out))
        self._out.clear()
        self._out_size = 0

    def _write_entries(self, entries: list[str]) -> None:
        if not entries:
            return
        # '"a","b"': the same bytes as each entry's json.dumps joined by commas.
        encoded = json.dumps(entries, separators=(",", ":"))[1:-1].encode()
        self._write(encoded if self._first_entry else b"," + encoded)
        self._first_entry = False

    def _end_kind(self) -> None:
        if self._current is None:
            return
        self._write_entries(self._held if self._streaming else sorted(self._held))
        self._write(b"]")

    def add(self, key: str, entry: str) -> None:
        if key != self._current:
            self._end_kind()
            self._write((b"," if self._current is not None else b"") + json.dumps(key).encode() + b":[")
            self._current = key
            self._held = []
            self._streaming = False
            self._first_entry = True
        held = self._held
        held.append(entry)
        if self._streaming:
            if len(held) >= self.STREAM_BATCH:
                self._write_entries(held)
                held.clear()
        elif len(held) > self.SORT_LIMIT:
            self._write_entries(sorted(held))
            held.clear()
            self._streaming = True

    def finish(self) -> bytes:
        self._end_kind()
        self._write(b"}")
        self._flush()
        self._gzip.close()
        self._file.seek(0)
        data = self._file.read()
        self._file.close()
        return data


@dataclass(frozen=True, slots=True)
class _Target:
    """One list call: a resource, cluster-wide or in one namespace."""

    resource: ApiResource
    namespace: str | None = None


@dataclass
class _State:
    items: int = 0
    failed_items: int = 0
    estimated_total: int = 0
    warnings: list[ItemMessage] = field(default_factory=list)
    errors: list[ItemMessage] = field(default_factory=list)
    warning_count: int = 0
    error_count: int = 0
    snapshots: list[VolumeSnapshotRecord] = field(default_factory=list)
    velero_snapshots: list[dict[str, Any]] = field(default_factory=list)
    volume_infos: list[dict[str, Any]] = field(default_factory=list)
    snapshots_attempted: int = 0
    snapshots_completed: int = 0
    pvc_keys: set[str] = field(default_factory=set)
    pv_names: set[str] = field(default_factory=set)
    backed_up_resources: set[str] = field(default_factory=set)
    namespaces_with_items: set[str] = field(default_factory=set)


def _fetch_with_retries(api: ApiClient, path: str, query: list[tuple[str, Any]]) -> bytes:
    """One GET, retried on 429/5xx and connection errors; ``KubeUnreachable`` when it keeps failing."""
    delays = list(FETCH_RETRIES)
    while True:
        try:
            return kube.get_bytes(api, path, query)
        except ApiException as exc:
            if exc.status in (429, 500, 502, 503, 504) and delays:
                time.sleep(delays.pop(0))
                continue
            if exc.status == 0 or exc.status >= 500:
                raise KubeUnreachable(f"GET {path}: {exc.status} {exc.reason}") from exc
            raise
        except Exception as exc:  # urllib3/socket errors: the apiserver is unreachable
            if delays:
                time.sleep(delays.pop(0))
                continue
            raise KubeUnreachable(f"GET {path}: {type(exc).__name__}: {exc}") from exc


class _Fetcher:
    """Reads the list pages of every target in order, one page ahead of the consumer, in its own thread."""

    def __init__(self, api: ApiClient, targets: list[_Target], label_selector: str | None, page_size: int) -> None:
        self.api = api
        self.targets = targets
        self.label_selector = label_selector
        self.page_size = page_size
        self._queue: queue.Queue[tuple[str, _Target | None, Any]] = queue.Queue(maxsize=PAGE_QUEUE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-lister", daemon=True)

    def _put(self, event: tuple[str, _Target | None, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(event, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for target in self.targets:
                token: str | None = None
                remaining: int | None = None
                path = target.resource.path(target.namespace)
                while not self._stop.is_set():
                    query = kube.list_query(
                        limit=self.page_size, continue_token=token, label_selector=self.label_selector
                    )
                    try:
                        raw = _fetch_with_retries(self.api, path, query)
                    except ApiException as exc:
                        if not self._put(("error", target, exc)):
                            return
                        break
                    # How many items the page holds, when the apiserver has said so (see kube.parse_page).
                    expected = remaining
                    token, remaining = kube.page_token(raw)
                    if token:
                        expected = self.page_size
                    if not self._put(("page", target, (raw, expected))):
                        return
                    if not token:
                        break
                if self._stop.is_set():
                    return
            self._put(("end", None, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which decides
            self._put(("fatal", None, exc))

    def __iter__(self) -> Iterator[tuple[str, _Target | None, Any]]:
        self._thread.start()
        while True:
            event = self._queue.get()
            yield event
            if event[0] in ("end", "fatal"):
                return

    def stop(self) -> None:
        """Stop the thread (it may be waiting on a request; it ends after it)."""
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass


class _Engine:
    def __init__(
        self,
        job: BackupJob,
        *,
        api: ApiClient,
        s3: Any,
        snapshotter: Snapshotter | None,
        progress: Callable[[int, int], None],
        log: Callable[[str, str], None],
        cancelled: Callable[[], bool],
        page_size: int,
        gzip_level: int,
        part_size: int | None,
    ) -> None:
        self.job = job
        self.request = job.request
        self.api = api
        self.s3 = s3
        self.snapshotter = snapshotter if job.request.include_all_disks else None
        self._progress = progress
        self.log = _Log(log, job.backup_name)
        self.cancelled = cancelled
        self.page_size = page_size
        self.gzip_level = gzip_level
        self.part_size = part_size
        self.objects = velero.BackupObjects.of(job.cluster_prefix, job.backup_name)
        self.state = _State()
        self.started_at = _now()
        self._last_progress = 0.0
        self.selector = velero.label_selector_object(job.request.label_selector)
        self.mode = job.request.cluster_resource_mode
        # Auto backs up every cluster-scoped resource only when the namespace filter takes everything.
        self.everything = job.request.all_namespaces and not job.request.excluded_namespaces
        self.related_only = self.mode == ClusterResourceMode.AUTO and not self.everything
        self._heads: dict[ApiResource, bytes] = {}
        self._selected: dict[str, bool] = {}

    # -- messages ---------------------------------------------------------------------------------------
    def warn(self, message: ItemMessage) -> None:
        self.state.warning_count += 1
        if len(self.state.warnings) < MAX_RESULT_MESSAGES:
            self.state.warnings.append(message)
        self.log("warning", message.message)

    def error(self, message: ItemMessage) -> None:
        self.state.error_count += 1
        if len(self.state.errors) < MAX_RESULT_MESSAGES:
            self.state.errors.append(message)
        self.log("error", message.message)

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        done = self.state.items
        total = max(self.state.estimated_total, done + self.state.failed_items)
        with contextlib.suppress(Exception):  # progress is best effort
            self._progress(done, total)

    # -- planning ---------------------------------------------------------------------------------------
    def resources(self) -> list[ApiResource]:
        seen_cohabiting: set[str] = set()
        chosen: list[ApiResource] = []
        try:
            discovered = kube.discover(self.api)
        except ApiException as exc:
            if exc.status == 0 or exc.status >= 500:
                raise KubeUnreachable(f"discovery: {exc.status} {exc.reason}") from exc
            raise KubeRefused(exc, "read the API discovery (GET /api, /apis)", None) from exc
        except Exception as exc:  # urllib3/socket errors: the apiserver is unreachable
            raise KubeUnreachable(f"discovery: {type(exc).__name__}: {exc}") from exc
        for resource in discovered:
            gr = resource.group_resource
            if gr in AUTO_EXCLUDED:
                continue
            pair = COHABITING.get(resource.resource)
            if pair is not None and resource.group in pair:
                if resource.resource in seen_cohabiting:
                    continue
                seen_cohabiting.add(resource.resource)
            chosen.append(resource)
        return chosen

    def namespaces(self, namespace_resource: ApiResource) -> dict[str, tuple[dict[str, Any], bytes]]:
        """The Namespace objects the filter selects (name -> (object, JSON bytes))."""
        found: dict[str, tuple[dict[str, Any], bytes]] = {}
        token: str | None = None
        while True:
            try:
                raw = _fetch_with_retries(
                    self.api, namespace_resource.path(), kube.list_query(limit=self.page_size, continue_token=token)
                )
            except ApiException as exc:
                raise KubeRefused(exc, "list", namespace_resource) from exc
            for item, data in kube.parse_page(raw).items:
                name = str(item["metadata"]["name"])
                if self.request.namespace_selected(name):
                    found[name] = (item, data)
            token, _ = kube.page_token(raw)
            if not token:
                return found

    def plan(self, resources: list[ApiResource], namespaces: list[str]) -> tuple[list[_Target], list[_Target]]:
        namespaced: list[_Target] = []
        cluster: list[_Target] = []
        for resource in resources:
            if resource.group_resource == "namespaces" or not self.request.resource_selected(resource.group_resource):
                continue
            if resource.namespaced:
                if self.request.all_namespaces:
                    namespaced.append(_Target(resource))
                else:
                    namespaced.extend(_Target(resource, ns) for ns in namespaces)
            elif self.cluster_listed(resource):
                cluster.append(_Target(resource))
        return namespaced, cluster

    def cluster_listed(self, resource: ApiResource) -> bool:
        """Whether a cluster-scoped resource is listed at all (related-only lists are filtered item by item)."""
        if self.mode == ClusterResourceMode.ALWAYS or (self.mode == ClusterResourceMode.AUTO and self.everything):
            return True
        return self.related_only and resource.group_resource in RELATED_CLUSTER_RESOURCES

    # -- items ------------------------------------------------------------------------------------------
    def write_item(
        self, tar: TarGzWriter, resources: _ResourceList, resource: ApiResource, item: dict[str, Any], data: bytes
    ) -> None:
        metadata = item.get("metadata") or {}
        name = metadata.get("name")
        namespace = metadata.get("namespace") or None
        if not name:
            self.state.failed_items += 1
            self.error(
                ItemMessage(f"A {resource.kind} without a name was skipped.", namespace, resource.group_resource)
            )
            return
        head = self._heads.get(resource)
        if head is None:
            head = self._heads[resource] = kube.type_head(resource)
        tar.add_copies(
            velero.item_paths(resource.group_resource, resource.version, namespace, name),
            kube.item_json(resource, item, data, head),
        )
        resources.add(
            velero.resource_list_key(resource.api_version, resource.kind), velero.resource_list_entry(namespace, name)
        )
        self.state.items += 1
        self.state.backed_up_resources.add(resource.group_resource)
        if namespace:
            self.state.namespaces_with_items.add(namespace)

    def write_light(
        self, tar: TarGzWriter, resources: _ResourceList, resource: ApiResource, items: list[kube.LightItem]
    ) -> None:
        """``keep`` and ``write_item`` in one loop over the light cut of a page (a backup's hottest code)."""
        head = self._heads.get(resource)
        if head is None:
            head = self._heads[resource] = kube.type_head(resource)
        gr, version = resource.group_resource, resource.version
        list_key = velero.resource_list_key(resource.api_version, resource.kind)
        selected, add, add_entry = self.namespace_selected, tar.add_copies, resources.add
        paths, entry, typed_parts = velero.item_paths, velero.resource_list_entry, kube.typed_parts
        namespaces = self.state.namespaces_with_items
        written = 0
        for name, namespace, labels, data in items:
            if (
                labels is not None
                and _EXCLUDE_KEY in labels
                and kube.labels(labels).get(velero.EXCLUDE_LABEL) == "true"
            ):
                continue
            if namespace is not None and not selected(namespace):
                continue
            if not name:  # write_item reports it
                self.write_item(tar, resources, resource, {"metadata": {"namespace": namespace}}, data)
                continue
            add(paths(gr, version, namespace, name), *typed_parts(head, data))
            add_entry(list_key, entry(namespace, name))
            written += 1
            if namespace:
                namespaces.add(namespace)
        if written:
            self.state.items += written
            self.state.backed_up_resources.add(gr)

    def namespace_selected(self, namespace: str) -> bool:
        """The request's namespace filter, remembered per namespace (it is asked once per item)."""
        selected = self._selected.get(namespace)
        if selected is None:
            selected = self._selected[namespace] = self.request.namespace_selected(namespace)
        return selected

    def keep(self, resource: ApiResource, item: dict[str, Any]) -> bool:
        """Whether a listed item goes into the backup (namespace filter, exclusion label, related-only)."""
        metadata = item.get("metadata") or {}
        labels = metadata.get("labels")
        if labels and labels.get(velero.EXCLUDE_LABEL) == "true":
            return False
        namespace = metadata.get("namespace")
        if namespace and not self.namespace_selected(namespace):
            return False
        if resource.namespaced or not self.related_only:
            return True
        if resource.group_resource == "persistentvolumes":
            claim = (item.get("spec") or {}).get("claimRef") or {}
            return metadata.get("name") in self.state.pv_names or (
                f"{claim.get('namespace')}/{claim.get('name')}" in self.state.pvc_keys
            )
        spec = item.get("spec") or {}
        names = spec.get("names") or {}
        return f"{names.get('plural')}.{spec.get('group')}" in self.state.backed_up_resources

    def after_item(self, resource: ApiResource, item: dict[str, Any]) -> None:
        """What an item adds to the state: PVC bindings (for related PVs) and PV snapshots."""
        if resource.group_resource == "persistentvolumeclaims":
            metadata = item.get("metadata") or {}
            self.state.pvc_keys.add(f"{metadata.get('namespace')}/{metadata.get('name')}")
            volume = (item.get("spec") or {}).get("volumeName")
            if volume:
                self.state.pv_names.add(str(volume))
        elif resource.group_resource == "persistentvolumes" and self.snapshotter is not None:
            self.snapshot(item)

    def snapshot(self, pv: dict[str, Any]) -> None:
        from stowage.agent.volumes import SnapshotFailed

        assert self.snapshotter is not None
        name = str((pv.get("metadata") or {}).get("name") or "")
        try:
            result = self.snapshotter.snapshot(pv, backup_name=self.job.backup_name, labels=self.job.labels)
        except SnapshotFailed as exc:
            self.state.snapshots_attempted += 1
            if exc.record is not None:
                self.state.snapshots.append(exc.record)
            self.error(ItemMessage(exc.message, None, "persistentvolumes", name))
            return
        if result is None:
            return
        self.state.snapshots_attempted += 1
        self.state.snapshots_completed += 1
        self.state.snapshots.append(result.record)
        self.state.velero_snapshots.append(result.velero_snapshot)
        self.state.volume_infos.append(result.volume_info)
        self.log("info", f"PV {name}: EBS snapshot {result.record.snapshot_id} of {result.record.volume_id}.")

    def list_failed(self, target: _Target, exc: ApiException) -> None:
        resource = target.resource
        where = f" in namespace {target.namespace}" if target.namespace else ""
        if exc.status == 403:
            self.warn(
                ItemMessage(
                    f"Listing {resource.group_resource}{where} is forbidden for the agent's Kubernetes identity "
                    f"({kube.status_message(exc)}); its objects are not in the backup. To back them up, "
                    f"{_rbac_remedy('list', resource)}; or exclude {resource.group_resource} from the backup.",
                    target.namespace,
                    resource.group_resource,
                )
            )
        elif exc.status == 404:
            self.warn(
                ItemMessage(
                    f"{resource.group_resource}{where} disappeared during the backup (404); skipped.",
                    target.namespace,
                    resource.group_resource,
                )
            )
        elif exc.status == 410:
            self.error(
                ItemMessage(
                    f"The list of {resource.group_resource}{where} expired mid-way (410 Gone): the apiserver compacted "
                    "its history; objects after that point are missing. Run the backup again.",
                    target.namespace,
                    resource.group_resource,
                )
            )
        else:
            self.error(
                ItemMessage(
                    f"Listing {resource.group_resource}{where} failed: {kube.status_message(exc)}.",
                    target.namespace,
                    resource.group_resource,
                )
            )

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled()

    def stream(self, tar: TarGzWriter, resources: _ResourceList, targets: list[_Target]) -> None:
        fetcher = _Fetcher(self.api, targets, self.request.label_selector, self.page_size)
        current: _Target | None = None
        try:
            for kind, target, payload in fetcher:
                self.check_cancelled()
                if kind == "fatal":
                    raise payload
                if kind == "end":
                    break
                assert target is not None
                if kind == "error":
                    self.list_failed(target, payload)
                    continue
                resource = target.resource
                raw, expected = payload
                try:
                    page = kube.parse_page(raw, light=resource.group_resource not in NEEDS_OBJECT, expected=expected)
                except (ValueError, IndexError) as exc:
                    self.error(
                        ItemMessage(f"A page of {resource.group_resource} was not valid JSON: {exc}", target.namespace)
                    )
                    continue
                if target != current:
                    current = target
                    self.state.estimated_total += len(page) + (page.remaining or 0)
                if page.light is not None:
                    self.write_light(tar, resources, resource, page.light)
                    self.progress()
                    continue
                keep, write, after = self.keep, self.write_item, self.after_item
                for item, data in page.items:
                    if keep(resource, item):
                        write(tar, resources, resource, item, data)
                        after(resource, item)
                self.progress()
        finally:
            fetcher.stop()

    def write_namespaces(
        self,
        tar: TarGzWriter,
        resources: _ResourceList,
        resource: ApiResource,
        found: Mapping[str, tuple[dict[str, Any], bytes]],
    ) -> None:
        for name in sorted(found):
            item, data = found[name]
            labels = (item.get("metadata") or {}).get("labels")
            if labels and labels.get(velero.EXCLUDE_LABEL) == "true":
                continue
            if (item.get("status") or {}).get("phase") not in (None, "Active"):
                # Velero's namespace tracker skips namespaces being deleted.
                continue
            # With a selector, a namespace comes along when it matches or holds a backed-up item (Velero's nsTracker).
            matched = name in self.state.namespaces_with_items or velero.selector_matches(self.selector, labels)
            if self.selector and not matched:
                continue
            self.write_item(tar, resources, resource, item, data)

    # -- uploads ----------------------------------------------------------------------------------------
    def put(self, relative: str, body: bytes) -> velero.ManifestEntry:
        key = self.objects.key(relative)
        try:
            self.s3.put_object(Bucket=self.job.bucket, Key=key, Body=body)
        except Exception as exc:
            raise UploadFailed(f"PutObject s3://{self.job.bucket}/{key}", exc) from exc
        return velero.ManifestEntry(relative, len(body), hashlib.sha256(body).hexdigest())

    def results_gz(self) -> bytes:
        def convert(messages: list[ItemMessage], total: int) -> list[velero.ResultMessage]:
            out = [velero.ResultMessage(m.message, m.namespace, cluster=bool(m.resource)) for m in messages]
            if total > len(messages):
                out.append(velero.ResultMessage(f"... and {total - len(messages)} more (see the backup's log)."))
            return out

        document = velero.results_document(
            convert(self.state.warnings, self.state.warning_count), convert(self.state.errors, self.state.error_count)
        )
        return gzip.compress(velero.encode_json(document), mtime=0)

    def outcome(self, phase: BackupPhase, reason: str | None, size: int = 0) -> BackupOutcome:
        return BackupOutcome(
            phase=phase,
            failure_reason=reason,
            total_items=self.state.items + self.state.failed_items,
            items_backed_up=self.state.items,
            size_bytes=size,
            warnings=tuple(self.state.warnings[:MAX_OUTCOME_MESSAGES]),
            errors=tuple(self.state.errors[:MAX_OUTCOME_MESSAGES]),
            snapshots=tuple(self.state.snapshots),
        )

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> BackupOutcome:
        request = self.request
        self.log("info", f"Starting backup {self.job.backup_name} into s3://{self.job.bucket}/{self.objects.folder}/")
        self.log(
            "info",
            f"Namespaces: {', '.join(request.namespaces) or '*'}; "
            f"excluded: {', '.join(request.excluded_namespaces) or '-'}; "
            f"resources: {', '.join(request.included_resources) or '*'}; excluded: "
            f"{', '.join(request.excluded_resources) or '-'}; label selector: {request.label_selector or '-'}; "
            f"cluster resources: {self.mode.value}.",
        )
        if request.include_all_disks and self.mode == ClusterResourceMode.NEVER:
            self.log(
                "warning",
                "includeAllDisks is set but cluster resources are Never: PersistentVolumes are not backed up, so no "
                "disk is snapshotted. Use Auto or Always to back up disks.",
            )
        tar: TarGzWriter | None = None
        try:
            self.check_cancelled()
            resources = self.resources()
            namespace_resource = next(r for r in resources if r.group_resource == "namespaces")
            found = self.namespaces(namespace_resource)
            missing = [ns for ns in request.namespaces if ns != "*" and ns not in found]
            for ns in missing:
                self.warn(ItemMessage(f"Namespace {ns} does not exist in the cluster; nothing to back up there.", ns))
            namespaced, cluster = self.plan(resources, sorted(ns for ns in found if ns in request.namespaces))
            # The total grows as lists start: each first page tells how many items its list holds.
            self.state.estimated_total = len(found)
            self.progress(force=True)
            self.check_cancelled()

            sink = MultipartSink(self.s3, self.job.bucket, self.objects.key(self.objects.tarball))
            if self.part_size:
                sink.part_size = self.part_size
            sink.start()
            tar = TarGzWriter(sink, level=self.gzip_level, mtime=int(self.job.created_at.timestamp()))
            tar.add(velero.METADATA_VERSION_PATH, velero.METADATA_VERSION_CONTENT)
            resource_list = _ResourceList()
            self.stream(tar, resource_list, namespaced + cluster)
            if "namespaces" not in request.excluded_resources:
                self.write_namespaces(tar, resource_list, namespace_resource, found)
            self.check_cancelled()
            written: Written = tar.close()
            tar = None
            # Every item is known now: the last report carries the exact total, not the estimate.
            self.state.estimated_total = 0
            self.progress(force=True)
            return self.finish(written, resource_list)
        except Cancelled:
            self.log("warning", "The backup was cancelled; the partial upload is aborted.")
            self._abort(tar)
            return self.outcome(
                BackupPhase.FAILED,
                "The backup was cancelled before it finished; nothing of it was kept (no velero-backup.json).",
            )
        except UploadFailed as exc:
            self._abort(tar)
            reason = _upload_reason(exc, self.job.bucket)
            self.log("error", reason)
            return self.outcome(BackupPhase.FAILED, reason)
        except KubeUnreachable as exc:
            self._abort(tar)
            reason = (
                f"The agent could not read from the Kubernetes API at {kube.server_url(self.api)}: {exc}. Check that "
                "the apiserver is up and reachable from the agent, and the agent's kubeconfig or in-cluster config."
            )
            self.log("error", reason)
            return self.outcome(BackupPhase.FAILED, reason)
        except KubeRefused as exc:
            self._abort(tar)
            reason = _refused_reason(exc)
            self.log("error", reason)
            return self.outcome(BackupPhase.FAILED, reason)
        except ApiException as exc:
            self._abort(tar)
            reason = f"The Kubernetes API refused a request of the agent: {kube.status_message(exc)}."
            if exc.status in (401, 403):
                reason += " Check the agent's credentials and that its ServiceAccount may list every resource."
            self.log("error", reason)
            return self.outcome(BackupPhase.FAILED, reason)
        except BaseException:
            self._abort(tar)
            raise

    def _abort(self, tar: TarGzWriter | None) -> None:
        if tar is None:
            return
        problem = tar.abort()
        if problem:
            self.log(
                "error", problem + " An incomplete multipart upload may remain; a bucket lifecycle rule cleans it."
            )

    def side_files(self, resource_list: _ResourceList) -> list[tuple[str, bytes]]:
        """Velero's side files of the backup: resource list, results, volume snapshots and volume info."""
        objects, state = self.objects, self.state
        # Go's encoding of an empty (nil) snapshot slice is null; the volume-info list is always a list.
        snapshots = state.velero_snapshots or None
        return [
            (objects.resource_list, resource_list.finish()),
            (objects.results, self.results_gz()),
            (objects.volume_snapshots, gzip.compress(velero.encode_json(snapshots), mtime=0)),
            (objects.volume_info, gzip.compress(velero.encode_json(state.volume_infos), mtime=0)),
        ]

    def finish(self, written: Written, resource_list: _ResourceList) -> BackupOutcome:
        """Side files and log, then the manifest, then ``velero-backup.json``."""
        # Called only once the tarball is complete: a failed tarball upload leaves nothing in the bucket.
        state = self.state
        phase = BackupPhase.PARTIALLY_FAILED if state.error_count else BackupPhase.COMPLETED
        self.log(
            "info",
            f"Backed up {state.items} items ({written.size} bytes compressed) with {state.warning_count} warnings "
            f"and {state.error_count} errors; phase {phase.value}.",
        )
        objects = self.objects
        self.log("info", "Uploading the side files, the log, the manifest and velero-backup.json.")
        # The log goes up with the side files (one round trip, not two), so it holds every line but the uploads.
        side = [*self.side_files(resource_list), (objects.logs, self.log.finish())]
        with ThreadPoolExecutor(max_workers=len(side), thread_name_prefix="s3-side-files") as pool:
            side_entries = list(pool.map(lambda pair: self.put(*pair), side))
        entries = [velero.ManifestEntry(objects.tarball, written.size, written.sha256), *side_entries]
        completed = _now()
        document = velero.backup_document(
            name=self.job.backup_name,
            uid=self.job.backup_uid,
            request=self.request,
            location_name=self.job.location_name,
            labels=self.job.labels,
            created_at=self.job.created_at,
            expires_at=self.job.expires_at,
            status=velero.BackupStatus(
                phase=phase,
                started_at=self.started_at,
                completed_at=completed,
                total_items=state.items + state.failed_items,
                items_backed_up=state.items,
                warnings=state.warning_count,
                errors=state.error_count,
                snapshots_attempted=state.snapshots_attempted,
                snapshots_completed=state.snapshots_completed,
            ),
        )
        backup_json = velero.encode_json(document)
        self.check_cancelled()
        entries.append(
            velero.ManifestEntry(objects.backup_json, len(backup_json), hashlib.sha256(backup_json).hexdigest())
        )
        self.put(objects.manifest, velero.encode_json(velero.manifest_document(entries)))
        self.put(objects.backup_json, backup_json)
        return self.outcome(phase, None, size=sum(e.size for e in entries))


def _upload_reason(exc: UploadFailed, bucket: str) -> str:
    """What went wrong writing to S3, and how to fix it."""
    cause = exc.cause
    cloud = cause if isinstance(cause, errors.CloudError) else translate(cause)
    head = f"Writing the backup to the bucket failed ({exc}): {cloud.message}."
    if isinstance(cloud, errors.CloudAccessDenied):
        return (
            f"{head} The agent's credentials may not write to s3://{bucket}/ under this cluster's prefix; re-validate "
            "the location and check that the role's permission policy grants s3:PutObject and "
            "s3:AbortMultipartUpload on the bucket."
        )
    if isinstance(cloud, errors.CloudCredentialsExpired | errors.CloudCredentialsMissing):
        return (
            f"{head} The agent's AWS credentials were rejected or expired; check that the agent reaches the control "
            "plane (brokered credentials) or may assume the role (direct), then run the backup again."
        )
    if isinstance(cloud, errors.CloudNotFound):
        return f"{head} The bucket {bucket} does not exist (or the upload vanished); check the location's bucket."
    if isinstance(cloud, errors.CloudEndpointError):
        return (
            f"{head} The S3 endpoint could not be reached from the agent; check its network and the location's S3 URL."
        )
    return f"{head} Run the backup again; if it keeps failing, re-validate the location."


def run_backup(
    job: BackupJob,
    *,
    api: ApiClient,
    s3: Any,
    snapshotter: Snapshotter | None,
    progress: Callable[[int, int], None],
    log: Callable[[str, str], None],
    cancelled: Callable[[], bool],
    page_size: int = kube.DEFAULT_PAGE_SIZE,
    gzip_level: int = DEFAULT_LEVEL,
    part_size: int | None = None,
) -> BackupOutcome:
    """Back up the cluster's resources (and EBS volumes) into the job's location in Velero's layout."""
    engine = _Engine(
        job,
        api=api,
        s3=s3,
        snapshotter=snapshotter,
        progress=progress,
        log=log,
        cancelled=cancelled,
        page_size=page_size,
        gzip_level=gzip_level,
        part_size=part_size,
    )
    with _SWITCH.lowered(SWITCH_INTERVAL):
        return engine.run()
